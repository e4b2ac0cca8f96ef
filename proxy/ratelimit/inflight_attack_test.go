package ratelimit

import (
	"testing"
	"time"

	"github.com/imapwarden/imapwarden/proxy"
)

// TestAttackConcurrentGuessesPassTheLockout: the lockout is checked at
// Login and charged at LoginResult, so every guess already between the
// two is let through: an attacker who opens many connections (100
// unauthenticated ones per IP by default) and sends a LOGIN on each at
// once gets all of them checked by the backend, whatever
// login_failures_per_user_ip says. With Dovecot's default
// auth_failure_delay (2 s) the window is seconds wide. Here the limit is
// 5 and 20 guesses from one address are in flight together: at most 5
// may reach the password check.
func TestAttackConcurrentGuessesPassTheLockout(t *testing.T) {
	forEachStore(t, func(t *testing.T, newTest newFunc) {
		l, _ := newTest(t, func(o *Options) {
			o.LoginFailuresPerUserIP = 5
			o.LoginFailuresPerUser = 10
			o.LockoutBase = time.Hour
			o.LockoutMax = time.Hour
		})
		const guesses = 20
		var inFlight []*proxy.SessionInfo
		for range guesses {
			s, release := connect(t, l, "192.0.2.1")
			t.Cleanup(release)
			s.User = "alice"
			if r := l.Login(s, "alice"); !r.Exceeded {
				inFlight = append(inFlight, s)
			}
		}
		for _, s := range inFlight {
			l.LoginResult(s, "alice", false)
		}
		if len(inFlight) > 5 {
			t.Errorf("%d of %d concurrent guesses of alice's password passed the lockout check (login_failures_per_user_ip 5): each reaches the backend", len(inFlight), guesses)
		}
		// Sequential guesses, for comparison, stop at the limit.
		if r, _ := fail(t, l, "192.0.2.1", "alice"); !r.Exceeded {
			t.Error("no lockout after the guesses")
		}
	})
}
