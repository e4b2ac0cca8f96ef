package main

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"embed"
	"encoding/base64"
	"errors"
	"fmt"
	"html/template"
	"io/fs"
	"mime"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"go.uber.org/zap"

	"github.com/imapwarden/imapwarden/audit"
	"github.com/imapwarden/imapwarden/internal/termsafe"
	"github.com/imapwarden/imapwarden/proxy"
	"github.com/imapwarden/imapwarden/proxy/pool"
	"github.com/imapwarden/imapwarden/proxy/ratelimit"
)

// The web console on the admin listener (docs/admin-api.md, "Console"):
// server-rendered pages for security teams, with the API's scopes. A
// token given once in the login form opens a server-side session named
// by an HttpOnly, SameSite=Strict cookie; every form that changes
// something carries the session's CSRF token. Nothing is loaded from
// elsewhere: the stylesheet and the small script are embedded, and the
// Content-Security-Policy allows only them.

//go:embed console
var consoleFiles embed.FS

const (
	consoleCookie = "imapwarden_console"
	consoleCSP    = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; " +
		"form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)

type console struct {
	a      *admin
	tmpl   *template.Template
	static http.Handler

	// ttl ends a console session however active it is; max bounds the
	// memory sign-ins can take (the oldest goes first).
	ttl time.Duration
	max int

	mu       sync.Mutex
	sessions map[string]*consoleSession
}

// consoleSession is one login. The token is kept only as its digest, to
// check at every request that it is still configured (a reload revokes).
// Only flash changes after open, under console.mu.
type consoleSession struct {
	key     string   // the cookie's value, its key in console.sessions
	id      identity // at sign-in; the scope in force comes from the tokens
	digest  [sha256.Size]byte
	csrf    string
	expires time.Time
	flash   string // shown once, after a redirect
}

func newConsole(a *admin, ttl time.Duration, max int) *console {
	tmpl := template.Must(template.New("console").Funcs(template.FuncMap{
		"vis":   vis,
		"visml": visLines,
		"ago":   ago,
		"bytes": humanBytes,
		"utc":   func(t time.Time) string { return t.UTC().Format("2006-01-02 15:04:05") },
	}).ParseFS(consoleFiles, "console/*.html"))
	static, _ := fs.Sub(consoleFiles, "console")
	return &console{a: a, tmpl: tmpl, static: http.FileServerFS(static), ttl: ttl, max: max, sessions: map[string]*consoleSession{}}
}

func (c *console) handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /console/static/{file}", func(w http.ResponseWriter, r *http.Request) {
		switch f := r.PathValue("file"); f {
		case "console.css", "console.js":
			r2 := new(http.Request)
			*r2 = *r
			r2.URL = &url.URL{Path: "/" + f}
			w.Header().Set("Cache-Control", "no-cache")
			c.static.ServeHTTP(w, r2)
		default:
			http.NotFound(w, r)
		}
	})
	mux.HandleFunc("GET /console/login", c.loginForm)
	mux.HandleFunc("POST /console/login", c.login)
	mux.HandleFunc("POST /console/logout", c.write(scopeRead, c.logout))
	mux.HandleFunc("GET /console/{$}", c.read(c.sessionsPage))
	mux.HandleFunc("GET /console/lockouts", c.read(c.lockoutsPage))
	mux.HandleFunc("GET /console/events", c.read(c.eventsPage))
	mux.HandleFunc("GET /console/audit", c.read(c.auditPage))
	mux.HandleFunc("GET /console/backends", c.read(c.backendsPage))
	mux.HandleFunc("GET /console/config", c.read(c.configPage))
	mux.HandleFunc("POST /console/unlock", c.write(scopeWrite, c.unlock))
	mux.HandleFunc("POST /console/sessions/end", c.write(scopeWrite, c.endSession))
	mux.HandleFunc("POST /console/sessions/end-user", c.write(scopeWrite, c.endUser))
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Content-Security-Policy", consoleCSP)
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("X-Frame-Options", "DENY")
		// same-origin, not no-referrer: with no-referrer browsers send
		// "Origin: null" on form posts, which sameOrigin refuses.
		h.Set("Referrer-Policy", "same-origin")
		h.Set("Cross-Origin-Opener-Policy", "same-origin")
		if !strings.HasPrefix(r.URL.Path, "/console/static/") {
			h.Set("Cache-Control", "no-store")
		}
		mux.ServeHTTP(w, r)
	})
}

