package ratelimit

import (
	"errors"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"
)

// pair returns two Limiters sharing one Redis and one fake clock, as two
// instances of a fleet.
func pair(t *testing.T, srv *redisServer, set func(o *Options)) (a, b *Limiter, clk *fakeClock) {
	t.Helper()
	clk = newClock()
	mk := func() *Limiter {
		o := Options{Now: clk.Now, Redis: srv.client(t), RedisTimeout: testRedisTimeout, RedisProbeInterval: 20 * time.Millisecond}
		if set != nil {
			set(&o)
		}
		l, err := New(o)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { l.Close() })
		return l
	}
	return mk(), mk(), clk
}

func TestRedisSharedAcrossInstances(t *testing.T) {
	srv := startRedis(t)
	a, b, clk := pair(t, srv, func(o *Options) {
		o.LoginFailuresPerUserIP = 4
		o.ConnectionsPerIP = Rate{N: 10, Per: time.Minute}
		o.FetchBytesPerUser = Rate{N: 1000, Per: time.Hour}
		o.AppendBytesPerUser = Rate{N: 1000, Per: time.Hour}
	})

	// Failures spread over both instances make one lockout.
	fail(t, a, "192.0.2.1", "alice")
	fail(t, b, "192.0.2.1", "alice")
	fail(t, a, "192.0.2.1", "alice")
	fail(t, b, "192.0.2.1", "alice")
	for _, l := range []*Limiter{a, b} {
		r, _ := fail(t, l, "192.0.2.1", "alice")
		wantExceeded(t, r, "login_failures_per_user_ip", "user_ip", "AUTHENTICATIONFAILED")
	}
	ls := mustLockouts(t, b)
	if len(ls) != 1 || ls[0].Store != "redis" || ls[0].User != "alice" || ls[0].IP != "192.0.2.1" || ls[0].Kind != "user_ip" || ls[0].Failures != 4 {
		t.Fatalf("lockouts %+v", ls)
	}
	if !ls[0].Until.Equal(clk.Now().Add(time.Second)) {
		t.Errorf("until %v, want now+1s", ls[0].Until)
	}
	// An unlock on one instance holds for the other.
	if n, err := a.Unlock(t.Context(), "ALICE", ""); err != nil || n != 2 { // user, user_ip
		t.Fatalf("unlock: %d, %v", n, err)
	}
	if r, _ := fail(t, b, "192.0.2.1", "alice"); r.Exceeded {
		t.Fatal("still locked after unlock")
	}

	// Connection rate: ten in all.
	for i := 0; i < 5; i++ {
		connect(t, a, "198.51.100.7")
		connect(t, b, "198.51.100.7")
	}
	r, _ := b.connectInfo(info("198.51.100.7"))
	wantExceeded(t, r, "connections_per_ip", "ip", "LIMIT")

	// Fetch cap: content fetched through a counts on b, after b's first
	// FETCH of its own learns the shared level.
	sa, _ := login(t, a, "192.0.2.1", "bob")
	sb, _ := login(t, b, "192.0.2.2", "bob")
	wantOK(t, a.Delivered(sa, 900, 1))
	a.flushWait()
	wantOK(t, b.Command(sb, fetchBody())) // b has not seen it yet
	// b's first delivery goes to Redis and brings back a's level.
	wantOK(t, b.Delivered(sb, 10, 1))
	b.flushWait()
	wantExceeded(t, b.Delivered(sb, 200, 1), "fetch_bytes_per_user", "user", "LIMIT")

	// Append budget, shared at once (each APPEND asks Redis).
	wantOK(t, a.Command(sa, appendOf(600)))
	wantExceeded(t, b.Command(sb, appendOf(600)), "append_bytes_per_user", "user", "LIMIT")
}

