package acme

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/imapwarden/imapwarden/internal/pebbletest"
	"github.com/imapwarden/imapwarden/internal/testenv"
	"github.com/imapwarden/imapwarden/tlsterm"
)

// wait bounds every wait for an ACME event: orders against a local Pebble
// take well under a second, the margin is for a loaded -race CI machine.
const wait = 60 * time.Second

// listener is a 127.0.0.1 socket that a test opens before Pebble starts, so
// that Pebble can be told its port, and serves later.
type listener struct {
	net.Listener
	port int
}

func listen(t *testing.T) *listener {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	return &listener{ln, ln.Addr().(*net.TCPAddr).Port}
}

// freePort returns a port nothing listens on now, for certmagic to bind
// while a challenge is pending (how HTTP-01 works without a web server).
func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// hsResult is the server side's view of one handshake.
type hsResult struct {
	state tls.ConnectionState
	err   error
}

// server accepts on ln: implicit TLS, or STARTTLS first when starttls is
// set (a greeting, one "tag STARTTLS" command, "tag OK"), then the
// handshake, then echo. Every server-side handshake outcome goes to results.
type server struct {
	addr    string
	results chan hsResult
}

func serve(t *testing.T, ln net.Listener, cfg *tls.Config, starttls bool) *server {
	t.Helper()
	s := &server{addr: ln.Addr().String(), results: make(chan hsResult, 64)}
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		conns = map[net.Conn]struct{}{}
	)
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns[c] = struct{}{}
			mu.Unlock()
			wg.Go(func() {
				defer func() {
					c.Close()
					mu.Lock()
					delete(conns, c)
					mu.Unlock()
				}()
				c.SetDeadline(time.Now().Add(wait))
				if starttls && !startTLS(c) {
					return
				}
				tc := tls.Server(c, cfg)
				err := tc.HandshakeContext(context.Background())
				select {
				case s.results <- hsResult{tc.ConnectionState(), err}:
				default:
				}
				if err == nil {
					io.Copy(tc, tc)
				}
			})
		}
	})
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		for c := range conns {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	return s
}

// startTLS plays the server side of RFC 9051 §6.2.1, reduced to what test
// clients and openssl s_client send: CAPABILITY, then STARTTLS. It reports
// whether TLS may start (no byte left buffered, CVE-2011-0411).
func startTLS(c net.Conn) bool {
	io.WriteString(c, "* OK [CAPABILITY IMAP4rev2 STARTTLS LOGINDISABLED] test\r\n")
	r := bufio.NewReader(c)
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			return false
		}
		tag, cmd, _ := strings.Cut(strings.TrimSpace(line), " ")
		switch strings.ToUpper(cmd) {
		case "CAPABILITY":
			io.WriteString(c, "* CAPABILITY IMAP4rev2 STARTTLS LOGINDISABLED\r\n"+tag+" OK done\r\n")
		case "STARTTLS":
			io.WriteString(c, tag+" OK begin TLS\r\n")
			return r.Buffered() == 0
		default:
			io.WriteString(c, tag+" BAD not here\r\n")
		}
	}
}

// dial completes a TLS handshake with addr, after STARTTLS if asked, and
// round-trips a byte so that a refusal sent after the client's Finished
// (TLS 1.3) is seen too.
func dial(t *testing.T, addr string, cfg *tls.Config, starttls bool) (*tls.Conn, error) {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, testenv.IOTimeout())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(wait))
	if starttls {
		r := bufio.NewReader(c)
		if greeting, err := r.ReadString('\n'); err != nil || !strings.Contains(greeting, "STARTTLS") {
			t.Fatalf("greeting %q, %v", greeting, err)
		}
		io.WriteString(c, "a1 STARTTLS\r\n")
		if ok, err := r.ReadString('\n'); err != nil || !strings.HasPrefix(ok, "a1 OK") {
			t.Fatalf("STARTTLS answered %q, %v", ok, err)
		}
		if r.Buffered() > 0 {
			t.Fatal("server sent bytes after its STARTTLS OK")
		}
	}
	tc := tls.Client(c, cfg)
	if err := tc.Handshake(); err != nil {
		return nil, err
	}
	if _, err := tc.Write([]byte("x")); err != nil {
		return nil, err
	}
	if _, err := io.ReadFull(tc, make([]byte, 1)); err != nil {
		return nil, err
	}
	return tc, nil
}

