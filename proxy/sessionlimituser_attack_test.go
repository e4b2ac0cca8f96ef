package proxy

import "testing"

// TestAttackSessionLimitLoginLeavesUser: a login refused by the
// sessions-per-user limit (its auth record a failure, reason "limit")
// returns from Session.login without loginFailed, so the session, which
// never logged in, keeps the user, backend and identity of the refused
// login: its session.close record (and the admin API's list) name "bob"
// for a session that was never his, as a failed login's did before
// a644e8a. Every way a login fails must leave no user on the session.
func TestAttackSessionLimitLoginLeavesUser(t *testing.T) {
	failedLoginLeavesNoUser(t, &fakeLimiter{failures: map[string]int{}}, "a1 LOGIN bob bob-pw", "a1 NO [LIMIT]", "bob")
}
