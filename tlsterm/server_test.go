package tlsterm

import (
	"context"
	"crypto/tls"
	"os"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/imapwarden/imapwarden/internal/testenv"
)

// twoCerts writes a default certificate for mail.example.com and a wildcard
// one for example.org.
func twoCerts(t *testing.T) (ca *CA, a, b CertFile) {
	t.Helper()
	ca = newCA(t)
	dir := t.TempDir()
	a = writeFiles(t, ca, dir, "a", "mail.example.com")
	b = writeFiles(t, ca, dir, "b", "*.example.org", "example.org")
	return ca, a, b
}

func TestSNISelection(t *testing.T) {
	ca, a, b := twoCerts(t)
	s := newServer(t, ServerOptions{Certificates: []CertFile{a, b}})
	ts := serveTLS(t, s.TLSConfig(), echo)
	wantA, wantB := serialOf(t, a.Cert), serialOf(t, b.Cert)

	for _, tc := range []struct {
		sni  string
		want CertFile
	}{
		{"mail.example.com", a},
		{"MAIL.Example.COM", a},
		{"imap.example.org", b},
		{"IMAP.EXAMPLE.ORG", b},
		{"example.org", b},
		{"deep.imap.example.org", a}, // a wildcard covers one label only (RFC 6125 §6.4.3)
		{"unknown.test", a},
		{"", a}, // no SNI
	} {
		name := tc.sni
		if name == "" {
			name = "no SNI"
		}
		t.Run(name, func(t *testing.T) {
			cfg := clientCfg(nil, tc.sni)
			// Verification is not the point here: which leaf arrives is.
			cfg.InsecureSkipVerify = true
			if tc.sni == "" {
				cfg.ServerName = ""
			}
			c := mustDial(t, ts.addr, cfg)
			want := wantA
			if tc.want == b {
				want = wantB
			}
			if got := servedSerial(c); got.Cmp(want) != 0 {
				t.Errorf("SNI %q: served serial %x, want %x", tc.sni, got, want)
			}
			if r := ts.result(t); r.state.ServerName != strings.ToLower(tc.sni) && r.state.ServerName != tc.sni {
				t.Errorf("server saw SNI %q", r.state.ServerName)
			}
		})
	}

	// And with verification, the served wildcard certificate checks out.
	mustDial(t, ts.addr, clientCfg(ca.Pool(), "imap.example.org"))
}

func TestStrictSNI(t *testing.T) {
	ca, a, b := twoCerts(t)
	s := newServer(t, ServerOptions{Certificates: []CertFile{a, b}, StrictSNI: true})
	ts := serveTLS(t, s.TLSConfig(), echo)

	c, err := dial(t, ts.addr, clientCfg(ca.Pool(), "unknown.test"))
	wantRefused(t, c, err, "unrecognized name")
	if r := ts.result(t); r.err == nil {
		t.Error("server accepted an unknown SNI")
	}

	mustDial(t, ts.addr, clientCfg(ca.Pool(), "x.example.org"))
	// No SNI at all still gets the default certificate.
	noSNI := clientCfg(nil, "")
	noSNI.InsecureSkipVerify = true
	c = mustDial(t, ts.addr, noSNI)
	if got, want := servedSerial(c), serialOf(t, a.Cert); got.Cmp(want) != 0 {
		t.Errorf("no SNI: served serial %x, want the default %x", got, want)
	}
}

func TestALPN(t *testing.T) {
	ca, a, _ := twoCerts(t)
	s := newServer(t, ServerOptions{Certificates: []CertFile{a}})
	ts := serveTLS(t, s.TLSConfig(), echo)

	for _, tc := range []struct {
		name   string
		offer  []string
		want   string
		refuse bool
	}{
		{"imap", []string{"imap"}, "imap", false},
		{"none", nil, "", false},
		{"imap among others", []string{"http/1.1", "imap"}, "imap", false},
		{"http/1.1", []string{"http/1.1"}, "", true},
		{"h2 and http/1.1", []string{"h2", "http/1.1"}, "", true},
		{"smtp", []string{"smtp"}, "", true},
		{"IMAP is not imap", []string{"IMAP"}, "", true}, // ALPN ids are exact bytes (RFC 7301 §3.1)
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := clientCfg(ca.Pool(), "mail.example.com", tc.offer...)
			if tc.refuse {
				c, err := dial(t, ts.addr, cfg)
				wantRefused(t, c, err, "no application protocol")
				if r := ts.result(t); r.err == nil {
					t.Error("server completed the handshake")
				}
				return
			}
			c := mustDial(t, ts.addr, cfg)
			if got := c.ConnectionState().NegotiatedProtocol; got != tc.want {
				t.Errorf("negotiated %q, want %q", got, tc.want)
			}
			ts.result(t)
		})
	}
}

