package acme

import (
	"context"
	"crypto/tls"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/imapwarden/imapwarden/internal/pebbletest"
	"github.com/imapwarden/imapwarden/internal/testenv"
	"github.com/imapwarden/imapwarden/tlsterm"
)

// TestManagedImplicitTLS obtains a certificate for a configured name from
// Pebble, the TLS-ALPN-01 challenge answered on the IMAP listener itself
// (Pebble's tlsPort is that listener), and serves it over implicit TLS.
func TestManagedImplicitTLS(t *testing.T) {
	const name = "mail.managed.test"
	ln := listen(t)
	p := pebbletest.Start(t, pebbletest.Options{TLSPort: ln.port})
	in := start(t, p, Options{Names: []string{name}, TLSALPNPort: ln.port, DisableHTTP01: true}, tlsterm.ServerOptions{})
	srv := serve(t, ln, in.srv.TLSConfig(), false)

	ev := in.events.await(t, tlsterm.CertObtained, name)
	if ev.Source != tlsterm.SourceACME || ev.NotAfter.Before(time.Now().Add(80*24*time.Hour)) {
		t.Errorf("obtained event %+v: want source acme, ~90 days", ev)
	}
	// The validation handshake came in on our listener and never completed
	// on our side (so it could never become an IMAP session).
	if n := in.logs.FilterMessage("acme tls-alpn-01 challenge answered").Len(); n == 0 {
		t.Error("the challenge was not answered by the IMAP listener")
	}
	for drained := false; !drained; {
		select {
		case r := <-srv.results:
			if r.state.NegotiatedProtocol == tlsterm.ALPNACME && r.err == nil {
				t.Error("a challenge handshake completed on the server side")
			}
		default:
			drained = true
		}
	}

	c := dialServed(t, srv.addr, clientCfg(p, name))
	if err := p.Verify(c.ConnectionState().PeerCertificates, name); err != nil {
		t.Errorf("served chain: %v", err)
	}
	if got := c.ConnectionState().NegotiatedProtocol; got != "imap" {
		t.Errorf("ALPN %q, want imap", got)
	}
	for r := range srv.results {
		if r.err == nil {
			if got := tlsterm.Describe(r.state); got.ServerName != name || got.ALPN != "imap" {
				t.Errorf("server side: %+v", got)
			}
			break
		}
	}

	certs := in.srv.Certificates()
	if len(certs) != 1 || certs[0].Source != tlsterm.SourceACME || certs[0].Names[0] != name ||
		certs[0].ExpiresIn < 80*24*time.Hour || certs[0].Serial != leafOf(c).SerialNumber.Text(16) {
		t.Errorf("Certificates() = %+v", certs)
	}
	// SNI is case-insensitive (RFC 6066 §3, RFC 4343).
	if _, err := dial(t, srv.addr, clientCfg(p, "MAIL.Managed.TEST"), false); err != nil {
		t.Errorf("upper-case SNI: %v", err)
	}
	// No SNI: the first managed name is the default.
	noSNI := clientCfg(p, "")
	noSNI.InsecureSkipVerify = true
	if c, err := dial(t, srv.addr, noSNI, false); err != nil || leafOf(c).DNSNames[0] != name {
		t.Errorf("no SNI: %v", err)
	}
	// A client that offers only acme-tls/1 when no challenge is pending.
	acmeOnly := &tls.Config{InsecureSkipVerify: true, ServerName: name, NextProtos: []string{tlsterm.ALPNACME}}
	if _, err := dial(t, srv.addr, acmeOnly, false); err == nil || !strings.Contains(err.Error(), "no application protocol") {
		t.Errorf("acme-tls/1-only client: %v, want no_application_protocol", err)
	}
	if n := p.Orders(); n != 1 {
		t.Errorf("%d orders, want 1", n)
	}
}

