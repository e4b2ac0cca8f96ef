package ratelimit

import (
	"context"
	"io"
	"net"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/imapwarden/imapwarden/proxy"
)

// cutLink is a TCP link to Redis that the test can cut and mend, as a
// network partition would: Redis keeps its data meanwhile.
type cutLink struct {
	ln     net.Listener
	target string
	mu     sync.Mutex
	cut    bool
	conns  []net.Conn
	wg     sync.WaitGroup
}

func newCutLink(t *testing.T, target string) *cutLink {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	k := &cutLink{ln: ln, target: target}
	k.wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			k.mu.Lock()
			if k.cut {
				k.mu.Unlock()
				c.Close()
				continue
			}
			k.mu.Unlock()
			u, err := net.Dial("tcp", target)
			if err != nil {
				c.Close()
				continue
			}
			k.mu.Lock()
			k.conns = append(k.conns, c, u)
			k.mu.Unlock()
			k.wg.Go(func() { io.Copy(u, c); u.Close() })
			k.wg.Go(func() { io.Copy(c, u); c.Close() })
		}
	})
	t.Cleanup(func() {
		ln.Close()
		k.set(true)
		k.wg.Wait()
	})
	return k
}

func (k *cutLink) addr() string { return k.ln.Addr().String() }

// set cuts (every connection closed, new ones refused) or mends the link.
func (k *cutLink) set(cut bool) {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.cut = cut
	if cut {
		for _, c := range k.conns {
			c.Close()
		}
		k.conns = nil
	}
}

// A Redis blip while logins are in flight (one failed call marks the store
// down: a 250 ms timeout, a failover, a partition) leaves their places in
// Redis: Result and Release skip Redis while it is down, and nothing gives
// them back when it answers again. A mail client's five connections logged
// in together during the blip then hold every place of the user_ip record
// (login_failures_per_user_ip, 5) for login_place_ttl (2 min): each later
// login of the user from that address waits preauth_idle for a place no
// login holds and is answered NO [UNAVAILABLE].
func TestAttackRedisPlacesLeftByABlipHoldLaterLogins(t *testing.T) {
	srv := startRedis(t)
	link := newCutLink(t, srv.Addr)
	c := NewRedisClient(RedisOptions{Addr: link.addr(), Timeout: testRedisTimeout})
	t.Cleanup(func() { c.Close() })
	waits := make(chan struct{}, 16)
	l, _ := newTest(t, func(o *Options) {
		o.Redis, o.RedisTimeout, o.RedisProbeInterval = c, testRedisTimeout, 20*time.Millisecond
		o.OnLoginWait = func() { waits <- struct{}{} }
	})
	const ip, user = "192.0.2.1", "alice"
	held := fillPlaces(t, l, ip, user)
	// The blip: every login in flight succeeds while Redis is unreachable.
	link.set(true)
	for _, p := range held {
		p.Result(true)
	}
	if l.StoreUp() {
		t.Fatal("store still up with the link cut")
	}
	link.set(false)
	waitFor(t, "the store to be up again", l.StoreUp)

	stale := 0
	for _, k := range l.remote.placeKeys(userID(user), netip.MustParseAddr(ip)) {
		n, err := l.remote.c.ZCard(t.Context(), k).Result()
		if err != nil {
			t.Fatal(err)
		}
		stale += int(n)
	}

	// No login of alice is in flight anywhere: the next must pass at once.
	s, release := connect(t, l, ip)
	t.Cleanup(release)
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	type outcome struct {
		r proxy.LimitResult
		p proxy.LoginPlace
	}
	done := make(chan outcome, 1)
	go func() {
		r, p := l.handle(s).Login(ctx, user)
		done <- outcome{r, p}
	}()
	select {
	case o := <-done:
		if o.p == nil {
			t.Fatalf("login refused with no login in flight: %+v", o.r)
		}
		o.p.Release()
	case <-waits:
		// It waits for a place: as long as preauth_idle in the proxy.
		cancel()
		o := <-done
		t.Fatalf("with no login in flight, a login of %s from %s waits for a place (%d members left in Redis's sets of logins in flight after the blip); at the end of its wait: %+v", user, ip, stale, o.r)
	}
}

// Guesses let through by Redis still hold their places in this process's
// eyes when Redis stops answering: login() says that, Redis down, "its own
// logins in flight decide". But a login admitted through Redis is counted
// only in Redis's sets (places.count sees the in-process store's alone),
// so once a call fails the in-process check finds every place of the
// user_ip record free: five guesses in flight from one address, five more
// let through, ten password checks before a lockout of five.
func TestAttackRedisOutageForgetsGuessesInFlight(t *testing.T) {
	srv := startRedis(t)
	link := newCutLink(t, srv.Addr)
	c := NewRedisClient(RedisOptions{Addr: link.addr(), Timeout: testRedisTimeout})
	t.Cleanup(func() { c.Close() })
	waits := make(chan struct{}, 16)
	l, _ := newTest(t, func(o *Options) {
		// The probe must not find Redis again during the test.
		o.Redis, o.RedisTimeout, o.RedisProbeInterval = c, testRedisTimeout, time.Hour
		o.OnLoginWait = func() { waits <- struct{}{} }
	})
	const ip, user = "192.0.2.1", "alice"
	held := fillPlaces(t, l, ip, user)
	s, release := connect(t, l, ip)
	t.Cleanup(release)
	link.set(true) // Redis stops answering: the next call marks it down
	passed := 0
	for i := range DefaultLoginFailuresPerUserIP {
		h := l.handle(s)
		if i > 0 {
			s2, release2 := connect(t, l, ip)
			t.Cleanup(release2)
			h = l.handle(s2)
		}
		ctx, cancel := context.WithCancel(t.Context())
		type outcome struct {
			r proxy.LimitResult
			p proxy.LoginPlace
		}
		done := make(chan outcome, 1)
		go func() {
			r, p := h.Login(ctx, user)
			done <- outcome{r, p}
		}()
		select {
		case o := <-done:
			if o.p != nil {
				passed++
				held = append(held, o.p)
			}
		case <-waits:
			cancel()
			<-done
		}
		cancel()
	}
	if l.StoreUp() {
		t.Fatal("store still up with the link cut")
	}
	for _, p := range held {
		p.Result(false)
	}
	if passed > 0 {
		t.Fatalf("with %d guesses of %s from %s in flight (login_failures_per_user_ip %d), %d more were let through to the password check once Redis stopped answering: %d checks before the lockout",
			DefaultLoginFailuresPerUserIP, user, ip, DefaultLoginFailuresPerUserIP, passed, DefaultLoginFailuresPerUserIP+passed)
	}
}

// fillPlaces logs user in from ip until every place of the user_ip record
// is held (login_failures_per_user_ip at its default), and returns them.
func fillPlaces(t *testing.T, l *Limiter, ip, user string) []proxy.LoginPlace {
	t.Helper()
	var held []proxy.LoginPlace
	for range DefaultLoginFailuresPerUserIP {
		s, release := connect(t, l, ip)
		t.Cleanup(release)
		r, p := l.handle(s).Login(t.Context(), user)
		wantOK(t, r)
		if p == nil {
			t.Fatalf("login refused a place: %+v", r)
		}
		held = append(held, p)
	}
	return held
}
