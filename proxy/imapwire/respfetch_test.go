package imapwire

import (
	"bufio"
	"strings"
	"testing"
)

// trackWire runs a FETCH response, as a backend sends it, through a
// Scanner and a FetchTracker the way the relay does, with a small buffer
// so that lines come in pieces.
func trackWire(t *testing.T, wire string, buf int) (content int64, items int, uid uint32, hasUID bool, literals []bool) {
	t.Helper()
	tr, literals := runTracker(t, wire, buf)
	uid, hasUID = tr.UID()
	return tr.Content, tr.Items, uid, hasUID, literals
}

// runTracker is trackWire's reading: the tracker after the response, and
// whether each literal was content.
func runTracker(t *testing.T, wire string, buf int) (tr *FetchTracker, literals []bool) {
	t.Helper()
	s := NewScanner(bufio.NewReaderSize(strings.NewReader(wire), buf), 0)
	tr = new(FetchTracker)
	first := true
	for {
		part, final, _, ok, err := s.ReadLinePart()
		if err != nil {
			t.Fatalf("read: %v", err)
		}
		if first {
			if !tr.Begin(part) {
				t.Fatalf("not a FETCH response: %q", part)
			}
			first = false
		}
		tr.Part(part)
		if !final {
			continue
		}
		if !ok {
			break
		}
		literals = append(literals, tr.Literal(s.LiteralRemaining()))
		if err := s.DiscardLiteral(); err != nil {
			t.Fatal(err)
		}
	}
	return tr, literals
}

func TestFetchTracker(t *testing.T) {
	tests := []struct {
		name, wire string
		content    int64
		items      int
		uid        uint32
		lits       []bool
	}{
		{"flags only", "* 1 FETCH (UID 7 FLAGS (\\Seen))\r\n", 0, 0, 7, nil},
		{"body literal", "* 1 FETCH (UID 7 BODY[] {5}\r\nhello)\r\n", 5, 1, 7, []bool{true}},
		{"uid after body", "* 3 FETCH (BODY[TEXT] {3}\r\nabc UID 42)\r\n", 3, 1, 42, []bool{true}},
		{"quoted body", "* 1 FETCH (BODY[HEADER.FIELDS (FROM)] \"From: a\\\"b\\r\\n\" UID 2)\r\n", 11, 1, 2, nil},
		{"envelope literal is metadata", "* 1 FETCH (ENVELOPE (\"d\" {4}\r\nsubj NIL NIL NIL NIL NIL NIL NIL NIL) UID 9)\r\n", 0, 0, 9, []bool{false}},
		{"binary literal8", "* 1 FETCH (BINARY[1] ~{3}\r\n\x00\x01\x02)\r\n", 3, 1, 0, []bool{true}},
		{"binary size is metadata", "* 1 FETCH (BINARY.SIZE[1] 300)\r\n", 0, 0, 0, nil},
		{"rfc822 and header", "* 2 FETCH (RFC822.HEADER {2}\r\nab RFC822.TEXT {3}\r\ncde RFC822.SIZE 5)\r\n", 5, 2, 0, []bool{true, true}},
		{"preview", "* 5 FETCH (UID 5 PREVIEW \"first words\")\r\n", 11, 1, 5, nil},
		{"snippet list", "* 5 FETCH (SNIPPET (FUZZY \"a snippet\"))\r\n", 9, 1, 0, nil},
		{"nil body", "* 1 FETCH (BODY[] NIL)\r\n", 0, 1, 0, nil},
		{"body structure", "* 1 FETCH (BODY (\"text\" \"plain\" NIL NIL NIL \"7bit\" 5 1))\r\n", 0, 0, 0, nil},
		{"partial", "* 1 FETCH (BODY[]<0> {4}\r\nabcd)\r\n", 4, 1, 0, []bool{true}},
	}
	for _, tt := range tests {
		for _, buf := range []int{16, 4096} {
			content, items, uid, _, lits := trackWire(t, tt.wire, buf)
			if content != tt.content || items != tt.items || uid != tt.uid || len(lits) != len(tt.lits) {
				t.Errorf("%s (buf %d): content %d items %d uid %d lits %v; want %d %d %d %v",
					tt.name, buf, content, items, uid, lits, tt.content, tt.items, tt.uid, tt.lits)
				continue
			}
			for i := range lits {
				if lits[i] != tt.lits[i] {
					t.Errorf("%s: literal %d content %v", tt.name, i, lits[i])
				}
			}
		}
	}
	var tr FetchTracker
	if tr.Begin([]byte("* 1 EXISTS\r\n")) || tr.Active() {
		t.Error("EXISTS tracked")
	}
}