// page is what every template gets.
type page struct {
	Title  string
	Nav    string
	Who    identity
	CanAct bool // write scope: show the buttons that change things
	CSRF   string
	Flash  string
	Error  string
	Data   any
}

func (c *console) render(w http.ResponseWriter, code int, name string, p *page) {
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(code)
	if err := c.tmpl.ExecuteTemplate(w, name, p); err != nil {
		c.a.log.Error("console template failed", zap.String("template", name), zap.Error(err))
	}
}

// session finds the request's console session and who it acts as now:
// the token must still be configured, and its scope may have changed.
// Without tokens configured (loopback only) a session is opened on the
// first visit. A session is never changed here: requests share it.
func (c *console) session(w http.ResponseWriter, r *http.Request) (*consoleSession, identity) {
	tokens := c.a.view.Load().tokens
	if ck, err := r.Cookie(consoleCookie); err == nil {
		c.mu.Lock()
		s := c.sessions[ck.Value]
		if s != nil && time.Now().After(s.expires) {
			delete(c.sessions, ck.Value)
			s = nil
		}
		c.mu.Unlock()
		if s != nil {
			if len(tokens) == 0 {
				if id, ok := tokens.authenticate(r); ok && s.id == loopbackIdentity {
					return s, id
				}
				return nil, identity{}
			}
			for _, t := range tokens {
				if subtle.ConstantTimeCompare(t.digest[:], s.digest[:]) == 1 {
					return s, identity{name: t.name, scope: t.scope}
				}
			}
		}
	}
	if len(tokens) == 0 {
		if id, ok := tokens.authenticate(r); ok {
			if s := c.open(w, r, id, [sha256.Size]byte{}); s != nil {
				return s, id
			}
		}
	}
	return nil, identity{}
}

// open starts a console session and sets its cookie. At
// admin.console_max_sessions the oldest session of the same or a lower
// scope goes: a read sign-in never ends a write session (the operator
// acting in an incident), and is refused (nil) when only those are left.
func (c *console) open(w http.ResponseWriter, r *http.Request, id identity, digest [sha256.Size]byte) *consoleSession {
	now := time.Now()
	key := randomString()
	s := &consoleSession{key: key, id: id, digest: digest, csrf: randomString(), expires: now.Add(c.ttl)}
	c.mu.Lock()
	if len(c.sessions) >= c.max {
		var oldest string
		for k, o := range c.sessions {
			if now.After(o.expires) {
				delete(c.sessions, k)
				continue
			}
			if o.id.scope <= id.scope && (oldest == "" || o.expires.Before(c.sessions[oldest].expires)) {
				oldest = k
			}
		}
		if len(c.sessions) >= c.max {
			if oldest == "" {
				c.mu.Unlock()
				return nil
			}
			delete(c.sessions, oldest)
		}
	}
	c.sessions[key] = s
	c.mu.Unlock()
	http.SetCookie(w, &http.Cookie{Name: consoleCookie, Value: key, Path: "/console/", HttpOnly: true,
		Secure: r.TLS != nil, SameSite: http.SameSiteStrictMode})
	return s
}

func randomString() string {
	var b [32]byte
	rand.Read(b[:])
	return base64.RawURLEncoding.EncodeToString(b[:])
}

// read wraps a page: it needs a console session (else the login form).
func (c *console) read(h func(w http.ResponseWriter, r *http.Request, p *page)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		s, who := c.session(w, r)
		if s == nil {
			http.Redirect(w, r, "/console/login", http.StatusSeeOther)
			return
		}
		p := &page{Who: who, CanAct: who.scope >= scopeWrite, CSRF: s.csrf}
		c.mu.Lock()
		p.Flash, s.flash = s.flash, ""
		c.mu.Unlock()
		h(w, r, p)
	}
}

