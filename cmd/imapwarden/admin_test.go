package main

import (
	"crypto/sha256"
	"crypto/tls"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/imapwarden/imapwarden/proxy"
	"github.com/imapwarden/imapwarden/tlsterm"
)

const (
	testReadToken  = "read-token-0123456789"
	testWriteToken = "write-token-0123456789"
)

func testTokens() adminTokens {
	return adminTokens{
		{name: "soc", scope: scopeRead, digest: sha256.Sum256([]byte(testReadToken))},
		{name: "oncall", scope: scopeWrite, digest: sha256.Sum256([]byte(testWriteToken))},
	}
}

func testProxyServer(t *testing.T) *proxy.Server {
	t.Helper()
	certPEM, keyPEM, err := tlsterm.SelfSigned([]string{"localhost"}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	srv, err := proxy.NewServer(proxy.Options{
		Listeners: []proxy.ListenerOptions{{Name: "imaps", Addr: "127.0.0.1:0", Mode: proxy.ImplicitTLS, TLS: &tls.Config{Certificates: []tls.Certificate{cert}}}},
		Router:    &proxy.StaticRouter{Default: &proxy.Backend{Name: "b", Addr: "127.0.0.1:1"}},
	})
	if err != nil {
		t.Fatal(err)
	}
	return srv
}

func TestAdminHandler(t *testing.T) {
	srv := testProxyServer(t)
	view := new(atomic.Pointer[adminView])
	view.Store(&adminView{tokens: testTokens(), config: []byte("hostname: x\n")})
	// Dozens of wrong tokens from one address follow: the bound on them
	// (TestAdminTokenFailuresBoundedPerAddress) is not what this tests.
	lim := defaultAdminLimits
	lim.TokenFailuresPerIP = 1000
	a := newAdmin(srv, newRegistry(), zap.NewAtomicLevel(), view, lim, zap.NewNop())
	a.pprof = true
	h := a.handler()
	do := func(method, path, auth, body string) (int, string) {
		req := httptest.NewRequest(method, path, strings.NewReader(body))
		if auth != "" {
			req.Header.Set("Authorization", auth)
		}
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		return rec.Code, rec.Body.String()
	}
	read, write := "Bearer "+testReadToken, "Bearer "+testWriteToken
	// Probes answer without a token; everything else needs one.
	if code, _ := do("GET", "/healthz", "", ""); code != 200 {
		t.Errorf("/healthz without token: %d", code)
	}
	for _, path := range []string{"/metrics", "/sessions", "/loglevel", "/config", "/recent"} {
		for _, auth := range []string{"", "Bearer wrong-token-wrong-token", "Basic " + testWriteToken, "Bearer", "Bearer" + testWriteToken,
			"Bearer " + testWriteToken + "x", "Bearer " + testWriteToken[:len(testWriteToken)-1], "Token " + testReadToken} {
			if code, _ := do("GET", path, auth, ""); code != http.StatusUnauthorized {
				t.Errorf("%s with %q: %d, want 401", path, auth, code)
			}
		}
		// RFC 9110 §11.1: the scheme is case-insensitive; §11.4: 1*SP.
		for _, auth := range []string{read, write, "bearer " + testReadToken, "BEARER  " + testWriteToken} {
			if code, _ := do("GET", path, auth, ""); code != 200 {
				t.Errorf("%s with %q: %d", path, auth, code)
			}
		}
	}
	if _, body := do("GET", "/config", read, ""); body != "hostname: x\n" {
		t.Errorf("/config: %q", body)
	}
	// A read token changes nothing.
	for _, c := range []struct{ method, path string }{
		{"PUT", "/loglevel"}, {"DELETE", "/sessions/NOSUCH"}, {"DELETE", "/sessions?user=alice"},
		{"GET", "/debug/pprof/"}, {"POST", "/anything"},
	} {
		if code, body := do(c.method, c.path, read, `{"level":"debug"}`); code != http.StatusForbidden || !strings.Contains(body, "read scope") {
			t.Errorf("%s %s with the read token: %d %s", c.method, c.path, code, body)
		}
	}
	if a.level.Level() != zapcore.InfoLevel {
		t.Fatal("a read token changed the log level")
	}

	// Not started: listeners are not bound. The reasons are for a token
	// holder; the kubelet gets the status alone.
	if code, body := do("GET", "/readyz", read, ""); code != 503 || !strings.Contains(body, "listeners") {
		t.Errorf("/readyz before start: %d %s", code, body)
	}
	if code, body := do("GET", "/readyz", "", ""); code != 503 || strings.Contains(body, "listeners") || strings.Contains(body, "reasons") {
		t.Errorf("/readyz before start without a token: %d %s", code, body)
	}
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	if code, body := do("GET", "/readyz", "", ""); code != 200 {
		t.Errorf("/readyz: %d %s", code, body)
	}
	a.draining.Store(true)
	if code, body := do("GET", "/readyz", read, ""); code != 503 || !strings.Contains(body, "draining") {
		t.Errorf("/readyz while draining: %d %s", code, body)
	}
	if code, _ := do("DELETE", "/sessions/NOSUCH", write, ""); code != 404 {
		t.Errorf("DELETE unknown session: %d", code)
	}
	if code, body := do("DELETE", "/sessions", write, ""); code != 400 || !strings.Contains(body, "user required") {
		t.Errorf("DELETE /sessions without a user: %d %s", code, body)
	}
	if code, _ := do("DELETE", "/sessions?user=nobody", write, ""); code != 404 {
		t.Errorf("DELETE /sessions?user=nobody: %d", code)
	}
	if code, _ := do("GET", "/debug/pprof/", write, ""); code != 200 {
		t.Errorf("pprof with the write token: %d", code)
	}
	if code, _ := do("GET", "/audit", read, ""); code != 404 {
		t.Errorf("/audit without a trail: %d", code)
	}
}

// TestAdminLogLevel: PUT /loglevel takes {"level":...} as JSON, or
// ?level= with no body; anything with another reading is refused.
func TestAdminLogLevel(t *testing.T) {
	view := new(atomic.Pointer[adminView])
	view.Store(&adminView{tokens: testTokens()})
	a := newAdmin(testProxyServer(t), newRegistry(), zap.NewAtomicLevel(), view, defaultAdminLimits, zap.NewNop())
	h := a.handler()
	put := func(target, ctype, body string) *httptest.ResponseRecorder {
		req := httptest.NewRequest("PUT", target, strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+testWriteToken)
		if ctype != "" {
			req.Header.Set("Content-Type", ctype)
		}
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		return rec
	}
	for _, c := range []struct {
		target, ctype, body string
		want                zapcore.Level
	}{
		{"/loglevel", "application/json", `{"level":"debug"}`, zapcore.DebugLevel},
		{"/loglevel", "application/json; charset=utf-8", ` {"level": "error"}` + "\n", zapcore.ErrorLevel},
		{"/loglevel?level=warn", "", "", zapcore.WarnLevel},
		{"/loglevel?level=info", "application/json", "", zapcore.InfoLevel},
	} {
		rec := put(c.target, c.ctype, c.body)
		if rec.Code != 200 || a.level.Level() != c.want || !strings.Contains(rec.Body.String(), `"level": "`+c.want.String()+`"`) {
			t.Errorf("PUT %s %q (%s): %d %s, level %v", c.target, c.body, c.ctype, rec.Code, rec.Body, a.level.Level())
		}
	}
	for _, c := range []struct {
		target, ctype, body string
		code                int
	}{
		{"/loglevel", "", "", 400},
		{"/loglevel", "application/json", `{"level":"loud"}`, 400},
		{"/loglevel", "application/json", `{"level":`, 400},
		{"/loglevel", "application/json", `{"level":"fatal"}`, 400},
		{"/loglevel", "application/json", `{"level":"debug"} {"level":"error"}`, 400},
		{"/loglevel", "application/json", `{"level":"debug","level":"error"}`, 400},
		{"/loglevel", "application/json", `{"Level":"debug"}`, 400},
		{"/loglevel", "application/json", `{"level":"debug","x":"y"}`, 400},
		{"/loglevel", "application/json", `["debug"]`, 400},
		{"/loglevel", "application/json", `{"level":1}`, 400},
		{"/loglevel?level=debug", "application/json", `{"level":"error"}`, 400},
		{"/loglevel?level=debug&level=error", "", "", 400},
		{"/loglevel", "", `{"level":"debug"}`, 415},
		{"/loglevel", "application/x-www-form-urlencoded", `{"level":"debug"}`, 415},
		{"/loglevel", "application/x-www-form-urlencoded", "level=debug", 415},
		{"/loglevel", "text/plain", "debug\n", 415},
	} {
		before := a.level.Level()
		if rec := put(c.target, c.ctype, c.body); rec.Code != c.code || a.level.Level() != before {
			t.Errorf("PUT %s %q (%s): %d %s, want %d and the level unchanged", c.target, c.body, c.ctype, rec.Code, rec.Body, c.code)
		}
	}
}

// Without tokens (loopback only), a request must name a loopback host:
// a page that rebinds its own name to 127.0.0.1 gets nothing.
func TestAdminNoTokensLoopbackHost(t *testing.T) {
	a := newAdmin(testProxyServer(t), newRegistry(), zap.NewAtomicLevel(), nil, defaultAdminLimits, zap.NewNop())
	h := a.handler()
	for host, want := range map[string]int{"127.0.0.1:9143": 200, "localhost:9143": 200, "[::1]:9143": 200, "evil.example:9143": 401, "10.0.0.1": 401} {
		req := httptest.NewRequest("GET", "/sessions", nil)
		req.Host = host
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code != want {
			t.Errorf("Host %s: %d, want %d", host, rec.Code, want)
		}
	}
}

func TestBearer(t *testing.T) {
	for h, want := range map[string]string{
		"Bearer abc": "abc", "bearer abc": "abc", "BeArEr   abc": "abc",
		"Bearer": "", "Bearer ": "", "Basic abc": "", "Bearerabc": "", "Bearer a b": "", "": "",
	} {
		got, ok := bearer(h)
		if got != want || ok != (want != "") {
			t.Errorf("bearer(%q) = %q, %v; want %q", h, got, ok, want)
		}
	}
}

// TestAdminArgsOneReading: an admin write's arguments have one reading or
// the request is refused (readAdminArgs).
func TestAdminArgsOneReading(t *testing.T) {
	for _, c := range []struct {
		target, ctype, body string
		want                string // the arguments read, or "" for a refusal
	}{
		{"/x?user=alice", "", "", "ip= user=alice"},
		{"/x", "application/json", `{"user":"alice","ip":"192.0.2.1"}`, "ip=192.0.2.1 user=alice"},
		{"/x?ip=192.0.2.1", "application/json", `{"user":"alice"}`, "ip=192.0.2.1 user=alice"},
		{"/x", "application/json", " \n", "ip= user="},
		{"/x?user=alice", "application/json", `{"user":"bob"}`, ""},
		{"/x?user=alice&user=bob", "", "", ""},
		{"/x?user=alice;ip=192.0.2.1", "", "", ""},
		{"/x?who=alice", "", "", ""},
		{"/x?user=%ff", "", "", ""},
		{"/x", "application/json", `{"user":"\ud800"}`, ""},
		{"/x", "application/json", "{\"user\":\"\xff\"}", ""},
		{"/x", "application/json", `{"user":"alice"}{"user":"bob"}`, ""},
		{"/x", "application/json", `{"user":"alice"} x`, ""},
		{"/x", "application/json", `{"user":"alice","user":"bob"}`, ""},
		{"/x", "application/json", `{"USER":"alice"}`, ""},
		{"/x", "application/json", `{"user":null}`, ""},
		{"/x", "application/json", `{"user":{"a":"b"}}`, ""},
		{"/x", "application/json", `"alice"`, ""},
		{"/x", "text/plain", `{"user":"alice"}`, ""},
		{"/x", "", `{"user":"alice"}`, ""},
		{"/x", "application/json", strings.Repeat(" ", int(defaultAdminTimeouts.MaxBodyBytes)) + `{"user":"alice"}`, ""},
	} {
		req := httptest.NewRequest("POST", c.target, strings.NewReader(c.body))
		// As the listener bounds it (startAdminGen).
		req.Body = http.MaxBytesReader(nil, req.Body, defaultAdminTimeouts.MaxBodyBytes)
		if c.ctype != "" {
			req.Header.Set("Content-Type", c.ctype)
		}
		args, _, err := readAdminArgs(req, []string{"user", "ip"})
		got := ""
		if err == nil {
			got = "ip=" + args["ip"] + " user=" + args["user"]
		}
		if got != c.want {
			t.Errorf("%s %q (%s): %q, %v; want %q", c.target, c.body, c.ctype, got, err, c.want)
		}
	}
}