// TestOnDemand obtains a certificate at the first handshake (after
// STARTTLS) for an allowed name, with HTTP-01 answered by certmagic's own
// short-lived listener; refuses names outside the allowlist and names over
// the rate limit without placing an order.
func TestOnDemand(t *testing.T) {
	ln := listen(t)
	httpPort := freePort(t)
	p := pebbletest.Start(t, pebbletest.Options{HTTPPort: httpPort})
	in := start(t, p, Options{
		OnDemand:         &OnDemandOptions{Allow: []string{"*.ondemand.test", "exact.other.test"}, RateLimit: 1, RateWindow: time.Hour},
		HTTPPort:         httpPort,
		DisableTLSALPN01: true,
	}, tlsterm.ServerOptions{StrictSNI: true})
	srv := serve(t, ln, in.srv.TLSConfig(), true)

	const name = "a.ondemand.test"
	c, err := dial(t, srv.addr, clientCfg(p, name), true)
	if err != nil {
		t.Fatalf("on-demand handshake: %v", err)
	}
	if err := p.Verify(c.ConnectionState().PeerCertificates, name); err != nil {
		t.Errorf("served chain: %v", err)
	}
	if ev := in.events.await(t, tlsterm.CertObtained, name); ev.Source != tlsterm.SourceOnDemand {
		t.Errorf("event %+v, want source on-demand", ev)
	}
	if n := p.Orders(); n != 1 {
		t.Fatalf("%d orders after the first on-demand name, want 1", n)
	}
	// Again: served from the cache.
	if c2, err := dial(t, srv.addr, clientCfg(p, name), true); err != nil || !leafOf(c2).Equal(leafOf(c)) {
		t.Errorf("second handshake: %v", err)
	}

	for _, tc := range []struct{ sni, why string }{
		{"evil.test", "not in the allowlist"},
		{"ondemand.test", "a suffix does not allow the bare domain"},
		{"a.exact.other.test", "an exact name is not a suffix"},
		{"b.ondemand.test", "over the rate limit (1 per hour)"},
		{"xn--caf-dma.ondemand.test.", "allowed, but the rate limit is spent"},
	} {
		if _, err := dial(t, srv.addr, clientCfg(p, tc.sni), true); err == nil {
			t.Errorf("%s (%s): handshake succeeded", tc.sni, tc.why)
		}
	}
	if n := p.Orders(); n != 1 {
		t.Errorf("%d orders after refused names, want still 1", n)
	}
	if n := in.logs.FilterMessage("on-demand certificate refused").Len(); n != 2 {
		t.Errorf("%d rate-limit refusals logged, want 2", n)
	}
	if n := in.events.count(tlsterm.CertObtained); n != 1 {
		t.Errorf("%d obtained events, want 1", n)
	}

	// The same certificate as OpenSSL sees it through STARTTLS, verified
	// against Pebble's root: what a mail client gets.
	t.Run("openssl s_client -starttls imap", func(t *testing.T) {
		openssl := testenv.NeedTool(t, "openssl")
		issuer := filepath.Join(t.TempDir(), "issuer.pem")
		if err := os.WriteFile(issuer, p.IssuerPEM, 0o644); err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(t.Context(), wait)
		defer cancel()
		cmd := exec.CommandContext(ctx, openssl, "s_client", "-starttls", "imap", "-connect", srv.addr,
			"-servername", name, "-verify_hostname", name, "-CAfile", issuer, "-verify_return_error", "-alpn", "imap")
		cmd.Stdin = strings.NewReader("")
		out, err := cmd.CombinedOutput()
		t.Logf("%s", out)
		if err != nil || !strings.Contains(string(out), "Verify return code: 0 (ok)") || !strings.Contains(string(out), "ALPN protocol: imap") {
			t.Errorf("openssl: %v", err)
		}
	})
}

