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
	fl := &fakeLimiter{failures: map[string]int{}}
	ua := &userAuditor{}
	h := newHarness(t, func(o *Options) {
		o.Limiter = fl
		ua.recAuditor = o.Auditor.(*recAuditor)
		o.Auditor = ua
	})
	c := dialTLS(t, h.imaps)
	c.expect("* OK")
	c.transact("a1 LOGIN bob bob-pw", "a1 NO [LIMIT]")
	c.send("a2 LOGOUT")
	c.expectClosed("* BYE", "a2 OK")
	h.audit.waitCloses(t, 1)

	if got := h.audit.lastAuth(t); got.User != "bob" || got.Success {
		t.Fatalf("auth record: %+v, want a failure for bob", got)
	}
	ua.mu.Lock()
	defer ua.mu.Unlock()
	for _, u := range ua.closeUsers {
		if u != "" {
			t.Errorf("session.close recorded with user %q after a login refused by the sessions limit; want no user", u)
		}
	}
}
