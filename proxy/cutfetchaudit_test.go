package proxy

import (
	"io"
	"strings"
	"testing"
	"time"

	"github.com/imapwarden/imapwarden/internal/testenv"
)

// A client that reads most of a message and then leaves, in the middle of
// the FETCH response, has still read it: the record of that FETCH (written
// with no result when the session ends, Session.endRelay) names the
// message's UID and the content octets that went out (ARCHITECTURE.md §11:
// which messages; §12: count what is delivered). The proxy knew the UID
// from the response's first piece, and counted the literal before it
// streamed it.
func TestAuditNamesMessageOfCutFetch(t *testing.T) {
	h := newDovecotHarness(t, nil)
	const size = 4 << 20
	h.dc.Deliver(t, "alice", "INBOX", bigMessage(size))
	c := h.login()
	c.transact("s SELECT INBOX", "s OK")
	c.send("f FETCH 1 (BODY.PEEK[])")
	if first := c.expect("* 1 FETCH"); !strings.Contains(first, "UID 1") {
		t.Fatalf("no UID in the response's first line %q", first)
	}
	// Most of the message, then gone.
	c.c.SetReadDeadline(time.Now().Add(testenv.IOTimeout()))
	if _, err := io.CopyN(io.Discard, c.br, size/2); err != nil {
		t.Fatal(err)
	}
	c.c.Close()
	h.audit.waitCloses(t, 1)
	h.audit.mu.Lock()
	defer h.audit.mu.Unlock()
	var rec *CommandEvent
	for i := range h.audit.commands {
		if h.audit.commands[i].Command.Tag == "f" {
			rec = &h.audit.commands[i]
		}
	}
	if rec == nil {
		t.Fatal("no record of the FETCH")
	}
	t.Logf("record of the cut FETCH: result %q, messages %d, UIDs %v, content %d, body read %v",
		rec.Result, rec.Messages, rec.UIDs, rec.Content, rec.BodyRead)
	if len(rec.UIDs) != 1 || rec.UIDs[0] != 1 || rec.Content < size/2 {
		t.Errorf("the client read %d+ octets of UID 1, but the FETCH's record names UIDs %v and %d content octets (%d messages)",
			size/2, rec.UIDs, rec.Content, rec.Messages)
	}
	for _, d := range h.audit.deliveries {
		t.Logf("delivery %+v", d)
	}
}