// TestRenewal runs on certificates Pebble issues for 8 seconds, renewed when
// 70% of the lifetime is left: the renewal happens for real, the Renewed
// event fires, and handshakes get the new certificate. Watch reports the
// certificate as expiring.
func TestRenewal(t *testing.T) {
	const name = "renew.managed.test"
	ln := listen(t)
	p := pebbletest.Start(t, pebbletest.Options{TLSPort: ln.port, Validity: 8 * time.Second})
	in := start(t, p, Options{
		Names: []string{name}, TLSALPNPort: ln.port, DisableHTTP01: true,
		RenewalWindowRatio: 0.7, renewCheckInterval: 200 * time.Millisecond,
	}, tlsterm.ServerOptions{ExpiryWarning: time.Hour})
	srv := serve(t, ln, in.srv.TLSConfig(), false)

	obtained := in.events.await(t, tlsterm.CertObtained, name)
	first := leafOf(dialServed(t, srv.addr, clientCfg(p, name)))
	if !first.NotAfter.Equal(obtained.NotAfter) {
		t.Errorf("event NotAfter %v, served %v", obtained.NotAfter, first.NotAfter)
	}

	ctx := t.Context()
	go in.srv.Watch(ctx, 100*time.Millisecond)
	if ev := in.events.await(t, tlsterm.CertExpiring, name); ev.Source != tlsterm.SourceACME {
		t.Errorf("expiring event %+v", ev)
	}

	renewed := in.events.await(t, tlsterm.CertRenewed, name)
	if !renewed.NotAfter.After(first.NotAfter) {
		t.Errorf("renewed NotAfter %v, not after the first %v", renewed.NotAfter, first.NotAfter)
	}
	deadline := time.Now().Add(wait)
	for {
		c, err := dial(t, srv.addr, clientCfg(p, name), false)
		if err == nil && !leafOf(c).Equal(first) {
			if err := p.Verify(c.ConnectionState().PeerCertificates, name); err != nil {
				t.Errorf("renewed chain: %v", err)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("still serving the first certificate (%v)", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if n := p.Orders(); n < 2 {
		t.Errorf("%d orders, want a new one for the renewal", n)
	}
}

// TestSharedStorage: a second instance on the same storage serves the
// certificate the first one obtained, without any ACME order. The first
// one answers HTTP-01 through HTTPHandler on a listener it owns, as behind
// a web server that forwards /.well-known/acme-challenge/.
func TestSharedStorage(t *testing.T) {
	const name = "shared.managed.test"
	storage := t.TempDir()
	var handler atomic.Pointer[http.Handler]
	web := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { (*handler.Load()).ServeHTTP(w, r) }))
	t.Cleanup(web.Close)
	httpPort := web.Listener.Addr().(*net.TCPAddr).Port

	p := pebbletest.Start(t, pebbletest.Options{HTTPPort: httpPort})
	opts := Options{Names: []string{name}, StorageDir: storage, HTTPPort: httpPort, DisableTLSALPN01: true}
	first := start(t, p, opts, tlsterm.ServerOptions{}, func(m *Manager) {
		h := m.HTTPHandler(http.NotFoundHandler())
		handler.Store(&h)
	})
	first.events.await(t, tlsterm.CertObtained, name)
	if n := p.Orders(); n != 1 {
		t.Fatalf("%d orders, want 1", n)
	}
	firstCerts := awaitCertificates(t, first.srv, 1)
	resp, err := http.Get(web.URL + "/.well-known/acme-challenge/unknown-token")
	if err == nil {
		resp.Body.Close()
		if resp.StatusCode != http.StatusNotFound {
			t.Errorf("unknown token: %s, want 404 from next", resp.Status)
		}
	}

	second := start(t, p, opts, tlsterm.ServerOptions{})
	srv := serve(t, listen(t), second.srv.TLSConfig(), false)
	c := dialServed(t, srv.addr, clientCfg(p, name))
	if leafOf(c).SerialNumber.Text(16) != firstCerts[0].Serial {
		t.Errorf("second instance serves %x, first holds %+v", leafOf(c).SerialNumber, firstCerts)
	}
	if n := p.Orders(); n != 1 {
		t.Errorf("%d orders after the second instance started, want still 1", n)
	}
	if got := second.srv.Certificates(); len(got) != 1 || got[0].Serial != firstCerts[0].Serial || got[0].Source != tlsterm.SourceACME {
		t.Errorf("second instance Certificates() = %+v", got)
	}
	if n := second.events.count(tlsterm.CertObtained); n != 0 {
		t.Errorf("second instance reported %d obtained events", n)
	}
	if files, _ := filepath.Glob(filepath.Join(storage, "certificates", "*", name, name+".crt")); len(files) != 1 {
		t.Errorf("stored certificate files: %v, want one", files)
	}
}

// TestStaticAndManaged: static files and managed names side by side, with
// StrictSNI: each name gets its own certificate, unknown names are refused,
// clients without SNI get the first static certificate.
func TestStaticAndManaged(t *testing.T) {
	const managed, static = "acme.mixed.test", "files.mixed.test"
	ca, err := tlsterm.NewCA()
	if err != nil {
		t.Fatal(err)
	}
	cf, err := ca.WriteFiles(t.TempDir(), "static", []string{static, "*.files.mixed.test"})
	if err != nil {
		t.Fatal(err)
	}
	ln := listen(t)
	p := pebbletest.Start(t, pebbletest.Options{TLSPort: ln.port})
	in := start(t, p, Options{Names: []string{managed}, TLSALPNPort: ln.port, DisableHTTP01: true},
		tlsterm.ServerOptions{Certificates: []tlsterm.CertFile{cf}, StrictSNI: true})
	srv := serve(t, ln, in.srv.TLSConfig(), false)
	in.events.await(t, tlsterm.CertObtained, managed)

	dialServed(t, srv.addr, clientCfg(p, managed))
	for _, sni := range []string{static, "imap.files.mixed.test", ""} {
		cfg := &tls.Config{RootCAs: ca.Pool(), ServerName: sni, NextProtos: []string{"imap"}}
		if sni == "" {
			cfg.InsecureSkipVerify = true
		}
		c, err := dial(t, srv.addr, cfg, false)
		if err != nil {
			t.Errorf("static %q: %v", sni, err)
			continue
		}
		if leafOf(c).Issuer.CommonName != ca.Cert.Subject.CommonName {
			t.Errorf("%q: served a certificate from %q, want the static one", sni, leafOf(c).Issuer.CommonName)
		}
	}
	if _, err := dial(t, srv.addr, clientCfg(p, "other.mixed.test"), false); err == nil || !strings.Contains(err.Error(), "unrecognized name") {
		t.Errorf("unknown name with StrictSNI: %v, want unrecognized_name", err)
	}
	certs := awaitCertificates(t, in.srv, 2)
	if len(certs) != 2 || certs[0].Source != tlsterm.SourceFile || certs[0].File != cf.Cert || certs[1].Source != tlsterm.SourceACME {
		t.Errorf("Certificates() = %+v", certs)
	}
}

func TestNewErrors(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct {
		name string
		opts Options
		want string
	}{
		{"nothing", Options{StorageDir: dir}, "nothing to manage"},
		{"on-demand without allowlist", Options{StorageDir: dir, OnDemand: &OnDemandOptions{}}, "allowlist"},
		{"TLD suffix", Options{StorageDir: dir, OnDemand: &OnDemandOptions{Allow: []string{"*.com"}}}, "two labels"},
		{"bad allow", Options{StorageDir: dir, OnDemand: &OnDemandOptions{Allow: []string{"a b"}}}, "not a DNS host name"},
		{"wildcard name", Options{StorageDir: dir, Names: []string{"*.example.com"}}, "DNS-01"},
		{"IP name", Options{StorageDir: dir, Names: []string{"192.0.2.1"}}, "not a DNS host name"},
		{"no storage", Options{Names: []string{"a.example"}}, "StorageDir"},
		{"http CA", Options{StorageDir: dir, Names: []string{"a.example"}, CA: "http://ca.example/dir"}, "https"},
		{"no challenge", Options{StorageDir: dir, Names: []string{"a.example"}, DisableHTTP01: true, DisableTLSALPN01: true}, "no challenge"},
		{"key type", Options{StorageDir: dir, Names: []string{"a.example"}, KeyType: "ed25519"}, "KeyType"},
		{"ratio", Options{StorageDir: dir, Names: []string{"a.example"}, RenewalWindowRatio: 1}, "RenewalWindowRatio"},
		{"roots", Options{StorageDir: dir, Names: []string{"a.example"}, TrustedRootsFile: dir + "/missing.pem"}, "missing.pem"},
		{"port", Options{StorageDir: dir, Names: []string{"a.example"}, HTTPPort: 70000}, "HTTPPort"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := New(tc.opts)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want an error mentioning %q", err, tc.want)
			}
		})
	}
	// NewServer with a Manager and no files is fine; Start twice is not.
	m, err := New(Options{StorageDir: dir, OnDemand: &OnDemandOptions{Allow: []string{"x.example"}}})
	if err != nil {
		t.Fatal(err)
	}
	s, err := tlsterm.NewServer(tlsterm.ServerOptions{Managed: m})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if _, err := tlsterm.NewServer(tlsterm.ServerOptions{Managed: m}); err == nil || !strings.Contains(err.Error(), "twice") {
		t.Errorf("second Server on one Manager: %v", err)
	}
}

