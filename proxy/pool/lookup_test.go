package pool

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/imapwarden/imapwarden/internal/testenv"
	"github.com/imapwarden/imapwarden/proxy"
)

// lookupService is a real HTTP service speaking nginx's auth_http
// protocol, its answers set by the test.
type lookupService struct {
	*httptest.Server
	mu       sync.Mutex
	requests []http.Header
	answer   func(w http.ResponseWriter, r *http.Request)
}

func startLookup(t *testing.T) *lookupService {
	t.Helper()
	ls := &lookupService{}
	ls.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ls.mu.Lock()
		ls.requests = append(ls.requests, r.Header.Clone())
		answer := ls.answer
		ls.mu.Unlock()
		answer(w, r)
	}))
	t.Cleanup(ls.Close)
	return ls
}

func (ls *lookupService) set(f func(w http.ResponseWriter, r *http.Request)) {
	ls.mu.Lock()
	ls.answer = f
	ls.mu.Unlock()
}

// reply answers with the headers given as "Name: value" pairs.
func (ls *lookupService) reply(headers ...string) {
	ls.set(func(w http.ResponseWriter, _ *http.Request) {
		for _, h := range headers {
			k, v, _ := strings.Cut(h, ": ")
			w.Header().Set(k, v)
		}
	})
}

func (ls *lookupService) count() int {
	ls.mu.Lock()
	defer ls.mu.Unlock()
	return len(ls.requests)
}

func (ls *lookupService) last() http.Header {
	ls.mu.Lock()
	defer ls.mu.Unlock()
	return ls.requests[len(ls.requests)-1]
}

// funcAuthenticator stands for a directory: it returns the identity for
// a user, or leaves the check to the backend.
type funcAuthenticator func(user string) *proxy.Identity

func (f funcAuthenticator) Authenticate(_ context.Context, _ *proxy.SessionInfo, c *proxy.Credentials) (*proxy.Identity, error) {
	if id := f(c.User); id != nil {
		return id, nil
	}
	return nil, proxy.ErrBackendVerifies
}

// lookupWorld is two in-memory servers as one pool, a lookup service, and
// the proxy routing through both.
type lookupWorld struct {
	a, b    *memServer
	dead    string // a listed server nobody listens on
	ls      *lookupService
	addr    string
	pool    *Pool
	aPort   string
	bPort   string
	routeMu sync.Mutex
	routeBy map[string]string // user → Identity.Route from the "directory"
	lookup  *Lookup
}

// route makes the directory name r as user's server.
func (w *lookupWorld) route(user, r string) {
	w.routeMu.Lock()
	w.routeBy[user] = r
	w.routeMu.Unlock()
}

func newLookupWorld(t *testing.T, lo LookupOptions) *lookupWorld {
	t.Helper()
	us := []string{"alice", "bob", "carol", "dave", "erin", "a b%c"}
	w := &lookupWorld{a: startMem(t, us...), b: startMem(t, us...), ls: startLookup(t), routeBy: map[string]string{}}
	w.dead = deadAddr(t)
	_, w.aPort, _ = net.SplitHostPort(w.a.addr)
	_, w.bPort, _ = net.SplitHostPort(w.b.addr)
	p, err := New(Options{Backend: &proxy.Backend{Name: "main", Security: proxy.BackendPlain, Login: proxy.LoginCommand},
		Servers: []ServerOptions{{Name: "a", Addr: w.a.addr}, {Name: "b", Addr: w.b.addr}},
		// Only passive marking: the test counts connections.
		Health: HealthOptions{Disabled: true}})
	if err != nil {
		t.Fatal(err)
	}
	dead := newPool(t, "dead", HealthOptions{Disabled: true}, w.dead)
	w.pool = p
	set := mustSet(t, p, dead)
	monitor(t, set)
	lo.URL = w.ls.URL + "/auth"
	l, err := NewLookup(lo)
	if err != nil {
		t.Fatal(err)
	}
	w.lookup = l
	auth := funcAuthenticator(func(user string) *proxy.Identity {
		w.routeMu.Lock()
		defer w.routeMu.Unlock()
		if r, ok := w.routeBy[user]; ok {
			return &proxy.Identity{Authenticator: "ldap", User: user, Route: r}
		}
		return nil
	})
	_, w.addr = startProxy(t, &Router{Set: set, Lookup: l, Next: &proxy.StaticRouter{Default: p.Backend()}},
		func(o *proxy.Options) { o.Authenticator = auth })
	return w
}

