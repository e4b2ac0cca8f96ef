package ratelimit

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"testing"
	"time"

	"go.uber.org/zap/zaptest"

	"github.com/imapwarden/imapwarden/proxy"
)

// inFlight starts a login of user from ip and leaves it in flight; it
// returns its handle, nil when Login refused it.
func inFlight(t *testing.T, l *Limiter, ip, user string) *Conn {
	t.Helper()
	s, release := connect(t, l, ip)
	t.Cleanup(release)
	s.User = user
	if r := l.Login(s, user); r.Exceeded {
		wantExceeded(t, r, LimitLoginFailuresPerUserIP, keyUserIP, codeAuthFailed)
		return nil
	}
	return l.handle(s)
}

// TestLoginsInFlightGivenBack: a login in flight holds its place among a
// record's logins until its result, and every way it ends gives it back:
// LoginEnd (no result: the authenticator could not answer), a success,
// the connection's Release; a failure turns it into the failure
// (ARCHITECTURE.md §12). A place kept would refuse the user's next
// logins from that address as a lockout does.
func TestLoginsInFlightGivenBack(t *testing.T) {
	forEachStore(t, func(t *testing.T, newTest newFunc) {
		l, _ := newTest(t, func(o *Options) { o.LoginFailuresPerUserIP = 3; o.LockoutBase = time.Hour; o.LockoutMax = time.Hour })
		ip := "192.0.2.7"
		a, b, c := inFlight(t, l, ip, "alice"), inFlight(t, l, ip, "alice"), inFlight(t, l, ip, "alice")
		if a == nil || b == nil || c == nil {
			t.Fatal("3 logins in flight under a limit of 3 refused")
		}
		if inFlight(t, l, ip, "ALICE") != nil {
			t.Fatal("a fourth login in flight passed a limit of 3")
		}
		// Another user, another address: records of their own.
		if inFlight(t, l, ip, "bob") == nil || inFlight(t, l, "192.0.2.8", "alice") == nil {
			t.Fatal("a login of another user or from another address refused")
		}
		a.LoginEnd()
		a.LoginEnd() // once only
		d := inFlight(t, l, ip, "alice")
		if d == nil || inFlight(t, l, ip, "alice") != nil {
			t.Fatal("LoginEnd did not give exactly one place back")
		}
		b.LoginResult("alice", true)
		b.LoginEnd() // after a result: nothing
		e := inFlight(t, l, ip, "alice")
		if e == nil || inFlight(t, l, ip, "alice") != nil {
			t.Fatal("a success did not give exactly one place back")
		}
		// c fails: 1 failure, d and e in flight: 3 - 1 = 2 places, taken.
		c.LoginResult("alice", false)
		if inFlight(t, l, ip, "alice") != nil {
			t.Fatal("a failure gave its place back as well as counting")
		}
		d.Release()
		if inFlight(t, l, ip, "alice") == nil {
			t.Fatal("Release did not give the place of its login in flight back")
		}
	})
}

// TestAfterLockoutOneLoginAtATime: once a record reached its limit, a
// lockout that ended lets one login through at a time, each failure
// locking again (longer), as before logins in flight were counted.
func TestAfterLockoutOneLoginAtATime(t *testing.T) {
	forEachStore(t, func(t *testing.T, newTest newFunc) {
		l, clk := newTest(t, func(o *Options) { o.LoginFailuresPerUserIP = 2; o.LockoutBase = time.Second; o.LockoutMax = time.Hour })
		ip := "192.0.2.9"
		for range 2 {
			if r, _ := fail(t, l, ip, "alice"); r.Exceeded {
				t.Fatal("locked out before the limit")
			}
		}
		if inFlight(t, l, ip, "alice") != nil {
			t.Fatal("no lockout after 2 failures")
		}
		clk.Advance(2 * time.Second)
		a := inFlight(t, l, ip, "alice")
		if a == nil || inFlight(t, l, ip, "alice") != nil {
			t.Fatal("after the lockout, want exactly one login at a time")
		}
		a.LoginResult("alice", false)
		clk.Advance(time.Second + time.Millisecond)
		if inFlight(t, l, ip, "alice") != nil {
			t.Fatal("the third failure did not lock for longer (2s)")
		}
	})
}

