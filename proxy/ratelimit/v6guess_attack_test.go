package ratelimit

import (
	"fmt"
	"testing"
)

// One host holds a whole IPv6 /64 (ip_bits_v6, the limiter's own
// notion of one client). A user locked out by failures must stay locked
// out for the other addresses of that /64: else each address is a fresh
// user_ip (and ip) counter, and the owner of one /64 guesses a victim's
// password without end, at connections_per_subnet (6000 a minute by
// default) instead of login_failures_per_user (10) an hour.
func TestUserLockoutHoldsAcrossAnIPv6Subnet(t *testing.T) {
	forEachStore(t, func(t *testing.T, newTest newFunc) {
		l, _ := newTest(t, nil) // the defaults
		checked := 0
		for i := 1; i <= 200; i++ {
			ip := fmt.Sprintf("2001:db8:1:2::%x", i) // one /64
			if r, _ := fail(t, l, ip, "alice"); !r.Exceeded {
				checked++ // the password was checked (and was wrong)
			}
		}
		if checked > DefaultLoginFailuresPerUser+DefaultLoginFailuresPerUserIP {
			t.Errorf("%d passwords of alice checked from one IPv6 /64 (login_failures_per_user %d): every address of the /64 is a fresh counter",
				checked, DefaultLoginFailuresPerUser)
		}
	})
}
