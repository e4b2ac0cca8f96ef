package audit

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	"github.com/imapwarden/imapwarden/proxy/imapwire"
)

// A set is written in its canonical form; over the cap, what is cut is
// covered by a range, so every message the set named is still named:
// padding a set with absent UIDs cannot push the one it acts on out of
// the record (attack46d).
func TestSetCanonical(t *testing.T) {
	for _, c := range []struct{ in, want string }{
		{"1:*", "1:*"},
		{"5,1:3,4", "1:5"},
		{"7,2:1,9:8", "1:2,7:9"},
		{"*:4,3,*,$", "3,*,4:*,$"},
		{"4:*,4:*", "4:*"},
		{"1,,2", "1,,2"}, // not a set: as given
	} {
		sink := &memSink{}
		tr, err := New(Options{Sink: sink})
		if err != nil {
			t.Fatal(err)
		}
		tr.Log(&Record{Kind: KindCommand, Command: "STORE", Set: c.in})
		tr.Close()
		r, err := ParseRecord([]byte(sink.lines()[1]))
		if err != nil {
			t.Fatal(err)
		}
		if r.Set != c.want || len(r.Cut) != 0 {
			t.Errorf("set %q written %q (cut %v), want %q", c.in, r.Set, r.Cut, c.want)
		}
	}

	rng := rand.New(rand.NewPCG(1, 46))
	for i := range 300 {
		var elems []string
		var named []uint32
		for range 1 + rng.IntN(400) {
			a := 1 + rng.Uint32N(1<<31)
			switch rng.IntN(8) {
			case 0:
				elems = append(elems, fmt.Sprintf("%d:*", a))
			case 1:
				elems = append(elems, "$")
			case 2:
				b := a + rng.Uint32N(5)
				elems = append(elems, fmt.Sprintf("%d:%d", b, a))
				named = append(named, a, b)
			default:
				elems = append(elems, fmt.Sprint(a))
				named = append(named, a)
			}
		}
		set := strings.Join(elems, ",")
		sink := &memSink{}
		field := 16 + rng.IntN(1024)
		tr, err := New(Options{Sink: sink, MaxFieldBytes: field})
		if err != nil {
			t.Fatal(err)
		}
		tr.Log(&Record{Kind: KindCommand, Command: "EXPUNGE", UID: true, Set: set})
		tr.Close()
		r, err := ParseRecord([]byte(sink.lines()[1]))
		if err != nil {
			t.Fatal(err)
		}
		cut := slices.ContainsFunc(r.Cut, func(c Cut) bool { return c.Field == "set" })
		if len(r.Set) > max(field, coverLen) || cut != (r.Set != canonical(set)) {
			t.Errorf("case %d: a set of %d bytes written in %d under a cap of %d, cut %v", i, len(set), len(r.Set), field, r.Cut)
		}
		for _, n := range named {
			if !imapwire.SetMayContain(r.Set, n) {
				t.Fatalf("case %d: %d is in the set as sent but not as written (cut %v): %q", i, n, r.Cut, r.Set)
			}
		}
		// "*" and "$" stay: the set may name any message.
		for _, e := range elems {
			if (e == "$" || strings.HasSuffix(e, "*")) && !imapwire.SetMayContain(r.Set, 1<<32-1) {
				t.Fatalf("case %d: %q lost its %q: %q", i, set, e, r.Set)
			}
		}
	}
}

func canonical(set string) string {
	rs, dollar, _ := parseSet(nil, set)
	var b []byte
	for i, r := range canonRanges(rs) {
		if i > 0 {
			b = append(b, ',')
		}
		b = appendRange(b, r)
	}
	if dollar {
		if len(b) > 0 {
			b = append(b, ',')
		}
		b = append(b, '$')
	}
	return string(b)
}

// The mailboxes a command read or watched are written each one, past
// max_list_items, up to MaxMailboxNames, which is what the record holds
// shrunk; a setting the worst-case record cannot hold is refused.
func TestMailboxNamesWhole(t *testing.T) {
	sink := &memSink{}
	tr, err := New(Options{Sink: sink, MaxRecordBytes: 8 << 10})
	if err != nil {
		t.Fatal(err)
	}
	n := tr.MaxMailboxNames()
	var names []string
	for i := range n {
		names = append(names, fmt.Sprintf("S%02d-%s", i, strings.Repeat("\x01", 300)))
	}
	names[n-1] = "Legal"
	tr.Log(&Record{Kind: KindCommand, Command: "APPEND", Mailbox: "Keep", Sources: names, UIDs: make([]uint32, MaxUIDs)})
	tr.Close()
	l := sink.lines()[1]
	r, err := ParseRecord([]byte(l))
	if err != nil {
		t.Fatal(err)
	}
	if len(r.Sources) != n || r.Sources[n-1] != "Legal" || r.Command != "APPEND" || r.Mailbox != "Keep" || len(l) > 8<<10 {
		t.Errorf("%d of %d sources, last %q, command %q, mailbox %q, %d bytes", len(r.Sources), n, r.Sources[len(r.Sources)-1], r.Command, r.Mailbox, len(l))
	}
	if _, err := New(Options{Sink: &memSink{}, MaxRecordBytes: MinRecordBytes, MaxMailboxNames: 1000}); err == nil {
		t.Error("1000 mailbox names in a record of 4 KiB accepted")
	}
	if tr, err := New(Options{Sink: &memSink{}, MaxRecordBytes: MinRecordBytes}); err != nil || tr.MaxMailboxNames() < 1 {
		t.Errorf("least record: %v", err)
	} else {
		tr.Close()
	}
}
