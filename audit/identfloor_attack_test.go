package audit

import (
	"fmt"
	"strings"
	"testing"
)

// A command naming no more mailboxes than the trail holds
// (MaxMailboxNames) is carried out, and "a cut never hides who did what to
// what". But the names count, not their length: an APPEND CATENATE whose
// 24 source mailboxes have names of 1000 bytes (the client's own padding
// mailboxes, several levels deep, and the one it really read; or about 40
// of 450 bytes where a backend caps names lower) makes a record over
// max_record_bytes even with every other field left out, and the last
// shrink step cuts every source, and the APPEND's own mailbox, to 64 bytes
// (IdentFloor). Two mailboxes whose names share their first 64 bytes
// ("Shared/Legal/Litigation-2026/Case-4711-Smith-v-Jones-Privileged-A" and
// "...-B") are then one to the auditor: the record does not say which of
// them the client copied from, nor into which it appended.
func TestAttackLongSourceNamesCutToIdentFloor(t *testing.T) {
	sink := &memSink{}
	tr, err := New(Options{Sink: sink})
	if err != nil {
		t.Fatal(err)
	}
	target := "Shared/Legal/Litigation-2026/Case-4711-Smith-v-Jones/Privileged-Attorney-Client-Memo-B"
	n := 24
	if n > tr.MaxMailboxNames() {
		t.Fatalf("the trail holds %d mailbox names; the proxy would refuse %d", tr.MaxMailboxNames(), n)
	}
	var srcs []string
	for i := range n - 1 {
		srcs = append(srcs, fmt.Sprintf("pad%02d/%s", i, strings.Repeat("p", 990)))
	}
	srcs = append(srcs, target)
	r := &Record{Kind: KindCommand, Session: "s1", User: "mallory", Tag: "a1", Command: "APPEND",
		Mailbox: "Drafts/" + strings.Repeat("d", 900) + "/copy-of-B", Sources: srcs, Result: "OK"}
	wantMailbox := r.Mailbox
	tr.Log(r) // r is the trail's now
	tr.Close()
	var got *Record
	for _, l := range sink.lines() {
		if c, err := ParseRecord([]byte(l)); err == nil && c.Kind == KindCommand {
			got = c
		}
	}
	if got == nil {
		t.Fatal("no command record")
	}
	written := ""
	for _, s := range got.Sources {
		if strings.HasPrefix(s, "Shared/") {
			written = s
		}
	}
	if written != target || got.Mailbox != wantMailbox {
		t.Errorf("the record of an APPEND the proxy lets through (%d sources, the trail holds %d) names its source %q as %q (%d of %d bytes), its mailbox in %d of %d bytes; cut %+v",
			n, tr.MaxMailboxNames(), target, written, len(written), len(target), len(got.Mailbox), len(wantMailbox), got.Cut)
	}
}
