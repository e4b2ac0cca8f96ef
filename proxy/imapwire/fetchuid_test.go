package imapwire

import (
	"bytes"
	"slices"
	"testing"
)

// TestFetchUIDEdit: a FETCH by sequence number that reads content gets the UID
// item in the list the parser read, and nothing else of its bytes changes;
// every other command is left as sent (attack40 finding 3).
func TestFetchUIDEdit(t *testing.T) {
	tests := []struct{ wire, want string }{
		{"a FETCH 1:2 BODY.PEEK[]\r\n", "a FETCH 1:2 (UID BODY.PEEK[])\r\n"},
		{"a fetch 1 (FLAGS BODY[TEXT])\r\n", "a fetch 1 (UID FLAGS BODY[TEXT])\r\n"},
		{"a FETCH 1 (BODY.PEEK[]) (CHANGEDSINCE 1)\r\n", "a FETCH 1 (UID BODY.PEEK[]) (CHANGEDSINCE 1)\r\n"},
		{"a FETCH 1 BODY.PEEK[HEADER.FIELDS (FROM \"X-Y\")]<0.10>\r\n", "a FETCH 1 (UID BODY.PEEK[HEADER.FIELDS (FROM \"X-Y\")]<0.10>)\r\n"},
		{"a FETCH 1 (RFC822.SIZE BODY.PEEK[HEADER.FIELDS (A B)] FLAGS)\r\n", "a FETCH 1 (UID RFC822.SIZE BODY.PEEK[HEADER.FIELDS (A B)] FLAGS)\r\n"},
		{"a FETCH * RFC822\r\n", "a FETCH * (UID RFC822)\r\n"},
		{"a FETCH 1 BODY.PEEK[HEADER.FIELDS ({4}\r\nFROM)]\r\n", "a FETCH 1 (UID BODY.PEEK[HEADER.FIELDS ({4}\r\nFROM)])\r\n"},
		{"a FETCH 1 (FLAGS BODY.PEEK[HEADER.FIELDS ({4}\r\nFROM {2}\r\nTO)] RFC822.SIZE)\r\n", "a FETCH 1 (UID FLAGS BODY.PEEK[HEADER.FIELDS ({4}\r\nFROM {2}\r\nTO)] RFC822.SIZE)\r\n"},
		// Headers without content octets read content too (the
		// read-content effect): ENVELOPE, BODYSTRUCTURE, BODY, ALL, FULL.
		{"a FETCH 1:2 ENVELOPE\r\n", "a FETCH 1:2 (UID ENVELOPE)\r\n"},
		{"a FETCH 1:2 (FLAGS BODYSTRUCTURE)\r\n", "a FETCH 1:2 (UID FLAGS BODYSTRUCTURE)\r\n"},
		{"a FETCH 1 body\r\n", "a FETCH 1 (UID body)\r\n"},
		{"a FETCH 1 ALL\r\n", "a FETCH 1 (UID FLAGS INTERNALDATE RFC822.SIZE ENVELOPE)\r\n"},
		{"a FETCH 1 full\r\n", "a FETCH 1 (UID FLAGS INTERNALDATE RFC822.SIZE ENVELOPE BODY)\r\n"},
		// NOTIFY: UID first in each MessageNew fetch-att list that reads
		// content (RFC 5465 §5.2), and in none other.
		{"a NOTIFY SET (SELECTED (MessageNew (BODY.PEEK[]) MessageExpunge))\r\n", "a NOTIFY SET (SELECTED (MessageNew (UID BODY.PEEK[]) MessageExpunge))\r\n"},
		{"a NOTIFY SET STATUS (SELECTED-DELAYED (messagenew (FLAGS BODY.PEEK[HEADER.FIELDS ({4}\r\nFROM)]) MessageExpunge)) (SELECTED (MessageNew (ENVELOPE) MessageExpunge))\r\n",
			"a NOTIFY SET STATUS (SELECTED-DELAYED (messagenew (UID FLAGS BODY.PEEK[HEADER.FIELDS ({4}\r\nFROM)]) MessageExpunge)) (SELECTED (MessageNew (UID ENVELOPE) MessageExpunge))\r\n"},
		{"a NOTIFY SET (MAILBOXES (MessageNew) (MessageNew MessageExpunge)) (SELECTED (MessageNew (FLAGS BODY.PEEK[]) MessageExpunge))\r\n",
			"a NOTIFY SET (MAILBOXES (MessageNew) (MessageNew MessageExpunge)) (SELECTED (MessageNew (UID FLAGS BODY.PEEK[]) MessageExpunge))\r\n"},
		{"a NOTIFY SET (SELECTED-DELAYED (MessageNew (UID BODY.PEEK[]) MessageExpunge)) (SELECTED (MessageNew (BODY.PEEK[]) MessageExpunge))\r\n",
			"a NOTIFY SET (SELECTED-DELAYED (MessageNew (UID BODY.PEEK[]) MessageExpunge)) (SELECTED (MessageNew (UID BODY.PEEK[]) MessageExpunge))\r\n"},
		{"a NOTIFY SET (SELECTED (MessageNew (BODY.PEEK[] uid) MessageExpunge))\r\n", ""},
		{"a NOTIFY SET (SELECTED (MessageNew (FLAGS) MessageExpunge))\r\n", ""},
		{"a NOTIFY SET (SELECTED (MessageNew MessageExpunge))\r\n", ""},
		{"a NOTIFY NONE\r\n", ""},
		// Left as sent: UID FETCH, no content, UID asked for.
		{"a UID FETCH 1:* (FLAGS)\r\n", ""},
		{"a UID FETCH 1 BODY.PEEK[]\r\n", ""},
		{"a UID FETCH 1:2 ENVELOPE\r\n", ""},
		{"a FETCH 1:* (FLAGS)\r\n", ""},
		{"a FETCH 1 FAST\r\n", ""},
		{"a FETCH 1 (FLAGS INTERNALDATE RFC822.SIZE BINARY.SIZE[1])\r\n", ""},
		{"a FETCH 1 (ENVELOPE UID)\r\n", ""},
		{"a FETCH 1 (UID BODY[])\r\n", ""},
		{"a FETCH 1 (BODY[] uid)\r\n", ""},
	}
	for _, tc := range tests {
		p := checkedWire(t, tc.wire)
		e, ok := p.FetchUID()
		if tc.want == "" {
			if ok {
				t.Errorf("%q edited: %q", tc.wire, e.Apply([]byte(tc.wire)))
			}
			continue
		}
		if !ok {
			t.Errorf("%q: no edit", tc.wire)
			continue
		}
		if got := string(e.Apply([]byte(tc.wire))); got != tc.want {
			t.Errorf("%q: got %q, want %q", tc.wire, got, tc.want)
		}
		// Written in pieces cut at each line end (the relay's marks),
		// the same bytes.
		var out bytes.Buffer
		wire, from := []byte(tc.wire), 0
		for i := 0; i < len(wire); i++ {
			if wire[i] == '\n' {
				e.WriteRange(&out, wire, from, i+1)
				from = i + 1
			}
		}
		if out.String() != tc.want {
			t.Errorf("%q in pieces: got %q", tc.wire, out.String())
		}
	}
}

