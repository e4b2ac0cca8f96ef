package pool

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"fmt"
	"net"
	"net/netip"
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
	"github.com/imapwarden/imapwarden/proxy"
	"github.com/imapwarden/imapwarden/tlsterm"
)

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

// startProxy runs a proxy with router on a plaintext listener that takes
// logins from loopback without STARTTLS (the tests measure routing, not
// TLS). It returns the server and its address.
func startProxy(t testing.TB, router proxy.Router, opts ...func(*proxy.Options)) (*proxy.Server, string) {
	t.Helper()
	o := proxy.Options{
		Listeners: []proxy.ListenerOptions{{Name: "imap", Addr: "127.0.0.1:0", Mode: proxy.StartTLS,
			TLS:               &tls.Config{Certificates: []tls.Certificate{testCert()}},
			PlaintextAuthFrom: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}}},
		Router: router,
		Logger: zaptest.NewLogger(t),
		// Thousands of logins from one address in the load tests.
		Limits: proxy.Limits{MaxAuthFailures: 1000},
	}
	for _, f := range opts {
		f(&o)
	}
	srv, err := proxy.NewServer(o)
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		srv.Close()
		srv.Wait()
	})
	return srv, srv.Addrs()[0].String()
}

// memServer is an in-memory IMAP server (go-imap's imapmemserver) with
// the given users (password "pw-" + user), each with an empty INBOX.
type memServer struct {
	addr   string
	mu     sync.Mutex
	logins map[string]int // by user
}

func startMem(t testing.TB, users ...string) *memServer {
	t.Helper()
	mem := imapmemserver.New()
	for _, u := range users {
		user := imapmemserver.NewUser(u, "pw-"+u)
		if err := user.Create("INBOX", nil); err != nil {
			t.Fatal(err)
		}
		mem.AddUser(user)
	}
	ms := &memServer{logins: map[string]int{}}
	srv := imapserver.New(&imapserver.Options{
		NewSession: func(*imapserver.Conn) (imapserver.Session, *imapserver.GreetingData, error) {
			return &countingSession{Session: mem.NewSession(), ms: ms}, nil, nil
		},
		Caps:         imap.CapSet{imap.CapIMAP4rev1: {}, imap.CapLiteralPlus: {}},
		InsecureAuth: true,
	})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ms.addr = ln.Addr().String()
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return ms
}

func (m *memServer) loginsOf(user string) int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.logins[user]
}

type countingSession struct {
	imapserver.Session
	ms *memServer
}

func (s *countingSession) Login(user, pass string) error {
	err := s.Session.Login(user, pass)
	if err == nil {
		s.ms.mu.Lock()
		s.ms.logins[user]++
		s.ms.mu.Unlock()
	}
	return err
}

// deadAddr returns a loopback address where nothing listens.
func deadAddr(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// serveTCP runs handle, on its own goroutine, for each connection to a
// loopback listener; at cleanup the listener and every connection are
// closed. It returns the address and a count of connections.
func serveTCP(t testing.TB, handle func(net.Conn)) (string, func() int) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var conns []net.Conn
	var handlers sync.WaitGroup
	accepting := make(chan struct{})
	go func() {
		defer close(accepting)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
			handlers.Go(func() { handle(c) })
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		<-accepting // every accepted connection is listed now
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
		handlers.Wait()
	})
	return ln.Addr().String(), func() int {
		mu.Lock()
		defer mu.Unlock()
		return len(conns)
	}
}

// client is a raw-socket IMAP client that reports errors instead of
// failing the test, so that load generators can count them.
type client struct {
	c   net.Conn
	br  *bufio.Reader
	tag int
}

func dial(addr string) (*client, error) {
	c, err := net.DialTimeout("tcp", addr, testenv.IOTimeout())
	if err != nil {
		return nil, err
	}
	cl := &client{c: c, br: bufio.NewReader(c)}
	l, err := cl.line()
	if err != nil {
		c.Close()
		return nil, err
	}
	if !strings.HasPrefix(l, "* OK") {
		c.Close()
		return nil, fmt.Errorf("greeting %q", l)
	}
	return cl, nil
}

func (c *client) line() (string, error) {
	c.c.SetReadDeadline(time.Now().Add(testenv.IOTimeout()))
	l, err := c.br.ReadString('\n')
	return strings.TrimRight(l, "\r\n"), err
}

// do sends a command and returns the untagged lines and the tagged one.
func (c *client) do(cmd string) ([]string, string, error) {
	c.tag++
	tag := fmt.Sprintf("c%d", c.tag)
	c.c.SetWriteDeadline(time.Now().Add(testenv.IOTimeout()))
	if _, err := fmt.Fprintf(c.c, "%s %s\r\n", tag, cmd); err != nil {
		return nil, "", err
	}
	var un []string
	for {
		l, err := c.line()
		if err != nil {
			return un, "", err
		}
		if rest, ok := strings.CutPrefix(l, tag+" "); ok {
			return un, rest, nil
		}
		un = append(un, l)
	}
}

// ok runs cmd and wants OK.
func (c *client) ok(cmd string) error {
	un, st, err := c.do(cmd)
	if err != nil {
		return fmt.Errorf("%s: %w (untagged %q)", cmd, err, un)
	}
	if !strings.HasPrefix(st, "OK") {
		return fmt.Errorf("%s: %s (untagged %q)", cmd, st, un)
	}
	return nil
}

