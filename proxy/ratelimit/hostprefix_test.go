package ratelimit

import (
	"context"
	"fmt"
	"testing"
	"time"
)

// Every "ip" key counts one host: an IPv6 /64 by default (ip_bits_v6),
// an IPv4 address (ip_bits_v4), an IPv4-mapped address as its IPv4 one.
func TestIPKeysCountAHostPrefix(t *testing.T) {
	forEachStore(t, func(t *testing.T, newTest newFunc) {
		l, _ := newTest(t, func(o *Options) {
			o.ConnectionsPerIP = Rate{N: 3, Per: time.Hour}
			o.ConnectionsPerSubnet = Off
		})
		for i := 1; i <= 3; i++ {
			connect(t, l, fmt.Sprintf("2001:db8:1:2::%x", i))
		}
		r, _ := l.connectInfo(info("2001:db8:1:2:ffff::9"))
		wantExceeded(t, r, LimitConnectionsPerIP, keyIP, codeLimit)
		connect(t, l, "2001:db8:1:3::1") // the next /64

		// IPv4: one address, the mapped form included.
		connect(t, l, "192.0.2.1")
		connect(t, l, "::ffff:192.0.2.1")
		connect(t, l, "192.0.2.1")
		r, _ = l.connectInfo(info("::ffff:192.0.2.1"))
		wantExceeded(t, r, LimitConnectionsPerIP, keyIP, codeLimit)
		connect(t, l, "192.0.2.2")
	})
}

func TestOpenConnectionsCountAHostPrefix(t *testing.T) {
	l, _ := newTest(t, func(o *Options) { o.MaxUnauthenticatedPerIP = 2 })
	connect(t, l, "2001:db8::1")
	connect(t, l, "2001:db8::2")
	r, _ := l.connectInfo(info("2001:db8::3"))
	wantExceeded(t, r, LimitUnauthenticatedPerIP, keyIP, codeLimit)
}

// ip_bits_v6: 128 counts each address on its own, as before.
func TestIPBitsV6Configurable(t *testing.T) {
	l, _ := newTest(t, func(o *Options) { o.IPBitsV6 = 128; o.MaxUnauthenticatedPerIP = 1 })
	connect(t, l, "2001:db8::1")
	connect(t, l, "2001:db8::2")
	if _, err := New(Options{IPBitsV6: 129}); err == nil {
		t.Error("ip_bits_v6 129 accepted")
	}
	if _, err := New(Options{IPBitsV4: 33}); err == nil {
		t.Error("ip_bits_v4 33 accepted")
	}
}

// A lockout of the pair holds for every address of the /64, and an unlock
// naming any of them lifts it.
func TestLockoutAndUnlockOfAHostPrefix(t *testing.T) {
	forEachStore(t, func(t *testing.T, newTest newFunc) {
		l, _ := newTest(t, func(o *Options) { o.LoginFailuresPerUserIP = 2 })
		fail(t, l, "2001:db8:1:2::1", "alice")
		fail(t, l, "2001:db8:1:2::2", "alice")
		r, _ := fail(t, l, "2001:db8:1:2::3", "alice")
		wantExceeded(t, r, LimitLoginFailuresPerUserIP, keyUserIP, codeAuthFailed)
		ls, err := l.Lockouts(context.Background())
		if err != nil || len(ls) != 1 || ls[0].IP != "2001:db8:1:2::" {
			t.Fatalf("lockouts: %+v %v", ls, err)
		}
		if n, err := l.Unlock(context.Background(), "alice", "2001:db8:1:2::abcd"); err != nil || n == 0 {
			t.Fatalf("unlock: %d %v", n, err)
		}
		if r, _ := fail(t, l, "2001:db8:1:2::4", "alice"); r.Exceeded {
			t.Errorf("still locked after the unlock: %+v", r)
		}
	})
}

// A lockout result is Own only when its key counts the client's address
// alone: an ip or user_ip lockout with ip_bits at full length (or an
// IPv4 client of a /96 translator), a user's lockout when that address
// made most of the user's failures; never a prefix that other addresses
// share (fail2ban bans on Own refusals).
func TestLockoutOwnOnlyForTheAddressAlone(t *testing.T) {
	for _, c := range []struct {
		name     string
		set      func(o *Options)
		askFails int    // failures of the asking address first
		failIP   string // then fails until locked out
		fails    int
		askIP    string // then logs in
		limit    string
		own      bool
	}{
		{"ip v4", func(o *Options) { o.LoginFailuresPerIP = 2 }, 0, "192.0.2.1", 2, "192.0.2.1", LimitLoginFailuresPerIP, true},
		{"ip v4 /24", func(o *Options) { o.LoginFailuresPerIP = 2; o.IPBitsV4 = 24 }, 0, "192.0.2.1", 2, "192.0.2.2", LimitLoginFailuresPerIP, false},
		{"ip v4 /24 same address", func(o *Options) { o.LoginFailuresPerIP = 2; o.IPBitsV4 = 24 }, 0, "192.0.2.1", 2, "192.0.2.1", LimitLoginFailuresPerIP, false},
		{"ip v6 /64", func(o *Options) { o.LoginFailuresPerIP = 2 }, 0, "2001:db8::1", 2, "2001:db8::2", LimitLoginFailuresPerIP, false},
		{"ip v6 /128", func(o *Options) { o.LoginFailuresPerIP = 2; o.IPBitsV6 = 128 }, 0, "2001:db8::1", 2, "2001:db8::1", LimitLoginFailuresPerIP, true},
		{"ip nat64", func(o *Options) { o.LoginFailuresPerIP = 2; o.IPBitsV6 = 128 }, 0, "64:ff9b::c000:201", 2, "64:ff9b::c000:201", LimitLoginFailuresPerIP, true},
		{"user_ip v4", func(o *Options) { o.LoginFailuresPerUserIP = 2 }, 0, "192.0.2.1", 2, "192.0.2.1", LimitLoginFailuresPerUserIP, true},
		{"user_ip v6 /64", func(o *Options) { o.LoginFailuresPerUserIP = 2 }, 0, "2001:db8::1", 2, "2001:db8::2", LimitLoginFailuresPerUserIP, false},
		{"user all ips", func(o *Options) { o.LoginFailuresPerUser = 2; o.UserLockoutAllIPs = true }, 0, "192.0.2.1", 2, "192.0.2.9", LimitLoginFailuresPerUser, false},
		{"user one failure of three", func(o *Options) { o.LoginFailuresPerUser = 3 }, 1, "192.0.2.1", 2, "192.0.2.9", LimitLoginFailuresPerUser, false},
		{"user its own failures", func(o *Options) { o.LoginFailuresPerUser = 2 }, 0, "192.0.2.1", 2, "192.0.2.1", LimitLoginFailuresPerUser, true},
		{"user its /64's failures", func(o *Options) { o.LoginFailuresPerUser = 2 }, 0, "2001:db8::1", 2, "2001:db8::1", LimitLoginFailuresPerUser, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			l, _ := newTest(t, c.set)
			for range c.askFails {
				fail(t, l, c.askIP, "alice")
			}
			for range c.fails {
				fail(t, l, c.failIP, "alice")
			}
			r, _ := fail(t, l, c.askIP, "alice")
			key := map[string]string{LimitLoginFailuresPerIP: keyIP, LimitLoginFailuresPerUserIP: keyUserIP, LimitLoginFailuresPerUser: keyUser}[c.limit]
			wantExceeded(t, r, c.limit, key, codeAuthFailed)
			if r.Own != c.own {
				t.Errorf("Own %v, want %v", r.Own, c.own)
			}
		})
	}
}