// write wraps a form action: a session of the scope, the session's CSRF
// token, and a same-origin request. Write-scope actions are audited.
func (c *console) write(need scope, h func(w http.ResponseWriter, r *http.Request, s *consoleSession) (act action, flash, back string)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		s, who := c.session(w, r)
		if s == nil {
			http.Redirect(w, r, "/console/login", http.StatusSeeOther)
			return
		}
		r.Body = http.MaxBytesReader(w, r.Body, 64<<10)
		if err := oneForm(r); err != nil {
			http.Error(w, "bad form: "+err.Error(), http.StatusBadRequest)
			return
		}
		if !sameOrigin(r) || subtle.ConstantTimeCompare([]byte(r.PostForm.Get("csrf")), []byte(s.csrf)) != 1 {
			http.Error(w, "forbidden: the form's CSRF token does not match this session; reload the page", http.StatusForbidden)
			return
		}
		if who.scope < need {
			http.Error(w, "forbidden: this token has "+who.scope.String()+" scope; "+need.String()+" is needed", http.StatusForbidden)
			return
		}
		if need >= scopeWrite {
			// Fail closed, as the API (admin.authorize).
			if err := c.a.auditReady(r, who); err != nil {
				http.Error(w, err.Error(), http.StatusServiceUnavailable)
				return
			}
		}
		act, flash, back := h(w, r, s)
		if need >= scopeWrite {
			code := http.StatusOK
			if strings.HasPrefix(flash, "Error") {
				code = http.StatusBadRequest
			}
			act.event = "console." + act.event
			if err := c.a.audit(r, who, &act, code); err != nil {
				http.Error(w, err.Error(), http.StatusServiceUnavailable)
				return
			}
		}
		if back == "" {
			return
		}
		c.mu.Lock()
		s.flash = flash
		c.mu.Unlock()
		http.Redirect(w, r, back, http.StatusSeeOther)
	}
}

// oneForm parses a console form with one reading (ARCHITECTURE.md §6):
// fields in the body only, a form's type, each field once, valid UTF-8.
// What an action does and what its record names are then the same value.
func oneForm(r *http.Request) error {
	if r.URL.RawQuery != "" {
		return errors.New("a form posts its fields in the body, not the query")
	}
	if mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type")); err != nil || mt != "application/x-www-form-urlencoded" {
		return errors.New("want Content-Type: application/x-www-form-urlencoded")
	}
	if err := r.ParseForm(); err != nil {
		return err
	}
	for k, vs := range r.PostForm {
		if len(vs) > 1 {
			return fmt.Errorf("%q given %d times", k, len(vs))
		}
		if !utf8.ValidString(k) || !utf8.ValidString(vs[0]) {
			return fmt.Errorf("%q: invalid UTF-8", k)
		}
	}
	return nil
}

// sameOrigin refuses what a browser says came from another site: the
// Origin header (else the Referer), when sent, must name this host, and
// Sec-Fetch-Site must be same-origin or none (typed by the user).
func sameOrigin(r *http.Request) bool {
	if sfs := r.Header.Get("Sec-Fetch-Site"); sfs != "" && sfs != "same-origin" && sfs != "none" {
		return false
	}
	o := r.Header.Get("Origin")
	if o == "" {
		o = r.Header.Get("Referer")
	}
	if o == "" {
		return true
	}
	u, err := url.Parse(o)
	return err == nil && u.Host == r.Host
}

func (c *console) loginForm(w http.ResponseWriter, r *http.Request) {
	if s, _ := c.session(w, r); s != nil {
		http.Redirect(w, r, "/console/", http.StatusSeeOther)
		return
	}
	c.render(w, http.StatusOK, "login", &page{Title: "Sign in"})
}