// try logs user in and returns "OK" or the refusal, and where the login
// went ("a", "b" or "").
func (w *lookupWorld) try(t *testing.T, user, pass string) (string, string) {
	t.Helper()
	beforeA, beforeB := w.a.loginsOf(user), w.b.loginsOf(user)
	c, refusal, err := login(w.addr, quoteUser(user), quoteUser(pass))
	if err != nil {
		t.Fatalf("login %s: %v", user, err)
	}
	if c != nil {
		c.close()
		refusal = "OK"
	}
	switch {
	case w.a.loginsOf(user) > beforeA:
		return refusal, "a"
	case w.b.loginsOf(user) > beforeB:
		return refusal, "b"
	}
	return refusal, ""
}

func quoteUser(u string) string {
	if strings.ContainsAny(u, " %") {
		return `"` + u + `"`
	}
	return u
}

func TestLookupRoutes(t *testing.T) {
	w := newLookupWorld(t, LookupOptions{})
	w.ls.reply("Auth-Status: OK", "Auth-Server: 127.0.0.1", "Auth-Port: "+w.bPort)
	if got, where := w.try(t, "alice", "pw-alice"); got != "OK" || where != "b" {
		t.Fatalf("routed login: %q on %q, want OK on b", got, where)
	}
	h := w.ls.last()
	for k, want := range map[string]string{
		"Auth-Method": "plain", "Auth-User": "alice", "Auth-Protocol": "imap", "Auth-Login-Attempt": "1",
		"Client-Ip": "127.0.0.1", "Client-Host": "[UNAVAILABLE]", "Auth-Pass": "",
	} {
		if got := h.Get(k); got != want {
			t.Errorf("request header %s: %q, want %q", k, got, want)
		}
	}
	if _, sent := h["Auth-Pass"]; sent {
		t.Error("Auth-Pass sent without send_password")
	}

	// The OK is cached for the same user and address: no second request.
	n := w.ls.count()
	if got, where := w.try(t, "alice", "pw-alice"); got != "OK" || where != "b" || w.ls.count() != n {
		t.Errorf("cached login: %q on %q, %d requests (was %d)", got, where, w.ls.count(), n)
	}

	// User names are escaped as nginx does.
	w.ls.reply("Auth-Status: OK", "Auth-Server: 127.0.0.1", "Auth-Port: "+w.aPort)
	if got, where := w.try(t, "a b%c", "pw-a b%c"); got != "OK" || where != "a" {
		t.Fatalf("escaped user: %q on %q", got, where)
	}
	if got := w.ls.last().Get("Auth-User"); got != "a%20b%25c" {
		t.Errorf("Auth-User %q, want a%%20b%%25c", got)
	}

	// A backend's name: the pool picks the user's server.
	w.ls.reply("Auth-Status: OK", "Auth-Server: main")
	if got, where := w.try(t, "bob", "pw-bob"); got != "OK" || where == "" {
		t.Errorf("backend name: %q on %q", got, where)
	}
	// A server's name, without a port.
	w.ls.reply("Auth-Status: OK", "Auth-Server: a")
	if got, where := w.try(t, "carol", "pw-carol"); got != "OK" || where != "a" {
		t.Errorf("server name: %q on %q", got, where)
	}
	// OK alone: the configured routes decide.
	w.ls.reply("Auth-Status: OK")
	if got, where := w.try(t, "dave", "pw-dave"); got != "OK" || where == "" {
		t.Errorf("OK without a server: %q on %q", got, where)
	}
	// WAIT, then OK.
	var rounds int
	w.ls.set(func(rw http.ResponseWriter, _ *http.Request) {
		w.ls.mu.Lock()
		rounds++
		r := rounds
		w.ls.mu.Unlock()
		if r == 1 {
			rw.Header().Set("Auth-Status", "WAIT")
			rw.Header().Set("Auth-Wait", "0")
			return
		}
		rw.Header().Set("Auth-Status", "OK")
		rw.Header().Set("Auth-Server", "b")
	})
	if got, where := w.try(t, "erin", "pw-erin"); got != "OK" || where != "b" || rounds != 2 {
		t.Errorf("WAIT then OK: %q on %q after %d rounds", got, where, rounds)
	}
}