// checkedWire parses wire and checks it in testCtx, failing the test on
// an error.
func checkedWire(t *testing.T, wire string) *CommandParser {
	t.Helper()
	p := new(CommandParser)
	if _, err := parseWire(p, wire); err != nil {
		t.Fatalf("%q: %v", wire, err)
	}
	ctx := testCtx
	if err := p.Check(&ctx); err != nil {
		t.Fatalf("%q: %v", wire, err)
	}
	return p
}

// TestArgSpan: the spans of the top-level arguments, also after a literal.
func TestArgSpan(t *testing.T) {
	wire := "a FETCH 1:3 (BODY.PEEK[HEADER.FIELDS ({2}\r\nTO)] FLAGS) (CHANGEDSINCE 5)\r\n"
	var p CommandParser
	if _, err := parseWire(&p, wire); err != nil {
		t.Fatal(err)
	}
	want := []string{"1:3", "(BODY.PEEK[HEADER.FIELDS ({2}\r\nTO)] FLAGS)", "(CHANGEDSINCE 5)"}
	for i, w := range want {
		s, e, ok := p.ArgSpan(i)
		if !ok || wire[s:e] != w {
			t.Errorf("arg %d: %d:%d %v, want %q", i, s, e, ok, w)
		}
	}
	if _, _, ok := p.ArgSpan(3); ok {
		t.Error("a fourth argument")
	}
}

