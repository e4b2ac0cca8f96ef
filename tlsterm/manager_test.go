package tlsterm

import (
	"crypto/tls"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/imapwarden/imapwarden/internal/testenv"
)

// fakeManager stands in for tlsterm/acme: it claims the names in certs,
// and has a pending TLS-ALPN-01 challenge for the names in challenges.
type fakeManager struct {
	certs      map[string]*tls.Certificate // "" is the default
	fail       map[string]error
	challenges map[string]*tls.Certificate

	mu      sync.Mutex
	asked   []string // GetCertificate's names, in order
	started bool
	closed  bool
}

func (f *fakeManager) GetCertificate(h *tls.ClientHelloInfo) (*tls.Certificate, error) {
	f.mu.Lock()
	f.asked = append(f.asked, h.ServerName)
	f.mu.Unlock()
	if err := f.fail[h.ServerName]; err != nil {
		return nil, err
	}
	return f.certs[h.ServerName], nil
}

func (f *fakeManager) ChallengeCertificate(h *tls.ClientHelloInfo) (*tls.Certificate, error) {
	if c := f.challenges[h.ServerName]; c != nil {
		return c, nil
	}
	return nil, errors.New("no challenge pending")
}

func (f *fakeManager) Certificates() []CertStatus {
	var out []CertStatus
	for _, c := range f.certs {
		out = append(out, StatusOf(c.Leaf, SourceACME, time.Now()))
	}
	return out
}

func (f *fakeManager) Start(func(CertEvent)) error { f.started = true; return nil }
func (f *fakeManager) Close() error                { f.closed = true; return nil }

func (f *fakeManager) askedNames() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.asked...)
}

