package proxy

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapserver"
	"github.com/emersion/go-imap/v2/imapserver/imapmemserver"
	"go.uber.org/zap/zaptest"

	"github.com/imapwarden/imapwarden/internal/testenv"
	"github.com/imapwarden/imapwarden/tlsterm"
)

// testCert is one self-signed certificate for all tests of the package.
var testCert = sync.OnceValue(func() tls.Certificate {
	certPEM, keyPEM, err := tlsterm.SelfSigned([]string{"localhost", "127.0.0.1"}, time.Hour)
	if err != nil {
		panic(err)
	}
	c, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		panic(err)
	}
	return c
})

func serverTLS() *tls.Config {
	return &tls.Config{
		Certificates: []tls.Certificate{testCert()},
		MinVersion:   tls.VersionTLS12,
		NextProtos:   []string{"imap"},
	}
}

// memBackend is an in-memory IMAP server (go-imap's imapmemserver) with
// users alice and bob, alice's INBOX holding two messages.
type memBackend struct {
	srv  *imapserver.Server
	mem  *imapmemserver.Server
	addr string
	ln   net.Listener
}

type literalReader struct{ *bytes.Reader }

func (l literalReader) Size() int64 { return int64(l.Len()) }

func testMessage(i int) string {
	return fmt.Sprintf("From: bob@example.com\r\nTo: alice@example.com\r\nSubject: test %d\r\nMessage-ID: <%d@example.com>\r\n\r\nHello number %d.\r\n", i, i, i)
}

func startMemBackend(t testing.TB) *memBackend {
	t.Helper()
	mem := imapmemserver.New()
	for _, u := range []struct{ name, pw string }{{"alice", "alice-pw"}, {"bob", "bob-pw"}} {
		user := imapmemserver.NewUser(u.name, u.pw)
		if err := user.Create("INBOX", nil); err != nil {
			t.Fatal(err)
		}
		for i := 1; i <= 2; i++ {
			msg := testMessage(i)
			if _, err := user.Append("INBOX", literalReader{bytes.NewReader([]byte(msg))}, &imap.AppendOptions{}); err != nil {
				t.Fatal(err)
			}
		}
		mem.AddUser(user)
	}
	srv := imapserver.New(&imapserver.Options{
		NewSession: func(*imapserver.Conn) (imapserver.Session, *imapserver.GreetingData, error) {
			return mem.NewSession(), nil, nil
		},
		Caps: imap.CapSet{
			imap.CapIMAP4rev1: {}, imap.CapLiteralPlus: {}, imap.CapMove: {}, imap.CapUIDPlus: {},
			imap.CapNamespace: {}, imap.CapChildren: {}, imap.CapESearch: {},
		},
		InsecureAuth: true,
	})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(ln)
	mb := &memBackend{srv: srv, mem: mem, addr: ln.Addr().String(), ln: ln}
	t.Cleanup(func() { srv.Close() })
	return mb
}

// recAuditor records events for assertions.
type recAuditor struct {
	mu       sync.Mutex
	security []string
	auths    []AuthEvent
	commands []CommandEvent
	closes   []CloseEvent
	limits   []LimitResult
	// commandErr is what Command returns: a trail that cannot hold records.
	commandErr error
	// deliveries: content pushed outside commands.
	deliveries []DeliveryEvent
}

func (a *recAuditor) SessionOpen(*SessionInfo) {}
func (a *recAuditor) TLSStarted(*SessionInfo)  {}
func (a *recAuditor) Auth(_ *SessionInfo, e AuthEvent) {
	a.mu.Lock()
	a.auths = append(a.auths, e)
	a.mu.Unlock()
}
func (a *recAuditor) Command(_ *SessionInfo, e CommandEvent) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.commands = append(a.commands, e.Clone())
	return a.commandErr
}
func (a *recAuditor) Security(_ *SessionInfo, kind, _ string) {
	a.mu.Lock()
	a.security = append(a.security, kind)
	a.mu.Unlock()
}
func (a *recAuditor) SessionClose(_ *SessionInfo, e CloseEvent) {
	a.mu.Lock()
	a.closes = append(a.closes, e)
	a.mu.Unlock()
}

func (a *recAuditor) Delivered(_ *SessionInfo, e DeliveryEvent) {
	a.mu.Lock()
	a.deliveries = append(a.deliveries, e)
	a.mu.Unlock()
}

func (a *recAuditor) Limit(_ *SessionInfo, r LimitResult) {
	a.mu.Lock()
	a.limits = append(a.limits, r)
	a.mu.Unlock()
}