func TestSetMayContain(t *testing.T) {
	tests := []struct {
		set  string
		n    uint32
		want bool
	}{
		{"1", 1, true}, {"1", 2, false}, {"1:3", 2, true}, {"3:1", 2, true}, {"1,5:7", 4, false},
		{"1,5:7", 6, true}, {"4:*", 1, true}, {"*", 9, true}, {"$", 3, true}, {"10:20,30", 25, false},
	}
	for _, tc := range tests {
		if got := SetMayContain(tc.set, tc.n); got != tc.want {
			t.Errorf("SetMayContain(%q, %d) = %v", tc.set, tc.n, got)
		}
	}
}

// TestFetchTrackerAnswers: which requested items a response's first
// content item answers.
func TestFetchTrackerAnswers(t *testing.T) {
	tests := []struct {
		resp  string
		items []string
		want  bool
	}{
		{"* 1 FETCH (UID 3 BODY[HEADER] {2}\r\nab)\r\n", []string{"BODY.PEEK[HEADER]"}, true},
		{"* 1 FETCH (UID 3 BODY[HEADER] {2}\r\nab)\r\n", []string{"BODY.PEEK[]"}, false},
		{"* 1 FETCH (BODY[] {2}\r\nab UID 3)\r\n", []string{"FLAGS", "BODY[]"}, true},
		{"* 1 FETCH (BODY[]<0> {2}\r\nab)\r\n", []string{"BODY.PEEK[]<0.2>"}, true},
		{"* 1 FETCH (BODY[HEADER.FIELDS (FROM)] {2}\r\nab)\r\n", []string{"BODY.PEEK[HEADER.FIELDS (FROM TO)]"}, true},
		{"* 1 FETCH (BODY[HEADER.FIELDS (FROM)] {2}\r\nab)\r\n", []string{"BODY.PEEK[HEADER.FIELDS.NOT (FROM)]"}, false},
		{"* 1 FETCH (RFC822 {2}\r\nab)\r\n", []string{"RFC822"}, true},
		{"* 1 FETCH (RFC822.TEXT {2}\r\nab)\r\n", []string{"RFC822"}, false},
		{"* 1 FETCH (BINARY[1] {2}\r\nab)\r\n", []string{"BINARY.PEEK[1]"}, true},
		{"* 1 FETCH (BODY[1.2.3.4.5.6.7.8.9.10.11.12.HEADER] {2}\r\nab)\r\n", []string{"BODY.PEEK[1.2.3.4.5.6.7.8.9.10.11.12.HEADER]"}, true},
		{"* 1 FETCH (BODY[1.2.3.4.5.6.7.8.9.10.11.12.HEADER] {2}\r\nab)\r\n", []string{"BODY.PEEK[1.2.3.4.5.6.7.8.9.10.11.12.TEXT]"}, true},
		{"* 1 FETCH (BODY[1.2.3.4.5.6.7.8.9.10.11.12.HEADER] {2}\r\nab)\r\n", []string{"BODY.PEEK[1.2.3.4.5.6.7.8.9.10.11.1]"}, false},
		{"* 1 FETCH (body[header] {2}\r\nab)\r\n", []string{"BODY.PEEK[HEADER]"}, true},
		{"* 1 FETCH (BODY[HEADER.FIELDS (SUBJECT FROM TO CC BCC)] {2}\r\nab)\r\n", []string{"BODY.PEEK[HEADER.FIELDS.NOT (A)]"}, true},
		{"* 1 FETCH (BODY[1] {2}\r\nab)\r\n", []string{"BINARY.PEEK[1]", "BODY", "BODY.PEEK[10]", "BODY.PEEK[2]"}, false},
		{"* 1 FETCH (BODY[1] {2}\r\nab)\r\n", []string{"BINARY.PEEK[1]", "BODY", "BODY.PEEK[10]", "BODY.PEEK[1]<0.5>", "RFC822"}, true},
		{"* 1 FETCH (FLAGS (\\Seen))\r\n", []string{"BODY[]"}, true},
		// Header items: the first of them when there is no content item.
		{"* 1 FETCH (UID 3 ENVELOPE (NIL NIL NIL NIL NIL NIL NIL NIL NIL NIL))\r\n", []string{"ENVELOPE"}, true},
		{"* 1 FETCH (UID 3 ENVELOPE (NIL NIL NIL NIL NIL NIL NIL NIL NIL NIL))\r\n", []string{"BODY.PEEK[]"}, false},
		{"* 1 FETCH (UID 3 ENVELOPE (NIL NIL NIL NIL NIL NIL NIL NIL NIL NIL))\r\n", []string{"ALL"}, true},
		{"* 1 FETCH (UID 3 ENVELOPE (NIL NIL NIL NIL NIL NIL NIL NIL NIL NIL))\r\n", []string{"FAST"}, false},
		{"* 1 FETCH (BODY (\"text\" \"plain\" NIL NIL NIL \"7bit\" 5 1))\r\n", []string{"FULL"}, true},
		{"* 1 FETCH (BODY (\"text\" \"plain\" NIL NIL NIL \"7bit\" 5 1))\r\n", []string{"BODYSTRUCTURE"}, false},
		{"* 1 FETCH (BODY (\"text\" \"plain\" NIL NIL NIL \"7bit\" 5 1))\r\n", []string{"BODY[]"}, false},
		{"* 1 FETCH (BODYSTRUCTURE (\"text\" \"plain\" NIL NIL NIL \"7bit\" 5 1))\r\n", []string{"FLAGS", "BODYSTRUCTURE"}, true},
		{"* 1 FETCH (ENVELOPE (NIL NIL NIL NIL NIL NIL NIL NIL NIL NIL) BODY[TEXT] {2}\r\nab)\r\n", []string{"ENVELOPE"}, false},
		{"* 1 FETCH (ENVELOPE (NIL NIL NIL NIL NIL NIL NIL NIL NIL NIL) BODY[TEXT] {2}\r\nab)\r\n", []string{"ENVELOPE", "BODY.PEEK[TEXT]"}, true},
	}
	for _, tc := range tests {
		tr, _ := runTracker(t, tc.resp, 64)
		// In the items' order and reversed: the keys are sorted.
		rev := slices.Clone(tc.items)
		slices.Reverse(rev)
		for _, items := range [][]string{tc.items, rev} {
			if got := tr.AnswersKeys(ItemKeys(nil, items)); got != tc.want {
				t.Errorf("%q answers keys of %v: %v", tc.resp, items, got)
			}
		}
	}
	var tr FetchTracker
	tr.Begin([]byte("* 1 FETCH (BODY[] {2}\r\n"))
	tr.Part([]byte("* 1 FETCH (BODY[] {2}\r\n"))
	keys := ItemKeys(nil, []string{"BODY.PEEK[HEADER]", "BODY.PEEK[]"})
	if n := testing.AllocsPerRun(100, func() { tr.AnswersKeys(keys) }); n != 0 {
		t.Errorf("AnswersKeys allocates %v times", n)
	}
}

// TestSetRangesLikeSetMayContain: SetRanges and RangesContain answer what
// SetMayContain does, for sets written in any order and overlapping.
func TestSetRangesLikeSetMayContain(t *testing.T) {
	sets := []string{"1", "1:3", "3:1", "1,5:7", "4:*", "*", "$", "10:20,30", "30,10:20,15:25,26",
		"7,3,5,1", "4294967295", "1:4294967295", "2:3,1,4", "x", "0", "5,,6", ""}
	for _, set := range sets {
		rs, all := SetRanges(nil, set)
		for n := uint32(0); n < 40; n++ {
			if got, want := all || RangesContain(rs, n), SetMayContain(set, n); got != want {
				t.Errorf("%q: %d: ranges %v (all %v) say %v, SetMayContain %v", set, n, rs, all, got, want)
			}
		}
		if got, want := all || RangesContain(rs, 4294967295), SetMayContain(set, 4294967295); got != want {
			t.Errorf("%q: max: %v, SetMayContain %v", set, got, want)
		}
	}
}