// dialServed is dial for a certificate just reported obtained: certmagic
// reports an order once the certificate is stored, and caches it for
// handshakes a moment later, so retry briefly.
func dialServed(t *testing.T, addr string, cfg *tls.Config) *tls.Conn {
	t.Helper()
	deadline := time.Now().Add(testenv.IOTimeout())
	for {
		c, err := dial(t, addr, cfg, false)
		if err == nil {
			return c
		}
		if time.Now().After(deadline) {
			t.Fatalf("handshake for %s: %v", cfg.ServerName, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// clientCfg trusts Pebble's issuing root, as a mail client would trust a
// public CA.
func clientCfg(p *pebbletest.Pebble, sni string) *tls.Config {
	return &tls.Config{RootCAs: p.IssuerPool, ServerName: sni, NextProtos: []string{tlsterm.ALPNProtocol}}
}

// events collects certificate events.
type events struct {
	mu  sync.Mutex
	all []tlsterm.CertEvent
	ch  chan tlsterm.CertEvent
}

func newEvents() *events { return &events{ch: make(chan tlsterm.CertEvent, 256)} }

func (e *events) add(ev tlsterm.CertEvent) {
	e.mu.Lock()
	e.all = append(e.all, ev)
	e.mu.Unlock()
	select {
	case e.ch <- ev:
	default:
	}
}

// await returns the first event, from now on, of that kind for name.
func (e *events) await(t *testing.T, kind tlsterm.CertEventKind, name string) tlsterm.CertEvent {
	t.Helper()
	timeout := time.After(wait)
	for {
		select {
		case ev := <-e.ch:
			if ev.Kind == kind && ev.Name == name {
				return ev
			}
			if ev.Kind == tlsterm.CertFailed {
				t.Logf("event: %s %s: %v", ev.Kind, ev.Name, ev.Err)
			}
		case <-timeout:
			t.Fatalf("no %s event for %s within %v", kind, name, wait)
			return tlsterm.CertEvent{}
		}
	}
}

func (e *events) count(kind tlsterm.CertEventKind) int {
	e.mu.Lock()
	defer e.mu.Unlock()
	n := 0
	for _, ev := range e.all {
		if ev.Kind == kind {
			n++
		}
	}
	return n
}

// instance is one Manager and Server against a Pebble.
type instance struct {
	m      *Manager
	srv    *tlsterm.Server
	events *events
	logs   *observer.ObservedLogs
}

// start makes a Manager (with o completed for Pebble p) and a Server; the
// test's Cleanup closes the Server. before runs between the two, while
// nothing has been ordered yet.
func start(t *testing.T, p *pebbletest.Pebble, o Options, so tlsterm.ServerOptions, before ...func(*Manager)) *instance {
	t.Helper()
	o.CA = p.DirectoryURL
	o.TrustedRootsFile = p.RootsFile
	o.ListenHost = "127.0.0.1"
	if o.StorageDir == "" {
		o.StorageDir = t.TempDir()
	}
	log, logs := testLogger(t)
	if o.Logger == nil {
		o.Logger = log.Named("acme")
	}
	m, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	in := &instance{m: m, events: newEvents(), logs: logs}
	for _, f := range before {
		f(m)
	}
	so.Managed = m
	so.OnEvent = in.events.add
	so.Logger = log.Named("tls")
	srv, err := tlsterm.NewServer(so)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	in.srv = srv
	return in
}

// testLogger records everything and prints it only if the test failed.
// Not zaptest: certmagic's goroutines may still log after the test returned
// (an order being cancelled), and testing.T panics on that.
func testLogger(t *testing.T) (*zap.Logger, *observer.ObservedLogs) {
	core, logs := observer.New(zapcore.DebugLevel)
	t.Cleanup(func() {
		if !t.Failed() {
			return
		}
		for _, e := range logs.All() {
			t.Logf("%s %s %s %v", e.Time.Format("15:04:05.000"), e.LoggerName, e.Message, e.ContextMap())
		}
	})
	return zap.New(core), logs
}

func leafOf(c *tls.Conn) *x509.Certificate { return c.ConnectionState().PeerCertificates[0] }