// lastAuth returns the last auth event.
func (a *recAuditor) lastAuth(t testing.TB) AuthEvent {
	t.Helper()
	a.mu.Lock()
	defer a.mu.Unlock()
	if len(a.auths) == 0 {
		t.Fatal("no auth event")
	}
	return a.auths[len(a.auths)-1]
}

// waitCloses waits until n sessions were closed.
func (a *recAuditor) waitCloses(t *testing.T, n int) {
	t.Helper()
	waitFor(t, func() bool {
		a.mu.Lock()
		defer a.mu.Unlock()
		return len(a.closes) == n
	})
}

func (a *recAuditor) hasSecurity(kind string) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, k := range a.security {
		if k == kind {
			return true
		}
	}
	return false
}

// funcDecider adapts a function.
type funcDecider func(in *DecisionInput) Decision

func (f funcDecider) Decide(_ context.Context, in *DecisionInput) Decision { return f(in) }

type harness struct {
	t        testing.TB
	srv      *Server
	backend  *memBackend
	audit    *recAuditor
	imaps    string
	starttls string
}

type harnessOption func(*Options)

func newHarness(t testing.TB, opts ...harnessOption) *harness {
	t.Helper()
	base := runtime.NumGoroutine()
	mb := startMemBackend(t)
	h := &harness{t: t, backend: mb, audit: &recAuditor{}}
	o := Options{
		Listeners: []ListenerOptions{
			{Name: "imaps", Addr: "127.0.0.1:0", Mode: ImplicitTLS, TLS: serverTLS()},
			{Name: "imap", Addr: "127.0.0.1:0", Mode: StartTLS, TLS: serverTLS()},
		},
		Router:  &StaticRouter{Default: &Backend{Name: "mem", Addr: mb.addr, Security: BackendPlain, Login: LoginCommand}},
		Auditor: h.audit,
		Logger:  zaptest.NewLogger(t),
		// Pumps park after 1 ms of silence, not 500 ms: every relay
		// test crosses parking and resuming (parker_linux.go) many times.
		Limits: Limits{ParkAfter: time.Millisecond},
	}
	for _, f := range opts {
		f(&o)
	}
	srv, err := NewServer(o)
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	h.srv = srv
	addrs := srv.Addrs()
	h.imaps, h.starttls = addrs[0].String(), addrs[1].String()
	t.Cleanup(func() {
		srv.Close()
		srv.Wait()
		mb.srv.Close()
		checkGoroutines(t, base)
	})
	return h
}

