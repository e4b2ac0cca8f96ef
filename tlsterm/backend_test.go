package tlsterm

import (
	"crypto/tls"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// backend starts a TLS server standing in for an IMAP backend, with a
// certificate for hosts issued by ca, or self-signed if ca is nil.
func backend(t *testing.T, ca *CA, hosts []string, mutate func(*tls.Config)) *testServer {
	t.Helper()
	issue := SelfSigned
	if ca != nil {
		issue = ca.Issue
	}
	certPEM, keyPEM, err := issue(hosts, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	cfg := &tls.Config{Certificates: []tls.Certificate{cert}, NextProtos: []string{"imap"}}
	if mutate != nil {
		mutate(cfg)
	}
	return serveTLS(t, cfg, echo)
}

func backendConfig(t *testing.T, o BackendOptions, addr string) *tls.Config {
	t.Helper()
	cfg, err := BackendConfig(o, addr)
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

func TestBackendConfigVerify(t *testing.T) {
	ca := newCA(t)
	dir := t.TempDir()
	caFile, err := ca.WriteCA(dir)
	if err != nil {
		t.Fatal(err)
	}
	hosts := []string{"imap.internal", "127.0.0.1"}
	issued := backend(t, ca, hosts, nil)
	self := backend(t, nil, hosts, nil)

	t.Run("CA-issued, name from the address", func(t *testing.T) {
		cfg := backendConfig(t, BackendOptions{CAFile: caFile}, issued.addr)
		if cfg.ServerName != "127.0.0.1" {
			t.Errorf("ServerName %q, want the host of %s", cfg.ServerName, issued.addr)
		}
		c := mustDial(t, issued.addr, cfg)
		if got := c.ConnectionState().NegotiatedProtocol; got != "imap" {
			t.Errorf("ALPN %q, want imap", got)
		}
	})
	t.Run("CA-issued, explicit name", func(t *testing.T) {
		mustDial(t, issued.addr, backendConfig(t, BackendOptions{CAFile: caFile, ServerName: "imap.internal"}, issued.addr))
	})
	t.Run("CA-issued, wrong name", func(t *testing.T) {
		_, err := dial(t, issued.addr, backendConfig(t, BackendOptions{CAFile: caFile, ServerName: "other.internal"}, issued.addr))
		if err == nil || !strings.Contains(err.Error(), "other.internal") {
			t.Fatalf("got %v, want a name mismatch", err)
		}
	})
	t.Run("self-signed against the CA", func(t *testing.T) {
		_, err := dial(t, self.addr, backendConfig(t, BackendOptions{CAFile: caFile}, self.addr))
		if err == nil || !strings.Contains(err.Error(), "unknown authority") {
			t.Fatalf("got %v, want an unknown authority", err)
		}
	})
	t.Run("self-signed against system roots", func(t *testing.T) {
		if _, err := dial(t, self.addr, backendConfig(t, BackendOptions{}, self.addr)); err == nil {
			t.Fatal("self-signed certificate accepted by the system roots")
		}
	})
	t.Run("self-signed, Insecure", func(t *testing.T) {
		mustDial(t, self.addr, backendConfig(t, BackendOptions{Insecure: true}, self.addr))
	})
}

func TestBackendClientCert(t *testing.T) {
	ca := newCA(t)
	dir := t.TempDir()
	caFile, err := ca.WriteCA(dir)
	if err != nil {
		t.Fatal(err)
	}
	proxyCert := writeFiles(t, ca, dir, "proxy", "proxy.example.net")
	ts := backend(t, ca, []string{"127.0.0.1"}, func(c *tls.Config) {
		c.ClientAuth = tls.RequireAndVerifyClientCert
		c.ClientCAs = ca.Pool()
	})

	mustDial(t, ts.addr, backendConfig(t, BackendOptions{CAFile: caFile, ClientCert: proxyCert}, ts.addr))
	r := ts.result(t)
	if r.err != nil {
		t.Fatal(r.err)
	}
	if got := Describe(r.state).ClientCertSubject; got != "CN=proxy.example.net" {
		t.Errorf("backend saw client subject %q", got)
	}

	// Without one, the backend refuses (after the client's Finished on TLS 1.3).
	c, err := dial(t, ts.addr, backendConfig(t, BackendOptions{CAFile: caFile}, ts.addr))
	wantRefused(t, c, err, "certificate required")
	if r := ts.result(t); r.err == nil {
		t.Error("backend accepted a client without a certificate")
	}
}

func TestBackendConfigErrors(t *testing.T) {
	dir := t.TempDir()
	ca := newCA(t)
	cf := writeFiles(t, ca, dir, "client", "client")
	garbage := filepath.Join(dir, "garbage.pem")
	if err := os.WriteFile(garbage, []byte("nothing here\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		o    BackendOptions
		addr string
		want string
	}{
		{"Insecure with CAFile", BackendOptions{Insecure: true, CAFile: garbage}, "h:993", "contradict"},
		{"missing CAFile", BackendOptions{CAFile: dir + "/nope.pem"}, "h:993", dir + "/nope.pem"},
		{"empty CAFile", BackendOptions{CAFile: garbage}, "h:993", garbage},
		{"half a client cert", BackendOptions{ClientCert: CertFile{Cert: cf.Cert}}, "h:993", "Key"},
		{"broken client key", BackendOptions{ClientCert: CertFile{Cert: cf.Cert, Key: garbage}}, "h:993", garbage},
		{"unknown version", BackendOptions{MinVersion: 0x0200}, "h:993", "MinVersion"},
		{"no name", BackendOptions{}, ":993", "no server name"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := BackendConfig(tc.o, tc.addr)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want an error mentioning %q", err, tc.want)
			}
		})
	}

	cfg := backendConfig(t, BackendOptions{}, "imap.example.com:993")
	if cfg.ServerName != "imap.example.com" || cfg.MinVersion != tls.VersionTLS12 || cfg.InsecureSkipVerify {
		t.Errorf("defaults: ServerName %q MinVersion %#x Insecure %v", cfg.ServerName, cfg.MinVersion, cfg.InsecureSkipVerify)
	}
	if cfg := backendConfig(t, BackendOptions{}, "[::1]:993"); cfg.ServerName != "::1" {
		t.Errorf("IPv6 address: ServerName %q", cfg.ServerName)
	}
}
