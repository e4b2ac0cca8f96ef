package main

import (
	"html/template"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strings"
	"testing"

	"go.uber.org/zap"

	"github.com/imapwarden/imapwarden/proxy"
)

// vis shows every character a reader could not see, or that would act on
// a terminal or reorder text, as a marked escape, and escapes markup.
func TestVis(t *testing.T) {
	for in, want := range map[string]string{
		"alice":                 "alice",
		"<b>&\"'":               "&lt;b&gt;&amp;&#34;&#39;",
		"a\x1b[31mb":            `a<span class="ctl">\x1b</span>[31mb`,
		"\x00\t\n\r\x7f":        `<span class="ctl">\x00</span><span class="ctl">\t</span><span class="ctl">\n</span><span class="ctl">\r</span><span class="ctl">\x7f</span>`,
		"c1\u0085\u009b":        `c1<span class="ctl">\u0085</span><span class="ctl">\u009b</span>`,
		"x\u2028y\u2029":        `x<span class="ctl">\u2028</span>y<span class="ctl">\u2029</span>`,
		"evil\u202egnp.exe":     `evil<span class="ctl">\u202e</span>gnp.exe`,
		"ad\u200bmin\ufeff":     `ad<span class="ctl">\u200b</span>min<span class="ctl">\ufeff</span>`,
		"bad\xff":               `bad<span class="ctl">\xff</span>`,
		"alice\u00ad":           `alice<span class="ctl">\u00ad</span>`,
		"alice\U000e0020":       `alice<span class="ctl">\U000e0020</span>`,
		"alice\u3164\u034f":     `alice<span class="ctl">\u3164</span><span class="ctl">\u034f</span>`,
		"Grüße, 日本":             "Grüße, 日本",
		`back\slash`:            `back\slash`,
		"<span class=\"ctl\">x": "&lt;span class=&#34;ctl&#34;&gt;x",
	} {
		if got := vis(in); got != template.HTML(want) {
			t.Errorf("vis(%q) = %s, want %s", in, got, want)
		}
	}
	if got := visLines("a: 1\nb: \x1b\n"); got != template.HTML("a: 1\nb: <span class=\"ctl\">\\x1b</span>\n") {
		t.Errorf("visLines: %q", got)
	}
}

// consoleClient is a browser-like HTTP client of the console: a cookie
// jar, no redirects followed, Origin set on posts.
type consoleClient struct {
	t    *testing.T
	base string
	hc   *http.Client
}

func newConsoleClient(t *testing.T, admin string) *consoleClient {
	jar, _ := cookiejar.New(nil)
	return &consoleClient{t: t, base: "http://" + admin, hc: &http.Client{Jar: jar,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}}
}

