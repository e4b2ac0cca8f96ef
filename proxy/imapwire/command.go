package imapwire

import (
	"math"
	"strings"
)

// ArgKind tells what an Arg is.
type ArgKind uint8

// Argument kinds. NIL is an ArgAtom: only the command knows whether it means
// nil (RFC 9051 §4.5).
const (
	ArgAtom    ArgKind = iota + 1 // atom, including a bracketed section: BODY[HEADER.FIELDS (A B)]<0.100>
	ArgQuoted                     // quoted string (RFC 9051 §4.3)
	ArgLiteral                    // literal or literal8 (RFC 9051 §4.3, RFC 3516)
	ArgList                       // parenthesized list (RFC 9051 §4.4)
)

func (k ArgKind) String() string {
	switch k {
	case ArgAtom:
		return "atom"
	case ArgQuoted:
		return "quoted"
	case ArgLiteral:
		return "literal"
	case ArgList:
		return "list"
	}
	return "unknown"
}

// Arg is one argument of a command.
type Arg struct {
	Kind ArgKind
	// Value is the atom text, the content of a quoted string with its
	// escapes undone, or the content of a buffered literal.
	Value string
	// List holds the elements of an ArgList.
	List []Arg
	// Size is the size of an ArgLiteral.
	Size int64
	// Streamed marks an ArgLiteral whose content was streamed unseen
	// (Value is empty).
	Streamed bool
}

// Command is what the proxy needs to know about a client command (RFC 9051
// §6) to decide on it and audit it. Strings are as sent unless said.
type Command struct {
	Tag string
	// Name is upper case. For UID commands it is the sub-command:
	// "UID FETCH" has Name "FETCH" and UID true (RFC 9051 §6.4.9).
	Name string
	UID  bool
	// Args are the arguments after the name (after the sub-command for
	// UID commands).
	Args []Arg

	// Mailbox is the first mailbox argument as sent (astring content, not
	// modified-UTF-7 decoded, see DecodeMailbox); for LIST and LSUB the
	// pattern (the first one of a pattern list, RFC 5258), the reference
	// being in Reference. Empty when the mailbox was a streamed literal.
	Mailbox   string
	Reference string
	// Destination is the COPY/MOVE destination or the RENAME new name.
	Destination string
	// Set is the sequence-set or uid-set as written (FETCH, STORE, COPY,
	// MOVE, UID EXPUNGE), and SetCount the number of messages it names
	// when finite (see SetCount), else -1; 0 for commands without a set.
	Set      string
	SetCount int64
	// FetchItems are the FETCH items, upper case: a macro (ALL, FAST,
	// FULL) or each item of the list, section and partial included:
	// "BODY.PEEK[HEADER.FIELDS (FROM TO)]<0.512>".
	FetchItems []string
	// StoreOp is the STORE operation, upper case: "FLAGS", "+FLAGS",
	// "-FLAGS.SILENT"; StoreFlags the flags as written.
	StoreOp    string
	StoreFlags []string
	// Literals counts the literals seen so far and LiteralBytes adds up
	// their sizes (saturating).
	Literals     int
	LiteralBytes int64
	// PendingLiteral is the size of the literal announced at the end of
	// the last line and not yet fed, 0 when none: at a literal's decision
	// point (an APPEND message) limits and policy see its size before its
	// bytes are accepted.
	PendingLiteral int64
	// Complete reports that the final line (without a literal at its end)
	// was seen.
	Complete bool
}

const (
	maxDepth = 32    // parenthesized list nesting
	maxArgs  = 10000 // arguments, nested ones included
	// keepArgs: a parser whose last command had more arguments than this
	// drops its buffers on Reset (memory per idle session, DESIGN §6).
	keepArgs = 256
)

// CommandParser parses client commands line by line, literal by literal,
// as the Scanner delivers them, without needing the whole command at once.
// The zero value is ready to use; Reset makes it ready for the next command.
type CommandParser struct {
	cmd   Command
	open  [maxDepth]*Arg // open lists, innermost last; each is the last element of its parent
	depth int
	nargs int
	err   error // sticky

	started    bool // the tag and name were parsed
	needSep    bool // a token just ended: the next one needs SP first
	pending    bool // the last line announced a literal not fed yet
	pendingMsg bool // ... and it is message data

	// A FETCH item whose bracketed section contains a literal
	// (BODY[HEADER.FIELDS ({4}\r\nFROM)]) spans lines: atom holds it so
	// far, atomDepth the '[' still open (0: none pending).
	atom      []byte
	atomDepth int

	scratch []byte  // unescaping quoted strings
	free    [][]Arg // list backing arrays of earlier commands, for reuse
}