func TestLookupRefusesAndFailsClosed(t *testing.T) {
	// The lookup's own timeout: far below the 30 s hang below, so that a
	// NO in time proves it was cut; a slow machine only makes more cases
	// time out, which answer the same.
	fast := newLookupWorld(t, LookupOptions{Timeout: time.Second})
	unavailable := "NO [UNAVAILABLE]"

	// A refusal is a failed login, answered after Auth-Wait, never cached.
	// (A refusal must arrive to be one: this part has its own world with a
	// lookup timeout no busy machine reaches.)
	w := newLookupWorld(t, LookupOptions{Timeout: testenv.IOTimeout()})
	w.ls.reply("Auth-Status: Invalid login or password", "Auth-Wait: 1")
	start := time.Now()
	got, where := w.try(t, "alice", "pw-alice")
	if !strings.HasPrefix(got, "NO [AUTHENTICATIONFAILED]") || where != "" {
		t.Fatalf("refused login: %q on %q", got, where)
	}
	if waited := time.Since(start); waited < time.Second {
		t.Errorf("answered after %v, before Auth-Wait's 1s", waited)
	}
	if strings.Contains(got, "Invalid login") {
		t.Errorf("the service's text reached the client: %q", got)
	}
	n := w.ls.count()
	w.try(t, "alice", "pw-alice")
	if w.ls.count() != n+1 {
		t.Error("a refusal was cached")
	}

	for _, tc := range []struct {
		name  string
		setup func()
	}{
		{"unlisted server", func() { fast.ls.reply("Auth-Status: OK", "Auth-Server: 10.9.9.9", "Auth-Port: 143") }},
		{"unlisted host", func() { fast.ls.reply("Auth-Status: OK", "Auth-Server: evil.example.com") }},
		{"listed host, other port", func() { fast.ls.reply("Auth-Status: OK", "Auth-Server: 127.0.0.1", "Auth-Port: 1") }},
		{"no Auth-Status", func() { fast.ls.reply("Auth-Server: 127.0.0.1", "Auth-Port: "+fast.aPort) }},
		{"port not a number", func() { fast.ls.reply("Auth-Status: OK", "Auth-Server: 127.0.0.1", "Auth-Port: 14x3") }},
		{"port out of range", func() { fast.ls.reply("Auth-Status: OK", "Auth-Server: 127.0.0.1", "Auth-Port: 70000") }},
		{"port without server", func() { fast.ls.reply("Auth-Status: OK", "Auth-Port: "+fast.aPort) }},
		{"error page", func() {
			fast.ls.set(func(rw http.ResponseWriter, _ *http.Request) { http.Error(rw, "boom", http.StatusInternalServerError) })
		}},
		{"endless WAIT", func() { fast.ls.reply("Auth-Status: WAIT") }},
		{"listed server that is down", func() { fast.ls.reply("Auth-Status: OK", "Auth-Server: "+fast.dead) }},
		{"30 second hang", func() {
			fast.ls.set(func(_ http.ResponseWriter, r *http.Request) {
				select {
				case <-r.Context().Done():
				case <-time.After(30 * time.Second):
				}
			})
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.setup()
			start := time.Now()
			got, where := fast.try(t, "bob", "pw-bob")
			if !strings.HasPrefix(got, unavailable) || where != "" {
				t.Fatalf("%q on %q, want %s and no backend", got, where, unavailable)
			}
			// The hang is cut by the lookup timeout (1s), not waited out.
			if d := time.Since(start); d >= 30*time.Second {
				t.Errorf("answered after %v", d)
			}
		})
	}
}

// A service that is not HTTP at all, or not there.
func TestLookupGarbageService(t *testing.T) {
	garbage, _ := serveTCP(t, func(c net.Conn) {
		c.Write([]byte("* OK this is IMAP, not HTTP\r\n\x00\x01\x02garbage\r\n\r\n"))
		c.Close()
	})
	closedURL := "http://" + deadAddr(t) + "/auth"
	mem := startMem(t, "alice")
	p := newPool(t, "main", HealthOptions{Disabled: true}, mem.addr)
	set := mustSet(t, p)
	monitor(t, set)
	for _, url := range []string{"http://" + garbage + "/auth", closedURL} {
		l, err := NewLookup(LookupOptions{URL: url, Timeout: testenv.IOTimeout()})
		if err != nil {
			t.Fatal(err)
		}
		_, addr := startProxy(t, &Router{Set: set, Lookup: l, Next: &proxy.StaticRouter{Default: p.Backend()}})
		c, refusal, err := login(addr, "alice", "pw-alice")
		if err != nil {
			t.Fatal(err)
		}
		if c != nil || !strings.HasPrefix(refusal, "NO [UNAVAILABLE]") {
			t.Errorf("%s: %q, want NO [UNAVAILABLE]", url, refusal)
		}
		if n := mem.loginsOf("alice"); n != 0 {
			t.Errorf("%s: the backend saw %d logins", url, n)
		}
	}
}

