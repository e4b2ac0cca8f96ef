package imapwire

import (
	"bufio"
	"bytes"
	"fmt"
	"math/rand/v2"
	"testing"
)

// refTracker is FetchTracker as it was before its scan was rewritten to
// skip runs of bytes (issue 12): a byte-at-a-time state machine, kept as
// the reference of the differential test (TestFetchTrackerDifferential,
// FuzzFetchTrackerDifferential).
type refTracker struct {
	FetchTracker // its state, Begin, Literal, UID, Active and End
}

// Part feeds the next piece to the reference scan.
func (t *refTracker) Part(part []byte) {
	if t.skip > 0 {
		n := min(t.skip, len(part))
		part, t.skip = part[n:], t.skip-n
	}
	t.feed(part)
}

func (t *refTracker) refEndName() {
	n := t.name[:t.nameLen]
	switch {
	case hasPrefixFold(n, "BODY["), hasPrefixFold(n, "BINARY["):
		t.content = true
	case equalFold(n, "RFC822"), equalFold(n, "RFC822.HEADER"), equalFold(n, "RFC822.TEXT"),
		equalFold(n, "PREVIEW"), equalFold(n, "SNIPPET"):
		t.content = true
	case equalFold(n, "UID"):
		t.isUID = true
		t.uid, t.uidOK = 0, false
	}
	if t.content {
		t.Items++
	}
	t.st = fsValue
}

func (t *refTracker) feed(b []byte) {
	for i := 0; i < len(b); i++ {
		c := b[i]
		// gu gives up at c: it and every byte after it are content.
		gu := func() { t.giveUp(); t.Content++ }
		switch t.st {
		case fsOff:
			return
		case fsBroken:
			t.Content++
		case fsDone:
			if c != '\r' && c != '\n' {
				gu()
			}
		case fsOpen:
			switch c {
			case ' ':
			case '(':
				t.st = fsName
				t.startName()
			default:
				gu()
			}
		case fsName:
			switch {
			case t.quoted && t.esc:
				t.esc = false
			case t.quoted && c == '"':
				t.quoted = false
			case t.quoted && c == '\\':
				t.esc = true
			case c == '\r' || c == '\n':
				gu()
				continue
			case t.quoted:
			case c == '"' && t.sect > 0:
				t.quoted = true
			case c == '[':
				t.sect++
			case c == ']' && t.sect > 0:
				t.sect--
			case t.sect == 0 && c == ' ':
				if t.nameLen == 0 {
					gu()
					continue
				}
				t.refEndName()
				continue
			case t.sect == 0 && c == ')' && t.nameLen == 0:
				t.st = fsDone
				continue
			}
			if t.nameLen < len(t.name) {
				t.name[t.nameLen] = c
				t.nameLen++
			}
		case fsValue:
			switch c {
			case '"':
				t.st, t.esc, t.qlen = fsQuoted, false, 0
			case '(':
				t.st, t.depth = fsList, 1
			case '{', '~':
				t.st = fsLiteral
			case ' ', ')', '\r', '\n':
				gu()
			default:
				t.st = fsAtom
				t.atomByte(c)
			}
		case fsAtom:
			switch c {
			case ' ':
				t.st = fsName
				t.startName()
			case ')':
				t.st = fsDone
			case '\r', '\n':
				gu()
			default:
				t.atomByte(c)
			}
		case fsQuoted:
			if t.quotedByte(c) {
				t.st = fsAfter
			}
		case fsList:
			switch c {
			case '"':
				t.st, t.esc, t.qlen = fsListQ, false, 0
			case '(':
				t.depth++
			case ')':
				if t.depth--; t.depth == 0 {
					t.st = fsAfter
				}
			}
		case fsListQ:
			if t.quotedByte(c) {
				t.st = fsList
			}
		case fsAfter:
			switch c {
			case ' ':
				t.st = fsName
				t.startName()
			case ')':
				t.st = fsDone
			default:
				gu()
			}
		case fsLiteral:
			// The rest of the marker: the caller reports it with Literal.
			if c == '\n' {
				t.st = fsValue
			}
		}
	}
}

// quotedByte takes a byte of a quoted string value, a content octet when
// the item is content; it returns true at the closing DQUOTE.
func (t *refTracker) quotedByte(c byte) bool {
	switch {
	case c == '"' && !t.esc:
		return true
	case c == '\\' && !t.esc:
		t.esc = true
		return false
	}
	t.esc = false
	t.qlen++
	if t.content {
		t.Content++
	}
	return false
}

