package ratelimit

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"fmt"
	"io"
	"net"
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

// testCert is one self-signed certificate for the package's proxies.
var testCert = sync.OnceValues(func() (tls.Certificate, error) {
	certPEM, keyPEM, err := tlsterm.SelfSigned([]string{"localhost", "127.0.0.1"}, time.Hour)
	if err != nil {
		return tls.Certificate{}, err
	}
	return tls.X509KeyPair(certPEM, keyPEM)
})

// recAuditor records limit hits and logs the rest away.
type recAuditor struct {
	mu     sync.Mutex
	limits []proxy.LimitResult
	auths  []proxy.AuthEvent
}

func (a *recAuditor) SessionOpen(*proxy.SessionInfo)                       {}
func (a *recAuditor) TLSStarted(*proxy.SessionInfo)                        {}
func (a *recAuditor) Command(*proxy.SessionInfo, proxy.CommandEvent) error { return nil }
func (a *recAuditor) Security(*proxy.SessionInfo, string, string)          {}
func (a *recAuditor) SessionClose(*proxy.SessionInfo, proxy.CloseEvent)    {}
func (a *recAuditor) Delivered(*proxy.SessionInfo, proxy.DeliveryEvent)    {}
func (a *recAuditor) Auth(_ *proxy.SessionInfo, e proxy.AuthEvent) {
	a.mu.Lock()
	a.auths = append(a.auths, e)
	a.mu.Unlock()
}

func (a *recAuditor) Limit(_ *proxy.SessionInfo, r proxy.LimitResult) {
	a.mu.Lock()
	a.limits = append(a.limits, r)
	a.mu.Unlock()
}

// hits counts the audited hits of a limit.
func (a *recAuditor) hits(limit string) int {
	a.mu.Lock()
	defer a.mu.Unlock()
	n := 0
	for _, r := range a.limits {
		if r.Limit == limit {
			n++
		}
	}
	return n
}

// startProxy runs a proxy with one implicit-TLS listener on 127.0.0.1
// in front of backend, limited by l.
func startProxy(t testing.TB, l *Limiter, backend *proxy.Backend) (addr string, audit *recAuditor) {
	t.Helper()
	return startProxyWith(t, l, backend)
}

func startProxyWith(t testing.TB, l proxy.Limiter, backend *proxy.Backend) (addr string, audit *recAuditor) {
	t.Helper()
	cert, err := testCert()
	if err != nil {
		t.Fatal(err)
	}
	audit = &recAuditor{}
	srv, err := proxy.NewServer(proxy.Options{
		Listeners: []proxy.ListenerOptions{{Name: "imaps", Addr: "127.0.0.1:0", Mode: proxy.ImplicitTLS,
			TLS: &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12, NextProtos: []string{"imap"}}}},
		Router:  &proxy.StaticRouter{Default: backend},
		Limiter: l,
		Auditor: audit,
		Logger:  zaptest.NewLogger(t),
	})
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
	return srv.Addrs()[0].String(), audit
}

// startMemBackend runs go-imap's in-memory server with alice and bob.
func startMemBackend(t testing.TB) *proxy.Backend {
	t.Helper()
	mem := imapmemserver.New()
	for _, u := range [][2]string{{"alice", "alice-pw"}, {"bob", "bob-pw"}} {
		user := imapmemserver.NewUser(u[0], u[1])
		if err := user.Create("INBOX", nil); err != nil {
			t.Fatal(err)
		}
		msg := "From: bob@example.com\r\nSubject: hi\r\n\r\nHello.\r\n"
		if _, err := user.Append("INBOX", literal{bytes.NewReader([]byte(msg))}, &imap.AppendOptions{}); err != nil {
			t.Fatal(err)
		}
		mem.AddUser(user)
	}
	srv := imapserver.New(&imapserver.Options{
		NewSession: func(*imapserver.Conn) (imapserver.Session, *imapserver.GreetingData, error) {
			return mem.NewSession(), nil, nil
		},
		Caps:         imap.CapSet{imap.CapIMAP4rev1: {}, imap.CapLiteralPlus: {}},
		InsecureAuth: true,
	})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return &proxy.Backend{Name: "mem", Addr: ln.Addr().String(), Security: proxy.BackendPlain, Login: proxy.LoginCommand}
}

type literal struct{ *bytes.Reader }

func (l literal) Size() int64 { return int64(l.Len()) }

// client is a test IMAP client reading like a transcript.
type client struct {
	t  testing.TB
	c  net.Conn
	br *bufio.Reader
}

// dial connects over TLS from the local address from (127.0.0.1,
// 127.0.0.2, ...: Linux routes all of 127/8 on lo) and reads the greeting.
func dial(t testing.TB, addr, from string) *client {
	t.Helper()
	d := &net.Dialer{Timeout: 5 * time.Second, LocalAddr: &net.TCPAddr{IP: net.ParseIP(from)}}
	c, err := tls.DialWithDialer(d, "tcp", addr, &tls.Config{InsecureSkipVerify: true, NextProtos: []string{"imap"}})
	if err != nil {
		t.Fatal(err)
	}
	cl := &client{t: t, c: c, br: bufio.NewReader(c)}
	t.Cleanup(func() { c.Close() })
	cl.expect("* OK")
	return cl
}

func (c *client) line() string {
	c.t.Helper()
	c.c.SetReadDeadline(time.Now().Add(testenv.IOTimeout()))
	l, err := c.br.ReadString('\n')
	if err != nil {
		c.t.Fatalf("read: %v (got %q)", err, l)
	}
	return strings.TrimRight(l, "\r\n")
}

func (c *client) expect(prefix string) string {
	c.t.Helper()
	l := c.line()
	if !strings.HasPrefix(l, prefix) {
		c.t.Fatalf("got %q, want prefix %q", l, prefix)
	}
	return l
}

// do sends a command and returns the tagged response line; literals in
// untagged responses are read and their sizes added up.
func (c *client) do(cmd string) (tagged string, literalBytes int64) {
	c.t.Helper()
	tag := strings.SplitN(cmd, " ", 2)[0]
	c.c.SetWriteDeadline(time.Now().Add(testenv.IOTimeout()))
	if _, err := io.WriteString(c.c, cmd+"\r\n"); err != nil {
		c.t.Fatalf("write %q: %v", cmd, err)
	}
	for {
		l := c.line()
		if strings.HasPrefix(l, tag+" ") || strings.HasPrefix(l, "* BYE") {
			return l, literalBytes
		}
		if i := strings.LastIndexByte(l, '{'); i >= 0 && strings.HasSuffix(l, "}") {
			var n int64
			fmt.Sscanf(l[i:], "{%d}", &n)
			c.c.SetReadDeadline(time.Now().Add(testenv.IOTimeout()))
			if _, err := io.CopyN(io.Discard, c.br, n); err != nil {
				c.t.Fatal(err)
			}
			literalBytes += n
		}
	}
}

func (c *client) sendRaw(s string) {
	c.t.Helper()
	c.c.SetWriteDeadline(time.Now().Add(testenv.IOTimeout()))
	if _, err := io.WriteString(c.c, s); err != nil {
		c.t.Fatalf("write %q: %v", s, err)
	}
}

// want sends a command and checks the prefix of its tagged response.
func (c *client) want(cmd, prefix string) {
	c.t.Helper()
	if got, _ := c.do(cmd); !strings.HasPrefix(got, prefix) {
		c.t.Fatalf("%s: got %q, want prefix %q", cmd, got, prefix)
	}
}
