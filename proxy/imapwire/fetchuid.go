package imapwire

import "bytes"

// FetchEdit is how the proxy adds the UID item to the item list of a FETCH
// by sequence number that reads message content (the read-content effect,
// whatever item has it: a body section, ENVELOPE, BODYSTRUCTURE, BODY, the
// ALL and FULL macros), so that the audit trail
// names the messages read (ARCHITECTURE.md §11): servers send UID in a
// FETCH response only when asked (RFC 9051 §6.4.5), and a sequence number
// names nothing once the mailbox changes. Adding it is harmless to the
// client: a server may send any data item in a FETCH response, unasked
// too, and a client must accept it (RFC 9051 §7.5.2: FETCH responses also
// come by unilateral server decision; §6.4.9: UID FETCH always carries
// UID). Nothing else of the command changes: the edit is two insertions
// (or the expansion of a macro, RFC 9051 §6.4.5) in the item list the
// parser read, at offsets of the command's bytes (CommandParser.ArgSpan).
type FetchEdit struct {
	Ins [2]Insertion // in order of At; an unused one has no Text and no Drop
}

// Insertion replaces Drop bytes at offset At of a command by Text.
type Insertion struct {
	At, Drop int
	Text     string
}

// fetchMacros are the FETCH macros with UID and their items (RFC 9051
// §6.4.5), parenthesized.
var fetchMacros = map[string]string{
	"ALL":  "(UID FLAGS INTERNALDATE RFC822.SIZE ENVELOPE)",
	"FAST": "(UID FLAGS INTERNALDATE RFC822.SIZE)",
	"FULL": "(UID FLAGS INTERNALDATE RFC822.SIZE ENVELOPE BODY)",
}

// FetchUID returns the edit that adds UID to the command parsed, a
// complete and checked FETCH by sequence number whose effects include
// read-content and without UID; false for any other command, which goes
// to the backend as sent. The effect, not Command.ContentItems: ENVELOPE
// shows the headers a BODY[HEADER.FIELDS] would, and the trail names the
// messages either read. UID FETCH needs none (the FLAGS workload,
// UID FETCH 1:* (FLAGS), is not touched), nor a FETCH of flags, dates and
// sizes (FAST).
//
// A NOTIFY whose MessageNew fetch attributes read content gets UID first
// in each such list without it: the server pushes those attributes for a
// new message unasked (RFC 5465 §5.2: "as if the client had issued a
// FETCH"), by sequence number, and the delivery record must name the
// message pushed as a FETCH's record does.
func (p *CommandParser) FetchUID() (FetchEdit, bool) {
	c := &p.cmd
	if c.UID || !c.Complete || p.err != nil || !c.Effects.Has(EffReadContent) {
		return FetchEdit{}, false
	}
	if c.Name == "NOTIFY" {
		return p.notifyUID()
	}
	if c.Name != "FETCH" {
		return FetchEdit{}, false
	}
	for _, it := range c.FetchItems {
		if it == "UID" {
			return FetchEdit{}, false
		}
	}
	start, end, ok := p.ArgSpan(1)
	if !ok {
		return FetchEdit{}, false
	}
	switch a := &c.Args[1]; a.Kind {
	case ArgList:
		// "(" ... ")": after the "(".
		return FetchEdit{Ins: [2]Insertion{{At: start + 1, Text: "UID "}}}, true
	case ArgAtom:
		if m, ok := fetchMacros[c.FetchItems[0]]; ok && len(c.FetchItems) == 1 && a.Chars == 0 {
			return FetchEdit{Ins: [2]Insertion{{At: start, Drop: end - start, Text: m}}}, true
		}
		// One item: made a list of two.
		return FetchEdit{Ins: [2]Insertion{{At: start, Text: "(UID "}, {At: end, Text: ")"}}}, true
	}
	return FetchEdit{}, false
}

// notifyUID is FetchUID's edit of a NOTIFY: "UID " after the "(" of each
// MessageNew fetch-att list without UID. None when the command has more
// such lists than the parser keeps (a server refuses fetch attributes
// beyond SELECTED and SELECTED-DELAYED, RFC 5465 §5.2): a push without UID
// is then recorded by its sequence number (ARCHITECTURE.md §11).
func (p *CommandParser) notifyUID() (FetchEdit, bool) {
	if p.newN > maxNewAtts {
		return FetchEdit{}, false
	}
	var e FetchEdit
	n := 0
	for _, a := range p.newAtts[:p.newN] {
		if !a.uid {
			e.Ins[n] = Insertion{At: a.at + 1, Text: "UID "}
			n++
		}
	}
	return e, n > 0
}

// Apply returns wire with the edit made (for tests and the rare command
// with literals; the relay writes the pieces, WriteRange).
func (e *FetchEdit) Apply(wire []byte) []byte {
	var out bytes.Buffer
	e.WriteRange(&out, wire, 0, len(wire))
	return out.Bytes()
}

// Writer is what WriteRange writes to (a *bufio.Writer, a *bytes.Buffer).
type Writer interface {
	Write([]byte) (int, error)
	WriteString(string) (int, error)
}

// WriteRange writes wire[from:to] with the insertions that fall in it
// (from <= At < to, or At == to == len(wire)) to w.
func (e *FetchEdit) WriteRange(w Writer, wire []byte, from, to int) {
	for i := range e.Ins {
		in := &e.Ins[i]
		if in.Text == "" && in.Drop == 0 {
			continue
		}
		if in.At < from || in.At > to || (in.At == to && to != len(wire)) {
			continue
		}
		if in.At > from {
			w.Write(wire[from:in.At])
		}
		w.WriteString(in.Text)
		from = min(in.At+in.Drop, to)
	}
	if from < to {
		w.Write(wire[from:to])
	}
}