func TestRedisDown(t *testing.T) {
	for _, mode := range []FailureMode{FailOpen, FailClosed} {
		t.Run(string(mode), func(t *testing.T) {
			srv := startRedis(t)
			var errs atomic.Int64
			var mu sync.Mutex
			var states []bool
			a, _, clk := pair(t, srv, func(o *Options) {
				o.RedisFailureMode = mode
				o.LoginFailuresPerUserIP = 2
				o.OnStoreError = func(error) { errs.Add(1) }
				o.OnStoreState = func(up bool, err error) {
					mu.Lock()
					states = append(states, up)
					mu.Unlock()
					if up != (err == nil) {
						t.Errorf("state up=%v with error %v", up, err)
					}
				}
			})
			s, _ := login(t, a, "192.0.2.1", "bob")
			srv.Kill()

			// The first call finds Redis gone; later ones do not try.
			r := a.Login(info("192.0.2.1"), "alice")
			if a.StoreUp() || errs.Load() != 1 {
				t.Fatalf("up %v after %d errors", a.StoreUp(), errs.Load())
			}
			for i := 0; i < 5; i++ {
				a.Login(info("192.0.2.1"), "alice")
			}
			if errs.Load() != 1 {
				t.Errorf("%d errors: calls went on while down", errs.Load())
			}
			appendCmd := appendOf(10)
			if mode == FailClosed {
				wantExceeded(t, r, "store_unavailable", "store", "UNAVAILABLE")
				wantExceeded(t, a.Command(s, appendCmd), "store_unavailable", "store", "UNAVAILABLE")
			} else {
				wantOK(t, r)
				wantOK(t, a.Command(s, appendCmd))
				// Failures are counted in-process meanwhile.
				fail(t, a, "192.0.2.1", "alice")
				fail(t, a, "192.0.2.1", "alice")
				r, _ := fail(t, a, "192.0.2.1", "alice")
				wantExceeded(t, r, "login_failures_per_user_ip", "user_ip", "AUTHENTICATIONFAILED")
				if ls, err := a.Lockouts(t.Context()); len(ls) != 1 || ls[0].Store != "local" || !errors.Is(err, errStoreDown) {
					t.Errorf("lockouts while down: %+v, %v", ls, err)
				}
			}
			// Both modes: connections and open sessions go on.
			connect(t, a, "203.0.113.9")
			wantOK(t, a.Command(s, noop))
			wantOK(t, a.Command(s, fetchBody()))
			a.Delivered(s, 10, 1)

			srv.Restart()
			waitFor(t, "the store to be up again", a.StoreUp)
			mu.Lock()
			if len(states) != 2 || states[0] || !states[1] {
				t.Errorf("state changes %v, want [false true]", states)
			}
			mu.Unlock()
			// Shared again: a fresh Redis (no persistence) and new scripts.
			clk.Advance(time.Hour)
			wantOK(t, a.Login(info("192.0.2.1"), "alice"))
			wantOK(t, a.Command(s, appendCmd))
			fail(t, a, "198.51.100.1", "carol")
			fail(t, a, "198.51.100.1", "carol")
			r, _ = fail(t, a, "198.51.100.1", "carol")
			wantExceeded(t, r, "login_failures_per_user_ip", "user_ip", "AUTHENTICATIONFAILED")
			ls := mustLockouts(t, a)
			if len(ls) != 1 || ls[0].Store != "redis" {
				t.Errorf("lockouts after recovery: %+v", ls)
			}
		})
	}
}

func TestRedisUnlockByIP(t *testing.T) {
	srv := startRedis(t)
	a, b, _ := pair(t, srv, func(o *Options) { o.LoginFailuresPerUserIP = 1; o.LoginFailuresPerIP = 3 })
	fail(t, a, "2001:db8::1", "alice")
	fail(t, a, "2001:db8::1", "bob")
	fail(t, b, "2001:db8::1", "carol")
	fail(t, b, "1:2001:db8::1", "dave") // text ending like the other IP
	if got := len(mustLockouts(t, a)); got != 5 {
		t.Fatalf("%d lockouts, want 5 (4 pairs and 1 ip)", got)
	}
	n, err := b.Unlock(t.Context(), "", "2001:db8::1")
	if err != nil || n != 4 {
		t.Fatalf("unlock ip: %d, %v", n, err)
	}
	ls := mustLockouts(t, a)
	if len(ls) != 1 || ls[0].IP != "1:2001:db8::" { // its /64 (ip_bits_v6)
		t.Errorf("left %+v", ls)
	}
	if _, err := a.Unlock(t.Context(), "", ""); err == nil || !strings.Contains(err.Error(), "required") {
		t.Errorf("empty unlock: %v", err)
	}
}

func TestRedisLogger(t *testing.T) {
	core, logs := observer.New(zap.WarnLevel)
	restore := UseRedisLogger(zap.New(core))
	redisLogger{}.Printf(t.Context(), "dial %s: %v", "127.0.0.1:1", "refused")
	if e := logs.All(); len(e) != 1 || e[0].ContextMap()["message"] != "dial 127.0.0.1:1: refused" {
		t.Errorf("logged %+v", e)
	}
	// A later installation survives an earlier one's restore; after its
	// own, nothing reaches a logger whose owner may be gone (a zaptest
	// logger panics when written after its test).
	core2, logs2 := observer.New(zap.WarnLevel)
	restore2 := UseRedisLogger(zap.New(core2))
	restore()
	redisLogger{}.Printf(t.Context(), "second")
	restore2()
	redisLogger{}.Printf(t.Context(), "after")
	if n, n2 := len(logs.All()), len(logs2.All()); n != 1 || n2 != 1 {
		t.Errorf("first logger got %d, second %d; want 1 and 1", n, n2)
	}
}