// Syntax errors of CommandParser.
var (
	errCmdEmpty        = &SyntaxError{Msg: "empty command line"}
	errCmdTag          = &SyntaxError{Msg: "bad character in tag"}
	errCmdNoName       = &SyntaxError{Msg: "missing command name"}
	errCmdName         = &SyntaxError{Msg: "bad character in command name"}
	errCmdUID          = &SyntaxError{Msg: "UID without command"}
	errCmdComplete     = &SyntaxError{Msg: "line after the end of the command"}
	errCmdLitNotFed    = &SyntaxError{Msg: "literal content missing"}
	errCmdLitUnexpect  = &SyntaxError{Msg: "literal without announcement"}
	errCmdNoMarker     = &SyntaxError{Msg: "literal announced but no marker at the end of the line"}
	errCmdLitSP        = &SyntaxError{Msg: "missing SP before literal"}
	errCmdSP           = &SyntaxError{Msg: "missing SP between arguments"}
	errCmdParen        = &SyntaxError{Msg: "unexpected ')'"}
	errCmdBrace        = &SyntaxError{Msg: "unexpected '{' (a literal marker must end the line)"}
	errCmdCTL          = &SyntaxError{Msg: "control character in command"}
	errCmdQuoted       = &SyntaxError{Msg: "unterminated quoted string"}
	errCmdQuotedCTL    = &SyntaxError{Msg: "NUL, CR or LF in quoted string"}
	errCmdOpenList     = &SyntaxError{Msg: "unterminated list"}
	errCmdOpenSection  = &SyntaxError{Msg: "unterminated '['"}
	errCmdDepth        = &SyntaxError{Msg: "lists nested too deep"}
	errCmdTooManyArgs  = &SyntaxError{Msg: "too many arguments"}
	errCmdAfterLiteral = &SyntaxError{Msg: "missing SP after literal"}
)

// Reset makes p ready for a new command. Small buffers are kept for reuse;
// those of a big command are dropped.
func (p *CommandParser) Reset() {
	c := &p.cmd
	if p.nargs > keepArgs {
		c.Args, p.free, p.atom, p.scratch = nil, nil, nil, nil
		c.FetchItems, c.StoreFlags = nil, nil
	} else {
		p.recycle(c.Args)
		clear(c.Args)
		clear(c.FetchItems)
		clear(c.StoreFlags)
		c.Args, c.FetchItems, c.StoreFlags = c.Args[:0], c.FetchItems[:0], c.StoreFlags[:0]
	}
	if cap(p.atom) > keepBuf {
		p.atom = nil
	}
	if cap(p.scratch) > keepBuf {
		p.scratch = nil
	}
	*c = Command{Args: c.Args, FetchItems: c.FetchItems, StoreFlags: c.StoreFlags}
	clear(p.open[:p.depth])
	p.depth, p.nargs, p.err = 0, 0, nil
	p.started, p.needSep, p.pending, p.pendingMsg = false, false, false, false
	p.atom, p.atomDepth = p.atom[:0], 0
}

// recycle puts the list backing arrays under args on the free list.
func (p *CommandParser) recycle(args []Arg) {
	for i := range args {
		if l := args[i].List; cap(l) > 0 {
			p.recycle(l)
			clear(l)
			if len(p.free) < maxDepth {
				p.free = append(p.free, l[:0])
			}
		}
	}
}

// Line feeds the next line of the command, as returned by ReadLine with its
// line ending, and hasLit/lit as ReadLine returned them. The first line
// starts with tag SP name (RFC 9051 §2.2.1). After a line with hasLit, the
// literal's content must be fed with Literal or LiteralStreamed before the
// next line. A malformed line gives a *SyntaxError, which is sticky until
// Reset.
func (p *CommandParser) Line(line []byte, lit Literal, hasLit bool) error {
	if p.err != nil {
		return p.err
	}
	if err := p.line(line, hasLit); err != nil {
		p.err = err
		return err
	}
	if hasLit {
		p.cmd.PendingLiteral = lit.Size
	}
	return nil
}