// TestRedisReservationOfDeadProxyLapses: a proxy that dies with logins in
// flight leaves their reservations in Redis; the fleet counts them
// (another instance is refused) until RedisReservationTTL, and no longer.
func TestRedisReservationOfDeadProxyLapses(t *testing.T) {
	srv := startRedis(t)
	rc := srv.client(t)
	mk := func() (*Limiter, *fakeClock) {
		return newTest(t, func(o *Options) {
			o.Redis, o.RedisPrefix, o.RedisTimeout = rc, "lapse:{rl}:", testRedisTimeout
			o.LoginFailuresPerUserIP, o.RedisReservationTTL = 2, time.Minute
		})
	}
	dead, _ := mk()
	live, clk := mk()
	ip := "192.0.2.10"
	if a, b := inFlight(t, dead, ip, "alice"), inFlight(t, dead, ip, "alice"); a == nil || b == nil {
		t.Fatal("2 logins in flight under a limit of 2 refused")
	}
	if inFlight(t, live, ip, "alice") != nil {
		t.Fatal("another instance did not count the fleet's logins in flight")
	}
	clk.Advance(time.Minute + time.Second)
	if inFlight(t, live, ip, "alice") == nil {
		t.Fatal("the dead instance's reservations outlived redis_reservation_ttl")
	}
}

// failingAuth answers every login as a directory that cannot answer, or,
// for the user "hang", waits for the login's end.
type failingAuth struct{ hung chan struct{} }

func (f *failingAuth) Authenticate(ctx context.Context, _ *proxy.SessionInfo, c *proxy.Credentials) (*proxy.Identity, error) {
	if c.User == "hang" {
		f.hung <- struct{}{}
		<-ctx.Done()
		return nil, ctx.Err()
	}
	return nil, errors.New("directory down")
}

// TestLoginsWithoutResultGiveTheirPlaceBack, through the proxy: logins
// the authenticator cannot answer (NO [UNAVAILABLE], no result recorded)
// and a login its session's end cut short give their place back; kept,
// each would count until the limit refuses the user as a lockout does.
func TestLoginsWithoutResultGiveTheirPlaceBack(t *testing.T) {
	l, err := New(Options{LoginFailuresPerUserIP: 1, LoginFailureDelay: time.Millisecond, Logger: zaptest.NewLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	auth := &failingAuth{hung: make(chan struct{}, 1)}
	srv, _ := startServer(t, l, &proxy.Backend{Name: "none", Addr: "127.0.0.1:1"}, auth)
	addr := srv.Addrs()[0].String()
	for i := range 3 {
		c := dial(t, addr, "127.0.0.1")
		c.want(fmt.Sprintf("u%d LOGIN alice pw", i), fmt.Sprintf("u%d NO [UNAVAILABLE]", i))
	}
	// A login in flight when its session ends.
	h := dial(t, addr, "127.0.0.1")
	h.sendRaw("h1 LOGIN hang pw\r\n")
	<-auth.hung
	c := dial(t, addr, "127.0.0.1")
	c.want("h2 LOGIN hang pw", "h2 NO [AUTHENTICATIONFAILED]") // its one place is taken
	// The administrator ends it (the login's context is cancelled,
	// ARCHITECTURE.md §15).
	for _, ss := range srv.Sessions() {
		if ss.User == "hang" {
			srv.EndSession(ss.ID)
		}
	}
	key := l.pendKeys("hang", netip.MustParseAddr("127.0.0.1"))[2]
	waitFor(t, "the ended login's place given back", func() bool { return l.local.count(key) == 0 })
}