// TestALPNEnforcedExplicitly shows why the check does not rest on
// NextProtos: crypto/tls lets an http/1.1-only client in when NextProtos
// holds "h2" (Go issue 46310), and a caller might add it to a clone.
func TestALPNEnforcedExplicitly(t *testing.T) {
	ca, a, _ := twoCerts(t)
	s := newServer(t, ServerOptions{Certificates: []CertFile{a}})
	cfg := s.TLSConfig().Clone()
	cfg.NextProtos = append(cfg.NextProtos, "h2")
	http11 := clientCfg(ca.Pool(), "mail.example.com", "http/1.1")

	bare := cfg.Clone()
	bare.GetConfigForClient = nil
	mustDial(t, serveTLS(t, bare, echo).addr, http11) // the hole, without our check

	c, err := dial(t, serveTLS(t, cfg, echo).addr, http11)
	wantRefused(t, c, err, "no application protocol")
}

func TestMinVersion(t *testing.T) {
	ca, a, _ := twoCerts(t)
	tls11 := clientCfg(ca.Pool(), "mail.example.com")
	tls11.MinVersion, tls11.MaxVersion = tls.VersionTLS10, tls.VersionTLS11
	tls12 := clientCfg(ca.Pool(), "mail.example.com")
	tls12.MaxVersion = tls.VersionTLS12

	t.Run("default", func(t *testing.T) {
		s := newServer(t, ServerOptions{Certificates: []CertFile{a}})
		ts := serveTLS(t, s.TLSConfig(), echo)
		c, err := dial(t, ts.addr, tls11)
		wantRefused(t, c, err, "protocol version")
		if got := mustDial(t, ts.addr, tls12).ConnectionState().Version; got != tls.VersionTLS12 {
			t.Errorf("version %x, want TLS 1.2", got)
		}
	})
	t.Run("TLS1.3", func(t *testing.T) {
		s := newServer(t, ServerOptions{Certificates: []CertFile{a}, MinVersion: tls.VersionTLS13})
		ts := serveTLS(t, s.TLSConfig(), echo)
		c, err := dial(t, ts.addr, tls12)
		wantRefused(t, c, err, "protocol version")
		if got := mustDial(t, ts.addr, clientCfg(ca.Pool(), "mail.example.com")).ConnectionState().Version; got != tls.VersionTLS13 {
			t.Errorf("version %x, want TLS 1.3", got)
		}
	})
	t.Run("TLS1.2 refuses non-AEAD suites", func(t *testing.T) {
		s := newServer(t, ServerOptions{Certificates: []CertFile{a}})
		ts := serveTLS(t, s.TLSConfig(), echo)
		cbc := tls12.Clone()
		cbc.CipherSuites = []uint16{tls.TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA, tls.TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA}
		c, err := dial(t, ts.addr, cbc)
		wantRefused(t, c, err, "handshake failure")
	})
}

func TestNewServerErrors(t *testing.T) {
	_, a, b := twoCerts(t)
	dir := t.TempDir()
	garbage := dir + "/garbage.pem"
	if err := os.WriteFile(garbage, []byte("not PEM\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		opts ServerOptions
		want string
	}{
		{"no certificates", ServerOptions{}, "no certificates"},
		{"TLS 1.1", ServerOptions{Certificates: []CertFile{a}, MinVersion: tls.VersionTLS11}, "MinVersion"},
		{"half a pair", ServerOptions{Certificates: []CertFile{{Cert: a.Cert}}}, "Key"},
		{"missing cert", ServerOptions{Certificates: []CertFile{a, {Cert: dir + "/nope.pem", Key: a.Key}}}, dir + "/nope.pem"},
		{"missing key", ServerOptions{Certificates: []CertFile{{Cert: a.Cert, Key: dir + "/nope-key.pem"}}}, dir + "/nope-key.pem"},
		{"garbage cert", ServerOptions{Certificates: []CertFile{{Cert: garbage, Key: a.Key}}}, garbage},
		{"garbage key", ServerOptions{Certificates: []CertFile{{Cert: a.Cert, Key: garbage}}}, garbage},
		{"mismatched key", ServerOptions{Certificates: []CertFile{{Cert: a.Cert, Key: b.Key}}}, b.Key},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := NewServer(tc.opts)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want an error mentioning %q", err, tc.want)
			}
			if !strings.HasPrefix(err.Error(), "tlsterm: ") {
				t.Errorf("error %q lacks the package prefix", err)
			}
		})
	}
}

