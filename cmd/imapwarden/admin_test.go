package main

import (
	"crypto/tls"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/imapwarden/imapwarden/proxy"
	"github.com/imapwarden/imapwarden/tlsterm"
)

func TestAdminHandler(t *testing.T) {
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
	a := &admin{srv: srv, reg: newRegistry(), level: zap.NewAtomicLevel(), token: "0123456789abcdef-token", log: zap.NewNop()}
	h := a.handler()
	do := func(method, path, token string) (int, string) {
		req := httptest.NewRequest(method, path, nil)
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		return rec.Code, rec.Body.String()
	}
	// Probes answer without a token; everything else needs it.
	if code, _ := do("GET", "/healthz", ""); code != 200 {
		t.Errorf("/healthz without token: %d", code)
	}
	for _, path := range []string{"/metrics", "/sessions", "/loglevel"} {
		if code, _ := do("GET", path, ""); code != http.StatusUnauthorized {
			t.Errorf("%s without token: %d", path, code)
		}
		if code, _ := do("GET", path, "wrong-token-wrong-token"); code != http.StatusUnauthorized {
			t.Errorf("%s with a wrong token: %d", path, code)
		}
		if code, _ := do("GET", path, a.token); code != 200 {
			t.Errorf("%s with the token: %d", path, code)
		}
	}
	// Not started: listeners are not bound.
	if code, body := do("GET", "/readyz", ""); code != 503 || !strings.Contains(body, "listeners") {
		t.Errorf("/readyz before start: %d %s", code, body)
	}
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	if code, body := do("GET", "/readyz", ""); code != 200 {
		t.Errorf("/readyz: %d %s", code, body)
	}
	a.draining.Store(true)
	if code, body := do("GET", "/readyz", ""); code != 503 || !strings.Contains(body, "draining") {
		t.Errorf("/readyz while draining: %d %s", code, body)
	}
	if code, _ := do("DELETE", "/sessions/NOSUCH", a.token); code != 404 {
		t.Errorf("DELETE unknown session: %d", code)
	}
	if code, _ := do("GET", "/debug/pprof/", a.token); code != 404 {
		t.Errorf("pprof off but served: %d", code)
	}
	if code, body := do("PUT", "/loglevel", a.token); code == 200 {
		t.Errorf("PUT /loglevel without a body accepted: %s", body)
	}
}