func (c *client) close() { c.c.Close() }

// login connects and logs user in; it returns the tagged answer's text
// (after the tag) when the login was refused.
func login(addr, user, pass string) (*client, string, error) {
	c, err := dial(addr)
	if err != nil {
		return nil, "", err
	}
	_, st, err := c.do(fmt.Sprintf("LOGIN %s %s", user, pass))
	if err != nil {
		c.close()
		return nil, "", err
	}
	if !strings.HasPrefix(st, "OK") {
		c.close()
		return nil, st, nil
	}
	return c, "", nil
}

// sessionServer returns the pool server of the proxy session whose client
// end is local (the client's own address).
func sessionServer(srv *proxy.Server, local net.Addr) string {
	for _, s := range srv.Sessions() {
		if s.Client == local.String() {
			return s.Server
		}
	}
	return ""
}

// checkNoCheckers fails the test if health checkers still run.
func checkNoCheckers(t testing.TB) {
	t.Helper()
	deadline := time.Now().Add(testenv.IOTimeout())
	for {
		buf := make([]byte, 1<<20)
		buf = buf[:runtime.Stack(buf, true)]
		if !bytes.Contains(buf, []byte("pool.(*Monitor).check")) {
			return
		}
		if time.Now().After(deadline) {
			t.Errorf("health checkers still running after Close:\n%s", buf)
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// newPool makes a pool of plain servers at addrs for tests.
func newPool(t testing.TB, name string, h HealthOptions, addrs ...string) *Pool {
	t.Helper()
	var servers []ServerOptions
	for _, a := range addrs {
		servers = append(servers, ServerOptions{Addr: a})
	}
	p, err := New(Options{Backend: &proxy.Backend{Name: name, Security: proxy.BackendPlain, Login: proxy.LoginCommand},
		Servers: servers, Health: h})
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// leakChecked holds the tests whose cleanup checks for checkers left.
var leakChecked sync.Map

// monitor applies set to a new Monitor, closed at cleanup; its events are
// kept in the returned log. Once every Monitor of the test is closed, no
// checker may be left running.
func monitor(t testing.TB, set *Set) (*Monitor, *eventLog) {
	t.Helper()
	if _, done := leakChecked.LoadOrStore(t, true); !done {
		// Registered before any Close: cleanups run last in, first out.
		t.Cleanup(func() {
			checkNoCheckers(t)
			leakChecked.Delete(t)
		})
	}
	el := &eventLog{changed: make(chan struct{}, 1)}
	m := NewMonitor(MonitorOptions{Logger: zaptest.NewLogger(t), OnEvent: el.add})
	m.Apply(set)
	t.Cleanup(m.Close)
	return m, el
}

// eventLog keeps a Monitor's events.
type eventLog struct {
	mu      sync.Mutex
	events  []Event
	changed chan struct{}
}

func (l *eventLog) add(e Event) {
	l.mu.Lock()
	l.events = append(l.events, e)
	l.mu.Unlock()
	select {
	case l.changed <- struct{}{}:
	default:
	}
}

// find returns the first event at or after index from of server's change
// to h, and the index after it.
func (l *eventLog) find(from int, server string, h Health) (Event, int, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for i := from; i < len(l.events); i++ {
		if e := l.events[i]; e.Server == server && e.Health == h {
			return e, i + 1, true
		}
	}
	return Event{}, 0, false
}

func (l *eventLog) len() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.events)
}

// waitEvent waits for server's change to h, among the events from index
// from on (0: any so far).
func waitEvent(t testing.TB, l *eventLog, from int, server string, h Health) Event {
	t.Helper()
	timeout := time.After(testenv.IOTimeout())
	for {
		if e, _, ok := l.find(from, server, h); ok {
			return e
		}
		select {
		case <-l.changed:
		case <-timeout:
			t.Fatalf("no %s event for %s", h, server)
		}
	}
}

// failoverLog is an Auditor that records each server a login could not
// use (the proxy's "backend-connect-failed"), with when its session
// began: which logins tried which server, without timing them.
type failoverLog struct {
	*proxy.LogAuditor
	mu     sync.Mutex
	failed []connectFailure
}

type connectFailure struct {
	server  string
	started time.Time // the session's start (its accept)
	at      time.Time
}

func newFailoverLog(t testing.TB) *failoverLog {
	return &failoverLog{LogAuditor: proxy.NewLogAuditor(zaptest.NewLogger(t))}
}

func (a *failoverLog) Security(s *proxy.SessionInfo, kind, detail string) {
	if kind == "backend-connect-failed" {
		// s.Server is the server that failed until the next one is picked.
		a.mu.Lock()
		a.failed = append(a.failed, connectFailure{server: s.Server, started: s.Started, at: time.Now()})
		a.mu.Unlock()
	}
	a.LogAuditor.Security(s, kind, detail)
}

// triedSince returns the failures on server of sessions that began after
// from and failed before to (a zero to is open).
func (a *failoverLog) triedSince(server string, from, to time.Time) []connectFailure {
	a.mu.Lock()
	defer a.mu.Unlock()
	var out []connectFailure
	for _, f := range a.failed {
		if f.server == server && f.started.After(from) && (to.IsZero() || f.at.Before(to)) {
			out = append(out, f)
		}
	}
	return out
}