func (c *consoleClient) get(path string) (*http.Response, string) {
	c.t.Helper()
	resp, err := c.hc.Get(c.base + path)
	if err != nil {
		c.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, string(b)
}

func (c *consoleClient) post(path string, form url.Values, origin string) (*http.Response, string) {
	c.t.Helper()
	req, _ := http.NewRequest("POST", c.base+path, strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if origin != "" {
		req.Header.Set("Origin", origin)
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		c.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, string(b)
}

var csrfField = regexp.MustCompile(`name="csrf" value="([^"]+)"`)

// TestConsoleHTTP: the console's security properties over plain HTTP:
// login sets an HttpOnly SameSite=Strict cookie, every page has a strict
// CSP and no inline script, actions need the CSRF token, a same-origin
// request and write scope, and a read token sees no buttons.
func TestConsoleHTTP(t *testing.T) {
	f := startAdminFixture(t, "")
	c := newConsoleClient(t, f.admin)
	origin := c.base

	if resp, _ := c.get("/console/"); resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/console/login" {
		t.Fatalf("/console/ signed out: %d %s", resp.StatusCode, resp.Header.Get("Location"))
	}
	resp, body := c.get("/console/login")
	if csp := resp.Header.Get("Content-Security-Policy"); !strings.Contains(csp, "default-src 'none'") || !strings.Contains(csp, "script-src 'self'") ||
		!strings.Contains(csp, "frame-ancestors 'none'") || resp.Header.Get("X-Content-Type-Options") != "nosniff" {
		t.Errorf("login page headers: %v", resp.Header)
	}
	if regexp.MustCompile(`<script[^>]*>[^<]`).MatchString(body) || strings.Contains(body, " style=") || strings.Contains(body, "http://") || strings.Contains(body, "https://") {
		t.Errorf("inline script, inline style or an external URL in the page:\n%s", body)
	}
	if resp, _ := c.post("/console/login", url.Values{"token": {"not-the-token-at-all"}}, origin); resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("login with a wrong token: %d", resp.StatusCode)
	}
	if resp, _ := c.post("/console/login", url.Values{"token": {testWriteToken}}, "http://evil.example"); resp.StatusCode != http.StatusBadRequest {
		t.Errorf("login from another origin: %d", resp.StatusCode)
	}
	resp, _ = c.post("/console/login", url.Values{"token": {testWriteToken}}, origin)
	if resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("login: %d", resp.StatusCode)
	}
	ck := resp.Header.Get("Set-Cookie")
	if !strings.Contains(ck, "HttpOnly") || !strings.Contains(ck, "SameSite=Strict") || !strings.Contains(ck, "Path=/console/") || strings.Contains(ck, testWriteToken) {
		t.Errorf("cookie: %s", ck)
	}
	// The cookie opens the console, not the API.
	if resp, _ := c.get("/sessions"); resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("API with the console cookie: %d", resp.StatusCode)
	}
	for _, p := range []string{"/console/", "/console/lockouts", "/console/events", "/console/audit", "/console/backends", "/console/config"} {
		if resp, body := c.get(p); resp.StatusCode != 200 || resp.Header.Get("Content-Security-Policy") != consoleCSP || !strings.Contains(body, "Sign out") {
			t.Errorf("%s: %d", p, resp.StatusCode)
		}
	}
	for _, p := range []string{"/console/static/console.css", "/console/static/console.js"} {
		if resp, _ := c.get(p); resp.StatusCode != 200 {
			t.Errorf("%s: %d", p, resp.StatusCode)
		}
	}
	// The backend's server, with its health and state.
	if _, body := c.get("/console/backends"); !strings.Contains(body, `id="servers"`) || !strings.Contains(body, "<td>enabled</td>") ||
		!strings.Contains(body, f.backendAddr) {
		t.Errorf("backends page lacks the server:\n%s", body)
	}
	if _, body := c.get("/console/config"); strings.Contains(body, testWriteToken) || strings.Contains(body, testReadToken) {
		t.Error("a token in the config page")
	}

	other := f.session()
	other.cmd("a", "NO", "LOGIN bob wrong")
	other.cmd("b", "NO", "LOGIN bob wrong")
	_, page := c.get("/console/lockouts")
	m := csrfField.FindStringSubmatch(page)
	if m == nil || !strings.Contains(page, ">bob<") {
		t.Fatalf("lockouts page:\n%s", page)
	}
	csrf := m[1]
	unlock := url.Values{"user": {"bob"}, "csrf": {csrf}}
	for _, bad := range []struct {
		form   url.Values
		origin string
	}{
		{url.Values{"user": {"bob"}}, origin},
		{url.Values{"user": {"bob"}, "csrf": {csrf + "x"}}, origin},
		{unlock, "http://evil.example"},
	} {
		if resp, _ := c.post("/console/unlock", bad.form, bad.origin); resp.StatusCode != http.StatusForbidden {
			t.Errorf("unlock %v from %s: %d, want 403", bad.form, bad.origin, resp.StatusCode)
		}
	}
	// A form has one reading (oneForm): a field twice, or in the query, is refused.
	for target, form := range map[string]url.Values{
		"/console/unlock":          {"user": {"bob", "alice"}, "csrf": {csrf}},
		"/console/unlock?user=bob": {"csrf": {csrf}},
	} {
		if resp, _ := c.post(target, form, origin); resp.StatusCode != http.StatusBadRequest {
			t.Errorf("unlock %s %v: %d, want 400", target, form, resp.StatusCode)
		}
	}
	if _, page := c.get("/console/lockouts"); !strings.Contains(page, ">bob<") {
		t.Fatal("a refused unlock unlocked")
	}
	if resp, _ := c.post("/console/unlock", unlock, origin); resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("unlock: %d", resp.StatusCode)
	}
	if _, page := c.get("/console/lockouts"); strings.Contains(page, ">bob<") || !strings.Contains(page, "Unlocked user bob") {
		t.Errorf("after unlock:\n%s", page)
	}
	recs := f.adminRecords(2)
	if len(recs) != 2 || recs[0].Event != "console.login" || recs[0].Actor != "oncall" || recs[0].IP.String() != "127.0.0.1" ||
		recs[1].Event != "console.unlock" || recs[1].Actor != "oncall" || recs[1].User != "bob" || recs[1].Result != "ok" {
		t.Errorf("audit of the console sign-in and unlock: %+v", recs)
	}

	// A read token: pages, no buttons, no actions.
	r := newConsoleClient(t, f.admin)
	r.post("/console/login", url.Values{"token": {testReadToken}}, origin)
	other = f.session()
	other.cmd("c", "NO", "LOGIN carol wrong")
	other.cmd("d", "NO", "LOGIN carol wrong")
	_, page = r.get("/console/lockouts")
	if !strings.Contains(page, ">carol<") || strings.Contains(page, "/console/unlock") {
		t.Errorf("read scope lockouts page:\n%s", page)
	}
	m = csrfField.FindStringSubmatch(page)
	if resp, _ := r.post("/console/unlock", url.Values{"user": {"carol"}, "csrf": {m[1]}}, origin); resp.StatusCode != http.StatusForbidden {
		t.Errorf("unlock with read scope: %d", resp.StatusCode)
	}
	// Signing out ends the session.
	r.post("/console/logout", url.Values{"csrf": {m[1]}}, origin)
	if resp, _ := r.get("/console/"); resp.StatusCode != http.StatusSeeOther {
		t.Errorf("after sign out: %d", resp.StatusCode)
	}
}

