package imapwire

import (
	"encoding/binary"
	"math/bits"
)

// PlainFetchLine returns the length of the line at the start of b when it
// is a whole FETCH response the relay may copy as it is, without reading
// it again (issue 12: one pass for the common case, the reply to
// UID FETCH 1:* (FLAGS)); 0 for anything else, which the full path reads
// (Scanner.ReadLinePart, ParseResponse, FetchTracker).
//
// Such a line is "* " number " FETCH (" items ")" CRLF, printable ASCII
// only, where the number is one ParseResponse takes, each item a name of
// letters, digits, "." and "-" that is no content or header item of
// FetchTracker (so neither BODY[...] nor BINARY[...]: no "["; nor
// ENVELOPE, whose record names the message read) and a value that is an
// atom, a quoted string without "\", or a parenthesized list of atoms
// (flags, "\" included) and lists. The full path finds in such a line no
// content, no literal, no fault of lineCheck: nothing but the bytes to
// relay (TestPlainFetchLine, FuzzPlainFetchLine).
func PlainFetchLine(b []byte) int {
	n, _ := PlainFetchRun(b, 1, int64(len(b)))
	return n
}

// PlainFetchRun returns the length of the run of whole PlainFetchLine
// lines at the start of b, at most most of them and none longer than
// max, and how many it holds: the relay copies them in one go.
func PlainFetchRun(b []byte, most int, max int64) (n, lines int) {
	return plainFetchRun(b, most, max, true)
}

// plainFetchRun is PlainFetchRun; without general it takes only the lines
// of the two shapes backends send for FLAGS, matched first (the tests
// compare the two readings). Such a line is "* n FETCH (UID u FLAGS (f))"
// CRLF (Dovecot, Courier) or "* n FETCH (FLAGS (f) UID u)" CRLF (Cyrus),
// with n of 1 to 7 digits (never past 32 bits), u of 1 to 15 and f a run
// of pList bytes: a line plainFetchLine takes, with the same length, read
// at a fraction of its cost. A line of these shapes it is not
// sure of (longer numbers, a nested list, longer than flagsWindow) is left
// to plainFetchLine (TestFlagsLineDefers, FuzzFlagsLine).
func plainFetchRun(b []byte, most int, max int64, general bool) (n, lines int) {
	var pad [flagsWindow]byte
	for lines < most {
		k, m := flagsRun(b[n:], most-lines, max)
		n, lines = n+k, lines+m
		if lines == most {
			break
		}
		if c := b[n:]; len(c) < flagsWindow {
			// The end of what is buffered: read from a copy whose rest is
			// zero bytes, which no part of either shape matches, so a
			// line taken ends within c.
			pad = [flagsWindow]byte{}
			copy(pad[:], c)
			if k, m = flagsRun(pad[:], 1, max); m == 1 {
				n, lines = n+k, lines+1
				continue
			}
		}
		if !general {
			break
		}
		l := plainFetchLine(b[n:])
		if l == 0 || int64(l) > max {
			break
		}
		n, lines = n+l, lines+1
	}
	return n, lines
}

// flagsRun is plainFetchRun's run of lines of the FLAGS shapes, each
// read from a window of flagsWindow bytes of b, at most most of them and
// none longer than max, stopping at the first other line or where less
// than a window is left. It calls nothing: a call in the loop would spill
// every register it keeps.
func flagsRun(b []byte, most int, max int64) (n, lines int) {
	for ; lines < most && len(b)-n >= flagsWindow; lines++ {
		w, l := (*[flagsWindow]byte)(b[n:]), 0
		switch {
		default:
			// "* " n " FETCH (", numbers in one or two loads, fixed words
			// in one compare each; d&7 and d&15, equal to d where it is
			// used, tell the compiler i stays within w.
			if w[0] != '*' || w[1] != ' ' {
				break
			}
			d := digits8(w[2:10])
			if d == 0 || d == 8 {
				break
			}
			i := 2 + d&7
			if string(w[i:i+8]) != " FETCH (" {
				break
			}
			i += 8
			if string(w[i:i+4]) == "UID " {
				// u " FLAGS (" f "))" CRLF
				i += 4
				if d = digits16(w[i : i+16]); d == 0 || d == 16 {
					break
				}
				if i += d & 15; string(w[i:i+8]) != " FLAGS (" {
					break
				}
				if i = flagRun(w, i+8); i <= flagsWindow-4 && string(w[i:i+4]) == "))\r\n" {
					l = i + 4
				}
				break
			}
			// "FLAGS (" f ") UID " u ")" CRLF
			if string(w[i:i+7]) != "FLAGS (" {
				break
			}
			if i = flagRun(w, i+7); i > flagsWindow-6-16 || string(w[i:i+6]) != ") UID " {
				break
			}
			if d = digits16(w[i+6 : i+6+16]); d == 0 || d == 16 {
				break
			}
			if i += 6 + d&15; i <= flagsWindow-3 && string(w[i:i+3]) == ")\r\n" {
				l = i + 3
			}
		}
		if l == 0 || int64(l) > max {
			break
		}
		n += l
	}
	return n, lines
}

// flagsWindow is the most a line of the FLAGS shapes plainFetchRun
// matches first may be long.
const flagsWindow = 128

// digits16 is how many ASCII digits b (16 bytes) starts with.
func digits16(b []byte) int {
	d := digits8(b[:8])
	if d == 8 {
		d += digits8(b[8:16])
	}
	return d
}