func TestReload(t *testing.T) {
	ca := newCA(t)
	dir := t.TempDir()
	cf := writeFiles(t, ca, dir, "mail", "mail.example.com")
	first := serialOf(t, cf.Cert)
	s := newServer(t, ServerOptions{Certificates: []CertFile{cf}})
	ts := serveTLS(t, s.TLSConfig(), echo)
	cfg := clientCfg(ca.Pool(), "mail.example.com")

	old := mustDial(t, ts.addr, cfg)
	writeFiles(t, ca, dir, "mail", "mail.example.com")
	second := serialOf(t, cf.Cert)
	if err := s.Reload(); err != nil {
		t.Fatal(err)
	}
	if got := servedSerial(mustDial(t, ts.addr, cfg)); got.Cmp(second) != 0 {
		t.Errorf("after reload: served %x, want the new %x", got, second)
	}
	roundTrip(t, old) // the established session is untouched
	if got := servedSerial(old); got.Cmp(first) != 0 {
		t.Errorf("old session: %x, want %x", got, first)
	}

	t.Run("broken file keeps the old set", func(t *testing.T) {
		for _, path := range []string{cf.Key, cf.Cert} {
			good, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(path, []byte("-----BEGIN PRIVATE KEY-----\nbroken\n"), 0o600); err != nil {
				t.Fatal(err)
			}
			err = s.Reload()
			if err == nil || !strings.Contains(err.Error(), path) {
				t.Errorf("broken %s: got %v, want an error naming it", path, err)
			}
			if got := servedSerial(mustDial(t, ts.addr, cfg)); got.Cmp(second) != 0 {
				t.Errorf("broken %s: served %x, want the kept %x", path, got, second)
			}
			if err := os.WriteFile(path, good, 0o600); err != nil {
				t.Fatal(err)
			}
		}
		if err := os.Remove(cf.Key); err != nil {
			t.Fatal(err)
		}
		if err := s.Reload(); err == nil || !strings.Contains(err.Error(), cf.Key) {
			t.Errorf("missing key: got %v, want an error naming %s", err, cf.Key)
		}
		roundTrip(t, old)
	})
}

// TestResumption checks that TLSConfig is one config whose tickets resume.
func TestResumption(t *testing.T) {
	ca, a, _ := twoCerts(t)
	s := newServer(t, ServerOptions{Certificates: []CertFile{a}})
	if first, again := s.TLSConfig(), s.TLSConfig(); first != again {
		t.Fatal("TLSConfig returns a new config each call: tickets would not resume across listeners")
	}
	ts1 := serveTLS(t, s.TLSConfig(), echo)
	ts2 := serveTLS(t, s.TLSConfig(), echo) // a second listener (993 and 143, say)
	for _, v := range []uint16{tls.VersionTLS12, tls.VersionTLS13} {
		cfg := clientCfg(ca.Pool(), "mail.example.com", "imap")
		cfg.MaxVersion = v
		cfg.ClientSessionCache = tls.NewLRUClientSessionCache(4)
		mustDial(t, ts1.addr, cfg) // the round trip reads the TLS 1.3 ticket
		ts1.result(t)
		c := mustDial(t, ts2.addr, cfg)
		if !c.ConnectionState().DidResume {
			t.Errorf("%s: second handshake did not resume", versionName(v))
		}
		if r := ts2.result(t); !Describe(r.state).Resumed {
			t.Errorf("%s: Describe.Resumed false on a resumed session", versionName(v))
		}
	}
}

func TestWatch(t *testing.T) {
	ca := newCA(t)
	dir := t.TempDir()
	cf := writeFiles(t, ca, dir, "mail", "mail.example.com")
	core, logs := observer.New(zapcore.InfoLevel)
	s := newServer(t, ServerOptions{Certificates: []CertFile{cf}, Logger: zap.New(core)})
	ts := serveTLS(t, s.TLSConfig(), echo)
	cfg := clientCfg(ca.Pool(), "mail.example.com")

	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan struct{})
	go func() {
		defer close(done)
		s.Watch(ctx, 5*time.Millisecond)
	}()
	t.Cleanup(func() { cancel(); <-done })

	// A rewrite can land in the same coarse mtime tick with the same size;
	// real rotations are minutes apart, so move the clock forward instead.
	bumps := 0
	bump := func(paths ...string) {
		t.Helper()
		bumps++
		when := time.Now().Add(time.Duration(bumps) * time.Minute)
		for _, p := range paths {
			if err := os.Chtimes(p, when, when); err != nil {
				t.Fatal(err)
			}
		}
	}
	eventually := func(what string, cond func() bool) {
		t.Helper()
		for deadline := time.Now().Add(testenv.IOTimeout()); !cond(); time.Sleep(10 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("Watch: never saw %s", what)
			}
		}
	}

	writeFiles(t, ca, dir, "mail", "mail.example.com")
	bump(cf.Cert, cf.Key)
	want := serialOf(t, cf.Cert)
	eventually("the new certificate", func() bool {
		c, err := dial(t, ts.addr, cfg)
		return err == nil && servedSerial(c).Cmp(want) == 0
	})

	if err := os.WriteFile(cf.Cert, []byte("broken"), 0o644); err != nil {
		t.Fatal(err)
	}
	bump(cf.Cert)
	eventually("the reload error logged", func() bool {
		for _, e := range logs.FilterMessage("tls certificate reload failed, keeping the current set").All() {
			if err, ok := e.ContextMap()["error"].(string); ok && strings.Contains(err, cf.Cert) {
				return true
			}
		}
		return false
	})
	if got := servedSerial(mustDial(t, ts.addr, cfg)); got.Cmp(want) != 0 {
		t.Errorf("after a broken rewrite: served %x, want the kept %x", got, want)
	}

	cancel()
	select {
	case <-done:
	case <-time.After(testenv.IOTimeout()):
		t.Fatal("Watch did not return after cancel")
	}
}