// The recent events are a ring of admin.recent_events, newest first.
func TestRecentEvents(t *testing.T) {
	r := newRecentEvents(2)
	s := &proxy.SessionInfo{ID: "S", User: "u"}
	for _, name := range []string{"one", "two", "three"} {
		r.Limit(s, proxy.LimitResult{Exceeded: true, Limit: name, Key: "user"})
	}
	got := r.list()
	if len(got) != 2 || got[0].Limit != "three" || got[1].Limit != "two" || got[0].Event != "exceeded" {
		t.Errorf("recent: %+v", got)
	}
	if (*recentEvents)(nil).list() == nil {
		t.Error("a nil ring lists nil, not an empty list")
	}
}

// Without tokens (a loopback listener) the console opens without a
// sign-in, for loopback hosts only, and still wants the CSRF token.
func TestConsoleNoTokens(t *testing.T) {
	a := newAdmin(testProxyServer(t), newRegistry(), zap.NewAtomicLevel(), nil, defaultAdminLimits, zap.NewNop())
	h := a.handler()
	get := func(host string, cookies ...*http.Cookie) *httptest.ResponseRecorder {
		req := httptest.NewRequest("GET", "/console/", nil)
		req.Host = host
		for _, c := range cookies {
			req.AddCookie(c)
		}
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		return rec
	}
	rec := get("127.0.0.1:9143")
	cookies := rec.Result().Cookies()
	if rec.Code != 200 || len(cookies) != 1 || !strings.Contains(rec.Body.String(), "loopback (write)") {
		t.Fatalf("loopback: %d %v", rec.Code, cookies)
	}
	if rec := get("evil.example:9143"); rec.Code != http.StatusSeeOther {
		t.Errorf("rebound host: %d", rec.Code)
	}
	// The loopback session's cookie is no good under another Host either.
	if rec := get("evil.example:9143", cookies...); rec.Code != http.StatusSeeOther {
		t.Errorf("rebound host with the cookie: %d", rec.Code)
	}
	req := httptest.NewRequest("POST", "/console/sessions/end-user", strings.NewReader("user=demo"))
	req.Host = "127.0.0.1:9143"
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.AddCookie(cookies[0])
	rec = httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	if rec.Code != http.StatusForbidden {
		t.Errorf("action without the CSRF token: %d", rec.Code)
	}
}

// At admin.console_max_sessions a read sign-in is refused when every
// session is a write one, and a write sign-in ends the oldest session.
func TestConsoleFullOfWriteSessions(t *testing.T) {
	f := startAdminFixture(t, "  console_max_sessions: 2")
	signIn := func(tok string) (*consoleClient, int) {
		c := newConsoleClient(t, f.admin)
		resp, _ := c.post("/console/login", url.Values{"token": {tok}}, c.base)
		return c, resp.StatusCode
	}
	first, _ := signIn(testWriteToken)
	second, _ := signIn(testWriteToken)
	if _, code := signIn(testReadToken); code != http.StatusServiceUnavailable {
		t.Errorf("read sign-in with two write sessions open: %d, want 503", code)
	}
	if _, code := signIn(testWriteToken); code != http.StatusSeeOther {
		t.Fatalf("third write sign-in: %d", code)
	}
	if resp, _ := first.get("/console/"); resp.StatusCode != http.StatusSeeOther {
		t.Errorf("the oldest write session after a third write sign-in: %d, want the sign-in form", resp.StatusCode)
	}
	if resp, _ := second.get("/console/"); resp.StatusCode != http.StatusOK {
		t.Errorf("the second write session: %d", resp.StatusCode)
	}
}