func (p *CommandParser) line(line []byte, hasLit bool) error {
	if p.cmd.Complete {
		return errCmdComplete
	}
	if p.pending {
		return errCmdLitNotFed
	}
	b := trimEOL(line)
	if hasLit {
		var ok bool
		if b, ok = trimMarker(b); !ok {
			return errCmdNoMarker
		}
	}
	if !p.started {
		n, err := p.parseStart(b)
		if err != nil {
			return err
		}
		b = b[n:]
		p.started = true
	} else if p.atomDepth == 0 && len(b) > 0 && b[0] != ' ' && b[0] != ')' {
		// What follows a literal is SP, ")" or the end of the command.
		return errCmdAfterLiteral
	}
	if err := p.parseArgs(b, hasLit); err != nil {
		return err
	}
	if hasLit {
		if p.atomDepth == 0 && p.needSep {
			return errCmdLitSP
		}
		p.pending = true
		p.pendingMsg = p.isMessage()
		return nil
	}
	if p.atomDepth > 0 {
		return errCmdOpenSection
	}
	if p.depth > 0 {
		return errCmdOpenList
	}
	p.cmd.Complete = true
	return nil
}

// trimEOL removes a final CRLF or LF.
func trimEOL(b []byte) []byte {
	if n := len(b); n > 0 && b[n-1] == '\n' {
		b = b[:n-1]
		if n := len(b); n > 0 && b[n-1] == '\r' {
			b = b[:n-1]
		}
	}
	return b
}

// trimMarker removes the literal marker ending b (the Scanner validated it).
func trimMarker(b []byte) ([]byte, bool) {
	n := len(b)
	if n == 0 || b[n-1] != '}' {
		return b, false
	}
	for i := n - 2; i >= 0; i-- {
		if b[i] == '{' {
			if i > 0 && b[i-1] == '~' {
				i--
			}
			return b[:i], true
		}
	}
	return b, false
}

// parseStart parses tag SP name [SP sub-command] and returns the bytes used.
func (p *CommandParser) parseStart(b []byte) (int, error) {
	i := 0
	for i < len(b) && isTagChar(b[i]) {
		i++
	}
	switch {
	case len(b) == 0:
		return 0, errCmdEmpty
	case i == 0:
		return 0, errCmdTag
	case i == len(b):
		return 0, errCmdNoName
	case b[i] != ' ':
		return 0, errCmdTag
	}
	p.cmd.Tag = string(b[:i])
	i++
	name, n, err := commandName(b[i:])
	if err != nil {
		return 0, err
	}
	i += n
	if name == "UID" {
		// RFC 9051 §6.4.9: "UID" SP (copy / move / fetch / search /
		// store / uid-expunge).
		if i == len(b) {
			return 0, errCmdUID
		}
		i++
		name, n, err = commandName(b[i:])
		if err == errCmdNoName {
			err = errCmdUID
		}
		if err != nil {
			return 0, err
		}
		i += n
		p.cmd.UID = true
	}
	p.cmd.Name = name
	p.needSep = true
	return i, nil
}

// commandName reads an atom at the start of b, which must be followed by SP
// or the end, and returns it upper case.
func commandName(b []byte) (string, int, error) {
	n := atomLen(b)
	if n == 0 {
		if len(b) == 0 || b[0] == ' ' {
			return "", 0, errCmdNoName
		}
		return "", 0, errCmdName
	}
	if n < len(b) && b[n] != ' ' {
		return "", 0, errCmdName
	}
	return upperAtom(b[:n]), n, nil
}

