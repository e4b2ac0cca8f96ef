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
	addr    string
	mu      sync.Mutex
	logins  map[string]int // by user
	accepts int
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
	go srv.Serve(countingListener{ln, ms})
	t.Cleanup(func() { srv.Close() })
	return ms
}

func (m *memServer) loginsOf(user string) int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.logins[user]
}

func (m *memServer) acceptCount() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.accepts
}

type countingListener struct {
	net.Listener
	ms *memServer
}

func (l countingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err == nil {
		l.ms.mu.Lock()
		l.ms.accepts++
		l.ms.mu.Unlock()
	}
	return c, err
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

// client is a raw-socket IMAP client that reports errors instead of
// failing the test, so that load generators can count them.
type client struct {
	c   net.Conn
	br  *bufio.Reader
	tag int
}

// clientTimeout bounds one exchange of a test client: far above any
// timeout under test, so that a hang is reported instead of stalling.
const clientTimeout = 60 * time.Second

func dial(addr string) (*client, error) {
	c, err := net.DialTimeout("tcp", addr, clientTimeout)
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
	c.c.SetReadDeadline(time.Now().Add(clientTimeout))
	l, err := c.br.ReadString('\n')
	return strings.TrimRight(l, "\r\n"), err
}

// do sends a command and returns the untagged lines and the tagged one.
func (c *client) do(cmd string) ([]string, string, error) {
	c.tag++
	tag := fmt.Sprintf("c%d", c.tag)
	c.c.SetWriteDeadline(time.Now().Add(clientTimeout))
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
	deadline := time.Now().Add(10 * time.Second)
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

// monitor applies set to a new Monitor, closed (and checked for leaks) at
// cleanup; events go to the returned channel.
func monitor(t testing.TB, set *Set) (*Monitor, <-chan Event) {
	t.Helper()
	ch := make(chan Event, 1024)
	m := NewMonitor(MonitorOptions{Logger: zaptest.NewLogger(t), OnEvent: func(e Event) {
		select {
		case ch <- e:
		default:
		}
	}})
	m.Apply(set)
	t.Cleanup(func() {
		m.Close()
		checkNoCheckers(t)
	})
	return m, ch
}

// waitEvent waits for server's change to h.
func waitEvent(t testing.TB, ch <-chan Event, server string, h Health) Event {
	t.Helper()
	timeout := time.After(2 * time.Minute)
	for {
		select {
		case e := <-ch:
			if e.Server == server && e.Health == h {
				return e
			}
		case <-timeout:
			t.Fatalf("no %s event for %s", h, server)
		}
	}
}
