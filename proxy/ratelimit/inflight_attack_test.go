package ratelimit

import (
	"testing"
	"time"
)

// TestAttackConcurrentGuessesPassTheLockout: the lockout is checked at
// Login and charged at LoginResult, so every guess already between the
// two is let through: an attacker who opens many connections (100
// unauthenticated ones per IP by default) and sends a LOGIN on each at
// once gets all of them checked by the backend, whatever
// login_failures_per_user_ip says. With Dovecot's default
// auth_failure_delay (2 s) the window is seconds wide. Here the limit is
// 5 and 20 guesses from one address are in flight together: at most 5
// may reach the password check. The guesses let through are held (as a
// slow backend holds them) until every guess is through or waiting for a
// place (the Limiter's OnLoginWait).
func TestAttackConcurrentGuessesPassTheLockout(t *testing.T) {
	forEachStore(t, func(t *testing.T, newTest newFunc) {
		l, waits := newWaitingTest(t, newTest, func(o *Options) {
			o.LoginFailuresPerUserIP = 5
			o.LoginFailuresPerUser = 10
			o.LockoutBase = time.Hour
			o.LockoutMax = time.Hour
		})
		const guesses = 20
		tries := make([]try, guesses)
		for i := range tries {
			tries[i] = try{ip: "192.0.2.1", user: "alice"}
		}
		passed := 0
		for i, o := range together(t, l, waits, tries) {
			switch {
			case o.passed:
				passed++
			default:
				wantExceeded(t, o.res, LimitLoginFailuresPerUserIP, "user_ip", "AUTHENTICATIONFAILED")
			}
			_ = i
		}
		if passed > 5 {
			t.Errorf("%d of %d concurrent guesses of alice's password passed the lockout check (login_failures_per_user_ip 5): each reaches the backend", passed, guesses)
		}
		// Sequential guesses, for comparison, stop at the limit.
		if r, _ := fail(t, l, "192.0.2.1", "alice"); !r.Exceeded {
			t.Error("no lockout after the guesses")
		}
	})
}