// TestFetchTrackerHeaders: ENVELOPE, BODYSTRUCTURE and BODY show headers
// (read-content) without octets any cap counts: header items, counted
// apart from content items, with their literals not content.
func TestFetchTrackerHeaders(t *testing.T) {
	tests := []struct {
		wire           string
		items, headers int
		content        int64
	}{
		{"* 1 FETCH (UID 7 FLAGS (\\Seen))\r\n", 0, 0, 0},
		{"* 1 FETCH (UID 7 ENVELOPE (\"d\" {4}\r\nsubj NIL NIL NIL NIL NIL NIL NIL NIL))\r\n", 0, 1, 0},
		{"* 1 FETCH (UID 7 envelope (NIL NIL NIL NIL NIL NIL NIL NIL NIL NIL))\r\n", 0, 1, 0},
		{"* 1 FETCH (BODYSTRUCTURE (\"text\" \"plain\" NIL NIL NIL \"7bit\" 5 1) UID 7)\r\n", 0, 1, 0},
		{"* 1 FETCH (BODY (\"text\" \"plain\" NIL NIL NIL \"7bit\" 5 1) UID 7)\r\n", 0, 1, 0},
		{"* 1 FETCH (BODY[] {3}\r\nabc ENVELOPE (NIL NIL NIL NIL NIL NIL NIL NIL NIL NIL) UID 7)\r\n", 1, 1, 3},
		{"* 1 FETCH (BODY.SIZE 3 BODYSTRUCTUREX NIL ENVELOPES NIL UID 7)\r\n", 0, 0, 0},
	}
	for _, tt := range tests {
		for _, buf := range []int{16, 4096} {
			tr, _ := runTracker(t, tt.wire, buf)
			uid, _ := tr.UID()
			if tr.Items != tt.items || tr.Headers != tt.headers || tr.Content != tt.content || uid != 7 {
				t.Errorf("%q (buf %d): items %d headers %d content %d uid %d, want %d %d %d 7",
					tt.wire, buf, tr.Items, tr.Headers, tr.Content, uid, tt.items, tt.headers, tt.content)
			}
		}
	}
}

// The UID item (RFC 9051 §7.5.2) is read wherever it stands, never from
// a name in a section, a quoted string or a literal; a UID of 0 or past
// 32 bits is none.
func TestFetchTrackerUID(t *testing.T) {
	for _, tc := range []struct {
		wire string
		uid  uint32
		ok   bool
	}{
		{"* 1 FETCH (UID 42 BODY[] {5}\r\nhello)\r\n", 42, true},
		{"* 1 FETCH (FLAGS (\\Seen \\Answered) UID 7)\r\n", 7, true},
		{"* 3 fetch (RFC822.SIZE 100 uid 9 BODY[HEADER.FIELDS (UID)] {3}\r\nabc)\r\n", 9, true},
		{"* 1 FETCH (BODY[HEADER.FIELDS (UID)] {3}\r\nabc)\r\n", 0, false},
		{"* 1 FETCH (BODY[HEADER.FIELDS (\"X]\" UID)] {3}\r\nabc UID 5)\r\n", 5, true},
		{"* 1 FETCH (BODY[HEADER.FIELDS (\"X]\" UID)] \"UID 6\")\r\n", 0, false},
		{"* 1 FETCH (ENVELOPE (\"date\" \"UID 5\" NIL) UID 11)\r\n", 11, true},
		{"* 1 FETCH (BODY[] {5}\r\nUID 5 UID 12)\r\n", 12, true},
		{"* 1 FETCH (FLAGS (\\Seen))\r\n", 0, false},
		{"* 1 FETCH (UID 0)\r\n", 0, false},
		{"* 1 FETCH (UID 4294967296)\r\n", 0, false},
		{"* 1 FETCH (UID 4294967295)\r\n", 4294967295, true},
		{"* 1 FETCH (UID 12a)\r\n", 0, false},
	} {
		for _, buf := range []int{16, 4096} {
			tr, _ := runTracker(t, tc.wire, buf)
			if uid, ok := tr.UID(); ok != tc.ok || (ok && uid != tc.uid) {
				t.Errorf("%q (buf %d): UID %d, %v; want %d, %v", tc.wire, buf, uid, ok, tc.uid, tc.ok)
			}
		}
	}
}

