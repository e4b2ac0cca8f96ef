package ratelimit

import (
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// lockoutList renders lockouts as "kind user ip store" lines, sorted.
func lockoutList(ls []Lockout) string {
	var b []string
	for _, l := range ls {
		b = append(b, fmt.Sprintf("%s %s %s %s", l.Kind, l.User, l.IP, l.Store))
	}
	return strings.Join(b, "; ")
}

// The Redis-kill experiment: two proxies, one Redis. A user locked
// through one proxy stays locked on both when Redis dies; a lockout made
// during the outage is written back when Redis returns (here a restart
// without persistence, which lost everything), so the other proxy enforces
// it too; the admin listing shows where each lockout comes from.
func TestFleetLockoutsOutliveRedis(t *testing.T) {
	rs := startRedis(t)
	mk := func() *Limiter {
		l, err := New(Options{
			Redis:                  rs.client(t),
			RedisTimeout:           testRedisTimeout,
			RedisFailureMode:       FailOpen,
			RedisProbeInterval:     20 * time.Millisecond,
			LockoutSyncInterval:    50 * time.Millisecond,
			LoginFailuresPerUserIP: 4,
			LockoutBase:            time.Hour,
			LockoutMax:             time.Hour,
			LoginFailureDelay:      time.Millisecond,
		})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { l.Close() })
		return l
	}
	la, lb := mk(), mk()
	backend := startMemBackend(t)
	pa, _ := startProxy(t, la, backend)
	pb, _ := startProxy(t, lb, backend)
	guess := func(addr, from, user string, n int) {
		for i := range n {
			c := dial(t, addr, from)
			c.want(fmt.Sprintf("a%d LOGIN %s guess%d", i, user, i), fmt.Sprintf("a%d NO [AUTHENTICATIONFAILED]", i))
			c.c.Close()
		}
	}
	login := func(addr, from, user, want string) {
		t.Helper()
		c := dial(t, addr, from)
		c.want("b1 LOGIN "+user+" "+user+"-pw", "b1 "+want)
		c.c.Close()
	}

	// alice is locked through proxy A only; B learns it from Redis.
	guess(pa, "127.0.0.1", "alice", 4)
	waitFor(t, "proxy B to mirror alice's lockout", func() bool {
		return strings.Contains(lockoutList(lb.local.lockouts(lb.nowNs())), "user_ip alice 127.0.0.1 mirror")
	})

	rs.Kill()
	for _, p := range []string{pa, pb} {
		login(p, "127.0.0.1", "alice", "NO [AUTHENTICATIONFAILED]")
	}
	if la.StoreUp() || lb.StoreUp() {
		t.Fatal("store still up after redis-server was killed")
	}
	// Fail open still: others log in.
	login(pa, "127.0.0.2", "bob", "OK")

	// A lockout made during the outage, on B.
	guess(pb, "127.0.0.5", "bob", 4)
	login(pb, "127.0.0.5", "bob", "NO [AUTHENTICATIONFAILED]")
	ls, err := lb.Lockouts(t.Context())
	t.Logf("B's /ratelimit/lockouts with Redis down: %s (error: %v)", lockoutList(ls), err)
	if got := lockoutList(ls); got != "user_ip alice 127.0.0.1 mirror; user_ip bob 127.0.0.5 local" || err == nil {
		t.Errorf("B's lockouts with Redis down: %q, %v", got, err)
	}

	// Redis comes back empty: both write back what they hold.
	rs.Restart()
	waitFor(t, "both proxies to find Redis again", func() bool { return la.StoreUp() && lb.StoreUp() })
	waitFor(t, "the write-back", func() bool {
		ls, err := la.Lockouts(t.Context())
		return err == nil && lockoutList(ls) == "user_ip alice 127.0.0.1 redis; user_ip bob 127.0.0.5 redis"
	})
	// A never saw bob's lockout: it enforces it now, through Redis.
	login(pa, "127.0.0.5", "bob", "NO [AUTHENTICATIONFAILED]")
	login(pa, "127.0.0.1", "alice", "NO [AUTHENTICATIONFAILED]")
	ls, err = lb.Lockouts(t.Context())
	t.Logf("B's /ratelimit/lockouts after Redis returned: %s (error: %v)", lockoutList(ls), err)

	// An unlock through A reaches B's mirror at its next sync.
	if _, err := la.Unlock(t.Context(), "alice", ""); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "proxy B to drop alice's mirrored lockout", func() bool {
		return !strings.Contains(lockoutList(lb.local.lockouts(lb.nowNs())), "alice")
	})
	login(pb, "127.0.0.1", "alice", "OK")
}

// A call failing while the store comes back (the write-back of the
// outage's lockouts, under load) starts a new probe: the store must not
// stay down for good.
func TestStoreRecoversWhenWriteBackFails(t *testing.T) {
	rs := startRedis(t)
	l, err := New(Options{Redis: rs.client(t), RedisTimeout: testRedisTimeout, RedisProbeInterval: 10 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	var recovers atomic.Int32
	l.remote.onRecover = func() {
		if recovers.Add(1) == 1 {
			l.remote.failed(errors.New("injected: the write-back timed out"))
			return
		}
		l.writeBack()
	}
	l.remote.failed(errors.New("injected: redis down"))
	waitFor(t, "the store to come back after a failed write-back", func() bool {
		return l.StoreUp() && recovers.Load() >= 2
	})
}