// parseArgs tokenizes the arguments in b (a line without its line ending
// and final literal marker).
func (p *CommandParser) parseArgs(b []byte, hasLit bool) error {
	i := 0
	if p.atomDepth > 0 {
		// Continue a FETCH item whose section was cut by a literal.
		end, d := scanAtom(b, 0, p.atomDepth)
		p.atom = append(p.atom, b[:end]...)
		if d > 0 {
			if end == len(b) && hasLit {
				p.atomDepth = d
				return nil
			}
			return errCmdOpenSection
		}
		p.atomDepth = 0
		if err := p.pushAtom(p.atom); err != nil {
			return err
		}
		p.needSep = true
		i = end
	}
	for i < len(b) {
		c := b[i]
		switch c {
		case ' ':
			p.needSep = false
			i++
			continue
		case ')':
			if p.depth == 0 {
				return errCmdParen
			}
			p.depth--
			p.open[p.depth] = nil
			p.needSep = true
			i++
			continue
		}
		if c == '{' {
			return errCmdBrace
		}
		if isCTL(c) {
			return errCmdCTL
		}
		if p.needSep {
			return errCmdSP
		}
		switch {
		case c == '(':
			if p.depth == maxDepth {
				return errCmdDepth
			}
			a, err := p.push(Arg{Kind: ArgList, List: p.takeFree()})
			if err != nil {
				return err
			}
			p.open[p.depth] = a
			p.depth++
			i++
			continue // needSep stays false: "(" may be followed by a token
		case c == '"':
			v, n, err := p.quoted(b[i:])
			if err != nil {
				return err
			}
			if _, err := p.push(Arg{Kind: ArgQuoted, Value: v}); err != nil {
				return err
			}
			i += n
		default:
			end, d := scanAtom(b, i, 0)
			if d > 0 {
				if end == len(b) && hasLit && p.cmd.Name == "FETCH" {
					// A section such as HEADER.FIELDS may hold a literal
					// header name (header-fld-name = astring, RFC 9051 §9).
					p.atom = append(p.atom[:0], b[i:]...)
					p.atomDepth = d
					return nil
				}
				// No matching "]" on the line: "[" is then an ordinary
				// ATOM-CHAR (a mailbox named "a[b" is a valid atom).
				end = plainAtomEnd(b, i)
			}
			if err := p.pushAtom(b[i:end]); err != nil {
				return err
			}
			i = end
		}
		p.needSep = true
	}
	return nil
}

// scanAtom returns where the atom starting at b[i] ends, d being the number
// of '[' already open. A '[' opens a section that runs to the matching ']'
// and may hold SP, parentheses and quoted strings (RFC 9051 §6.4.5 section,
// header-list); "<partial>" after it is ordinary atom text. depth > 0 means
// the section is not closed: b ended, or a control character was found at
// end.
func scanAtom(b []byte, i, d int) (end, depth int) {
	for i < len(b) {
		c := b[i]
		if d > 0 {
			switch {
			case c == ']':
				d--
			case c == '[':
				d++
			case c == '"':
				j := i + 1
				for j < len(b) && b[j] != '"' {
					if b[j] == '\\' && j+1 < len(b) {
						j++
					}
					j++
				}
				if j >= len(b) {
					return len(b), d
				}
				i = j
			case isCTL(c):
				return i, d
			}
			i++
			continue
		}
		if c == '[' {
			d = 1
			i++
			continue
		}
		if atomEnds(c) {
			break
		}
		i++
	}
	return i, d
}

// plainAtomEnd returns where the atom at b[i] ends, '[' being ordinary.
func plainAtomEnd(b []byte, i int) int {
	for i < len(b) && !atomEnds(b[i]) {
		i++
	}
	return i
}

// atomEnds reports the bytes that end an atom: SP, "(", ")", DQUOTE, "{"
// and CTL. Other atom-specials ("%", "*", "\", "]") and 8-bit bytes are
// accepted: they occur in LIST patterns, sequence sets, flags and the
// mailbox names of lenient clients, and the backend judges them.
func atomEnds(c byte) bool {
	return c == ' ' || c == '(' || c == ')' || c == '"' || c == '{' || isCTL(c)
}

