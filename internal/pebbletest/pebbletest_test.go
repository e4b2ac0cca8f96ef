package pebbletest

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"net"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mholt/acmez/v3"
	"github.com/mholt/acmez/v3/acme"

	"github.com/imapwarden/imapwarden/internal/testenv"
)

// TestDNS checks the responder with Go's own resolver: A 127.0.0.1 for any
// name, no AAAA, over TCP framing.
func TestDNS(t *testing.T) {
	s, err := startDNS()
	if err != nil {
		t.Fatal(err)
	}
	defer s.close()
	r := &net.Resolver{PreferGo: true, Dial: func(ctx context.Context, _, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "tcp", s.addr) // not a PacketConn: the resolver frames for TCP
	}}
	ctx, cancel := context.WithTimeout(t.Context(), testenv.IOTimeout())
	defer cancel()
	for _, name := range []string{"localhost", "mail.example.test", "x.y.z.invalid"} {
		addrs, err := r.LookupIPAddr(ctx, name)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if len(addrs) != 1 || !addrs[0].IP.Equal(net.IPv4(127, 0, 0, 1)) {
			t.Errorf("%s: got %v, want just 127.0.0.1", name, addrs)
		}
	}
	if _, err := dnsAnswer([]byte{1, 2, 3}); err == nil {
		t.Error("a short message got an answer")
	}
}

func TestRequireSkipsOrFails(t *testing.T) {
	old := gopathBin
	gopathBin = func() string { return t.TempDir() }
	defer func() { gopathBin = old }()
	t.Setenv("PATH", t.TempDir())

	t.Setenv("CI", "")
	ft := &fakeT{}
	runFake(ft, func() { Require(ft) })
	if !ft.skipped || ft.failed {
		t.Errorf("without CI: skipped=%v failed=%v, want a skip", ft.skipped, ft.failed)
	}
	t.Setenv("CI", "true")
	ft = &fakeT{}
	runFake(ft, func() { Require(ft) })
	if !ft.failed || !strings.Contains(ft.msg, ".ci/run") {
		t.Errorf("with CI=true: failed=%v msg=%q, want a failure naming .ci/run", ft.failed, ft.msg)
	}
}

// TestStart runs real orders against a Pebble: one whose http-01 challenge
// is answered (the certificate verifies against IssuerPool), one whose
// challenge nobody answers (validation is real, so the order fails).
func TestStart(t *testing.T) {
	var mu sync.Mutex
	tokens := map[string]string{} // path → key authorization
	web := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		ka, ok := tokens[r.URL.Path]
		mu.Unlock()
		if !ok {
			http.NotFound(w, r)
			return
		}
		w.Write([]byte(ka))
	}))
	defer web.Close()
	p := Start(t, Options{HTTPPort: web.Listener.Addr().(*net.TCPAddr).Port, Validity: time.Hour})
	if !strings.HasPrefix(p.DirectoryURL, "https://127.0.0.1:") {
		t.Errorf("DirectoryURL %q", p.DirectoryURL)
	}

	hc := p.httpClient()
	client := &acmez.Client{
		Client: &acme.Client{Directory: p.DirectoryURL, HTTPClient: hc, PollInterval: 50 * time.Millisecond},
		ChallengeSolvers: map[string]acmez.Solver{acme.ChallengeTypeHTTP01: solverFunc{
			present: func(c acme.Challenge) {
				mu.Lock()
				tokens[c.HTTP01ResourcePath()] = c.KeyAuthorization
				mu.Unlock()
			},
		}},
	}
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	accountKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	account, err := client.NewAccount(ctx, acme.Account{TermsOfServiceAgreed: true, PrivateKey: accountKey})
	if err != nil {
		t.Fatal(err)
	}
	certKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	certs, err := client.ObtainCertificateForSANs(ctx, account, certKey, []string{"mail.pebbletest.test"})
	if err != nil {
		t.Fatal(err)
	}
	chain, err := parseChain(certs[0].ChainPEM)
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Verify(chain, "mail.pebbletest.test"); err != nil {
		t.Errorf("issued chain does not verify against IssuerPool: %v", err)
	}
	if got := chain[0].NotAfter.Sub(chain[0].NotBefore); got < time.Hour-time.Minute || got > time.Hour {
		t.Errorf("lifetime %v, want Validity (1h)", got)
	}
	if n := p.Orders(); n != 1 {
		t.Errorf("Orders() = %d, want 1", n)
	}

	// Nobody answers this one: the token is never published.
	client.ChallengeSolvers[acme.ChallengeTypeHTTP01] = solverFunc{present: func(acme.Challenge) {}}
	if _, err := client.ObtainCertificateForSANs(ctx, account, certKey, []string{"unanswered.pebbletest.test"}); err == nil {
		t.Error("an unanswered challenge validated: is PEBBLE_VA_ALWAYS_VALID set?")
	}
	if n := p.Orders(); n != 2 {
		t.Errorf("Orders() = %d, want 2", n)
	}
}

type solverFunc struct{ present func(acme.Challenge) }

func (s solverFunc) Present(_ context.Context, c acme.Challenge) error { s.present(c); return nil }
func (s solverFunc) CleanUp(context.Context, acme.Challenge) error     { return nil }

func parseChain(pemBytes []byte) ([]*x509.Certificate, error) {
	var chain []*x509.Certificate
	for rest := pemBytes; ; {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			break
		}
		c, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return nil, err
		}
		chain = append(chain, c)
	}
	return chain, nil
}

// fakeT records what Require does with a testing.TB; Skip and Fatal end the
// calling goroutine, so runFake runs f in its own.
type fakeT struct {
	testing.TB
	skipped, failed bool
	msg             string
}

func (f *fakeT) Helper() {}
func (f *fakeT) Skipf(format string, args ...any) {
	f.skipped, f.msg = true, format
	runtime.Goexit()
}
func (f *fakeT) Fatalf(format string, args ...any) {
	f.failed, f.msg = true, format
	runtime.Goexit()
}

func runFake(_ *fakeT, f func()) {
	done := make(chan struct{})
	go func() {
		defer close(done)
		f()
	}()
	<-done
}