func (c *console) login(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, 4<<10)
	if err := oneForm(r); err != nil || !sameOrigin(r) {
		c.render(w, http.StatusBadRequest, "login", &page{Title: "Sign in", Error: "Bad request."})
		return
	}
	tokens := c.a.view.Load().tokens
	// Bounded per address as the API's bearer tokens are (tokenGuard).
	if _, locked := c.a.guard.lockedOut(c.a.clientHost(r)); locked {
		c.a.guard.failures.WithLabelValues("locked_out").Inc()
		c.render(w, http.StatusTooManyRequests, "login", &page{Title: "Sign in", Error: "Too many wrong tokens from this address; try again later."})
		return
	}
	tok := strings.TrimSpace(r.PostForm.Get("token"))
	id, ok := tokens.match(tok)
	if !ok || len(tokens) == 0 {
		c.a.refuseToken(r, "console")
		c.render(w, http.StatusUnauthorized, "login", &page{Title: "Sign in", Error: "That token is not valid."})
		return
	}
	// Who opened the console, and from where, belongs in the trail too:
	// no sign-in the trail cannot record (fail closed).
	if err := c.a.auditReady(r, id); err != nil {
		c.render(w, http.StatusServiceUnavailable, "login", &page{Title: "Sign in", Error: "Sign-in " + err.Error() + "."})
		return
	}
	s := c.open(w, r, id, sha256.Sum256([]byte(tok)))
	if s == nil {
		c.a.log.Warn("console login refused: every console session is of a wider scope", zap.String("remote", r.RemoteAddr),
			zap.String("actor", id.name), zap.Int("max", c.max))
		c.render(w, http.StatusServiceUnavailable, "login", &page{Title: "Sign in",
			Error: "Too many console sessions are open (admin.console_max_sessions); try again later."})
		return
	}
	if err := c.a.audit(r, id, &action{event: "console.login"}, http.StatusOK); err != nil {
		c.mu.Lock()
		delete(c.sessions, s.key)
		c.mu.Unlock()
		c.render(w, http.StatusServiceUnavailable, "login", &page{Title: "Sign in", Error: "Sign-in refused: the audit trail cannot record it."})
		return
	}
	http.Redirect(w, r, "/console/", http.StatusSeeOther)
}

func (c *console) logout(w http.ResponseWriter, r *http.Request, _ *consoleSession) (action, string, string) {
	if ck, err := r.Cookie(consoleCookie); err == nil {
		c.mu.Lock()
		delete(c.sessions, ck.Value)
		c.mu.Unlock()
	}
	http.SetCookie(w, &http.Cookie{Name: consoleCookie, Value: "", Path: "/console/", MaxAge: -1, HttpOnly: true,
		Secure: r.TLS != nil, SameSite: http.SameSiteStrictMode})
	http.Redirect(w, r, "/console/login", http.StatusSeeOther)
	return action{}, "", ""
}

// Pages.

// listData is a list page's data: a page of rows (at most
// admin.page_size, pages.go) and the query, for the filter form and the
// links to the pages around it.
type listData[T any] struct {
	listPage[T]
	Query   listQuery
	Enabled bool // the lockouts: rate limits are on
}

// listQuery reads a list page's query; a query it refuses shows the
// first page unfiltered with the error, answered 400.
func (c *console) listQuery(r *http.Request, p *page) (listQuery, int) {
	q, err := listQueryFrom(r.URL.RawQuery, c.a.pageSize, c.a.view.Load().hosts)
	if err != nil {
		p.Error = err.Error()
		return listQuery{Limit: c.a.pageSize, hosts: c.a.view.Load().hosts}, http.StatusBadRequest
	}
	return q, http.StatusOK
}

func (c *console) sessionsPage(w http.ResponseWriter, r *http.Request, p *page) {
	q, code := c.listQuery(r, p)
	list := c.a.srv.Sessions()
	sortSessions(list)
	p.Title, p.Nav, p.Data = "Live sessions", "sessions", listData[proxy.SessionSnapshot]{listPage: pageOf(list, q, sessionRow), Query: q}
	c.render(w, code, "sessions", p)
}