// diffTrack runs wire through a Scanner reading buf bytes at a time, and
// each piece through a FetchTracker and the reference side by side, the
// way the relay does; it fails at the first piece after which they differ.
func diffTrack(t *testing.T, wire []byte, buf int) {
	t.Helper()
	s := NewScanner(bufio.NewReaderSize(bytes.NewReader(wire), buf), 0)
	var nt FetchTracker
	var rt refTracker
	for n := 0; n < 200; n++ {
		part, final, _, ok, err := s.ReadLinePart()
		if err != nil {
			return
		}
		if !nt.Active() {
			if nb, rb := nt.Begin(part), rt.Begin(part); nb != rb {
				t.Fatalf("buf %d %q: Begin %v, reference %v", buf, wire, nb, rb)
			}
		}
		nt.Part(part)
		rt.Part(part)
		same := func(what string) {
			t.Helper()
			nu, nok := nt.UID()
			ru, rok := rt.UID()
			if nt.st != rt.st || nt.Content != rt.Content || nt.Items != rt.Items || nu != ru || nok != rok {
				t.Fatalf("buf %d %q: after %s %q: state %d content %d items %d uid %d/%v; reference %d %d %d %d/%v",
					buf, wire, what, part, nt.st, nt.Content, nt.Items, nu, nok, rt.st, rt.Content, rt.Items, ru, rok)
			}
		}
		same("piece")
		if final && ok {
			size := s.LiteralRemaining()
			if nl, rl := nt.Literal(size), rt.Literal(size); nl != rl {
				t.Fatalf("buf %d %q: Literal %v, reference %v", buf, wire, nl, rl)
			}
			same("literal")
			if s.DiscardLiteral() != nil {
				return
			}
		} else if final {
			nt.End()
			rt.End()
		}
	}
}

// fetchPieces are the pieces genFetch builds FETCH responses from: the
// items of RFC 9051 §7.5.2 and their extensions, values of every shape,
// and the odd bytes a broken or hostile backend may send.
var fetchPieces = []string{
	"UID ", "uid ", "FLAGS ", "BODY[] ", "body[text] ", "BODY[HEADER.FIELDS (FROM \"TO\")] ", "BODY[1.2]<0> ",
	"BINARY[1] ", "BINARY.SIZE[1] ", "RFC822 ", "RFC822.HEADER ", "rfc822.text ", "RFC822.SIZE ", "PREVIEW ",
	"SNIPPET ", "ENVELOPE ", "BODYSTRUCTURE ", "MODSEQ ", "INTERNALDATE ", "X-VERY-LONG-ITEM-NAME-PAST-16 ",
	"7", "4294967295", "4294967296", "0", "12a", "NIL", "(\\Seen \\Answered)", "(FUZZY \"a \\\"b\\\\\")",
	"((\"a\" NIL) (\"b\" {3}\r\nxyz))", "\"quoted \\\" value\"", "\"\"", "{5}\r\nhello", "~{3}\r\n\x00\x01\x02",
	"{0}\r\n", "(1 (2 (3)))", " ", ")", "(", "\"", "\\", "[", "]", "\r\n", "\n", "\r", "{", "}", "~",
}

// genFetch builds a FETCH response of n pieces from rng.
func genFetch(rng *rand.Rand, n int) []byte {
	b := fmt.Appendf(nil, "* %d FETCH (", rng.IntN(100)+1)
	for range n {
		b = append(b, fetchPieces[rng.IntN(len(fetchPieces))]...)
	}
	if rng.IntN(4) > 0 {
		b = append(b, ")\r\n"...)
	}
	return append(b, "* 2 FETCH (UID 3 BODY[] {2}\r\nab)\r\n"...)
}

// The rewritten FetchTracker reads every response as the byte-at-a-time
// reference does: the same state, content, items and UID after every
// piece, whatever the piece boundaries (issue 12 rewrote its scan).
func TestFetchTrackerDifferential(t *testing.T) {
	rng := rand.New(rand.NewPCG(12, 1))
	wires := [][]byte{
		[]byte("* 1 FETCH (UID 7 FLAGS (\\Seen))\r\n"),
		[]byte("* 1 FETCH (BODY[HEADER.FIELDS (FROM)] \"From: a\\\"b\\r\\n\" UID 2)\r\n"),
		[]byte("* 1 FETCH (ENVELOPE (\"d\" {4}\r\nsubj NIL NIL NIL NIL NIL NIL NIL NIL) UID 9)\r\n"),
		[]byte("* 1 FETCH (BODY[HEADER.FIELDS (\"X\\\"Y\" {2}\r\nab)] {3}\r\nxyz)\r\n"),
	}
	for range 3000 {
		wires = append(wires, genFetch(rng, rng.IntN(12)+1))
	}
	for _, w := range wires {
		for _, buf := range []int{16, 17, 19, 23, 31, 4096} {
			diffTrack(t, w, buf)
		}
	}
}

func FuzzFetchTrackerDifferential(f *testing.F) {
	rng := rand.New(rand.NewPCG(1, 2))
	for range 20 {
		f.Add(genFetch(rng, 8), uint8(0))
	}
	f.Add([]byte("* 1 FETCH (UID 7 BODY[] {5}\r\nhello)\r\n"), uint8(3))
	f.Fuzz(func(t *testing.T, wire []byte, buf uint8) {
		diffTrack(t, wire, 16+int(buf))
	})
}
