package imapwire

// FetchTracker follows one "* n FETCH (...)" response (RFC 9051 §7.5.2) as
// it streams through, piece by piece and literal by literal, and finds the
// message content it carries and the message's UID. Content is counted
// wherever it comes from: the answer to FETCH, or data pushed during IDLE,
// NOOP or NOTIFY (ARCHITECTURE.md §12: count what is delivered). It reads each byte
// once, keeps no copy and does not allocate.
//
// Content items: BODY[...] and BINARY[...] (RFC 3516), RFC822,
// RFC822.HEADER and RFC822.TEXT, PREVIEW (RFC 8970) and Dovecot's SNIPPET.
// Their octets are the sizes of their literals and the lengths of their
// quoted strings.
type FetchTracker struct {
	st      fstate
	name    [16]byte // upper-cased start of the current item's name
	nameLen int
	sect    int   // "[" open in the name
	quoted  bool  // inside a quoted string of the name's section
	content bool  // the current item is content
	isUID   bool  // the current item is UID
	depth   int   // list nesting inside the current value
	esc     bool  // the previous byte in a quoted value was "\"
	qlen    int64 // length of the quoted value so far
	uid     uint64
	uidOK   bool
	skip    int // bytes of the first piece before the attribute list

	// Content is the content octets seen so far, Items the content items.
	Content int64
	Items   int
}

type fstate uint8

const (
	fsOff     fstate = iota // not in a FETCH response, or after its ")"
	fsOpen                  // before "(" of the attribute list
	fsName                  // expecting or inside an item name
	fsValue                 // expecting a value
	fsAtom                  // inside an atom or number value
	fsQuoted                // inside a quoted value
	fsList                  // inside a parenthesized value
	fsListQ                 // inside a quoted string in a list value
	fsAfter                 // after a value: SP or ")"
	fsLiteral               // a literal marker at the end of the piece
	fsBroken                // malformed: stop looking
	fsDone                  // the attribute list closed
)

// Begin starts tracking a response whose first piece is part, which Part
// must then be given too. It returns false when part is not a FETCH
// response.
func (t *FetchTracker) Begin(part []byte) bool {
	r, after, err := parseResponse(part)
	if err != nil || r.Kind != Untagged || r.Status != StatusNone || !equalFold(r.Name, "FETCH") || after < 0 {
		t.st = fsOff
		return false
	}
	*t = FetchTracker{st: fsOpen, skip: after}
	return true
}

// Part feeds the next piece of the response's lines, the first included.
func (t *FetchTracker) Part(part []byte) {
	if t.skip > 0 {
		n := min(t.skip, len(part))
		part, t.skip = part[n:], t.skip-n
	}
	t.feed(part)
}

// Literal reports that a literal of size octets starts here, and whether
// it is message content. The marker itself was in the piece just fed.
func (t *FetchTracker) Literal(size int64) bool {
	c := false
	switch t.st {
	case fsValue:
		c = t.content
		t.st = fsAfter
	case fsList:
		c = t.content
	case fsName:
		// A literal inside a section (HEADER.FIELDS): part of the name.
		return false
	default:
		t.st = fsBroken
		return false
	}
	if c {
		t.Content += size
	}
	return c
}

// UID returns the UID item, if the response had one.
func (t *FetchTracker) UID() (uint32, bool) { return uint32(t.uid), t.uidOK }

// Active reports whether a FETCH response is being tracked.
func (t *FetchTracker) Active() bool { return t.st != fsOff }

// End finishes the response.
func (t *FetchTracker) End() { t.st = fsOff }

func (t *FetchTracker) startName() {
	t.nameLen, t.sect, t.quoted, t.content, t.isUID, t.depth = 0, 0, false, false, false, 0
}

func (t *FetchTracker) endName() {
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

func hasPrefixFold(b []byte, upper string) bool {
	return len(b) >= len(upper) && equalFold(b[:len(upper)], upper)
}

func (t *FetchTracker) feed(b []byte) {
	for i := 0; i < len(b); i++ {
		c := b[i]
		switch t.st {
		case fsOff, fsBroken, fsDone:
			return
		case fsOpen:
			switch c {
			case ' ':
			case '(':
				t.st = fsName
				t.startName()
			default:
				t.st = fsBroken
			}
		case fsName:
			switch {
			case t.quoted:
				if c == '"' {
					t.quoted = false
				} else if c == '\\' {
					i++
				}
			case c == '"' && t.sect > 0:
				t.quoted = true
			case c == '[':
				t.sect++
			case c == ']' && t.sect > 0:
				t.sect--
			case t.sect == 0 && c == ' ':
				if t.nameLen == 0 {
					t.st = fsBroken
					return
				}
				t.endName()
				continue
			case t.sect == 0 && c == ')' && t.nameLen == 0:
				t.st = fsDone
				return
			case c == '\r' || c == '\n':
				t.st = fsBroken
				return
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
				t.st = fsBroken
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
			case '\r', '\n':
				// The end of a line after a literal inside a list value,
				// or the final CRLF.
			default:
				t.st = fsBroken
			}
		case fsLiteral:
			// The rest of the marker: the caller reports it with Literal.
			if c == '\n' {
				t.st = fsValue
			}
		}
	}
}

// quotedByte takes a byte of a quoted string value; at its closing DQUOTE
// it counts the string as content (when the item is) and returns true.
func (t *FetchTracker) quotedByte(c byte) bool {
	switch {
	case t.esc:
		t.esc = false
		t.qlen++
	case c == '\\':
		t.esc = true
	case c == '"':
		if t.content {
			t.Content += t.qlen
		}
		return true
	default:
		t.qlen++
	}
	return false
}

// atomByte accumulates a number value (UID).
func (t *FetchTracker) atomByte(c byte) {
	if !t.isUID {
		return
	}
	if c < '0' || c > '9' || t.uid > 1<<32 {
		t.isUID = false
		t.uidOK = false
		return
	}
	t.uid = t.uid*10 + uint64(c-'0')
	t.uidOK = t.uid > 0 && t.uid < 1<<32
}