func (c *console) lockoutsPage(w http.ResponseWriter, r *http.Request, p *page) {
	q, code := c.listQuery(r, p)
	lim := c.a.limiter.Load()
	d := listData[ratelimit.Lockout]{Query: q, Enabled: lim != nil}
	if d.Enabled {
		ctx, cancel := context.WithTimeout(r.Context(), lockoutsTimeout)
		defer cancel()
		ls, err := lim.Lockouts(ctx)
		if err != nil {
			p.Error = "The shared store did not answer; showing this instance's lockouts: " + err.Error()
		}
		d.listPage = pageOf(ls, q, lockoutRow)
	}
	p.Title, p.Nav, p.Data = "Lockouts", "lockouts", d
	c.render(w, code, "lockouts", p)
}

func (c *console) eventsPage(w http.ResponseWriter, r *http.Request, p *page) {
	p.Title, p.Nav, p.Data = "Denials and limit hits", "events", c.a.recent.list()
	c.render(w, http.StatusOK, "events", p)
}

type auditData struct {
	Trail   bool
	Asked   bool
	Args    auditFilterArgs
	Limit   int
	Result  *searchResult
	Kinds   []string
	Fetches []string
}

func (c *console) auditPage(w http.ResponseWriter, r *http.Request, p *page) {
	q := r.URL.Query()
	d := auditData{Trail: c.a.view.Load().auditPath != "", Args: filterArgsFrom(q), Limit: defaultSearchLimit,
		Kinds:   []string{"", "session", "auth", "command", "policy", "policy.deny", "limit", "security", "backend", "admin", "reload", "cert", "tls"},
		Fetches: []string{"", audit.FetchBody, audit.FetchHeader, audit.FetchMetadata}}
	if n, err := strconv.Atoi(q.Get("limit")); err == nil && n > 0 && n <= maxSearchLimit {
		d.Limit = n
	}
	code := http.StatusOK
	if d.Trail && q.Has("search") {
		d.Asked = true
		res, err := c.a.searchAudit(r.Context(), d.Args, d.Limit)
		switch {
		case errors.Is(err, errSearchesBusy):
			code, p.Error = http.StatusServiceUnavailable, err.Error()
		case errors.As(err, new(badFilter)):
			code, p.Error = http.StatusBadRequest, err.Error()
		case err != nil:
			code, p.Error = http.StatusInternalServerError, err.Error()
		}
		d.Result = res
	}
	p.Title, p.Nav, p.Data = "Audit search", "audit", d
	c.render(w, code, "audit", p)
}

func (c *console) backendsPage(w http.ResponseWriter, r *http.Request, p *page) {
	type row struct {
		backendView
		Sessions int
		Health   backendHealth
	}
	counts := map[string]int{}
	for _, s := range c.a.srv.Sessions() {
		counts[s.Backend]++
	}
	health := c.a.recent.backendHealth()
	var rows []row
	for _, b := range c.a.view.Load().backends {
		rows = append(rows, row{b, counts[b.Name], health[b.Name]})
	}
	// Each server's health checks and admin state (proxy/pool).
	type server struct {
		Backend string
		pool.ServerStatus
	}
	var servers []server
	if c.a.backends != nil {
		if set := c.a.backends.mon.Set(); set != nil {
			for _, b := range set.Status() {
				for _, st := range b.Servers {
					servers = append(servers, server{b.Name, st})
				}
			}
		}
	}
	p.Title, p.Nav = "Backends", "backends"
	p.Data = struct {
		Backends any
		Servers  any
	}{rows, servers}
	c.render(w, http.StatusOK, "backends", p)
}

func (c *console) configPage(w http.ResponseWriter, r *http.Request, p *page) {
	p.Title, p.Nav, p.Data = "Effective configuration", "config", string(c.a.view.Load().config)
	c.render(w, http.StatusOK, "config", p)
}

// Actions.