// quoted parses the quoted string at the start of b and returns its
// content. quoted = DQUOTE *QUOTED-CHAR DQUOTE, where "\" escapes DQUOTE
// and "\" (RFC 9051 §9). Another escape or an 8-bit byte (UTF8=ACCEPT,
// RFC 6855) is kept as is; NUL, CR and LF are refused.
func (p *CommandParser) quoted(b []byte) (string, int, error) {
	esc := false
	j := 1
	for ; j < len(b); j++ {
		c := b[j]
		if c == '"' {
			break
		}
		if c == 0 || c == '\r' || c == '\n' {
			return "", 0, errCmdQuotedCTL
		}
		if c == '\\' && j+1 < len(b) && (b[j+1] == '"' || b[j+1] == '\\') {
			esc = true
			j++
		}
	}
	if j >= len(b) {
		return "", 0, errCmdQuoted
	}
	raw := b[1:j]
	if !esc {
		return string(raw), j + 1, nil
	}
	s := p.scratch[:0]
	for k := 0; k < len(raw); k++ {
		if raw[k] == '\\' && k+1 < len(raw) && (raw[k+1] == '"' || raw[k+1] == '\\') {
			k++
		}
		s = append(s, raw[k])
	}
	p.scratch = s
	return string(s), j + 1, nil
}

// push appends a to the innermost open list (or the top level).
func (p *CommandParser) push(a Arg) (*Arg, error) {
	if p.nargs >= maxArgs {
		return nil, errCmdTooManyArgs
	}
	p.nargs++
	s := &p.cmd.Args
	if p.depth > 0 {
		s = &p.open[p.depth-1].List
	}
	*s = append(*s, a)
	return &(*s)[len(*s)-1], nil
}

func (p *CommandParser) pushAtom(b []byte) error {
	_, err := p.push(Arg{Kind: ArgAtom, Value: internAtom(b)})
	return err
}

func (p *CommandParser) takeFree() []Arg {
	n := len(p.free)
	if n == 0 {
		return nil
	}
	l := p.free[n-1]
	p.free = p.free[:n-1]
	return l
}

// Literal feeds the content of the literal announced by the previous line,
// buffered by the caller; it becomes an ArgLiteral with Value.
func (p *CommandParser) Literal(body []byte) {
	p.literal(body, int64(len(body)), false)
}

// LiteralStreamed records that the literal announced by the previous line,
// of size bytes, was streamed without being seen.
func (p *CommandParser) LiteralStreamed(size int64) {
	p.literal(nil, size, true)
}

func (p *CommandParser) literal(body []byte, size int64, streamed bool) {
	if p.err != nil {
		return
	}
	if !p.pending {
		p.err = errCmdLitUnexpect
		return
	}
	p.pending, p.pendingMsg = false, false
	p.cmd.PendingLiteral = 0
	p.cmd.Literals++
	if size > 0 {
		if p.cmd.LiteralBytes > math.MaxInt64-size {
			p.cmd.LiteralBytes = math.MaxInt64
		} else {
			p.cmd.LiteralBytes += size
		}
	}
	if p.atomDepth > 0 {
		p.atom = append(p.atom, body...)
		return
	}
	a := Arg{Kind: ArgLiteral, Size: size, Streamed: streamed}
	if !streamed {
		a.Value = string(body)
	}
	if _, err := p.push(a); err != nil {
		p.err = err
		return
	}
	p.needSep = true
}

// PendingIsMessage reports whether the literal announced by the last line
// is message data, to be streamed whatever its size: the message of APPEND,
// each message of MULTIAPPEND (RFC 3502), a CATENATE TEXT part
// (RFC 4469) and the literal8 of UTF8 (RFC 6855). A literal in
// mailbox position, or a CATENATE URL, is not.
func (p *CommandParser) PendingIsMessage() bool {
	return p.pending && p.pendingMsg
}

func (p *CommandParser) isMessage() bool {
	if p.cmd.Name != "APPEND" || p.atomDepth > 0 {
		return false
	}
	if p.depth == 0 {
		// append = "APPEND" SP mailbox 1*append-message; the mailbox
		// comes first, every later top-level literal is a message.
		return len(p.cmd.Args) >= 1
	}
	list := p.open[p.depth-1]
	parent := p.cmd.Args
	if p.depth > 1 {
		parent = p.open[p.depth-2].List
	}
	if len(parent) < 2 || parent[len(parent)-2].Kind != ArgAtom {
		return false
	}
	switch prev := parent[len(parent)-2].Value; {
	case strings.EqualFold(prev, "UTF8"):
		return true // "UTF8" SP "(" literal8 ")"
	case strings.EqualFold(prev, "CATENATE"):
		// cat-part = "TEXT" SP literal / "URL" SP astring
		n := len(list.List)
		return n > 0 && list.List[n-1].Kind == ArgAtom && strings.EqualFold(list.List[n-1].Value, "TEXT")
	}
	return false
}

