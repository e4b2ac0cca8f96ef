package ratelimit

import (
	"bufio"
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/zap/zaptest"

	"github.com/imapwarden/imapwarden/internal/dovecottest"
	"github.com/imapwarden/imapwarden/internal/testenv"
	"github.com/imapwarden/imapwarden/proxy"
)

// gateAuth is the backend authenticator (the backend checks the
// password), holding each login until the test opens the gate: it stands
// for a backend that takes its time to refuse (Dovecot's default
// auth_failure_delay is 2 s; the fixture's is 0). Every arrival is an
// event.
type gateAuth struct {
	arrived atomic.Int64
	events  chan struct{}
	open    chan struct{}
	once    sync.Once
}

func (g *gateAuth) release() { g.once.Do(func() { close(g.open) }) }

func (g *gateAuth) Authenticate(ctx context.Context, _ *proxy.SessionInfo, c *proxy.Credentials) (*proxy.Identity, error) {
	g.arrived.Add(1)
	g.events <- struct{}{}
	select {
	case <-g.open:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	return &proxy.Identity{Authenticator: "backend", User: c.User}, proxy.ErrBackendVerifies
}

// TestAttackConcurrentGuessesReachDovecot: 20 connections from one
// address each send LOGIN alice <guess> at once. The lockout
// (login_failures_per_user_ip 5) is asked before each guess is checked
// and charged only after: all 20 pass it and Dovecot checks 20 passwords.
// The gate only widens the window the proxy leaves open to what a real
// backend's failure delay makes it; it never refuses. It opens once each
// guess is at it, answered, or waiting in the Limiter for a place among
// the logins in flight (OnLoginWait): a waiting guess is answered with
// the lockout once the guesses ahead of it failed.
func TestAttackConcurrentGuessesReachDovecot(t *testing.T) {
	dovecottest.Require(t)
	dc := dovecottest.Start(t, dovecottest.Options{})
	const guesses = 20
	gate := &gateAuth{events: make(chan struct{}, 2*guesses), open: make(chan struct{})}
	l, err := New(Options{
		OnLoginWait:            func() { gate.events <- struct{}{} },
		LoginFailuresPerUserIP: 5,
		LoginFailuresPerUser:   10,
		LockoutBase:            time.Hour,
		LockoutMax:             time.Hour,
		LoginFailureDelay:      time.Millisecond,
		Logger:                 zaptest.NewLogger(t),
	})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	cert, err := testCert()
	if err != nil {
		t.Fatal(err)
	}
	srv, err := proxy.NewServer(proxy.Options{
		Listeners: []proxy.ListenerOptions{{Name: "imaps", Addr: "127.0.0.1:0", Mode: proxy.ImplicitTLS,
			TLS: &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12, NextProtos: []string{"imap"}}}},
		Router:        &proxy.StaticRouter{Default: dovecotBackend(t, dc)},
		Authenticator: gate,
		Limiter:       l,
		Auditor:       &recAuditor{},
		Logger:        zaptest.NewLogger(t),
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		gate.release()
		srv.Close()
		srv.Wait()
	})
	addr := srv.Addrs()[0].String()

	conns := make([]net.Conn, guesses)
	readers := make([]*bufio.Reader, guesses)
	for i := range conns {
		c := dial(t, addr, "127.0.0.1")
		conns[i], readers[i] = c.c, c.br
	}
	answers := make([]string, guesses)
	var wg sync.WaitGroup
	for i := range conns {
		fmt.Fprintf(conns[i], "a%d LOGIN alice guess-%d\r\n", i, i)
		wg.Go(func() {
			conns[i].SetReadDeadline(time.Now().Add(testenv.IOTimeout()))
			l, err := readers[i].ReadString('\n')
			answers[i] = fmt.Sprint(strings.TrimSpace(l), err)
			gate.events <- struct{}{}
		})
	}
	// Each connection is, before the gate opens, at the gate, answered
	// (refused by the lockout without reaching it) or waiting for a place.
	for range guesses {
		<-gate.events
	}
	gate.release()
	wg.Wait()
	for i, a := range answers {
		if !strings.HasPrefix(a, fmt.Sprintf("a%d NO [AUTHENTICATIONFAILED]", i)) {
			t.Errorf("guess %d answered %q", i, a)
		}
	}
	if n := gate.arrived.Load(); n > 5 {
		t.Errorf("%d of %d guesses sent together passed the lockout (login_failures_per_user_ip 5)", n, guesses)
	}
	// A marker: bob from another address; Dovecot's log is complete once it shows.
	c := dial(t, addr, "127.0.0.2")
	c.want("m1 LOGIN bob bob-pw", "m1 OK")
	log := dc.WaitLog(t, "user=<bob>", 10*time.Second)
	if n := mismatches(log, "alice"); n > 5 {
		t.Errorf("Dovecot checked %d wrong passwords of alice from one address, want at most 5", n)
	}
}
