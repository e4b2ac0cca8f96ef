package audit

import (
	"strings"
	"testing"
)

// A record over max_record_bytes is written again with tighter caps
// (shrinkCaps), the last of which leaves out every string from outside
// the proxy: the command, its tag, the mailbox. A content read's uids
// (up to MaxUIDs, the proxy's own, never capped) are what makes a FETCH
// record large, so with max_record_bytes at its least (2048) a FETCH of
// 500 messages is written without the mailbox it read nor the command,
// and still over the bound (attack46d).
func TestShrunkRecordKeepsWhatAndWhere(t *testing.T) {
	sink := &memSink{}
	tr, err := New(Options{Sink: sink, MaxRecordBytes: MinRecordBytes})
	if err != nil {
		t.Fatal(err)
	}
	r := &Record{Kind: KindCommand, Session: "s1", User: "alice", Tag: "a1", Command: "FETCH", UID: true,
		Mailbox: "Legal", Selected: "Legal", Set: "1:*", Fetch: FetchBody, Items: []string{"BODY.PEEK[]"}, Result: "OK"}
	for i := range 500 {
		r.UIDs = append(r.UIDs, uint32(1000000+i))
	}
	tr.Log(r)
	tr.Close()
	lines := sink.lines()
	var got *Record
	for _, l := range lines {
		if c, err := ParseRecord([]byte(l)); err == nil && c.Kind == KindCommand {
			got = c
		}
	}
	if got == nil {
		t.Fatalf("no command record in %d lines", len(lines))
	}
	if got.Command != "FETCH" || got.Mailbox != "Legal" || got.Selected != "Legal" || len(got.UIDs) == 0 {
		t.Errorf("shrunk FETCH record: command %q, mailbox %q, selected %q, %d uids (cut %+v)",
			got.Command, got.Mailbox, got.Selected, len(got.UIDs), got.Cut)
	}
	for _, l := range lines {
		if len(l) > MinRecordBytes && strings.Contains(l, `"kind":"command"`) {
			t.Errorf("a record of %d bytes, over max_record_bytes %d", len(l), MinRecordBytes)
		}
	}
	mustVerify(t, []string{sink.save(t)}, VerifyOptions{})
}
