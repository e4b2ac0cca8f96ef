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
	a := newAdmin(srv, newRegistry(), zap.NewAtomicLevel(), view, defaultAdminLimits, zap.NewNop())
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

	// Not started: listeners are not bound.
	if code, body := do("GET", "/readyz", "", ""); code != 503 || !strings.Contains(body, "listeners") {
		t.Errorf("/readyz before start: %d %s", code, body)
	}
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	if code, body := do("GET", "/readyz", "", ""); code != 200 {
		t.Errorf("/readyz: %d %s", code, body)
	}
	a.draining.Store(true)
	if code, body := do("GET", "/readyz", "", ""); code != 503 || !strings.Contains(body, "draining") {
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

// TestAdminLogLevel: PUT /loglevel takes the documented JSON body without
// a Content-Type, and with curl -d's form type; a form and a bare level
// too. zap's handler, used before, refused the first two.
func TestAdminLogLevel(t *testing.T) {
	view := new(atomic.Pointer[adminView])
	view.Store(&adminView{tokens: testTokens()})
	a := newAdmin(testProxyServer(t), newRegistry(), zap.NewAtomicLevel(), view, defaultAdminLimits, zap.NewNop())
	h := a.handler()
	for _, c := range []struct {
		ctype, body string
		want        zapcore.Level
	}{
		{"", `{"level":"debug"}`, zapcore.DebugLevel},
		{"application/x-www-form-urlencoded", `{"level":"warn"}`, zapcore.WarnLevel},
		{"application/json", `{"level": "error"}`, zapcore.ErrorLevel},
		{"application/x-www-form-urlencoded", "level=info", zapcore.InfoLevel},
		{"text/plain", "debug\n", zapcore.DebugLevel},
	} {
		req := httptest.NewRequest("PUT", "/loglevel", strings.NewReader(c.body))
		req.Header.Set("Authorization", "Bearer "+testWriteToken)
		if c.ctype != "" {
			req.Header.Set("Content-Type", c.ctype)
		}
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code != 200 || a.level.Level() != c.want || !strings.Contains(rec.Body.String(), `"level": "`+c.want.String()+`"`) {
			t.Errorf("PUT %q (%s): %d %s, level %v", c.body, c.ctype, rec.Code, rec.Body, a.level.Level())
		}
	}
	for _, body := range []string{"", `{"level":"loud"}`, `{"level":`, "fatal", "level=panic"} {
		req := httptest.NewRequest("PUT", "/loglevel", strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+testWriteToken)
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code != http.StatusBadRequest {
			t.Errorf("PUT %q: %d, want 400", body, rec.Code)
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