// flagRun returns where the run of pList bytes at w[i:] ends: a flag
// list without nested lists.
func flagRun(w *[flagsWindow]byte, i int) int {
	for i < flagsWindow && plain[w[i]]&pList != 0 {
		i++
	}
	return i
}

// digits8 is how many ASCII digits b (8 bytes) starts with, all eight at
// once: a byte t = c^'0' is a digit when t < 10, that is when neither t
// nor t+0x76 has its high bit set. A carry out of a byte comes only from
// one that is no digit, and reaches only the bytes after it, so the
// lowest byte flagged is the first that is no digit.
func digits8(b []byte) int {
	t := binary.LittleEndian.Uint64(b) ^ 0x3030303030303030
	return bits.TrailingZeros64((t+0x7676767676767676|t)&0x8080808080808080) >> 3
}

// plainFetchLine is PlainFetchLine item by item.
func plainFetchLine(b []byte) int {
	// "* n FETCH (": the number of message-data, 32-bit (RFC 9051 §7.5).
	if len(b) < 2 || b[0] != '*' || b[1] != ' ' {
		return 0
	}
	i, n := 2, uint64(0)
	for ; i < len(b) && i < 12 && '0' <= b[i] && b[i] <= '9'; i++ {
		n = n*10 + uint64(b[i]-'0')
	}
	if i == 2 || n > 1<<32-1 || len(b)-i < len(" FETCH (") || string(b[i:i+8]) != " FETCH (" {
		return 0
	}
	i += 8
	for {
		// An item and its value: first the two of nearly every line.
		switch {
		case len(b)-i > 4 && string(b[i:i+4]) == "UID ":
			j := i + 4
			for j < len(b) && '0' <= b[j] && b[j] <= '9' {
				j++
			}
			if j == i+4 {
				return 0
			}
			i = j
		case len(b)-i > 7 && string(b[i:i+7]) == "FLAGS (":
			if i = plainList(b, i+7); i < 0 {
				return 0
			}
		default:
			// A name, SP, a value.
			j := i
			for j < len(b) && plain[b[j]]&pName != 0 {
				j++
			}
			if j == i || j+1 >= len(b) || b[j] != ' ' || trackedName(b[i:j]) {
				return 0
			}
			if i = plainValue(b, j+1); i < 0 {
				return 0
			}
		}
		// SP and the next item, or the end.
		if i >= len(b) {
			return 0
		}
		if b[i] == ' ' {
			i++
			continue
		}
		if len(b)-i >= 3 && b[i] == ')' && b[i+1] == '\r' && b[i+2] == '\n' {
			return i + 3
		}
		return 0
	}
}

// plainValue reads the value at b[i] (i < len(b)) and returns where it
// ends, or -1 when it is none PlainFetchLine takes.
func plainValue(b []byte, i int) int {
	switch b[i] {
	case '(':
		return plainList(b, i+1)
	case '"':
		for i++; i < len(b) && plain[b[i]]&pQuoted != 0; i++ {
		}
		if i >= len(b) || b[i] != '"' {
			return -1
		}
		return i + 1
	}
	j := i
	for j < len(b) && plain[b[j]]&pAtom != 0 {
		j++
	}
	if j == i {
		return -1
	}
	return j
}

// plainList reads a parenthesized list from b[i:], right after its "(",
// and returns where it ends, or -1.
func plainList(b []byte, i int) int {
	depth := 1
	for ; i < len(b); i++ {
		switch c := b[i]; {
		case plain[c]&pList != 0:
		case c == '(':
			depth++
		case c == ')':
			if depth--; depth == 0 {
				return i + 1
			}
		default:
			return -1
		}
	}
	return -1
}

// trackedName reports the item names without "[" that FetchTracker counts
// as content or header items.
func trackedName(n []byte) bool {
	switch len(n) {
	case 4:
		return equalFold(n, "BODY")
	case 6:
		return equalFold(n, "RFC822")
	case 7:
		return equalFold(n, "PREVIEW") || equalFold(n, "SNIPPET")
	case 8:
		return equalFold(n, "ENVELOPE")
	case 11:
		return equalFold(n, "RFC822.TEXT")
	case 13:
		return equalFold(n, "RFC822.HEADER") || equalFold(n, "BODYSTRUCTURE")
	}
	return false
}

// Byte classes of PlainFetchLine.
const (
	pName   uint8 = 1 << iota // an item name: ALPHA, DIGIT, ".", "-"
	pAtom                     // an atom value: ATOM-CHAR but "[", "]", "{", "}", "~", "%", "*"
	pList                     // inside a list: a pAtom byte, "\" or SP
	pQuoted                   // inside a quoted string: printable ASCII but DQUOTE and "\"
)

var plain = func() (t [256]uint8) {
	for c := 0x20; c < 0x7f; c++ {
		b := byte(c)
		if 'a' <= b && b <= 'z' || 'A' <= b && b <= 'Z' || '0' <= b && b <= '9' || b == '.' || b == '-' {
			t[c] |= pName
		}
		if isAtomChar(b) && b != '[' && b != ']' && b != '{' && b != '}' && b != '~' && b != '%' && b != '*' {
			t[c] |= pAtom | pList
		}
		if b == '\\' || b == ' ' {
			t[c] |= pList
		}
		if b != '"' && b != '\\' {
			t[c] |= pQuoted
		}
	}
	return t
}()
