package proxy

import (
	"sync"
	"testing"
)

// userAuditor records the SessionInfo.User every session.close record
// is written with (the trail's "user" field).
type userAuditor struct {
	*recAuditor
	mu         sync.Mutex
	closeUsers []string
}

func (a *userAuditor) SessionClose(s *SessionInfo, e CloseEvent) {
	a.mu.Lock()
	a.closeUsers = append(a.closeUsers, s.User)
	a.mu.Unlock()
	a.recAuditor.SessionClose(s, e)
}

// TestAttackFailedLoginNameStaysSessionUser: a client that only tried
// to log in as "ceo" with a wrong password is nobody, yet Session.login
// sets SessionInfo.User to the name typed before anything is verified and
// leaves it there when the login fails. Every later record of the session
// (session.close, security, limit) and the admin API's session list then
// name "ceo" as the session's user: anyone can write records into the
// trail that attribute a session, and whatever it did afterwards, to a
// victim who never logged in. The auth record keeps the name tried (as
// the client gave it); the session's user must stay empty until a login
// succeeds.
func TestAttackFailedLoginNameStaysSessionUser(t *testing.T) {
	failedLoginLeavesNoUser(t, nil, "a1 LOGIN ceo wrong-password", "a1 NO", "ceo")
}

// failedLoginLeavesNoUser logs in with login, answered reply, then out:
// the auth record names user as tried, and the session's close no user.
func failedLoginLeavesNoUser(t *testing.T, lim Limiter, login, reply, user string) {
	t.Helper()
	ua := &userAuditor{}
	h := newHarness(t, func(o *Options) {
		if lim != nil {
			o.Limiter = lim
		}
		ua.recAuditor = o.Auditor.(*recAuditor)
		o.Auditor = ua
	})
	c := dialTLS(t, h.imaps)
	c.expect("* OK")
	c.transact(login, reply)
	c.send("a2 LOGOUT")
	c.expectClosed("* BYE", "a2 OK")
	h.audit.waitCloses(t, 1)

	if got := h.audit.lastAuth(t); got.User != user || got.Success {
		t.Fatalf("auth record: %+v, want a failure for %s", got, user)
	}
	ua.mu.Lock()
	defer ua.mu.Unlock()
	for _, u := range ua.closeUsers {
		if u != "" {
			t.Errorf("session.close recorded with user %q after %q was answered %q; want no user", u, login, reply)
		}
	}
}
