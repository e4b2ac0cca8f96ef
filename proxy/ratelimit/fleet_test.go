package ratelimit

import (
	"fmt"
	"sync"
	"testing"
	"time"
)

// Two proxy instances share one redis-server: failed logins spread over
// both make one lockout; with Redis killed the configured failure mode
// holds; after it restarts on the same port, limits are shared again.
func TestFleet(t *testing.T) {
	for _, mode := range []FailureMode{FailOpen, FailClosed} {
		t.Run(string(mode), func(t *testing.T) {
			rs := startRedis(t)
			var mu sync.Mutex
			var downs, ups int
			mk := func() *Limiter {
				l, err := New(Options{
					Redis:                  rs.client(t),
					RedisTimeout:           testRedisTimeout,
					RedisFailureMode:       mode,
					RedisProbeInterval:     20 * time.Millisecond,
					LoginFailuresPerUserIP: 4,
					// Long lockouts: the test's own duration never ends one.
					LockoutBase:       time.Hour,
					LockoutMax:        time.Hour,
					LoginFailureDelay: time.Millisecond,
					OnStoreState: func(up bool, _ error) {
						mu.Lock()
						if up {
							ups++
						} else {
							downs++
						}
						mu.Unlock()
					},
				})
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { l.Close() })
				return l
			}
			la, lb := mk(), mk()
			backend := startMemBackend(t)
			pa, auditA := startProxy(t, la, backend)
			pb, auditB := startProxy(t, lb, backend)

			// attack guesses alice's password, alternating instances, one
			// connection per guess.
			attack := func(from string, guesses int) {
				for i := 0; i < guesses; i++ {
					addr := pa
					if i%2 == 1 {
						addr = pb
					}
					c := dial(t, addr, from)
					c.want(fmt.Sprintf("a%d LOGIN alice guess%d", i, i), fmt.Sprintf("a%d NO [AUTHENTICATIONFAILED] Authentication failed", i))
					c.c.Close()
				}
			}
			attack("127.0.0.1", 4)
			// Locked on both, even with the right password.
			for _, addr := range []string{pa, pb} {
				c := dial(t, addr, "127.0.0.1")
				c.want("b1 LOGIN alice alice-pw", "b1 NO [AUTHENTICATIONFAILED] Authentication failed")
			}
			if auditA.hits(LimitLoginFailuresPerUserIP) != 1 || auditB.hits(LimitLoginFailuresPerUserIP) != 1 {
				t.Errorf("lockout hits audited: a %d, b %d", auditA.hits(LimitLoginFailuresPerUserIP), auditB.hits(LimitLoginFailuresPerUserIP))
			}
			// The owner, from elsewhere, gets in.
			owner := dial(t, pb, "127.0.0.2")
			owner.want("c1 LOGIN alice alice-pw", "c1 OK")
			bob := dial(t, pa, "127.0.0.2")
			bob.want("d1 LOGIN bob bob-pw", "d1 OK")

			rs.Kill()
			for _, addr := range []string{pa, pb} {
				c := dial(t, addr, "127.0.0.3")
				if mode == FailClosed {
					c.want("e1 LOGIN bob bob-pw", "e1 NO [UNAVAILABLE]")
				} else {
					c.want("e1 LOGIN bob bob-pw", "e1 OK")
				}
			}
			if la.StoreUp() || lb.StoreUp() {
				t.Fatal("store still up after redis-server was killed")
			}
			// Sessions already open go on in both modes.
			owner.want("c2 SELECT INBOX", "c2 OK")
			owner.want("c3 FETCH 1 (BODY.PEEK[])", "c3 OK")
			bob.want("d2 NOOP", "d2 OK")

			rs.Restart()
			waitFor(t, "both instances to find Redis again", func() bool { return la.StoreUp() && lb.StoreUp() })
			mu.Lock()
			if downs != 2 || ups != 2 {
				t.Errorf("state callbacks: %d down, %d up; want 2 and 2", downs, ups)
			}
			mu.Unlock()
			c := dial(t, pa, "127.0.0.3")
			c.want("f1 LOGIN bob bob-pw", "f1 OK")
			// Shared again: a new attack from another address is locked
			// across both instances.
			attack("127.0.0.4", 4)
			for _, addr := range []string{pa, pb} {
				c := dial(t, addr, "127.0.0.4")
				c.want("g1 LOGIN alice alice-pw", "g1 NO [AUTHENTICATIONFAILED]")
			}
			// The lockout of before the outage too: the restarted Redis
			// lost it, the instances wrote their mirrors of it back.
			ls, err := la.Lockouts(t.Context())
			if err != nil || lockoutList(ls) != "user_ip alice 127.0.0.1 redis; user_ip alice 127.0.0.4 redis" {
				t.Errorf("lockouts after recovery: %+v, %v", ls, err)
			}
		})
	}
}
