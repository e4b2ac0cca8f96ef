package tlsterm

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// clientCert issues a client certificate from ca with an email and a URI
// SAN besides the DNS name, as a user certificate would carry.
func clientCert(t *testing.T, ca *CA, cn string) tls.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl, err := leafTemplate([]string{cn + ".clients.example"}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	tmpl.Subject = pkix.Name{CommonName: cn, Organization: []string{"Example"}}
	tmpl.EmailAddresses = []string{cn + "@example.com"}
	tmpl.URIs = []*url.URL{{Scheme: "imap", Host: "example.com", Path: "/" + cn}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, key.Public(), ca.key)
	if err != nil {
		t.Fatal(err)
	}
	certPEM, keyPEM, err := encodePair(der, key)
	if err != nil {
		t.Fatal(err)
	}
	c, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// present sends c whatever CAs the server names: crypto/tls would otherwise
// quietly send no certificate to a server that does not name its issuer.
func present(c *tls.Certificate) func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
	return func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return c, nil }
}

func writeCA(t *testing.T, ca *CA) string {
	t.Helper()
	path, err := ca.WriteCA(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	return path
}

func TestListenerConfigClientAuth(t *testing.T) {
	serverCA, a, _ := twoCerts(t)
	clientCA, otherCA := newCA(t), newCA(t)
	s := newServer(t, ServerOptions{Certificates: []CertFile{a}})
	alice := clientCert(t, clientCA, "alice")
	mallory := clientCert(t, otherCA, "mallory")
	caFile := writeCA(t, clientCA)

	withCert := func(c *tls.Certificate, alpn ...string) *tls.Config {
		cfg := clientCfg(serverCA.Pool(), "mail.example.com", alpn...)
		if c != nil {
			cfg.GetClientCertificate = present(c)
		}
		return cfg
	}

	t.Run("require", func(t *testing.T) {
		cfg, err := s.ListenerConfig(ClientAuthOptions{Mode: ClientAuthRequire, CAFile: caFile})
		if err != nil {
			t.Fatal(err)
		}
		ts := serveTLS(t, cfg, echo)
		mustDial(t, ts.addr, withCert(&alice, "imap"))
		ci := Describe(ts.result(t).state)
		if ci.ClientCertSubject != "CN=alice,O=Example" || !ci.ClientCertVerified {
			t.Errorf("Describe = %+v", ci)
		}
		wantSANs := []string{"DNS:alice.clients.example", "email:alice@example.com", "URI:imap://example.com/alice"}
		if !slices.Equal(ci.ClientCertSANs, wantSANs) {
			t.Errorf("SANs %q, want %q", ci.ClientCertSANs, wantSANs)
		}
		if len(ci.ClientCertSHA256) != 64 {
			t.Errorf("SHA256 %q", ci.ClientCertSHA256)
		}

		c, err := dial(t, ts.addr, withCert(nil))
		wantRefused(t, c, err, "certificate required")
		ts.result(t)
		c, err = dial(t, ts.addr, withCert(&mallory))
		wantRefused(t, c, err, "unknown certificate authority")
		ts.result(t)
		// SNI and ALPN checks are those of TLSConfig.
		c, err = dial(t, ts.addr, withCert(&alice, "http/1.1"))
		wantRefused(t, c, err, "no application protocol")
		ts.result(t)
	})
	t.Run("request", func(t *testing.T) {
		cfg, err := s.ListenerConfig(ClientAuthOptions{Mode: ClientAuthRequest, CAFile: caFile})
		if err != nil {
			t.Fatal(err)
		}
		ts := serveTLS(t, cfg, echo)
		mustDial(t, ts.addr, withCert(nil))
		if ci := Describe(ts.result(t).state); ci.ClientCertSubject != "" || ci.ClientCertSANs != nil || ci.ClientCertVerified {
			t.Errorf("no certificate: Describe = %+v", ci)
		}
		mustDial(t, ts.addr, withCert(&alice))
		if ci := Describe(ts.result(t).state); !strings.Contains(ci.ClientCertSubject, "alice") || !ci.ClientCertVerified {
			t.Errorf("with certificate: Describe = %+v", ci)
		}
		c, err := dial(t, ts.addr, withCert(&mallory))
		wantRefused(t, c, err, "unknown certificate authority")
		ts.result(t)
	})
	t.Run("none is TLSConfig", func(t *testing.T) {
		cfg, err := s.ListenerConfig(ClientAuthOptions{})
		if err != nil || cfg != s.TLSConfig() {
			t.Errorf("got %p, %v; want TLSConfig %p", cfg, err, s.TLSConfig())
		}
	})
	t.Run("errors", func(t *testing.T) {
		garbage := filepath.Join(t.TempDir(), "garbage.pem")
		os.WriteFile(garbage, []byte("nope"), 0o600)
		for _, o := range []ClientAuthOptions{
			{Mode: ClientAuthRequire},
			{Mode: ClientAuthRequest, CAFile: garbage},
			{Mode: ClientAuthRequire, CAFile: garbage + ".missing"},
			{Mode: ClientAuthNone, CAFile: caFile},
			{Mode: 7, CAFile: caFile},
		} {
			if _, err := s.ListenerConfig(o); err == nil || !strings.HasPrefix(err.Error(), "tlsterm: ") {
				t.Errorf("%+v: got %v, want a tlsterm error", o, err)
			}
		}
	})
}

// TestClientAuthTicketIsolation: tickets resume between listeners with the
// same client-certificate policy, never across policies, so a session whose
// certificate was checked against one CA is not resumed where another is
// trusted (resumption skips verification).
func TestClientAuthTicketIsolation(t *testing.T) {
	serverCA, a, _ := twoCerts(t)
	caA, caB := newCA(t), newCA(t)
	s := newServer(t, ServerOptions{Certificates: []CertFile{a}})
	fileA, fileB := writeCA(t, caA), writeCA(t, caB)
	reqA1, err := s.ListenerConfig(ClientAuthOptions{Mode: ClientAuthRequest, CAFile: fileA})
	if err != nil {
		t.Fatal(err)
	}
	reqA2, _ := s.ListenerConfig(ClientAuthOptions{Mode: ClientAuthRequest, CAFile: fileA})
	reqB, _ := s.ListenerConfig(ClientAuthOptions{Mode: ClientAuthRequest, CAFile: fileB})
	plain := serveTLS(t, s.TLSConfig(), echo)
	lnA1, lnA2, lnB := serveTLS(t, reqA1, echo), serveTLS(t, reqA2, echo), serveTLS(t, reqB, echo)
	alice := clientCert(t, caA, "alice")

	for _, v := range []uint16{tls.VersionTLS12, tls.VersionTLS13} {
		t.Run(versionName(v), func(t *testing.T) {
			session := func() *tls.Config {
				cfg := clientCfg(serverCA.Pool(), "mail.example.com", "imap")
				cfg.MaxVersion = v
				cfg.GetClientCertificate = present(&alice)
				cfg.ClientSessionCache = tls.NewLRUClientSessionCache(4)
				return cfg
			}
			cfg := session()
			mustDial(t, lnA1.addr, cfg)
			lnA1.result(t)
			if c := mustDial(t, lnA2.addr, cfg); !c.ConnectionState().DidResume {
				t.Error("same policy, another listener: did not resume")
			}
			if ci := Describe(lnA2.result(t).state); !ci.Resumed || !strings.Contains(ci.ClientCertSubject, "alice") {
				t.Errorf("resumed session lost its client certificate: %+v", ci)
			}

			cfg = session()
			mustDial(t, lnA1.addr, cfg)
			lnA1.result(t)
			// alice's certificate does not verify against B: neither a
			// full handshake nor a resumption may let her in.
			c, err := dial(t, lnB.addr, cfg)
			wantRefused(t, c, err, "unknown certificate authority")
			if r := lnB.result(t); r.state.DidResume {
				t.Error("a ticket from CA A's listener was accepted on CA B's")
			}

			cfg = session()
			mustDial(t, plain.addr, cfg)
			plain.result(t)
			// crypto/tls itself would resume this one (no certificate in the
			// session, none required); the per-policy keys stop it.
			if c := mustDial(t, lnA1.addr, cfg); c.ConnectionState().DidResume {
				t.Error("a ticket from the no-client-auth listener resumed on a client-auth one")
			}
			lnA1.result(t)
		})
	}
}

func TestParseClientAuth(t *testing.T) {
	for in, want := range map[string]ClientAuth{"": ClientAuthNone, "none": ClientAuthNone, "request": ClientAuthRequest, "require": ClientAuthRequire} {
		if got, err := ParseClientAuth(in); err != nil || got != want {
			t.Errorf("ParseClientAuth(%q) = %v, %v", in, got, err)
		}
		if in != "" && want.String() != in {
			t.Errorf("String() = %q, want %q", want.String(), in)
		}
	}
	if _, err := ParseClientAuth("optional"); err == nil {
		t.Error("ParseClientAuth(optional) accepted")
	}
}

// Reload re-reads the client CA bundle: a CA removed from it is refused
// (resumption included), a bundle that does not load keeps the one in
// force, and the retired CA's session does not resume.
func TestReloadClientCAs(t *testing.T) {
	serverCA, a, _ := twoCerts(t)
	retired, current := newCA(t), newCA(t)
	s := newServer(t, ServerOptions{Certificates: []CertFile{a}})
	bundle := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(bundle, append(append([]byte{}, retired.CertPEM...), current.CertPEM...), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg, err := s.ListenerConfig(ClientAuthOptions{Mode: ClientAuthRequire, CAFile: bundle})
	if err != nil {
		t.Fatal(err)
	}
	ts := serveTLS(t, cfg, echo)
	mallory, alice := clientCert(t, retired, "mallory"), clientCert(t, current, "alice")
	cache := tls.NewLRUClientSessionCache(4)
	as := func(c *tls.Certificate) *tls.Config {
		cc := clientCfg(serverCA.Pool(), "mail.example.com", "imap")
		cc.GetClientCertificate = present(c)
		cc.ClientSessionCache = cache
		return cc
	}
	mustDial(t, ts.addr, as(&mallory)) // reads the TLS 1.3 ticket
	ts.result(t)

	if err := os.WriteFile(bundle, []byte("not PEM"), 0o644); err == nil {
		if err := s.Reload(); err == nil || !strings.Contains(err.Error(), bundle) {
			t.Errorf("Reload of a bundle that does not load: %v, want an error naming it", err)
		}
	}
	mustDial(t, ts.addr, as(&mallory))
	if r := ts.result(t); r.err != nil {
		t.Fatalf("a bundle that did not load replaced the one in force: %v", r.err)
	}

	if err := os.WriteFile(bundle, current.CertPEM, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := s.Reload(); err != nil {
		t.Fatal(err)
	}
	c, err := dial(t, ts.addr, as(&mallory))
	wantRefused(t, c, err, "certificate")
	if r := ts.result(t); r.err == nil {
		t.Errorf("the removed CA's certificate still passes (resumed %v)", r.state.DidResume)
	}
	mustDial(t, ts.addr, as(&alice))
	if r := ts.result(t); r.err != nil {
		t.Errorf("the CA kept: %v", r.err)
	}
}

// CheckCA judges the bundle at every read: refused at ListenerConfig, and
// at a Reload it keeps the bundle in force (the old CA still passes, the
// new one does not).
func TestCheckCAEveryRead(t *testing.T) {
	serverCA, a, _ := twoCerts(t)
	old, added := newCA(t), newCA(t)
	var refuse atomic.Bool
	s := newServer(t, ServerOptions{Certificates: []CertFile{a}, CheckCA: func(string) error {
		if refuse.Load() {
			return errors.New("writable by others")
		}
		return nil
	}})
	bundle := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(bundle, old.CertPEM, 0o644); err != nil {
		t.Fatal(err)
	}
	refuse.Store(true)
	if _, err := s.ListenerConfig(ClientAuthOptions{Mode: ClientAuthRequire, CAFile: bundle}); err == nil || !strings.Contains(err.Error(), "writable by others") {
		t.Fatalf("ListenerConfig with CheckCA refusing: %v", err)
	}
	refuse.Store(false)
	cfg, err := s.ListenerConfig(ClientAuthOptions{Mode: ClientAuthRequire, CAFile: bundle})
	if err != nil {
		t.Fatal(err)
	}
	ts := serveTLS(t, cfg, echo)
	if err := os.WriteFile(bundle, added.CertPEM, 0o644); err != nil {
		t.Fatal(err)
	}
	refuse.Store(true)
	if err := s.Reload(); err == nil || !strings.Contains(err.Error(), bundle) {
		t.Errorf("Reload with CheckCA refusing: %v, want an error naming %s", err, bundle)
	}
	as := func(ca *CA, name string) *tls.Config {
		c := clientCert(t, ca, name)
		cc := clientCfg(serverCA.Pool(), "mail.example.com", "imap")
		cc.GetClientCertificate = present(&c)
		return cc
	}
	mustDial(t, ts.addr, as(old, "alice"))
	if r := ts.result(t); r.err != nil {
		t.Errorf("the bundle in force was dropped: %v", r.err)
	}
	c, err := dial(t, ts.addr, as(added, "mallory"))
	wantRefused(t, c, err, "certificate")
	if r := ts.result(t); r.err == nil {
		t.Errorf("a CA added to a refused bundle is trusted")
	}
}
