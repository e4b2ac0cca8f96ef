package pool

import (
	"context"
	"net/http"
	"net/netip"
	"testing"

	"github.com/imapwarden/imapwarden/internal/testenv"
	"github.com/imapwarden/imapwarden/proxy"
)

// TestAttackLookupCacheIgnoresWhatTheServiceJudged: a lookup service
// answers from everything the request tells it, as nginx's auth_http
// services do (Auth-Method, Auth-SSL-Verify, Auth-SSL-Subject), and here
// lets alice in only with a verified client certificate. The proxy caches
// an OK by user and client address alone (and the password, when sent),
// so for CacheTTL (30 s by default) a login from the same address (the
// same NAT) without any certificate, by another mechanism, is routed on
// the answer given to the certificate login, and the service's refusal
// is never asked for. An answer must only be reused for a request the
// service would have seen alike.
func TestAttackLookupCacheIgnoresWhatTheServiceJudged(t *testing.T) {
	ls := startLookup(t)
	ls.set(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Auth-SSL-Verify") == "SUCCESS" && r.Header.Get("Auth-Method") == "external" {
			w.Header().Set("Auth-Status", "OK")
			return
		}
		w.Header().Set("Auth-Status", "client certificate required")
	})
	l, err := NewLookup(LookupOptions{URL: ls.URL + "/auth", Timeout: testenv.IOTimeout()})
	if err != nil {
		t.Fatal(err)
	}
	addr := netip.MustParseAddrPort("192.0.2.7:40000")
	withCert := &proxy.SessionInfo{ClientAddr: addr, Mechanism: "EXTERNAL",
		TLS: &proxy.TLSInfo{ClientCertSubject: "CN=alice", ClientCertVerified: true}}
	a, err := l.ask(context.Background(), withCert, "alice", "")
	if err != nil || !a.ok {
		t.Fatalf("certificate login: %+v %v, want OK", a, err)
	}
	noCert := &proxy.SessionInfo{ClientAddr: netip.MustParseAddrPort("192.0.2.7:40001"), Mechanism: "PLAIN", TLS: &proxy.TLSInfo{}}
	a, err = l.ask(context.Background(), noCert, "alice", "guess")
	if err == nil && a.ok {
		t.Errorf("a PLAIN login without a certificate got the cached OK of the certificate login (%d requests to the service); want the service's refusal",
			ls.count())
	}
}