func TestAllowlist(t *testing.T) {
	m, err := New(Options{StorageDir: t.TempDir(), OnDemand: &OnDemandOptions{Allow: []string{"Mail.Example.COM.", "*.tenants.example"}}})
	if err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string]bool{
		"mail.example.com":            true,
		"x.mail.example.com":          false,
		"a.tenants.example":           true,
		"a.b.tenants.example":         true,
		"tenants.example":             false,
		"atenants.example":            false,
		"a_b.tenants.example":         false, // not LDH
		"-a.tenants.example":          false,
		"xn--caf-dma.tenants.example": true,  // an A-label
		"café.tenants.example":        false, // a U-label is not a valid SNI (RFC 6066 §3)
		"1.2.3.4":                     false,
	} {
		if got := m.allow(name); got != want {
			t.Errorf("allow(%q) = %v, want %v", name, got, want)
		}
	}
}

func TestSlidingWindow(t *testing.T) {
	w := &slidingWindow{limit: 2, window: time.Minute}
	t0 := time.Now()
	for i, want := range []bool{true, true, false} {
		if got := w.allow(t0.Add(time.Duration(i) * time.Second)); got != want {
			t.Errorf("event %d: %v, want %v", i, got, want)
		}
	}
	if !w.allow(t0.Add(time.Minute + time.Second)) {
		t.Error("the window did not slide")
	}
}

// awaitCertificates waits until srv lists n certificates and returns
// them: certmagic reports "obtained" once the certificate is stored, and
// caches it (which Certificates lists) just after.
func awaitCertificates(t *testing.T, srv *tlsterm.Server, n int) []tlsterm.CertStatus {
	t.Helper()
	certs := srv.Certificates()
	for deadline := time.Now().Add(testenv.IOTimeout()); len(certs) != n; certs = srv.Certificates() {
		if time.Now().After(deadline) {
			t.Fatalf("Certificates() = %+v, want %d", certs, n)
		}
		time.Sleep(10 * time.Millisecond)
	}
	return certs
}
