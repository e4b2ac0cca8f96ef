package audit

import (
	"testing"
	"time"
)

// An auditor who asks for a mailbox by its name must get its records:
// --mailbox takes "*" and "?" as wildcards, but a name holding other
// characters path.Match reads ("[", "]"), which IMAP and the proxy allow
// in a mailbox name (Gmail's "[Gmail]/All Mail"), must still match
// itself, and a name the pattern syntax cannot read ("Budget[2026") must
// not silently match nothing. INBOX is "in any case" (Filter.Mailbox),
// and the proxy records it in upper case as the first level of every
// name (imapwire.Context.Canonical): "inbox/Sub" is "INBOX/Sub".
func TestAttackQueryMailboxNamedLiterallyFound(t *testing.T) {
	sink := &memSink{}
	tr, err := New(Options{Sink: sink})
	if err != nil {
		t.Fatal(err)
	}
	base := time.Date(2026, 5, 1, 10, 0, 0, 0, time.UTC)
	names := []string{"[Gmail]/All Mail", "Budget[2026", "INBOX/Sub"}
	for i, m := range names {
		tr.Log(&Record{Time: base.Add(time.Duration(i) * time.Minute), Kind: KindCommand, User: "alice",
			Command: "FETCH", UID: true, Selected: m, Fetch: FetchBody, UIDs: []uint32{7}})
	}
	tr.Close()
	file := sink.save(t)
	for _, m := range append(names, "inbox/Sub") {
		n := 0
		if _, err := Query([]string{file}, &Filter{Mailbox: m}, func(r *Record, _ []byte) error {
			n++
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		if n != 1 {
			t.Errorf("audit query --mailbox %q: %d records, want the 1 FETCH of message content in %q", m, n, m)
		}
	}
}
