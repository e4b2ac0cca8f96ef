package proxy

import (
	"strings"
	"testing"
)

func TestSessionsAndEndSession(t *testing.T) {
	h := newHarness(t)
	if err := h.srv.Ready(); err != nil {
		t.Fatal(err)
	}
	c := h.login()
	c.transact("a1 SELECT INBOX", "a1 OK")
	var id string
	for _, snap := range h.srv.Sessions() {
		if snap.User == "alice" {
			id = snap.ID
			if snap.Selected != "INBOX" || snap.Backend != "mem" || snap.Listener != "imaps" || snap.TLS == "" || snap.BytesIn == 0 {
				t.Errorf("snapshot %+v", snap)
			}
		}
	}
	if id == "" {
		t.Fatalf("alice not in %+v", h.srv.Sessions())
	}
	c.send("a2 IDLE")
	c.expect("+")
	if !h.srv.EndSession(id) || h.srv.EndSession("nope") {
		t.Fatal("EndSession")
	}
	// The IDLE is ended at the backend and completes, then BYE.
	c.expectClosed("a2 OK", "* BYE [UNAVAILABLE] Session ended by the administrator")
	waitFor(t, func() bool {
		h.audit.mu.Lock()
		defer h.audit.mu.Unlock()
		return len(h.audit.closes) > 0 && h.audit.closes[len(h.audit.closes)-1].Reason == CloseEndedByAdmin
	})
}

// A command that arrives right after EndSession is not relayed: the
// session ends with BYE. Setting a read deadline in the past does not
// reliably fail a read that is already blocked when data arrives at once
// (the woken reader may find the data first), so the session must check
// for the end after every read, not only on a timeout.
func TestEndSessionBeforePromptCommand(t *testing.T) {
	h := newHarness(t)
	for i := range 100 {
		c := h.login()
		var id string
		for _, snap := range h.srv.Sessions() {
			if snap.User == "alice" && snap.Client == c.c.LocalAddr().String() {
				id = snap.ID
			}
		}
		if !h.srv.EndSession(id) {
			t.Fatalf("round %d: session %q not found", i, id)
		}
		c.send("n NOOP")
		if l := c.line(); !strings.HasPrefix(l, "* BYE [UNAVAILABLE] Session ended by the administrator") {
			t.Fatalf("round %d: the command after EndSession got %q", i, l)
		}
		c.c.Close()
	}
}

// Update changes routing for new sessions; open ones keep theirs.
func TestUpdateKeepsOpenSessions(t *testing.T) {
	h := newHarness(t)
	open := h.login()
	other := startMemBackend(t)
	user := "bob"
	if err := h.srv.Update(Dynamic{Router: &StaticRouter{Users: map[string]*Backend{user: {Name: "other", Addr: other.addr, Login: LoginCommand}}}}); err != nil {
		t.Fatal(err)
	}
	open.transact("a1 SELECT INBOX", "a1 OK")
	c := dialTLS(t, h.imaps)
	c.expect("* OK")
	// alice has no route any more; bob goes to the other backend.
	c.transact("b1 LOGIN alice alice-pw", "b1 NO [AUTHENTICATIONFAILED]")
	c.transact("b2 LOGIN bob bob-pw", "b2 OK")
	if err := h.srv.Update(Dynamic{}); err == nil {
		t.Error("Update without a router accepted")
	}
}
