package proxy

import (
	"slices"
	"testing"
)

// A FETCH response whose content went out with no UID (a backend that
// sends none unasked, or after the text) never names nothing silently
// (ARCHITECTURE.md §11): a push's delivery record has its sequence
// number and the mailbox's UIDVALIDITY, a FETCH's record counts it in
// Unnamed beside the UIDs the other responses carried.
func TestResponsesWithoutUIDRecordedUnnamed(t *testing.T) {
	b := startFixedBackend(t, map[string][2]string{
		"SELECT INBOX": {"* 4 EXISTS\r\n* OK [UIDVALIDITY 42] UIDs valid\r\n", "OK [READ-WRITE] done\r\n"},
		"FETCH 1:2 (UID BODY.PEEK[])": {"* 1 FETCH (BODY[] {5}\r\nhello)\r\n* 2 FETCH (UID 8 BODY[] {5}\r\nhello)\r\n",
			"OK done\r\n"},
		"NOOP": {"* 4 FETCH (BODY[] {5}\r\nhello)\r\n", "OK done\r\n"},
	})
	h := newHarness(t, func(o *Options) {
		o.Router = &StaticRouter{Default: &Backend{Name: "fixed", Addr: b.ln.Addr().String(), Security: BackendPlain, Login: LoginCommand}}
	})
	c := h.login()
	c.transact("s SELECT INBOX", "s OK")
	c.transact("f FETCH 1:2 (BODY.PEEK[])", "f OK")
	c.transact("n NOOP", "n OK")
	c.transact("l LOGOUT", "l OK")
	h.audit.waitCloses(t, 1)
	h.audit.mu.Lock()
	defer h.audit.mu.Unlock()
	var f *CommandEvent
	for i := range h.audit.commands {
		if h.audit.commands[i].Command.Tag == "f" {
			f = &h.audit.commands[i]
		}
	}
	if f == nil {
		t.Fatal("no record of the FETCH")
	}
	if f.Messages != 2 || !slices.Equal(f.UIDs, []uint32{8}) || f.Unnamed != 1 {
		t.Errorf("FETCH record: messages %d, UIDs %v, unnamed %d; want 2, [8], 1 (response 1 carried no UID)",
			f.Messages, f.UIDs, f.Unnamed)
	}
	if len(h.audit.deliveries) != 1 {
		t.Fatalf("deliveries %+v, want the NOOP's push", h.audit.deliveries)
	}
	if d := h.audit.deliveries[0]; d.Messages != 1 || len(d.UIDs) != 0 || d.Seq != 4 || d.UIDValidity != 42 || d.Mailbox != "INBOX" {
		t.Errorf("delivery %+v: want message 4 by its sequence number, in INBOX, UIDVALIDITY 42", d)
	}
}