// Command returns what is known of the command so far, with the fields
// derived from the arguments seen, also when it is incomplete. It is valid
// until Reset; later calls update the same Command.
func (p *CommandParser) Command() *Command {
	p.derive()
	return &p.cmd
}

// derive fills the fields of Command that come from its arguments.
func (p *CommandParser) derive() {
	c := &p.cmd
	c.Mailbox, c.Reference, c.Destination, c.Set, c.StoreOp = "", "", "", "", ""
	c.SetCount = 0
	clear(c.FetchItems)
	clear(c.StoreFlags)
	c.FetchItems, c.StoreFlags = c.FetchItems[:0], c.StoreFlags[:0]
	args := c.Args
	hasSet := false
	switch c.Name {
	case "SELECT", "EXAMINE", "CREATE", "DELETE", "SUBSCRIBE", "UNSUBSCRIBE",
		"STATUS", "APPEND", "GETACL", "SETACL", "DELETEACL", "LISTRIGHTS",
		"MYRIGHTS", "GETQUOTAROOT", "SETMETADATA":
		c.Mailbox = stringArg(args, 0)
	case "GETMETADATA":
		// RFC 5464: "GETMETADATA" [SP getmetadata-options] SP
		// mailbox SP getmetadata-entries; the options are a list.
		i := 0
		if len(args) > 0 && args[0].Kind == ArgList {
			i = 1
		}
		c.Mailbox = stringArg(args, i)
	case "RENAME":
		c.Mailbox, c.Destination = stringArg(args, 0), stringArg(args, 1)
	case "LIST", "LSUB":
		// RFC 5258: "LIST" [SP list-select-opts] SP mailbox SP
		// mbox-or-pat [SP list-return-opts].
		i := 0
		if c.Name == "LIST" && len(args) > 0 && args[0].Kind == ArgList {
			i = 1
		}
		c.Reference = stringArg(args, i)
		if i+1 < len(args) && args[i+1].Kind == ArgList {
			c.Mailbox = stringArg(args[i+1].List, 0)
		} else {
			c.Mailbox = stringArg(args, i+1)
		}
	case "COPY", "MOVE":
		hasSet = true
		c.Set, c.Destination = atomArg(args, 0), stringArg(args, 1)
	case "FETCH":
		hasSet = true
		c.Set = atomArg(args, 0)
		if len(args) > 1 {
			switch a := &args[1]; a.Kind {
			case ArgAtom:
				c.FetchItems = append(c.FetchItems, strings.ToUpper(a.Value))
			case ArgList:
				for i := range a.List {
					if a.List[i].Kind == ArgAtom {
						c.FetchItems = append(c.FetchItems, strings.ToUpper(a.List[i].Value))
					}
				}
			}
		}
	case "STORE":
		// store = "STORE" SP sequence-set [store-modifiers] SP
		// store-att-flags (CONDSTORE, RFC 7162, adds the modifiers list).
		hasSet = true
		c.Set = atomArg(args, 0)
		i := 1
		if len(args) > i && args[i].Kind == ArgList {
			i++
		}
		c.StoreOp = strings.ToUpper(atomArg(args, i))
		i++
		if len(args) > i && args[i].Kind == ArgList {
			for _, f := range args[i].List {
				if f.Kind == ArgAtom {
					c.StoreFlags = append(c.StoreFlags, f.Value)
				}
			}
		} else {
			for _, f := range args[min(i, len(args)):] {
				if f.Kind == ArgAtom {
					c.StoreFlags = append(c.StoreFlags, f.Value)
				}
			}
		}
	case "EXPUNGE":
		if c.UID {
			hasSet = true // RFC 4315 §2.1: "UID EXPUNGE" SP sequence-set
			c.Set = atomArg(args, 0)
		}
	}
	if hasSet {
		n, err := SetCount(c.Set)
		if err != nil {
			n = -1
		}
		c.SetCount = n
	}
}

