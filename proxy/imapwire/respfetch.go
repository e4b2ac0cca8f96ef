package imapwire

import (
	"bytes"
	"cmp"
	"slices"
)

// FetchTracker follows one "* n FETCH (...)" response (RFC 9051 §7.5.2) as
// it streams through, piece by piece and literal by literal, and finds the
// message content it carries and the message's UID. Content is counted
// wherever it comes from: the answer to FETCH, or data pushed during IDLE,
// NOOP or NOTIFY (ARCHITECTURE.md §12: count what is delivered). It reads each byte
// once, keeps no copy and does not allocate.
//
// Content items: BODY[...] and BINARY[...] (RFC 3516), RFC822,
// RFC822.HEADER and RFC822.TEXT, PREVIEW (RFC 8970) and Dovecot's SNIPPET.
// Their octets are the sizes of their literals, counted at the marker
// (Literal), and the octets of their quoted strings (RFC 9051 §4.3: an
// nstring may be quoted), counted as each piece passes: a quoted value
// may be as long as a response line, so the relay charges each piece of
// it before writing it, never at the closing DQUOTE (ARCHITECTURE.md §12).
// The item itself counts at its name (Items), before its value. Header items: ENVELOPE, BODYSTRUCTURE and BODY, which
// show header fields in a structure (the read-content effect of the
// command table) but whose octets no cap counts; they name the message
// read all the same (Headers).
//
// A response it cannot read (a byte no state expects, a literal where
// none may stand, a line that ends before the attribute list closes) is
// never read as "no content": from where it gave up, every octet left of
// the response, literals included, is content of the response's message
// (GaveUp, End), so the relay charges it and ends the session
// (ARCHITECTURE.md §12).
type FetchTracker struct {
	st      fstate
	name    [32]byte // start of the current item's name, as sent
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
	skip    int  // bytes of the first piece before the attribute list
	header  bool // the current item is a header item
	gaveUp  bool // the response could not be read: the rest is content
	// first is the start of the first content item's name ("BODY[TEXT]"),
	// or of the first header item's when there is no content item, for
	// telling which command a response answers (AnswersKeys).
	first    [32]byte
	firstLen uint8

	// Content is the content octets seen so far, Items the content items,
	// Headers the header items.
	Content int64
	Items   int
	Headers int
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
	fsBroken                // unreadable: every octet left is content (giveUp)
	fsDone                  // the attribute list closed
)

// Begin starts tracking a response whose first piece is part, which Part
// must then be given too. It returns false when part is not a FETCH
// response.
func (t *FetchTracker) Begin(part []byte) bool {
	r, err := ParseResponse(part)
	if err != nil {
		t.st = fsOff
		return false
	}
	return t.BeginResponse(&r)
}