func (c *console) unlock(w http.ResponseWriter, r *http.Request, _ *consoleSession) (action, string, string) {
	user, ip := r.PostForm.Get("user"), r.PostForm.Get("ip")
	act := action{event: "unlock", user: user, detail: unlockTarget(user, ip)}
	lim := c.a.limiter.Load()
	if lim == nil {
		return act, "Error: rate limits are off.", "/console/lockouts"
	}
	if user == "" && ip == "" {
		return act, "Error: a user or an IP address is needed.", "/console/lockouts"
	}
	ctx, cancel := context.WithTimeout(r.Context(), 5*time.Second)
	defer cancel()
	n, err := lim.Unlock(ctx, user, ip)
	if err != nil {
		act.detail += ": " + err.Error()
		return act, "Error: " + err.Error(), "/console/lockouts"
	}
	act.detail += fmt.Sprintf(": %d removed", n)
	return act, fmt.Sprintf("Unlocked %s: %d lockout records removed.", unlockTarget(user, ip), n), "/console/lockouts"
}

func (c *console) endSession(w http.ResponseWriter, r *http.Request, _ *consoleSession) (action, string, string) {
	id := r.PostForm.Get("id")
	act := action{event: "session.end", session: id}
	if !c.a.srv.EndSession(id) {
		return act, "Error: no session " + id + " (it may have ended).", "/console/"
	}
	return act, "Session " + id + " ends at its next command boundary.", "/console/"
}

func (c *console) endUser(w http.ResponseWriter, r *http.Request, _ *consoleSession) (action, string, string) {
	user := strings.TrimSpace(r.PostForm.Get("user"))
	act := action{event: "session.end-user", user: user}
	if user == "" {
		return act, "Error: a user name is needed.", "/console/"
	}
	ended := c.a.endSessionsOf(user)
	act.detail = fmt.Sprintf("%d sessions ended", len(ended))
	if len(ended) == 0 {
		return act, "Error: no session of " + user + ".", "/console/"
	}
	return act, fmt.Sprintf("Ending %d sessions of %s.", len(ended), user), "/console/"
}

// Formatting.

// vis escapes text for display and makes invisible characters visible,
// each as a marked escape: what termsafe escapes (C0 and C1 controls,
// DEL, U+2028, U+2029, invalid UTF-8, and every format or
// default-ignorable character, termsafe.Hidden: bidi controls,
// zero-width characters, a soft hyphen, tags, a Hangul filler), so that a
// name with one never reads as the name without it. html/template
// escapes markup, not these.
func vis(v any) template.HTML {
	s := fmt.Sprint(v)
	var b strings.Builder
	start := 0
	for i := 0; i < len(s); {
		_, size := utf8.DecodeRuneInString(s[i:])
		seg := s[i : i+size]
		if e := termsafe.String(seg); e != seg {
			b.WriteString(template.HTMLEscapeString(s[start:i]))
			b.WriteString(`<span class="ctl">`)
			b.WriteString(template.HTMLEscapeString(e))
			b.WriteString(`</span>`)
			start = i + size
		}
		i += size
	}
	b.WriteString(template.HTMLEscapeString(s[start:]))
	return template.HTML(b.String())
}

// visLines is vis for text of several lines: newlines stay.
func visLines(s string) template.HTML {
	lines := strings.Split(s, "\n")
	out := make([]string, len(lines))
	for i, l := range lines {
		out[i] = string(vis(l))
	}
	return template.HTML(strings.Join(out, "\n"))
}

func ago(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	d := time.Since(t)
	switch {
	case d < 0:
		return "in " + (-d).Round(time.Second).String()
	case d < time.Minute:
		return strconv.Itoa(int(d.Seconds())) + "s ago"
	case d < time.Hour:
		return strconv.Itoa(int(d.Minutes())) + "m ago"
	case d < 48*time.Hour:
		return strconv.Itoa(int(d.Hours())) + "h ago"
	}
	return strconv.Itoa(int(d.Hours()/24)) + "d ago"
}

func humanBytes(n int64) string {
	const unit = 1024
	if n < unit {
		return strconv.FormatInt(n, 10) + " B"
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}