// A quoted content value (RFC 9051 §4.3: an nstring may be quoted) is
// counted as its pieces pass, its item at the name: the relay charges
// each piece before writing it, however long the string (ARCHITECTURE.md
// §12). Before, its octets counted only at the closing DQUOTE, after up
// to MaxResponseLine of it went out.
func TestFetchTrackerQuotedContentPerPiece(t *testing.T) {
	tr := new(FetchTracker)
	first := []byte("* 1 FETCH (UID 7 BODY[] \"ab\\")
	if !tr.Begin(first) {
		t.Fatal("not a FETCH response")
	}
	tr.Part(first)
	if tr.Items != 1 || tr.Content != 2 {
		t.Fatalf("after the opening piece: items %d content %d, want 1 2", tr.Items, tr.Content)
	}
	for k, want := range []int64{2 + 1 + 100, 2 + 1 + 100 + 3} {
		piece := strings.Repeat("x", 100)
		if k == 0 {
			piece = "\"" + piece // the escaped DQUOTE
		} else {
			piece = "yyy\" UID 7)\r\n"
		}
		tr.Part([]byte(piece))
		if tr.Content != want {
			t.Fatalf("after piece %d: content %d, want %d", k, tr.Content, want)
		}
	}
	if !tr.End() || tr.Items != 1 {
		t.Errorf("not read to its end, or items %d", tr.Items)
	}
	// Given up inside a quoted content value (at a literal marker, the
	// string taken to the end of the line): its octets count once.
	tr, _ = trackToEnd(t, "* 1 FETCH (UID 5 BODY[] \"ab{5}\r\nhello\")\r\n", 4096)
	if want := int64(len("ab{5}\r\n") + 5 + len("\")\r\n")); tr.Content != want {
		t.Errorf("given up in a quoted value: content %d, want %d", tr.Content, want)
	}
}

func FuzzFetchTracker(f *testing.F) {
	f.Add([]byte("* 1 FETCH (UID 7 BODY[] {5}\r\nhello)\r\n"))
	f.Add([]byte("* 1 FETCH (SNIPPET (FUZZY {3}\r\nabc))\r\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		s := NewScanner(bufio.NewReaderSize(strings.NewReader(string(data)), 16), 0)
		var tr FetchTracker
		for range 50 {
			part, final, _, ok, err := s.ReadLinePart()
			if err != nil {
				return
			}
			if !tr.Active() {
				tr.Begin(part)
			}
			tr.Part(part)
			if final && ok {
				before, gave := tr.Content, tr.GaveUp()
				size := s.LiteralRemaining()
				counted := tr.Literal(size)
				// Giving up at this literal may also count the quoted
				// string it stands in (giveUp): at least the literal.
				switch {
				case counted && tr.Content < before+size:
					t.Fatal("literal not counted")
				case counted && gave == tr.GaveUp() && tr.Content != before+size:
					t.Fatal("literal counted twice")
				}
				if s.DiscardLiteral() != nil {
					return
				}
			} else if final {
				tr.End()
			}
			if tr.Content < 0 {
				t.Fatal("negative content")
			}
		}
	})
}

// trackToEnd is runTracker, then End: the tracker and whether it read the
// response to its end.
func trackToEnd(t *testing.T, wire string, buf int) (*FetchTracker, bool) {
	t.Helper()
	tr, _ := runTracker(t, wire, buf)
	gave := tr.GaveUp()
	read := tr.End()
	if gave && read {
		t.Errorf("%q: End reads a response the tracker gave up on", wire)
	}
	return tr, read
}