// BeginResponse is Begin for a line ParseResponse already read: the
// relay parses each response line once (issue 12) and hands the result
// on.
func (t *FetchTracker) BeginResponse(r *Response) bool {
	if r.Kind != Untagged || r.Status != StatusNone || r.after <= 0 || !equalFold(r.Name, "FETCH") {
		t.st = fsOff
		return false
	}
	*t = FetchTracker{st: fsOpen, skip: r.after}
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
	case fsOff:
		return false
	default:
		// A literal where the response as read has none (inside a name,
		// an atom or a quoted string, after the attribute list) or after
		// the tracker gave up: content, with the rest.
		t.giveUp()
		c = true
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

// GaveUp reports whether the tracker could not read the response: all of
// it from that point on is counted as content (ARCHITECTURE.md §12).
func (t *FetchTracker) GaveUp() bool { return t.gaveUp }

// End finishes the response. It reports whether the response was read to
// the end of its attribute list: false when the tracker gave up, or when
// the response ended before its ")" (what the tracker took for a list or
// a string went on to the end of the line).
func (t *FetchTracker) End() (read bool) {
	read = t.st == fsDone && !t.gaveUp
	t.st = fsOff
	return read
}

// giveUp stops reading a response the tracker cannot follow: from the
// byte it stopped at, the rest of the response is content, and the
// response counts as one more content item, so that its message is
// charged and recorded (ARCHITECTURE.md §12). A string cut short counts
// as content too (a content item's octets already did, quotedRun).
func (t *FetchTracker) giveUp() {
	if (t.st == fsQuoted || t.st == fsListQ) && !t.content {
		t.Content += t.qlen
	}
	if !t.gaveUp {
		t.gaveUp = true
		t.Items++
	}
	t.st = fsBroken
}

func (t *FetchTracker) startName() {
	t.nameLen, t.sect, t.quoted, t.esc, t.content, t.header, t.isUID, t.depth = 0, 0, false, false, false, false, false, 0
}

func (t *FetchTracker) endName() {
	t.st = fsValue
	if t.nameLen == 0 {
		return
	}
	n := t.name[:t.nameLen]
	// The first letter picks the few names to compare: most items
	// (FLAGS, RFC822.SIZE, MODSEQ...) are none of them.
	switch n[0] | 0x20 {
	case 'b':
		t.content = hasPrefixFold(n, "BODY[") || hasPrefixFold(n, "BINARY[")
		t.header = equalFold(n, "BODY") || equalFold(n, "BODYSTRUCTURE")
	case 'e':
		t.header = equalFold(n, "ENVELOPE")
	case 'r':
		t.content = equalFold(n, "RFC822") || equalFold(n, "RFC822.HEADER") || equalFold(n, "RFC822.TEXT")
	case 'p':
		t.content = equalFold(n, "PREVIEW")
	case 's':
		t.content = equalFold(n, "SNIPPET")
	case 'u':
		if equalFold(n, "UID") {
			t.isUID = true
			t.uid, t.uidOK = 0, false
		}
	}
	switch {
	case t.content:
		if t.Items == 0 {
			t.firstLen = uint8(copy(t.first[:], n))
		}
		t.Items++
	case t.header:
		if t.Items == 0 && t.Headers == 0 {
			t.firstLen = uint8(copy(t.first[:], n))
		}
		t.Headers++
	}
}

// itemParts splits a FETCH item's name: the name without ".PEEK", the
// first word of its section ("BODY[HEADER.FIELDS (A)]<0>" gives BODY and
// HEADER.FIELDS) and whether it has one.
func itemParts(s string) (name, sect string, bracket bool) {
	name, sect, bracket = cutByte(s, '[')
	if len(name) > 5 && equalFoldString(name[len(name)-5:], ".PEEK") {
		name = name[:len(name)-5]
	}
	for i := 0; i < len(sect); i++ {
		if sect[i] == ' ' || sect[i] == ']' {
			return name, sect[:i], bracket
		}
	}
	return name, sect, bracket
}

func cutByte(s string, c byte) (before, after string, found bool) {
	for i := 0; i < len(s); i++ {
		if s[i] == c {
			return s[:i], s[i+1:], true
		}
	}
	return s, "", false
}

func equalFoldString(a, b string) bool { return len(a) == len(b) && cmpFold(a, b) == 0 }

func hasPrefixFold(b []byte, upper string) bool {
	return len(b) >= len(upper) && equalFold(b[:len(upper)], upper)
}

// feed runs the state machine over b. Each state consumes its run of
// bytes in a loop of its own (a name, an atom, a quoted string, a list),
// so that the bytes that cannot change the state cost a comparison each.
func (t *FetchTracker) feed(b []byte) {
	for i := 0; i < len(b); {
		switch t.st {
		case fsOff:
			return
		case fsBroken:
			t.Content += int64(len(b) - i)
			return
		case fsDone:
			// Only the final CRLF may follow the attribute list.
			if c := b[i]; c != '\r' && c != '\n' {
				t.giveUp()
				continue
			}
			i++
		case fsOpen:
			switch b[i] {
			case ' ':
			case '(':
				t.st = fsName
				t.startName()
			default:
				t.giveUp()
				continue
			}
			i++
		case fsName:
			i = t.nameRun(b, i)
		case fsValue:
			c := b[i]
			switch c {
			case '"':
				t.st, t.esc, t.qlen = fsQuoted, false, 0
			case '(':
				t.st, t.depth = fsList, 1
			case '{', '~':
				t.st = fsLiteral
			case ' ', ')', '\r', '\n':
				t.giveUp()
				continue
			default:
				t.st = fsAtom
				t.atomByte(c)
			}
			i++
		case fsAtom:
			i = t.atomRun(b, i)
		case fsQuoted, fsListQ:
			i = t.quotedRun(b, i)
		case fsList:
			i = t.listRun(b, i)
		case fsAfter:
			// A line ending here ends the response before its ")".
			switch b[i] {
			case ' ':
				t.st = fsName
				t.startName()
			case ')':
				t.st = fsDone
			default:
				t.giveUp()
				continue
			}
			i++
		case fsLiteral:
			// The rest of the marker: the caller reports it with Literal.
			j := bytes.IndexByte(b[i:], '\n')
			if j < 0 {
				return
			}
			i += j + 1
			t.st = fsValue
		}
	}
}

// plainName marks the bytes a name outside its section simply takes.
var plainName = func() (m [256]bool) {
	for c := range m {
		m[c] = true
	}
	for _, c := range []byte(" [)\r\n\"]") {
		m[c] = false
	}
	return m
}()

// nameRun reads an item name from b[i:] (fsName) and returns where it
// stopped: at the end of b, or after the SP that ends the name.
func (t *FetchTracker) nameRun(b []byte, i int) int {
	for i < len(b) {
		if t.sect == 0 && !t.quoted {
			n := t.nameLen
			for ; i < len(b) && plainName[b[i]]; i++ {
				if n < len(t.name) {
					t.name[n] = b[i]
					n++
				}
			}
			if t.nameLen = n; i == len(b) {
				break
			}
		}
		c := b[i]
		switch {
		case t.quoted && t.esc:
			t.esc = false // the escaped byte, in this piece or the next
		case t.quoted && c == '"':
			t.quoted = false
		case t.quoted && c == '\\':
			t.esc = true
		case c == '\r' || c == '\n':
			// A name (a section, a quoted header name in it) cut by
			// the end of the line: unreadable.
			t.giveUp()
			return i
		case t.quoted:
		case c == '"' && t.sect > 0:
			t.quoted = true
		case c == '[':
			t.sect++
		case c == ']' && t.sect > 0:
			t.sect--
		case t.sect == 0 && c == ' ':
			if t.nameLen == 0 {
				t.giveUp()
				return i
			}
			t.endName()
			return i + 1
		case t.sect == 0 && c == ')' && t.nameLen == 0:
			t.st = fsDone
			return i + 1
		}
		if t.nameLen < len(t.name) {
			t.name[t.nameLen] = c
			t.nameLen++
		}
		i++
	}
	return min(i, len(b))
}

// atomRun reads an atom or number value from b[i:] (fsAtom).
func (t *FetchTracker) atomRun(b []byte, i int) int {
	for ; i < len(b); i++ {
		switch c := b[i]; c {
		case ' ':
			t.st = fsName
			t.startName()
			return i + 1
		case ')':
			t.st = fsDone
			return i + 1
		case '\r', '\n':
			t.giveUp() // the line ended before the attribute list
			return i
		default:
			if t.isUID {
				t.atomByte(c)
			}
		}
	}
	return i
}

// quotedRun reads a quoted string from b[i:] (fsQuoted, or fsListQ inside a
// list value). A content item's string is content as its octets pass, so
// that the piece they are in is charged before it is written (Content).
func (t *FetchTracker) quotedRun(b []byte, i int) int {
	for i < len(b) {
		if t.esc {
			t.esc = false
			t.qlen++
			if t.content {
				t.Content++
			}
			i++
			continue
		}
		j := i
		for j < len(b) && b[j] != '"' && b[j] != '\\' {
			j++
		}
		t.qlen += int64(j - i)
		if t.content {
			t.Content += int64(j - i)
		}
		if i = j; i == len(b) {
			break
		}
		i++
		if b[j] == '\\' {
			t.esc = true
			continue
		}
		if t.st == fsQuoted {
			t.st = fsAfter
		} else {
			t.st = fsList
		}
		return i
	}
	return i
}

// listRun reads a parenthesized value from b[i:] (fsList): only quoted
// strings and the nesting matter.
func (t *FetchTracker) listRun(b []byte, i int) int {
	for ; i < len(b); i++ {
		switch b[i] {
		case '"':
			t.st, t.esc, t.qlen = fsListQ, false, 0
			return i + 1
		case '(':
			t.depth++
		case ')':
			if t.depth--; t.depth == 0 {
				t.st = fsAfter
				return i + 1
			}
		}
	}
	return i
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

// ItemKey is what of a FETCH item a response's first content item is
// matched on (AnswersKeys): its name without ".PEEK", whether it has a
// section, and the section's first word.
type ItemKey struct {
	name, sect string
	bracket    bool
}

// ItemKeys appends the keys of items to dst[:0], sorted, for
// AnswersKeys: a FETCH asked about at every response is matched in
// O(log items) rather than O(items). A macro stands for the header items
// it holds (RFC 9051 §6.4.5: ALL holds ENVELOPE, FULL ENVELOPE and BODY;
// FAST none), so a response to it is matched by them.
func ItemKeys(dst []ItemKey, items []string) []ItemKey {
	ks := dst[:0]
	for _, it := range items {
		switch {
		case equalFoldString(it, "ALL"):
			ks = append(ks, ItemKey{name: "ENVELOPE"})
		case equalFoldString(it, "FULL"):
			ks = append(ks, ItemKey{name: "ENVELOPE"}, ItemKey{name: "BODY"})
		default:
			n, s, b := itemParts(it)
			ks = append(ks, ItemKey{n, s, b})
		}
	}
	slices.SortFunc(ks, cmpItemKey)
	return ks
}

// AnswersKeys reports whether the response may answer a FETCH that asked
// for the items keys were made of (ItemKeys): its first content item
// (else its first header item) has a key, BODY[s] answering BODY.PEEK[s]
// too (RFC 9051 §7.5.2), whatever the header list or partial. True when
// the response had neither, or when the tracker gave up (what it read of
// the items is not to be trusted): any FETCH may have asked for it. It
// does not allocate.
func (t *FetchTracker) AnswersKeys(keys []ItemKey) bool {
	if t.firstLen == 0 || t.gaveUp {
		return true
	}
	gn, gs, gb := itemParts(string(t.first[:t.firstLen])) // no copy: compared only
	cut := int(t.firstLen) == len(t.first)
	g := ItemKey{gn, gs, gb}
	// The first key not below g: g itself, or else, when the section's
	// word may go on, the first one it begins (keys sharing a prefix are
	// contiguous in this order).
	lo, hi := 0, len(keys)
	for lo < hi {
		m := int(uint(lo+hi) >> 1)
		if cmpItemKey(keys[m], g) < 0 {
			lo = m + 1
		} else {
			hi = m
		}
	}
	if lo == len(keys) {
		return false
	}
	k := keys[lo]
	if k.bracket != gb || !equalFoldString(k.name, gn) {
		return false
	}
	return equalFoldString(k.sect, gs) || (cut && len(k.sect) > len(gs) && equalFoldString(k.sect[:len(gs)], gs))
}

// cmpItemKey orders keys by section or not, name, section word, ASCII
// letters folded as equalFoldString does.
func cmpItemKey(a, b ItemKey) int {
	if a.bracket != b.bracket {
		if !a.bracket {
			return -1
		}
		return 1
	}
	if c := cmpFold(a.name, b.name); c != 0 {
		return c
	}
	return cmpFold(a.sect, b.sect)
}

// cmpFold compares a and b with ASCII letters folded to upper case.
func cmpFold(a, b string) int {
	for i := 0; i < len(a) && i < len(b); i++ {
		x, y := a[i], b[i]
		if 'a' <= x && x <= 'z' {
			x -= 'a' - 'A'
		}
		if 'a' <= y && y <= 'z' {
			y -= 'a' - 'A'
		}
		if x != y {
			return cmp.Compare(x, y)
		}
	}
	return cmp.Compare(len(a), len(b))
}
