package ratelimit

import (
	"bufio"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap/zaptest"

	"github.com/imapwarden/imapwarden/internal/testenv"
	"github.com/imapwarden/imapwarden/proxy"
)

// preAuthServer starts a proxy with l on a STARTTLS listener (a refused
// connection reads "* BYE") and returns its address.
func preAuthServer(t *testing.T, l *Limiter, limits proxy.Limits) string {
	t.Helper()
	srv, err := proxy.NewServer(proxy.Options{
		Listeners: []proxy.ListenerOptions{{Name: "imap", Addr: "127.0.0.1:0", Mode: proxy.StartTLS, TLS: tlsConfig(t)}},
		Router:    &proxy.StaticRouter{Default: &proxy.Backend{Name: "none", Addr: "127.0.0.1:1", Security: proxy.BackendPlain, Login: proxy.LoginCommand}},
		Limiter:   l,
		Auditor:   &recAuditor{},
		Logger:    zaptest.NewLogger(t),
		Limits:    limits,
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close(); srv.Wait() })
	return srv.Addrs()[0].String()
}

// greeting dials addr from the local address from and returns the first
// line the proxy sends; the connection stays open until the test ends.
func greeting(t *testing.T, addr, from string) string {
	t.Helper()
	d := &net.Dialer{Timeout: testenv.IOTimeout(), LocalAddr: &net.TCPAddr{IP: net.ParseIP(from)}}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatalf("dial from %s: %v", from, err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetReadDeadline(time.Now().Add(testenv.IOTimeout()))
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		t.Fatalf("greeting to %s: %v", from, err)
	}
	return line
}

// TestSubnetOfNATedOfficesGreeted: under the defaults, the cap per subnet
// leaves room for the offices of one /24 behind a few NAT addresses: 200
// connections awaiting login at once, 50 from each of four addresses, are
// all greeted.
func TestSubnetOfNATedOfficesGreeted(t *testing.T) {
	l, err := New(Options{Logger: zaptest.NewLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	addr := preAuthServer(t, l, proxy.Limits{})
	for i := range 200 {
		from := fmt.Sprintf("127.0.0.%d", 2+i%4)
		if line := greeting(t, addr, from); !strings.HasPrefix(line, "* OK") {
			t.Fatalf("connection %d from %s of one /24: %q; want a greeting", i+1, from, strings.TrimSpace(line))
		}
	}
}

// TestUnauthenticatedPerSubnetGivenBack: unauthenticated_connections_per_subnet
// counts the connections awaiting login of one subnet (an IPv4 /24, an
// IPv6 /48: several hosts), refuses one more with [LIMIT] by "subnet",
// and each count is given back once, at login or at release.
func TestUnauthenticatedPerSubnetGivenBack(t *testing.T) {
	l, _ := newTest(t, func(o *Options) { o.MaxUnauthenticatedPerSubnet = 2 })
	for _, sn := range []struct{ a, b, c, other string }{
		{"198.51.100.1", "198.51.100.2", "198.51.100.3", "198.51.101.1"},
		{"2001:db8:1:1::1", "2001:db8:1:2::1", "2001:db8:1:ffff::1", "2001:db8:2::1"}, // /64s of one /48
	} {
		s1, r1 := connect(t, l, sn.a)
		_, r2 := connect(t, l, sn.b)
		r, _ := l.connectInfo(info(sn.c))
		wantExceeded(t, r, "unauthenticated_connections_per_subnet", "subnet", "LIMIT")
		_, ro := connect(t, l, sn.other) // another subnet
		// A login makes room, and its release gives nothing back twice.
		s1.User = "alice"
		r, rs := l.Session(s1)
		wantOK(t, r)
		_, r3 := connect(t, l, sn.c)
		r, _ = l.connectInfo(info(sn.c))
		wantExceeded(t, r, "unauthenticated_connections_per_subnet", "subnet", "LIMIT")
		rs()
		r1()
		r1()
		r, _ = l.connectInfo(info(sn.c))
		wantExceeded(t, r, "unauthenticated_connections_per_subnet", "subnet", "LIMIT")
		// A release makes room.
		r2()
		_, r4 := connect(t, l, sn.c)
		for _, rel := range []func(){r3, r4, ro} {
			rel()
		}
	}
	// A refused connection counted nothing: every count is back to none.
	for _, ip := range []string{"198.51.100.0", "2001:db8:1::"} {
		if n := l.local.count(l.local.h.sum(kindUnauthSubnet, "", netip.MustParseAddr(ip))); n != 0 {
			t.Errorf("%s: %d unauthenticated connections of the subnet counted after all were released", ip, n)
		}
	}
	// Off.
	off, _ := newTest(t, func(o *Options) { o.MaxUnauthenticatedPerSubnet = -1; o.MaxUnauthenticatedPerIP = -1 })
	for range 5 {
		connect(t, off, "198.51.100.1")
	}
}
