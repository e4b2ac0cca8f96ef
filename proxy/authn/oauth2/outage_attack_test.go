package oauth2

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"
)

// TestAttackIssuerOutageFetchPerToken: "a kid not in the cached set
// fetches the JWKS again at most once per MinRefresh, so forged kids cannot
// make the proxy hammer the issuer" (oauth2.go) holds while the cached set
// is fresh. Once it is stale (JWKSCacheTTL past, or never fetched) and the
// issuer's JWKS fails (an outage, a 503 under load), loadKeys leaves the
// cache stale and sets no time of its own, so every token login, forged
// ones included, makes a JWKS request (after a discovery request) with no
// back-off: an unauthenticated client turns each XOAUTH2 attempt into
// requests to the issuer while it is down, and each attempt waits for the
// issuer's answer. Failed fetches must be spaced as refetches are.
func TestAttackIssuerOutageFetchPerToken(t *testing.T) {
	var jwks, discovery atomic.Int64
	var srv *httptest.Server
	srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/.well-known/openid-configuration":
			discovery.Add(1)
			w.Header().Set("Content-Type", "application/json")
			json.NewEncoder(w).Encode(map[string]string{"issuer": srv.URL, "jwks_uri": srv.URL + "/jwks"})
		case "/jwks":
			jwks.Add(1)
			http.Error(w, "unavailable", http.StatusServiceUnavailable)
		default:
			http.NotFound(w, r)
		}
	}))
	t.Cleanup(srv.Close)
	v := newVerifier(t, Options{Issuer: srv.URL, Audience: "imap", MinRefresh: time.Hour})
	payload := `{"iss":"` + srv.URL + `","aud":"imap","sub":"alice","exp":` + jsonTime(time.Now().Add(time.Hour)) + `}`
	const attempts = 20
	for range attempts {
		tok := forge(`{"alg":"RS256","kid":"forged"}`, payload, func([]byte) []byte { return []byte("x") })
		if _, err := verify(v, "alice", tok); err == nil {
			t.Fatal("forged token accepted")
		}
	}
	if n := jwks.Load(); n > 2 {
		t.Errorf("%d forged tokens while the issuer's JWKS fails made %d JWKS requests (%d discovery requests); want them spaced by MinRefresh (at most 2)",
			attempts, n, discovery.Load())
	}
}

func jsonTime(t time.Time) string {
	b, _ := json.Marshal(t.Unix())
	return string(b)
}