// stringArg returns the astring content of args[i]: atom, quoted string or
// buffered literal ("" for a streamed literal, a list, or none).
func stringArg(args []Arg, i int) string {
	if i >= len(args) || args[i].Kind == ArgList {
		return ""
	}
	return args[i].Value
}

func atomArg(args []Arg, i int) string {
	if i >= len(args) || args[i].Kind != ArgAtom {
		return ""
	}
	return args[i].Value
}

// upperAtom returns b upper-cased, interned when it is a known word.
func upperAtom(b []byte) string {
	var buf [32]byte
	if len(b) > len(buf) {
		return strings.ToUpper(string(b))
	}
	u := buf[:len(b)]
	for i, c := range b {
		if 'a' <= c && c <= 'z' {
			c -= 'a' - 'A'
		}
		u[i] = c
	}
	if s, ok := interned[string(u)]; ok {
		return s
	}
	return string(u)
}

// internAtom returns b as a string, without allocating for common atoms:
// the parser runs on every command (DESIGN §6).
func internAtom(b []byte) string {
	if s, ok := interned[string(b)]; ok {
		return s
	}
	return string(b)
}

var interned = func() map[string]string {
	words := []string{
		// commands (RFC 9051 §6 and common extensions)
		"CAPABILITY", "NOOP", "LOGOUT", "STARTTLS", "AUTHENTICATE", "LOGIN",
		"ENABLE", "SELECT", "EXAMINE", "CREATE", "DELETE", "RENAME",
		"SUBSCRIBE", "UNSUBSCRIBE", "LIST", "LSUB", "NAMESPACE", "STATUS",
		"APPEND", "IDLE", "CHECK", "CLOSE", "UNSELECT", "EXPUNGE", "SEARCH",
		"FETCH", "STORE", "COPY", "MOVE", "UID", "ID", "GETQUOTA",
		"GETQUOTAROOT", "SETQUOTA", "GETACL", "SETACL", "DELETEACL",
		"LISTRIGHTS", "MYRIGHTS", "GETMETADATA", "SETMETADATA", "COMPRESS",
		"ESEARCH", "SORT", "THREAD", "XLIST",
		// fetch items and macros (RFC 9051 §6.4.5)
		"ALL", "FAST", "FULL", "FLAGS", "INTERNALDATE", "RFC822.SIZE",
		"ENVELOPE", "BODY", "BODYSTRUCTURE", "BODY[]", "BODY.PEEK[]",
		"BODY.PEEK[HEADER]", "BODY[HEADER]", "BODY.PEEK[TEXT]", "RFC822",
		"RFC822.HEADER", "RFC822.TEXT", "MODSEQ", "X-GM-LABELS", "X-GM-MSGID",
		"X-GM-THRID", "EMAILID", "THREADID", "SAVEDATE", "PREVIEW",
		"uid", "flags", "body.peek[]", "rfc822.size", "internaldate",
		"envelope", "bodystructure",
		// store (RFC 9051 §6.4.6, RFC 7162)
		"+FLAGS", "-FLAGS", "+FLAGS.SILENT", "-FLAGS.SILENT", "FLAGS.SILENT",
		"UNCHANGEDSINCE", "CHANGEDSINCE", "VANISHED",
		`\Seen`, `\Answered`, `\Flagged`, `\Deleted`, `\Draft`, `\Recent`,
		"$Forwarded", "$Junk", "$NotJunk", "$MDNSent", "$Phishing",
		// others
		"NIL", "INBOX", "CATENATE", "TEXT", "URL", "UTF8", "CONDSTORE",
		"QRESYNC", "CHARSET", "UTF-8", "US-ASCII", "RETURN", "MIN", "MAX",
		"COUNT", "SAVE", "UNSEEN", "SEEN", "DELETED", "UNDELETED", "NOT",
		"OR", "SINCE", "BEFORE", "ON", "MESSAGES", "RECENT", "UIDNEXT",
		"UIDVALIDITY", "HIGHESTMODSEQ", "SIZE", "SUBSCRIBED", "CHILDREN",
		"SPECIAL-USE", "REMOTE", "RECURSIVEMATCH", "1:*", "*", "$",
		"", "%", "DONE",
	}
	m := make(map[string]string, len(words))
	for _, w := range words {
		m[w] = w
	}
	return m
}()