// send_password: the service gets the password (escaped), and the cache
// tells passwords apart without keeping them.
func TestLookupSendsPassword(t *testing.T) {
	w := newLookupWorld(t, LookupOptions{SendPassword: true})
	w.ls.set(func(rw http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Auth-Pass") != "pw-alice" {
			rw.Header().Set("Auth-Status", "Invalid login or password")
			return
		}
		rw.Header().Set("Auth-Status", "OK")
		rw.Header().Set("Auth-Server", "a")
	})
	if got, where := w.try(t, "alice", "pw-alice"); got != "OK" || where != "a" {
		t.Fatalf("%q on %q", got, where)
	}
	n := w.ls.count()
	// A wrong password is not served from the OK cached for the right one.
	if got, _ := w.try(t, "alice", "wrong"); !strings.HasPrefix(got, "NO [AUTHENTICATIONFAILED]") || w.ls.count() != n+1 {
		t.Errorf("wrong password: %q after %d requests (was %d)", got, w.ls.count(), n)
	}
	if got := w.ls.last().Get("Auth-Pass"); got != "wrong" {
		t.Errorf("Auth-Pass %q", got)
	}
	if got, _ := w.try(t, "alice", "pw-alice"); got != "OK" || w.ls.count() != n+1 {
		t.Errorf("right password again: %q after %d requests", got, w.ls.count())
	}
	keys := w.lookupCacheKeys()
	if len(keys) != 1 {
		t.Errorf("%d cache entries, want 1", len(keys))
	}
	for k := range keys {
		if strings.Contains(k, "pw-alice") {
			t.Error("the cache keeps the password")
		}
	}
}

func (w *lookupWorld) lookupCacheKeys() map[string]bool {
	w.lookup.mu.Lock()
	defer w.lookup.mu.Unlock()
	keys := map[string]bool{}
	for k := range w.lookup.cache {
		keys[k] = true
	}
	return keys
}

// A directory's route (Identity.Route) comes first and is held to the
// configured servers.
func TestDirectoryRoute(t *testing.T) {
	w := newLookupWorld(t, LookupOptions{})
	w.ls.reply("Auth-Status: OK", "Auth-Server: a")
	w.route("alice", "b")
	w.route("bob", "127.0.0.1:"+w.bPort)
	w.route("carol", "203.0.113.5:143") // not configured
	w.route("dave", "main")
	n := w.ls.count()
	for user, want := range map[string]string{"alice": "b", "bob": "b", "dave": "?"} {
		got, where := w.try(t, user, "pw-"+user)
		if got != "OK" || (want != "?" && where != want) || where == "" {
			t.Errorf("%s: %q on %q, want OK on %s", user, got, where, want)
		}
	}
	if got, where := w.try(t, "carol", "pw-carol"); !strings.HasPrefix(got, "NO [UNAVAILABLE]") || where != "" {
		t.Errorf("unlisted directory route: %q on %q", got, where)
	}
	if w.ls.count() != n {
		t.Errorf("the lookup was asked %d times though the directory routed", w.ls.count()-n)
	}
}

// Passwords never cross the network in clear: with SendPassword the
// service must be https, or http on a loopback address, as LDAP (ldap://
// without StartTLS) and OAuth2 (introspection) are held to.
func TestLookupRefusesPasswordInClear(t *testing.T) {
	for _, tc := range []struct {
		url  string
		send bool
		ok   bool
	}{
		{"http://192.0.2.10:9000/auth", true, false},
		{"http://auth.example.net/auth", true, false},
		{"http://[2001:db8::1]:9000/auth", true, false},
		{"http://127.0.0.1.example.net/auth", true, false},
		{"http://127.0.0.1:9000/auth", true, true},
		{"http://127.8.0.1:9000/auth", true, true},
		{"http://[::1]:9000/auth", true, true},
		{"http://localhost:9000/auth", true, true},
		{"https://auth.example.net/auth", true, true},
		{"http://192.0.2.10:9000/auth", false, true}, // no password sent
	} {
		_, err := NewLookup(LookupOptions{URL: tc.url, SendPassword: tc.send})
		if (err == nil) != tc.ok {
			t.Errorf("%s (send_password %v): err %v, want ok %v", tc.url, tc.send, err, tc.ok)
		}
	}
}

// An https service of a private CA is reached with its roots (TLS), and
// refused without them.
func TestLookupPrivateCA(t *testing.T) {
	ts := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Auth-Status", "OK")
		w.Header().Set("Auth-Server", "a")
	}))
	t.Cleanup(ts.Close)
	roots := x509.NewCertPool()
	roots.AddCert(ts.Certificate())
	for _, tc := range []struct {
		tls *tls.Config
		ok  bool
	}{{&tls.Config{RootCAs: roots}, true}, {nil, false}} {
		l, err := NewLookup(LookupOptions{URL: ts.URL + "/auth", SendPassword: true, TLS: tc.tls})
		if err != nil {
			t.Fatal(err)
		}
		a, err := l.ask(context.Background(), &proxy.SessionInfo{}, "alice", "pw-alice")
		if tc.ok && (err != nil || a.server != "a") {
			t.Errorf("with the CA: %+v, %v", a, err)
		}
		if !tc.ok && (err == nil || !strings.Contains(err.Error(), "certificate")) {
			t.Errorf("without the CA: %+v, %v; want a certificate error", a, err)
		}
	}
}
