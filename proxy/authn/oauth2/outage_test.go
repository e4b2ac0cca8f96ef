package oauth2

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/imapwarden/imapwarden/internal/testenv"
	"github.com/imapwarden/imapwarden/proxy"
)

// outageIssuer serves a JWKS of one Ed25519 key that can be taken down
// (503) and held (each request waits for release).
type outageIssuer struct {
	srv     *httptest.Server
	priv    ed25519.PrivateKey
	down    atomic.Bool
	hits    atomic.Int64
	mu      sync.Mutex
	release chan struct{} // non-nil: requests wait for it
}

func startOutageIssuer(t *testing.T) *outageIssuer {
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	is := &outageIssuer{priv: priv}
	jwks, _ := json.Marshal(map[string]any{"keys": []map[string]string{{
		"kty": "OKP", "crv": "Ed25519", "kid": "k1", "x": base64.RawURLEncoding.EncodeToString(pub)}}})
	is.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		is.hits.Add(1)
		is.mu.Lock()
		rel := is.release
		is.mu.Unlock()
		if rel != nil {
			<-rel
		}
		if is.down.Load() {
			http.Error(w, "unavailable", http.StatusServiceUnavailable)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.Write(jwks)
	}))
	t.Cleanup(is.srv.Close)
	return is
}

func (is *outageIssuer) token(t *testing.T) string {
	payload := `{"iss":"` + is.srv.URL + `","aud":"imap","sub":"alice","exp":` + jsonTime(time.Now().Add(time.Hour)) + `}`
	return forge(`{"alg":"EdDSA","kid":"k1"}`, payload, func(b []byte) []byte { return ed25519.Sign(is.priv, b) })
}

// unavailable tells whether err is the issuer being unavailable: an error
// that is not a refused credential (the proxy answers NO [UNAVAILABLE] and
// counts no lockout, Session.login).
func unavailable(err error) bool { return err != nil && !errors.Is(err, proxy.ErrAuthFailed) }

// TestIssuerOutageBacksOff: while the issuer's JWKS fails, a failed fetch
// is not repeated before MinRefresh; every login meanwhile, a valid token
// or a forged kid, fails at once as the issuer being unavailable, never as
// a wrong credential; once MinRefresh has passed the keys are fetched
// again and valid tokens log in.
func TestIssuerOutageBacksOff(t *testing.T) {
	is := startOutageIssuer(t)
	var now atomic.Int64
	now.Store(time.Now().UnixNano())
	clock := func() time.Time { return time.Unix(0, now.Load()) }
	v := newVerifier(t, Options{Issuer: is.srv.URL, JWKSURL: is.srv.URL + "/jwks", Audience: "imap", MinRefresh: time.Minute, Now: clock})
	good := is.token(t)
	forged := forge(`{"alg":"EdDSA","kid":"forged"}`, `{"iss":"`+is.srv.URL+`","aud":"imap","sub":"alice","exp":`+jsonTime(time.Now().Add(time.Hour))+`}`,
		func([]byte) []byte { return []byte("x") })

	// Never fetched, issuer down.
	is.down.Store(true)
	for i := range 10 {
		for name, tok := range map[string]string{"valid": good, "forged kid": forged} {
			if _, err := verify(v, "alice", tok); !unavailable(err) {
				t.Fatalf("attempt %d, %s token, issuer down: %v; want the issuer unavailable", i, name, err)
			}
		}
	}
	if n := is.hits.Load(); n != 1 {
		t.Fatalf("20 logins while the issuer is down made %d requests; want 1", n)
	}
	// Back up, but the back-off holds until MinRefresh has passed.
	is.down.Store(false)
	if _, err := verify(v, "alice", good); !unavailable(err) || is.hits.Load() != 1 {
		t.Fatalf("within the back-off: %v, %d requests", err, is.hits.Load())
	}
	now.Add(int64(time.Minute))
	if _, err := verify(v, "alice", good); err != nil {
		t.Fatalf("after the back-off, issuer up: %v", err)
	}

	// Keys cached, issuer down: a kid not in the set fetches once; then,
	// within the back-off, a kid the issuer may have rotated in is not
	// known to be wrong: unavailable, without a request. The cached key
	// still verifies.
	now.Add(int64(time.Minute))
	is.down.Store(true)
	before := is.hits.Load()
	for i := range 5 {
		if _, err := verify(v, "alice", forged); !unavailable(err) {
			t.Fatalf("unknown kid %d while the issuer is down: %v; want unavailable", i, err)
		}
		if _, err := verify(v, "alice", good); err != nil {
			t.Fatalf("cached key while the issuer is down: %v", err)
		}
	}
	if n := is.hits.Load() - before; n != 1 {
		t.Errorf("5 unknown kids while the issuer is down made %d requests; want 1", n)
	}
	// Up again after the back-off: an unknown kid is a refusal again.
	is.down.Store(false)
	now.Add(int64(time.Minute))
	if _, err := verify(v, "alice", forged); !errors.Is(err, proxy.ErrAuthFailed) {
		t.Errorf("unknown kid, issuer up: %v; want a refusal", err)
	}
}

// TestConcurrentLoginsShareOneFetch: logins that need the keys while a
// fetch is in flight wait for it rather than fetching again.
func TestConcurrentLoginsShareOneFetch(t *testing.T) {
	is := startOutageIssuer(t)
	rel := make(chan struct{})
	is.release = rel
	v := newVerifier(t, Options{Issuer: is.srv.URL, JWKSURL: is.srv.URL + "/jwks", Audience: "imap"})
	good := is.token(t)
	const logins = 8
	errs := make(chan error, logins)
	for range logins {
		go func() {
			_, err := verify(v, "alice", good)
			errs <- err
		}()
	}
	// Release the issuer once every login is either at it or waiting for
	// the fetch in flight.
	deadline := time.Now().Add(testenv.IOTimeout())
	for {
		v.mu.Lock()
		waiting := 0
		if v.inflight != nil {
			waiting = v.inflight.waiters
		}
		v.mu.Unlock()
		if int(is.hits.Load())+waiting >= logins {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d requests, %d logins waiting", is.hits.Load(), waiting)
		}
		time.Sleep(time.Millisecond)
	}
	close(rel)
	for range logins {
		if err := <-errs; err != nil {
			t.Error(err)
		}
	}
	if n := is.hits.Load(); n != 1 {
		t.Errorf("%d concurrent logins made %d JWKS requests; want 1", logins, n)
	}
}