// A response the tracker cannot read is never "no content": from where it
// gave up, the rest of the response, literals included, is content of its
// message, and End says it was not read (ARCHITECTURE.md §12). Each case
// is one way to give up; the first two are the echoes of HEADER.FIELDS
// names Cyrus sends unquoted (attack46c).
func TestFetchTrackerGivesUpToContent(t *testing.T) {
	tests := []struct {
		name, wire string
		content    int64 // at least
		uid        uint32
	}{
		{"unbalanced [ in a section", "* 1 FETCH (UID 5 BODY[HEADER.FIELDS (X[Y)] {2}\r\nab BODY[] {5}\r\nhello)\r\n", 7, 5},
		{"] closing a section early", "* 1 FETCH (UID 5 BODY[HEADER.FIELDS (X] FROM)] {2}\r\nab BODY[] {5}\r\nhello)\r\n", 7, 5},
		{"no attribute list", "* 1 FETCH UID 5 {5}\r\nhello\r\n", 5, 0},
		{"empty item name", "* 1 FETCH (UID 5  BODY[] {5}\r\nhello)\r\n", 5, 5},
		{"no value", "* 1 FETCH (UID 5 FLAGS  BODY[] {5}\r\nhello)\r\n", 5, 5},
		{"bytes after a string", "* 1 FETCH (UID 5 X \"a\"b BODY[] {5}\r\nhello)\r\n", 5, 5},
		{"bytes after the list", "* 1 FETCH (UID 5) BODY[] {5}\r\nhello\r\n", 5, 5},
		{"literal after an atom", "* 1 FETCH (UID 5 X a{5}\r\nhello)\r\n", 5, 5},
		{"literal in a name", "* 1 FETCH (UID 5 X{5}\r\nhello)\r\n", 5, 5},
		{"literal in a quoted header name", "* 1 FETCH (UID 5 BODY[HEADER.FIELDS (\"X{5}\r\nhello\")] NIL)\r\n", 5, 5},
		{"literal in a quoted value", "* 1 FETCH (UID 5 X \"ab{5}\r\nhello\")\r\n", 7, 5},
		{"line ends after a literal", "* 1 FETCH (UID 5 BODY[] {5}\r\nhello\r\n", 7, 5},
		{"line ends in an atom", "* 1 FETCH (UID 5 RFC822.SIZE 44\r\n", 2, 5},
	}
	for _, tt := range tests {
		for _, buf := range []int{16, 4096} {
			tr, read := trackToEnd(t, tt.wire, buf)
			uid, _ := tr.UID()
			if read || tr.Content < tt.content || tr.Items == 0 || uid != tt.uid {
				t.Errorf("%s (buf %d): read %v, content %d, items %d, uid %d; want not read, content >= %d, items > 0, uid %d",
					tt.name, buf, read, tr.Content, tr.Items, uid, tt.content, tt.uid)
			}
			if !tr.AnswersKeys(ItemKeys(nil, []string{"FLAGS"})) {
				t.Errorf("%s: an unread response answers no FETCH", tt.name)
			}
		}
	}
	// The end of the line inside a list: nothing left to count, but not
	// read either.
	if _, read := trackToEnd(t, "* 1 FETCH (UID 5 FLAGS (\\Seen\r\n", 16); read {
		t.Error("a list cut by the end of the line read to its end")
	}
	// The exact account: the rest of the line from the byte given up at,
	// and every literal after it.
	tr, _ := trackToEnd(t, "* 1 FETCH (UID 5 BODY[HEADER.FIELDS (X[Y)] {2}\r\nab BODY[] {5}\r\nhello)\r\n", 4096)
	if want := int64(len("\r\n") + 2 + len(" BODY[] {5}\r\n") + 5 + len(")\r\n")); tr.Content != want {
		t.Errorf("content %d, want %d", tr.Content, want)
	}
	// Readable responses are read to their end.
	for _, w := range []string{
		"* 1 FETCH (UID 7 FLAGS (\\Seen))\r\n",
		"* 3 FETCH (BODY[TEXT] {3}\r\nabc UID 42)\r\n",
		"* 1 FETCH (BODY[HEADER.FIELDS (FROM \"X-A\")] \"From: a\\\"b\\r\\n\" UID 2)\r\n",
		"* 1 FETCH (ENVELOPE (\"d\" {4}\r\nsubj NIL NIL NIL NIL NIL NIL NIL NIL) UID 9)\r\n",
		"* 1 FETCH (BINARY[1] ~{3}\r\n\x00\x01\x02)\r\n",
		"* 1 FETCH ()\r\n",
	} {
		if tr, read := trackToEnd(t, w, 16); !read || tr.GaveUp() {
			t.Errorf("%q: not read to its end", w)
		}
	}
}
