package audit

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"
)

// A record whose names (user, command, mailbox, selected, sources, ...)
// total at most MaxNameBytes, encoded, keeps each of them whole, whatever
// else it carries: the proxy refuses a command naming more, so the
// record of a command carried out never cuts who did what to what
// (ARCHITECTURE.md §11). Escapes count as written.
func TestNamesWithinMaxNameBytesWhole(t *testing.T) {
	for _, mr := range []int{MinRecordBytes, 8 << 10, DefaultMaxRecordBytes, 60000} {
		t.Run(fmt.Sprint(mr), func(t *testing.T) {
			sink := &memSink{}
			tr, err := New(Options{Sink: sink, MaxRecordBytes: mr, Key: testKey()})
			if err != nil {
				t.Fatal(err)
			}
			long := strings.Repeat("\x01", 2048)
			r := &Record{Time: time.Now(), Kind: KindCommand, Session: "s1", Listener: "imaps", User: "mallory", Tag: long,
				Command: "APPEND", Mailbox: "Drafts/" + strings.Repeat("d", 200), MailboxRaw: long, Selected: "INBOX",
				Patterns: []string{long}, Items: []string{long}, Flags: []string{long}, StoreOp: long, Reason: long, Detail: long,
				Code: long, CodeArgs: long, QuotaRoot: long, Quota: map[string]int64{long: 1}, Enable: []string{long},
				Entries: []string{long}, SharedWith: []string{long}, Set: strings.Repeat("4294967295,1,", 1000) + "*:7",
				UIDs: make([]uint32, MaxUIDs+1), ExpungedSeqs: make([]uint32, MaxUIDs+1), ExpungedUIDs: make([]uint32, MaxUIDs+1), Annot: map[string]any{"k": long},
				Result: "OK"}
			budget := tr.MaxNameBytes()
			for _, s := range []string{r.User, r.Command, r.Mailbox, r.Selected} {
				budget -= len(s)
			}
			n := tr.MaxMailboxNames()
			for i := range n {
				// Half of each name escapes to 6 bytes a byte.
				size := budget / (n - i)
				name := fmt.Sprintf("m%02d-", i)
				esc := (size - len(name)) / 2 / 6
				name += strings.Repeat("\x01", esc)
				name += strings.Repeat("x", size-len(name)-5*esc)
				budget -= len(name) + 5*esc
				r.Sources = append(r.Sources, name)
			}
			if budget != 0 {
				t.Fatalf("names total %d less than MaxNameBytes %d", budget, tr.MaxNameBytes())
			}
			want, wantR := slices.Clone(r.Sources), *r // r is the trail's after Log
			tr.Log(r)
			tr.Close()
			var got *Record
			for _, l := range sink.lines() {
				if len(l) > mr {
					t.Errorf("a record of %d bytes, over %d", len(l), mr)
				}
				if c, err := ParseRecord([]byte(l)); err == nil && c.Kind == KindCommand {
					got = c
				}
			}
			if got == nil {
				t.Fatal("no command record")
			}
			if !slices.Equal(got.Sources, want) || got.User != wantR.User || got.Mailbox != wantR.Mailbox || got.Selected != wantR.Selected || got.Command != wantR.Command {
				t.Errorf("MaxNameBytes %d, %d names: written cut; cut %+v", tr.MaxNameBytes(), n, got.Cut)
			}
		})
	}
}