func loadCert(t *testing.T, cf CertFile) *tls.Certificate {
	t.Helper()
	c, err := loadKeyPair(cf)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// TestManagerPrecedence: files first (exact and wildcard), then the Manager,
// then the default; StrictSNI refuses what neither claims.
func TestManagerPrecedence(t *testing.T) {
	ca, a, b := twoCerts(t) // a: mail.example.com (default), b: *.example.org, example.org
	dir := t.TempDir()
	managed := loadCert(t, writeFiles(t, ca, dir, "managed", "acme.example.net"))
	shadowed := loadCert(t, writeFiles(t, ca, dir, "shadow", "imap.example.org"))
	fm := &fakeManager{
		certs: map[string]*tls.Certificate{"acme.example.net": managed, "imap.example.org": shadowed},
		fail:  map[string]error{"broken.example.net": errors.New("order failed")},
	}
	s := newServer(t, ServerOptions{Certificates: []CertFile{a, b}, Managed: fm})
	if !fm.started {
		t.Fatal("NewServer did not start the Manager")
	}
	ts := serveTLS(t, s.TLSConfig(), echo)
	insecure := func(sni string) *tls.Config {
		cfg := clientCfg(nil, sni)
		cfg.InsecureSkipVerify = true
		return cfg
	}
	for _, tc := range []struct {
		sni  string
		want string // serial source: "a", "b", "managed"
	}{
		{"acme.example.net", "managed"},
		{"imap.example.org", "b"},    // a static wildcard covers it: the file wins
		{"mail.example.com", "a"},    // static exact
		{"unknown.example.net", "a"}, // nobody claims it: default
		{"", "a"},                    // no SNI: the first file
	} {
		c := mustDial(t, ts.addr, insecure(tc.sni))
		want := map[string]*tls.Certificate{"a": loadCert(t, a), "b": loadCert(t, b), "managed": managed}[tc.want]
		if !servedSerialEq(c, want) {
			t.Errorf("SNI %q: served %x, want %s", tc.sni, servedSerial(c), tc.want)
		}
	}
	for _, n := range fm.askedNames() {
		if n == "mail.example.com" || n == "imap.example.org" || n == "" {
			t.Errorf("the Manager was asked for %q, which a file covers", n)
		}
	}
	c, err := dial(t, ts.addr, insecure("broken.example.net"))
	wantRefused(t, c, err, "internal error")

	if err := s.Close(); err != nil || !fm.closed {
		t.Errorf("Close: %v, manager closed %v", err, fm.closed)
	}
}

func TestManagerOnly(t *testing.T) {
	ca := newCA(t)
	managed := loadCert(t, writeFiles(t, ca, t.TempDir(), "m", "acme.example.net"))
	t.Run("default from the manager", func(t *testing.T) {
		fm := &fakeManager{certs: map[string]*tls.Certificate{"acme.example.net": managed, "": managed}}
		s := newServer(t, ServerOptions{Managed: fm})
		ts := serveTLS(t, s.TLSConfig(), echo)
		mustDial(t, ts.addr, clientCfg(ca.Pool(), "acme.example.net"))
		noSNI := clientCfg(nil, "")
		noSNI.InsecureSkipVerify = true
		if c := mustDial(t, ts.addr, noSNI); !servedSerialEq(c, managed) {
			t.Error("no SNI: not the manager's default")
		}
		// Unknown name, not strict: the manager's default too.
		unknown := clientCfg(nil, "unknown.example.net")
		unknown.InsecureSkipVerify = true
		if c := mustDial(t, ts.addr, unknown); !servedSerialEq(c, managed) {
			t.Error("unknown name: not the manager's default")
		}
	})
	t.Run("strict, no default", func(t *testing.T) {
		fm := &fakeManager{certs: map[string]*tls.Certificate{"acme.example.net": managed}}
		s := newServer(t, ServerOptions{Managed: fm, StrictSNI: true})
		ts := serveTLS(t, s.TLSConfig(), echo)
		mustDial(t, ts.addr, clientCfg(ca.Pool(), "acme.example.net"))
		c, err := dial(t, ts.addr, clientCfg(ca.Pool(), "unknown.example.net"))
		wantRefused(t, c, err, "unrecognized name")
	})
}

// TestACMETLSALPN: a hello that offers only acme-tls/1 is a TLS-ALPN-01
// validation. It gets the challenge certificate only if one is pending, and
// never an established session on our side, so no IMAP.
func TestACMETLSALPN(t *testing.T) {
	ca := newCA(t)
	dir := t.TempDir()
	chal := loadCert(t, writeFiles(t, ca, dir, "chal", "mail.example.net"))
	fm := &fakeManager{challenges: map[string]*tls.Certificate{"mail.example.net": chal}}
	_, a, _ := twoCerts(t)
	s := newServer(t, ServerOptions{Certificates: []CertFile{a}, Managed: fm})
	var mu sync.Mutex
	sessions := 0
	ts := serveTLS(t, s.TLSConfig(), func(c *tls.Conn) {
		mu.Lock()
		sessions++
		mu.Unlock()
		c.Write([]byte("* OK IMAP ready\r\n"))
		echo(c)
	})
	validator := func(sni string, maxVersion uint16, protos ...string) *tls.Config {
		return &tls.Config{InsecureSkipVerify: true, ServerName: sni, MaxVersion: maxVersion, NextProtos: protos}
	}

	t.Run("validator, TLS 1.3", func(t *testing.T) {
		c, err := dial(t, ts.addr, validator("mail.example.net", 0, ALPNACME))
		if err != nil {
			t.Fatalf("the validator's handshake failed: %v", err)
		}
		cs := c.ConnectionState()
		if cs.NegotiatedProtocol != ALPNACME || !servedSerialEq(c, chal) {
			t.Errorf("negotiated %q, serial %x: want acme-tls/1 and the challenge certificate", cs.NegotiatedProtocol, servedSerial(c))
		}
		// Our side refused to complete: the client reads an alert, never a greeting.
		c.SetDeadline(time.Now().Add(testenv.IOTimeout()))
		buf := make([]byte, 64)
		if n, err := c.Read(buf); err == nil || strings.Contains(string(buf[:n]), "OK") {
			t.Errorf("read %q, %v: want the connection refused", buf[:n], err)
		}
		r := ts.result(t)
		if !errors.Is(r.err, errChallengeOnly) {
			t.Errorf("server handshake error %v, want errChallengeOnly", r.err)
		}
	})
	t.Run("validator, TLS 1.2", func(t *testing.T) {
		c, err := dial(t, ts.addr, validator("mail.example.net", tls.VersionTLS12, ALPNACME))
		wantRefused(t, c, err, "protocol version")
		ts.result(t)
	})
	for _, tc := range []struct {
		name, sni string
		protos    []string
		alert     string
	}{
		{"no pending challenge", "other.example.net", []string{ALPNACME}, "no application protocol"},
		{"no SNI", "", []string{ALPNACME}, "no application protocol"},
		{"acme-tls/1 and h2", "mail.example.net", []string{ALPNACME, "h2"}, "no application protocol"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := dial(t, ts.addr, validator(tc.sni, 0, tc.protos...))
			wantRefused(t, c, err, tc.alert)
			ts.result(t)
		})
	}
	t.Run("acme-tls/1 and imap is an IMAP client", func(t *testing.T) {
		c, err := dial(t, ts.addr, validator("mail.example.com", 0, ALPNACME, "imap"))
		if err != nil {
			t.Fatal(err)
		}
		if got := c.ConnectionState().NegotiatedProtocol; got != "imap" {
			t.Errorf("negotiated %q, want imap", got)
		}
		// The handler counts the session before it greets: reading the
		// greeting orders the count before the check below.
		c.SetDeadline(time.Now().Add(testenv.IOTimeout()))
		buf := make([]byte, 64)
		if n, err := c.Read(buf); err != nil || !strings.Contains(string(buf[:n]), "* OK") {
			t.Errorf("greeting %q, %v", buf[:n], err)
		}
		ts.result(t)
	})
	t.Run("without a manager", func(t *testing.T) {
		s := newServer(t, ServerOptions{Certificates: []CertFile{a}})
		ts := serveTLS(t, s.TLSConfig(), echo)
		c, err := dial(t, ts.addr, validator("mail.example.net", 0, ALPNACME))
		wantRefused(t, c, err, "no application protocol")
	})
	mu.Lock()
	defer mu.Unlock()
	if sessions != 1 {
		t.Errorf("%d sessions reached the IMAP handler, want 1 (the imap client)", sessions)
	}
}

func servedSerialEq(c *tls.Conn, want *tls.Certificate) bool {
	return servedSerial(c).Cmp(want.Leaf.SerialNumber) == 0
}
