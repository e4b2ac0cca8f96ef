package audit

import (
	"strings"
	"testing"
	"time"
)

// A command's names within MaxNameBytes are written whole (audit/README.md:
// "A record within it is written with its names whole"; ARCHITECTURE.md
// §11), and the proxy carries such a command out. Yet a single name is
// still clipped to MaxFieldBytes (identStr: the identity cap is the field
// cap, 1024 by default) in every encoding: a RENAME of one 1,100-byte
// mailbox to another that differs only after byte 1,024 (the proxy sets
// no bound of its own on one name) is recorded as a RENAME of a mailbox to itself, and
// SELECTs or EXPUNGEs of two such mailboxes name the same one, although
// the names total 2,210 bytes of the 13,568 the record holds whole.
func TestAttackSingleLongNameCutWithinNameBytes(t *testing.T) {
	sink := &memSink{}
	tr, err := New(Options{Sink: sink, Key: testKey()})
	if err != nil {
		t.Fatal(err)
	}
	stem := "Projects" + strings.Repeat("/"+strings.Repeat("a", 219), 5) // levels under 255 bytes each
	r := &Record{Time: time.Now(), Kind: KindCommand, Session: "s1", Listener: "imaps", User: "mallory", Tag: "a1",
		Command: "RENAME", Mailbox: stem + "-keep", Destination: stem + "-gone", Selected: "INBOX", Result: "OK"}
	want := *r // r is the trail's after Log
	if n := len(want.User) + len(want.Command) + len(want.Mailbox) + len(want.Destination) + len(want.Selected); n > tr.MaxNameBytes() {
		t.Fatalf("names total %d, over MaxNameBytes %d: the proxy would refuse the command", n, tr.MaxNameBytes())
	}
	tr.Log(r)
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
	if got.Mailbox != want.Mailbox || got.Destination != want.Destination {
		t.Errorf("names within MaxNameBytes %d written cut: mailbox %d bytes of %d, destination %d of %d, the same name: %v; cut %+v",
			tr.MaxNameBytes(), len(got.Mailbox), len(want.Mailbox), len(got.Destination), len(want.Destination), got.Mailbox == got.Destination, got.Cut)
	}
}