// checkGoroutines fails the test if goroutines of the proxy or of the
// test backend are still running shortly after everything was closed.
// Goroutines of the runtime and the test framework (the fuzzer starts
// some) do not count.
func checkGoroutines(t testing.TB, _ int) {
	t.Helper()
	deadline := time.Now().Add(testenv.IOTimeout())
	for {
		leaked := ourGoroutines()
		if len(leaked) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Errorf("goroutines leaked:\n%s", strings.Join(leaked, "\n\n"))
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func ourGoroutines() []string {
	buf := make([]byte, 1<<20)
	buf = buf[:runtime.Stack(buf, true)]
	var out []string
	for _, g := range strings.Split(string(buf), "\n\n") {
		if strings.Contains(g, "checkGoroutines") {
			continue
		}
		if strings.Contains(g, "imapwarden/proxy.(*") || strings.Contains(g, "go-imap/v2/imapserver") {
			out = append(out, g)
		}
	}
	return out
}

// tconn is a test client reading like a transcript.
type tconn struct {
	t  testing.TB
	c  net.Conn
	br *bufio.Reader
}

func dialPlain(t testing.TB, addr string) *tconn {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	tc := &tconn{t: t, c: c, br: bufio.NewReader(c)}
	t.Cleanup(func() { c.Close() })
	return tc
}

func clientTLS(alpn ...string) *tls.Config {
	return &tls.Config{InsecureSkipVerify: true, ServerName: "localhost", NextProtos: alpn}
}

func dialTLS(t testing.TB, addr string) *tconn {
	t.Helper()
	c, err := tls.Dial("tcp", addr, clientTLS("imap"))
	if err != nil {
		t.Fatal(err)
	}
	tc := &tconn{t: t, c: c, br: bufio.NewReader(c)}
	t.Cleanup(func() { c.Close() })
	return tc
}

func (c *tconn) send(s string) {
	c.t.Helper()
	c.sendRaw(s + "\r\n")
}

func (c *tconn) sendRaw(s string) {
	c.t.Helper()
	c.c.SetWriteDeadline(time.Now().Add(testenv.IOTimeout()))
	if _, err := c.c.Write([]byte(s)); err != nil {
		c.t.Fatalf("write %q: %v", s, err)
	}
}

func (c *tconn) line() string {
	c.t.Helper()
	c.c.SetReadDeadline(time.Now().Add(testenv.IOTimeout()))
	l, err := c.br.ReadString('\n')
	if err != nil {
		c.t.Fatalf("read: %v (got %q)", err, l)
	}
	return strings.TrimRight(l, "\r\n")
}

// expect reads one line and checks its prefix.
func (c *tconn) expect(prefix string) string {
	c.t.Helper()
	l := c.line()
	if !strings.HasPrefix(l, prefix) {
		c.t.Fatalf("got %q, want prefix %q", l, prefix)
	}
	return l
}

// tagged reads until the tagged response of tag and returns the untagged
// lines before it and the tagged line.
func (c *tconn) tagged(tag string) ([]string, string) {
	c.t.Helper()
	var un []string
	for {
		l := c.line()
		if strings.HasPrefix(l, tag+" ") {
			return un, l
		}
		un = append(un, l)
	}
}

// expectTagged reads to the tagged response of tag and checks its prefix.
func (c *tconn) expectTagged(tag, want string) []string {
	c.t.Helper()
	un, tl := c.tagged(tag)
	if !strings.HasPrefix(tl, want) {
		c.t.Fatalf("got %q, want prefix %q (untagged %q)", tl, want, un)
	}
	return un
}

// transact sends a command and checks the tagged status prefix, e.g.
// "a1 OK" or "a1 NO [PRIVACYREQUIRED]".
func (c *tconn) transact(cmd, want string) []string {
	c.t.Helper()
	c.send(cmd)
	tag := strings.SplitN(cmd, " ", 2)[0]
	un, tl := c.tagged(tag)
	if !strings.HasPrefix(tl, want) {
		c.t.Fatalf("%s: got %q, want prefix %q (untagged %q)", cmd, tl, want, un)
	}
	return un
}

// expectClosed checks the server closes the connection, after optional
// lines with the given prefixes.
func (c *tconn) expectClosed(prefixes ...string) {
	c.t.Helper()
	for _, p := range prefixes {
		c.expect(p)
	}
	c.c.SetReadDeadline(time.Now().Add(testenv.IOTimeout()))
	rest, err := c.br.ReadString('\n')
	if err == nil {
		c.t.Fatalf("connection still open, got %q", rest)
	}
	if ne, ok := err.(net.Error); ok && ne.Timeout() {
		c.t.Fatalf("connection not closed: read timed out")
	}
}

// readToClose reads what the server sends until it closes the connection.
func (c *tconn) readToClose() []byte {
	c.t.Helper()
	c.c.SetReadDeadline(time.Now().Add(testenv.IOTimeout()))
	rest, err := io.ReadAll(c.br)
	if ne, ok := err.(net.Error); ok && ne.Timeout() {
		c.t.Fatal("connection not closed: read timed out")
	}
	return rest
}

func (c *tconn) starttls() {
	c.t.Helper()
	c.transact("st STARTTLS", "st OK")
	tc := tls.Client(c.c, clientTLS("imap"))
	if err := tc.Handshake(); err != nil {
		c.t.Fatal(err)
	}
	c.c = tc
	c.br = bufio.NewReader(tc)
}

// login connects over implicit TLS and logs alice in.
func (h *harness) login() *tconn {
	h.t.Helper()
	c := dialTLS(h.t, h.imaps)
	c.expect("* OK")
	c.transact("l1 LOGIN alice alice-pw", "l1 OK [CAPABILITY ")
	return c
}

func contextWithTimeout(d time.Duration) (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), d)
}

func bufioReader(c net.Conn) *bufio.Reader { return bufio.NewReaderSize(c, 64<<10) }

// serveEach accepts connections on a new loopback listener and serves
// each on its own goroutine; the test's cleanup closes the listener and
// waits for every connection to be served. It returns the listener.
func serveEach(t testing.TB, serve func(net.Conn)) net.Listener {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Go(func() {
				defer c.Close()
				serve(c)
			})
		}
	})
	t.Cleanup(func() { ln.Close(); wg.Wait() })
	return ln
}

// dialGreeted dials the implicit-TLS listener at addr and reads the
// greeting; raw is the TCP connection beneath, to reset.
func dialGreeted(t testing.TB, addr string) (raw net.Conn, c *tconn) {
	t.Helper()
	raw, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	tc := tls.Client(raw, clientTLS("imap"))
	c = &tconn{t: t, c: tc, br: bufio.NewReader(tc)}
	c.expect("* OK")
	return raw, c
}
