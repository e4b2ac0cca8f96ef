package imapwire

import (
	"bytes"
	"math"
	"slices"
	"strings"
	"unicode/utf8"
	"unsafe"
)

// ArgKind tells what an Arg is.
type ArgKind uint8

// Argument kinds. NIL is an ArgAtom: only the command knows whether it means
// nil (RFC 9051 §4.5).
const (
	ArgAtom    ArgKind = iota + 1 // atom, including a FETCH item's bracketed section: BODY[HEADER.FIELDS (A B)]<0.100>
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

// Chars records which characters beyond ATOM-CHAR an atom holds; the
// grammar of its argument decides whether they may stand there.
type Chars uint8

const (
	CharWildcard  Chars = 1 << iota // "%" or "*" (list-wildcards; "*" in sequence sets)
	CharBracket                     // "]" (resp-specials, allowed in astring)
	CharBackslash                   // "\" (flags)
	CharSection                     // a FETCH section: "[" ... "]" holding SP, parentheses or quotes
)

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
	// (Value is empty); Pending one announced whose content has not been
	// fed yet (a decision before "+", RFC 9051 §4.3).
	Streamed, Pending bool
	// Binary marks a literal8 (RFC 3516), NonSync a {n+} (RFC 7888).
	Binary, NonSync bool
	// Open marks a list whose ")" has not been seen yet.
	Open bool
	// Chars are an atom's characters beyond ATOM-CHAR.
	Chars Chars
}

// Command is what the proxy needs to know about a client command (RFC 9051
// §6) to decide on it and audit it. The fields after Args are filled by
// Check, from the one grammar and table of commands (table.go).
type Command struct {
	Tag string
	// Name is upper case. For UID commands it is the sub-command:
	// "UID FETCH" has Name "FETCH" and UID true (RFC 9051 §6.4.9).
	Name string
	// Args are the arguments after the name (after the sub-command for
	// UID commands).
	Args []Arg
	// Spec is the command's entry in the table; nil for a name the proxy
	// does not know.
	Spec *Spec

	// Mailbox is the first mailbox argument as policies see it (Context's
	// Canonical: decoded, INBOX folded); MailboxRaw as sent (the astring's
	// content). For LIST and LSUB Mailbox is the (first) pattern and
	// Reference the reference, both decoded; Named has every pattern.
	Mailbox, MailboxRaw string
	Reference           string
	// Named holds the further mailboxes and patterns the command names
	// (CATENATE sources, NOTIFY filters, LIST patterns); nil when none.
	// Behind a pointer: every in-flight command holds a Command
	// (ARCHITECTURE.md §16).
	Named *Named
	// Destination is the COPY/MOVE destination or the RENAME new name,
	// canonical like Mailbox.
	Destination, DestinationRaw string
	// Set is the sequence-set or uid-set as written (FETCH, STORE, COPY,
	// MOVE, UID EXPUNGE), and SetCount the number of messages it names
	// when finite (see SetCount), else -1; 0 for commands without a set.
	Set      string
	SetCount int64
	// FetchItems are the FETCH items (or NOTIFY's), upper case: a macro
	// (ALL, FAST, FULL) or each item of the list, section and partial
	// included: "BODY.PEEK[HEADER.FIELDS (FROM TO)]<0.512>".
	FetchItems []string
	// StoreOp is the STORE operation, upper case: "FLAGS", "+FLAGS",
	// "-FLAGS.SILENT"; StoreFlags the flags as written.
	StoreOp    string
	StoreFlags []string
	// Effects says what the command does, on which mailbox (table.go).
	Effects Effects
	// ContentItems: a FETCH (or NOTIFY) item whose octets the response
	// tracker counts as content (a body section, BINARY, RFC822*, PREVIEW):
	// what fetch caps and the audit's content_bytes charge. ENVELOPE,
	// BODYSTRUCTURE and text search keys read content (EffReadContent)
	// without such an item.
	ContentItems bool
	// FetchClass is the highest class of FetchItems (FetchUnknown for
	// none, or NOTIFY's): what the audit files a FETCH under.
	FetchClass FetchClass
	// SearchKeys: the SEARCH keys, SORT criteria and THREAD grouping
	// that read message content (and give the command EffReadContent),
	// by kind: what the trail says was probed, never the strings
	// searched for.
	SearchKeys SearchKeys
	// UID: the command was sent as "UID <name>" (RFC 9051 §6.4.9). Next
	// to Effects and Complete so that the small fields pack.
	UID bool
	// Complete reports that the final line (without a literal at its end)
	// was seen.
	Complete bool
	// AppendURLs counts the CATENATE URL parts of an APPEND (RFC 4469):
	// messages copied in whose size the proxy cannot know.
	AppendURLs int
	// Literals counts the literals seen so far and LiteralBytes adds up
	// their sizes (saturating).
	Literals     int
	LiteralBytes int64
	// PendingLiteral is the size of the literal announced at the end of
	// the last line and not yet fed, 0 when none: at a literal's decision
	// point (an APPEND message) limits and policy see its size before its
	// bytes are accepted.
	PendingLiteral int64
}

// Named is what a command names besides its mailbox and destination.
type Named struct {
	// Patterns are a LIST or LSUB's patterns, decoded, as sent (RFC 5258
	// §3: LIST-EXTENDED takes several; Command.Mailbox is the first).
	Patterns []string
	// Sources are the mailboxes an APPEND's CATENATE URLs copy from
	// (RFC 4469 §3), canonical, each once: the command reads their
	// content (EffReadContent on TargetSources).
	Sources []string
	// Mailboxes are the mailboxes NOTIFY's filters name (RFC 5465 §6:
	// mailboxes, subtree), canonical, each once; Notify its event groups'
	// filters.
	Mailboxes []string
	Notify    []NotifyFilter
	// Identifier is the identifier a SETACL, DELETEACL or LISTRIGHTS
	// names, as sent: its case is the backend's to read (RFC 4314 §2), a
	// leading "-" names negative rights (§2). Rights is a SETACL's
	// mod-rights as sent: a leading "+" adds, "-" removes, else the
	// rights replace (§3.1); each letter once, each a right RFC 4314 or
	// the backend's RIGHTS= names (aclRights).
	Identifier, Rights string
	// QuotaRoot is a GETQUOTA or SETQUOTA's quota root, as sent; Quota a
	// SETQUOTA's limits in the order sent, each resource once (RFC 9208
	// §4.1: an empty list removes every limit).
	QuotaRoot string
	Quota     []QuotaLimit
	// Enable are the capabilities an ENABLE asks for, upper case
	// (RFC 5161 §3.1).
	Enable []string
	// Entries are the entries a SETMETADATA sets or removes, lower case
	// as they are classified (metadataEntry; RFC 5464 §4.3).
	Entries []string
}

// QuotaLimit is one resource limit of a SETQUOTA (RFC 9208 §4.1): the
// resource name upper case, the limit in its units.
type QuotaLimit struct {
	Resource string
	Limit    uint64
}

// Extra returns c.Named, or an empty Named when c names nothing more: for
// readers of the fields above. The caller must not change it.
func (c *Command) Extra() *Named {
	if c.Named == nil {
		return &noNamed
	}
	return c.Named
}

var noNamed Named

// Patterns returns Named.Patterns (nil without Named); so do Sources,
// Mailboxes and NotifyFilters.
func (c *Command) Patterns() []string {
	if c.Named == nil {
		return nil
	}
	return c.Named.Patterns
}

// Sources returns Named.Sources.
func (c *Command) Sources() []string {
	if c.Named == nil {
		return nil
	}
	return c.Named.Sources
}

// Mailboxes returns Named.Mailboxes.
func (c *Command) Mailboxes() []string {
	if c.Named == nil {
		return nil
	}
	return c.Named.Mailboxes
}

// NotifyFilters returns Named.Notify.
func (c *Command) NotifyFilters() []NotifyFilter {
	if c.Named == nil {
		return nil
	}
	return c.Named.Notify
}

// Clone returns a copy of n whose lists are its own (the parser reuses
// its arrays for the next command), nil for nil.
func (n *Named) Clone() *Named {
	if n == nil {
		return nil
	}
	// A filter's own Mailboxes are made afresh by each check.
	return &Named{Patterns: slices.Clone(n.Patterns), Sources: slices.Clone(n.Sources),
		Mailboxes: slices.Clone(n.Mailboxes), Notify: slices.Clone(n.Notify),
		Identifier: n.Identifier, Rights: n.Rights, QuotaRoot: n.QuotaRoot, Quota: slices.Clone(n.Quota),
		Enable: slices.Clone(n.Enable), Entries: slices.Clone(n.Entries)}
}

// reset empties n's lists, keeping their room.
func (n *Named) reset() {
	clear(n.Patterns)
	clear(n.Sources)
	clear(n.Mailboxes)
	clear(n.Notify)
	clear(n.Quota)
	clear(n.Enable)
	clear(n.Entries)
	n.Patterns, n.Sources, n.Mailboxes, n.Notify = n.Patterns[:0], n.Sources[:0], n.Mailboxes[:0], n.Notify[:0]
	n.Quota, n.Enable, n.Entries = n.Quota[:0], n.Enable[:0], n.Entries[:0]
	n.Identifier, n.Rights, n.QuotaRoot = "", "", ""
}

// NotifyFilter is the filter of one NOTIFY SET event group (RFC 5465 §6).
type NotifyFilter struct {
	// Filter is lower case: selected, selected-delayed, inboxes,
	// personal, subscribed, subtree, mailboxes.
	Filter string
	// Mailboxes are the names of a subtree or mailboxes filter,
	// canonical.
	Mailboxes []string
}

// span is where an argument lies in a command's bytes: [start, end).
type span struct{ start, end int }

// maxSpans is the number of top-level arguments whose place ArgSpan knows.
const maxSpans = 4

// Bounds are the limits of one command's shape, each with a key of
// limits: (ARCHITECTURE.md §12); a zero field takes its default. What a
// command holds in bytes is its caller's to bound (ArgBytes).
type Bounds struct {
	MaxTag         int // characters of a tag; DefaultMaxTag
	MaxListDepth   int // parenthesized list nesting; DefaultMaxListDepth
	MaxArguments   int // arguments, nested ones included; DefaultMaxArguments
	MaxSearchDepth int // NOT/OR and parenthesis nesting of search keys; DefaultMaxSearchDepth
}

// Defaults of Bounds. A tag of 64 characters, lists nested 32 deep and
// searches 64 deep are far past what clients send; 10,000 arguments
// take a 64 KiB line of short atoms.
const (
	DefaultMaxTag         = 64
	DefaultMaxListDepth   = 32
	DefaultMaxArguments   = 10000
	DefaultMaxSearchDepth = 64
)

// WithDefaults returns b with each zero or negative field at its default.
func (b Bounds) WithDefaults() Bounds {
	for _, f := range [...]struct {
		v   *int
		def int
	}{{&b.MaxTag, DefaultMaxTag}, {&b.MaxListDepth, DefaultMaxListDepth}, {&b.MaxArguments, DefaultMaxArguments}, {&b.MaxSearchDepth, DefaultMaxSearchDepth}} {
		if *f.v <= 0 {
			*f.v = f.def
		}
	}
	return b
}

var defaultBounds = Bounds{}.WithDefaults()

// maxNewAtts is the number of NOTIFY MessageNew fetch-att lists whose
// place the parser keeps: one for SELECTED, one for SELECTED-DELAYED, the
// filters whose new messages a server may send with fetch attributes
// (RFC 5465 §5.2).
const maxNewAtts = 2

// newAtt is where a NOTIFY MessageNew fetch-att list opens in the
// command's bytes (its "("), and whether UID is one of its items.
type newAtt struct {
	at  int
	uid bool
}

const (
	// keepArgs: a parser whose last command had more arguments than this
	// drops its buffers on Reset (memory per idle session, ARCHITECTURE.md §16).
	keepArgs = 256
	// keepFree bounds the list backing arrays a parser keeps for reuse.
	keepFree = 32
)

// CommandParser parses client commands line by line, literal by literal,
// as the Scanner delivers them, without needing the whole command at once.
// It is strict to the lexical rules of RFC 9051 §9 (one SP between
// arguments, no SP after "(" or before ")", escapes in quoted strings only
// before DQUOTE and "\"), so that the proxy and the backend split a
// command the same way; Check then holds the arguments to the command's
// grammar. The zero value is ready to use; Reset makes it ready for the next
// command.
type CommandParser struct {
	// Bounds, when set (with every field positive: Bounds.WithDefaults),
	// are this parser's limits; nil is the defaults. Read, never written.
	Bounds *Bounds

	cmd   Command
	open  []*Arg // open lists, innermost last; each is the last element of its parent
	depth int
	nargs int
	err   error // sticky

	started    bool // the tag and name were parsed
	needSep    bool // a token just ended: next comes SP, ")" or the end
	afterSP    bool // an SP was just read: next comes a token
	pending    bool // the last line announced a literal not fed yet
	pendingMsg bool // ... and it is message data
	sections   bool // "[" opens a section (FETCH, NOTIFY items)
	// split: the backend tokenizes the arguments, so an atom may hold
	// none of the characters a backend ends a word at (isSplitChar).
	split bool

	// catAt is the APPEND argument (its index in Args, plus one) whose
	// message parts fed so far add up to catBytes: a CATENATE's TEXT parts
	// (PendingMessageSize).
	catAt    int
	catBytes int64

	// A FETCH item whose bracketed section contains a literal
	// (BODY[HEADER.FIELDS ({4}\r\nFROM)]) spans lines: atom holds it so
	// far, atomDepth the '[' still open (0: none pending).
	atom      []byte
	atomDepth int

	// base is the offset in the command's bytes (its lines and literals
	// as fed, from the tag on) of the line being parsed, pos that of the
	// arguments' part of it; spans are the offsets of the first top-level
	// arguments (ArgSpan), atomStart where a section cut by a literal
	// started.
	base, pos int
	spans     [maxSpans]span
	atomStart int

	// newAtts are NOTIFY's MessageNew fetch-att lists (RFC 5465 §8:
	// "(" filter SP "(" event ... ")" ")", the list after the event at
	// depth 2), the first maxNewAtts, for FetchUID; newN counts them all,
	// newOpen: the innermost open list is one of them.
	newAtts [maxNewAtts]newAtt
	newN    int
	newOpen bool

	scratch []byte  // unescaping quoted strings
	free    [][]Arg // list backing arrays of earlier commands, for reuse
	lastTag string  // the previous command's tag
	named   *Named  // Command.Named, reused; made when first needed

	// check is Check's walker, kept here with its cursors so that a
	// check allocates nothing.
	check checker
}

// Syntax errors of CommandParser.
var (
	errCmdEmpty        = &SyntaxError{Msg: "empty command line"}
	errCmdTag          = &SyntaxError{Msg: "bad character in tag"}
	errCmdTagLong      = &SyntaxError{Msg: "tag too long"}
	errCmdNoName       = &SyntaxError{Msg: "missing command name"}
	errCmdName         = &SyntaxError{Msg: "bad character in command name"}
	errCmdUID          = &SyntaxError{Msg: "UID without command"}
	errCmdComplete     = &SyntaxError{Msg: "line after the end of the command"}
	errCmdLitNotFed    = &SyntaxError{Msg: "literal content missing"}
	errCmdLitUnexpect  = &SyntaxError{Msg: "literal without announcement"}
	errCmdNoMarker     = &SyntaxError{Msg: "literal announced but no marker at the end of the line"}
	errCmdLitSP        = &SyntaxError{Msg: "missing SP before literal"}
	errCmdSP           = &SyntaxError{Msg: "missing SP between arguments"}
	errCmdExtraSP      = &SyntaxError{Msg: "SP where none may stand (RFC 9051 §9: one SP between arguments)"}
	errCmdParen        = &SyntaxError{Msg: "unexpected ')'"}
	errCmdBrace        = &SyntaxError{Msg: "unexpected '{' (a literal marker must end the line)"}
	errCmdSplitAtom    = &SyntaxError{Msg: `unquoted word with "[", "]", "}" or "~", where a server may end the word: quote it (RFC 9051 §4.3)`}
	errCmdCTL          = &SyntaxError{Msg: "control character in command"}
	errCmd8Bit         = &SyntaxError{Msg: "8-bit byte outside a string"}
	errCmdQuoted       = &SyntaxError{Msg: "unterminated quoted string"}
	errCmdQuotedCTL    = &SyntaxError{Msg: "NUL, CR or LF in quoted string"}
	errCmdQuotedEsc    = &SyntaxError{Msg: `"\" in a quoted string escapes only DQUOTE and "\" (RFC 9051 §9)`}
	errCmdQuotedUTF8   = &SyntaxError{Msg: "invalid UTF-8 in quoted string"}
	errCmdOpenList     = &SyntaxError{Msg: "unterminated list"}
	errCmdOpenSection  = &SyntaxError{Msg: "unterminated '['"}
	errCmdDepth        = &SyntaxError{Msg: "lists nested too deep"}
	errCmdTooManyArgs  = &SyntaxError{Msg: "too many arguments"}
	errCmdAfterLiteral = &SyntaxError{Msg: "missing SP after literal"}
	errCmdSectionLit   = &SyntaxError{Code: "CLIENTBUG", Msg: `a literal in a section stands only for a whole header field name, after "(" or SP and before SP or ")"`}
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
	if p.named != nil {
		if p.nargs > keepArgs {
			p.named = nil
		} else {
			p.named.reset()
		}
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
	p.started, p.needSep, p.afterSP, p.pending, p.pendingMsg, p.sections, p.split = false, false, false, false, false, false, false
	p.atom, p.atomDepth = p.atom[:0], 0
	p.base, p.pos, p.atomStart, p.spans = 0, 0, 0, [maxSpans]span{}
	p.newN, p.newOpen = 0, false
	p.catAt, p.catBytes = 0, 0
}

// bounds returns the parser's limits.
func (p *CommandParser) bounds() *Bounds {
	if p.Bounds != nil {
		return p.Bounds
	}
	return &defaultBounds
}

// ArgSpan returns where the i-th top-level argument of the command lies in
// its bytes, as fed to Line and Literal from the tag on: wire[start:end].
// It reports false for an argument not (yet) complete, a literal, or one
// beyond the first few.
func (p *CommandParser) ArgSpan(i int) (start, end int, ok bool) {
	if i < 0 || i >= maxSpans || i >= len(p.cmd.Args) || p.cmd.Args[i].Kind == ArgLiteral {
		return 0, 0, false
	}
	if i == len(p.cmd.Args)-1 && p.depth > 0 {
		return 0, 0, false // a list still open
	}
	sp := p.spans[i]
	return sp.start, sp.end, sp.end > sp.start
}

// recycle puts the list backing arrays under args on the free list.
func (p *CommandParser) recycle(args []Arg) {
	for i := range args {
		if l := args[i].List; cap(l) > 0 {
			p.recycle(l)
			clear(l)
			if len(p.free) < keepFree {
				p.free = append(p.free, l[:0])
			}
		}
	}
}

// Line feeds the next line of the command, as returned by ReadLine with its
// line ending, and hasLit/lit as ReadLine returned them. The first line
// starts with tag SP name (RFC 9051 §2.2.1). After a line with hasLit, the
// literal's content must be fed with Literal or LiteralStreamed before the
// next line; until then the command's arguments end with a Pending literal.
// A malformed line gives a *SyntaxError, which is sticky until Reset.
func (p *CommandParser) Line(line []byte, lit Literal, hasLit bool) error {
	if p.err != nil {
		return p.err
	}
	if err := p.line(line, lit, hasLit); err != nil {
		p.err = err
		return err
	}
	p.base += len(line)
	if hasLit {
		p.cmd.PendingLiteral = lit.Size
	}
	return nil
}

func (p *CommandParser) line(line []byte, lit Literal, hasLit bool) error {
	if p.cmd.Complete {
		return errCmdComplete
	}
	if p.pending {
		return errCmdLitNotFed
	}
	// Every line ends with CRLF (RFC 9051 §9): a backend that took a bare
	// LF (or a bare CR) as a line end would see other command boundaries
	// than the proxy. NUL, CR and LF inside the line are refused by the
	// tokenizer below, so no other pass over the line is needed.
	n := len(line)
	if n < 2 || line[n-1] != '\n' || line[n-2] != '\r' {
		if n > 0 && line[n-1] == '\n' {
			return errBareLF
		}
		return errMissingCRLF
	}
	b := line[:n-2]
	if hasLit {
		var ok bool
		if b, ok = trimMarker(b); !ok {
			return errCmdNoMarker
		}
	}
	p.pos = p.base
	if !p.started {
		n, err := p.parseStart(b)
		if err != nil {
			return err
		}
		b = b[n:]
		p.started = true
		p.pos += n
	} else if p.atomDepth == 0 && len(b) > 0 && b[0] != ' ' && b[0] != ')' {
		// What follows a literal is SP, ")" or the end of the command.
		return errCmdAfterLiteral
	} else if p.atomDepth > 0 && (len(b) > 0 && b[0] != ' ' && b[0] != ')' || len(b) == 0 && hasLit) {
		// A header name written as a literal is the whole name: the
		// literal's octets join the section's text (literal), so
		// "X{1}\r\nY" would be one name here and another elsewhere.
		return errCmdSectionLit
	}
	if err := p.parseArgs(b, hasLit); err != nil {
		return err
	}
	if hasLit {
		if n := len(p.atom); p.atomDepth > 0 && p.atom[n-1] != '(' && p.atom[n-1] != ' ' {
			return errCmdSectionLit
		}
		if p.atomDepth == 0 {
			if p.needSep {
				return errCmdLitSP
			}
			if _, err := p.push(Arg{Kind: ArgLiteral, Size: lit.Size, Pending: true, Binary: lit.Binary, NonSync: lit.NonSync}); err != nil {
				return err
			}
			p.needSep, p.afterSP = true, false
		}
		p.pending = true
		p.pendingMsg = p.isMessage()
		return nil
	}
	if p.afterSP {
		return errCmdExtraSP // a trailing SP
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
	case i > p.bounds().MaxTag:
		return 0, errCmdTagLong
	case i == len(b):
		return 0, errCmdNoName
	case b[i] != ' ':
		return 0, errCmdTag
	}
	// A client that reuses a tag gets the same string back: no copy.
	if string(b[:i]) != p.lastTag {
		p.lastTag = string(b[:i])
	}
	p.cmd.Tag = p.lastTag
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
	p.cmd.Spec = lookup(name)
	// Only FETCH-like items have sections with SP inside; elsewhere "["
	// is an ordinary ATOM-CHAR ("[Gmail]/All" is one atom).
	p.sections = p.cmd.Spec != nil && p.cmd.Spec.sections
	// What the proxy answers itself (LOGIN, AUTHENTICATE, ...) no
	// backend reads as the client wrote it.
	p.split = p.cmd.Spec == nil || !p.cmd.Spec.Proxy
	p.needSep = true
	return i, nil
}

// commandName reads the command name at the start of b: letters only
// (every command of RFC 9051 and its extensions), followed by SP or the
// end; it returns it upper case.
func commandName(b []byte) (string, int, error) {
	n := 0
	for n < len(b) && ('a' <= b[n]|0x20 && b[n]|0x20 <= 'z') {
		n++
	}
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
		end, d, err := scanAtom(b, 0, p.atomDepth, true, p.split)
		if err != nil {
			return err
		}
		p.atom = append(p.atom, b[:end]...)
		if d > 0 {
			if end == len(b) && hasLit {
				p.atomDepth = d
				return nil
			}
			return errCmdOpenSection
		}
		p.atomDepth = 0
		if err := p.pushAtom(p.atom, CharSection); err != nil {
			return err
		}
		p.mark(p.atomStart, p.pos+end)
		p.needSep, p.afterSP = true, false
		i = end
	}
	for i < len(b) {
		c := b[i]
		switch c {
		case ' ':
			if !p.needSep {
				return errCmdExtraSP
			}
			p.needSep, p.afterSP = false, true
			i++
			continue
		case ')':
			if p.depth == 0 {
				return errCmdParen
			}
			if p.afterSP {
				return errCmdExtraSP
			}
			p.depth--
			if p.newOpen && p.depth == 2 {
				p.newClosed(p.open[2])
			}
			p.open[p.depth].Open = false
			p.open[p.depth] = nil
			p.needSep = true
			i++
			if p.depth == 0 {
				p.markEnd(p.pos + i)
			}
			continue
		}
		if p.needSep {
			return errCmdSP
		}
		p.afterSP = false
		switch {
		case c == '{':
			return errCmdBrace
		case c == '(':
			if p.depth == p.bounds().MaxListDepth {
				return errCmdDepth
			}
			if p.depth == len(p.open) {
				p.open = append(p.open, nil)
			}
			if p.depth == 2 && p.cmd.Name == "NOTIFY" {
				p.newOpened(p.pos + i)
			}
			a, err := p.push(Arg{Kind: ArgList, List: p.takeFree(), Open: true})
			if err != nil {
				return err
			}
			if p.depth == 0 {
				p.mark(p.pos+i, p.pos+i)
			}
			p.open[p.depth] = a
			p.depth++
			i++
			continue // "(" is followed by a token or ")"
		case c == '"':
			v, n, err := p.quoted(b[i:])
			if err != nil {
				return err
			}
			if _, err := p.push(Arg{Kind: ArgQuoted, Value: v}); err != nil {
				return err
			}
			p.mark(p.pos+i, p.pos+i+n)
			i += n
		default:
			end, d, err := scanAtom(b, i, 0, p.sections, p.split)
			if err != nil {
				return err
			}
			if d > 0 {
				if end == len(b) && hasLit {
					// A section such as HEADER.FIELDS may hold a literal
					// header name (header-fld-name = astring, RFC 9051 §9).
					p.atom = append(p.atom[:0], b[i:]...)
					p.atomDepth, p.atomStart = d, p.pos+i
					return nil
				}
				return errCmdOpenSection
			}
			ch := atomChars(b[i:end])
			if p.sections && bytes.IndexByte(b[i:end], '[') >= 0 {
				ch |= CharSection
			}
			if err := p.pushAtom(b[i:end], ch); err != nil {
				return err
			}
			p.mark(p.pos+i, p.pos+end)
			i = end
		}
		p.needSep = true
	}
	return nil
}

// newOpened notes a list of NOTIFY opening at offset at within an event
// list: a MessageNew's fetch-att list when MessageNew is before it (Check
// holds the rest to the grammar).
func (p *CommandParser) newOpened(at int) {
	l := p.open[1].List
	if len(l) == 0 || l[len(l)-1].Kind != ArgAtom || !strings.EqualFold(l[len(l)-1].Value, "MESSAGENEW") {
		return
	}
	if p.newN < maxNewAtts {
		p.newAtts[p.newN] = newAtt{at: at}
	}
	p.newN++
	p.newOpen = true
}

// newClosed notes whether the MessageNew fetch-att list a, just closed,
// holds UID.
func (p *CommandParser) newClosed(a *Arg) {
	p.newOpen = false
	if p.newN > maxNewAtts {
		return
	}
	for _, it := range a.List {
		if it.Kind == ArgAtom && strings.EqualFold(it.Value, "UID") {
			p.newAtts[p.newN-1].uid = true
		}
	}
}

// mark records the span of the argument just pushed, if it is one of the
// first top-level ones (ArgSpan); a list's end comes with its ")"
// (markEnd).
func (p *CommandParser) mark(start, end int) {
	if n := len(p.cmd.Args) - 1; p.depth == 0 && n < maxSpans {
		p.spans[n] = span{start, end}
	}
}

// markEnd records the end of the top-level list just closed.
func (p *CommandParser) markEnd(end int) {
	if n := len(p.cmd.Args) - 1; n >= 0 && n < maxSpans {
		p.spans[n].end = end
	}
}

// atomChars classifies the characters of an atom token.
func atomChars(b []byte) Chars {
	var ch Chars
	for _, c := range b {
		switch c {
		case '%', '*':
			ch |= CharWildcard
		case ']':
			ch |= CharBracket
		case '\\':
			ch |= CharBackslash
		case ' ', '(', ')', '"':
			// Only inside a section (scanAtom let them through).
			ch |= CharSection
		}
	}
	return ch
}

// scanAtom returns where the atom starting at b[i] ends, d being the number
// of '[' already open. With sections, a '[' opens a section that runs to the
// matching ']' and may hold SP, parentheses and quoted strings (RFC 9051
// §6.4.5 section, header-list); "<partial>" after it is ordinary atom text.
// depth > 0 means the section is not closed when b ended. Bytes that may
// stand in no atom are errors, and with split so are those outside a
// section that a backend reads as a word's end (isSplitChar).
func scanAtom(b []byte, i, d int, sections, split bool) (end, depth int, err error) {
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
					if b[j] == '\\' {
						j++
					}
					j++
				}
				if j >= len(b) {
					return i, d, errCmdQuoted
				}
				i = j
			case c == '{':
				return i, d, errCmdBrace
			case c >= 0x80:
				return i, d, errCmd8Bit
			case isCTL(c):
				return i, d, errCmdCTL
			}
			i++
			continue
		}
		if c == '[' && sections {
			d = 1
			i++
			continue
		}
		if c == ' ' || c == '(' || c == ')' || c == '"' {
			break
		}
		if split && isSplitChar(c) {
			return i, 0, errCmdSplitAtom
		}
		if !isAtomX(c) {
			switch {
			case c == '{':
				return i, 0, errCmdBrace
			case c >= 0x80:
				return i, 0, errCmd8Bit
			default:
				return i, 0, errCmdCTL
			}
		}
		i++
	}
	return i, d, nil
}

// quoted parses the quoted string at the start of b and returns its
// content. quoted = DQUOTE *QUOTED-CHAR DQUOTE, where "\" escapes only
// DQUOTE and "\" (RFC 9051 §9): any other escape has two readings
// (Dovecot drops the "\", others keep it or refuse) and is refused.
// QUOTED-CHAR allows UTF-8 (RFC 9051 §9 UTF8-2/3/4); other 8-bit bytes,
// NUL, CR and LF are refused.
func (p *CommandParser) quoted(b []byte) (string, int, error) {
	esc, high := false, false
	j := 1
	for ; j < len(b); j++ {
		c := b[j]
		if c == '"' {
			break
		}
		switch {
		case c == 0 || c == '\r' || c == '\n':
			return "", 0, errCmdQuotedCTL
		case c == '\\':
			if j+1 >= len(b) {
				return "", 0, errCmdQuoted
			}
			if b[j+1] != '"' && b[j+1] != '\\' {
				return "", 0, errCmdQuotedEsc
			}
			esc = true
			j++
		case c >= 0x80:
			high = true
		}
	}
	if j >= len(b) {
		return "", 0, errCmdQuoted
	}
	raw := b[1:j]
	if high && !utf8.Valid(raw) {
		return "", 0, errCmdQuotedUTF8
	}
	if !esc {
		return string(raw), j + 1, nil
	}
	s := p.scratch[:0]
	for k := 0; k < len(raw); k++ {
		if raw[k] == '\\' {
			k++
		}
		s = append(s, raw[k])
	}
	p.scratch = s
	return string(s), j + 1, nil
}

// push appends a to the innermost open list (or the top level).
func (p *CommandParser) push(a Arg) (*Arg, error) {
	if p.nargs >= p.bounds().MaxArguments {
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

func (p *CommandParser) pushAtom(b []byte, ch Chars) error {
	_, err := p.push(Arg{Kind: ArgAtom, Value: internAtom(b), Chars: ch})
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
// buffered by the caller; the pending ArgLiteral gets it as Value.
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
	if p.pendingMsg && p.inAppendList() {
		// A part of the message a CATENATE (or UTF8) list makes.
		if p.catAt != len(p.cmd.Args) {
			p.catAt, p.catBytes = len(p.cmd.Args), 0
		}
		p.catBytes = addSat(p.catBytes, size)
	}
	p.pending, p.pendingMsg = false, false
	p.base += int(size)
	p.cmd.PendingLiteral = 0
	p.cmd.Literals++
	p.cmd.LiteralBytes = addSat(p.cmd.LiteralBytes, size)
	if p.atomDepth > 0 {
		// A header field name (the only literal a section holds),
		// joined to the section's text: it must be one the text
		// reads back as that name (headerName), and seen.
		if streamed || !headerName(string(body)) {
			p.err = errArgHeaderName
			return
		}
		p.atom = append(p.atom, body...)
		return
	}
	a := p.last()
	a.Pending, a.Streamed, a.Size = false, streamed, size
	if !streamed {
		a.Value = string(body)
	}
}

// last returns the last argument pushed: the pending literal.
func (p *CommandParser) last() *Arg {
	s := p.cmd.Args
	if p.depth > 0 {
		s = p.open[p.depth-1].List
	}
	return &s[len(s)-1]
}

// PendingIsMessage reports whether the literal announced by the last line
// is message data, to be streamed whatever its size: the message of APPEND,
// each message of MULTIAPPEND (RFC 3502), a CATENATE TEXT part
// (RFC 4469), the literal8 of UTF8 (RFC 6855) and a SETMETADATA value
// (RFC 5464). A literal in mailbox position, or a CATENATE URL, is not.
func (p *CommandParser) PendingIsMessage() bool {
	return p.pending && p.pendingMsg
}

// PendingMessageSize is the size, as far as it is known, of the message
// the pending message literal is part of: the literal's, and for a TEXT
// part of an APPEND's CATENATE the sum of its TEXT parts so far (RFC 4469
// §5: they make one message). A URL part copies a message whose size the
// proxy does not know: not counted. 0 when no message literal is pending.
func (p *CommandParser) PendingMessageSize() int64 {
	if !p.PendingIsMessage() {
		return 0
	}
	if p.inAppendList() && p.catAt == len(p.cmd.Args) {
		return addSat(p.cmd.PendingLiteral, p.catBytes)
	}
	return p.cmd.PendingLiteral
}

// inAppendList reports an APPEND with a list open at the top level: the
// message a CATENATE or UTF8 list makes (a flag list holds no literal).
func (p *CommandParser) inAppendList() bool {
	return p.cmd.Name == "APPEND" && p.depth == 1
}

// addSat is a+b for sizes, saturating.
func addSat(a, b int64) int64 {
	if a > math.MaxInt64-b {
		return math.MaxInt64
	}
	return a + b
}

func (p *CommandParser) isMessage() bool {
	if p.atomDepth > 0 {
		return false
	}
	switch p.cmd.Name {
	case "APPEND":
	case "SETMETADATA":
		// setmetadata = "SETMETADATA" SP mailbox SP "(" entry-value
		// *(SP entry-value) ")"; a literal value follows its entry name.
		if p.depth != 1 {
			return false
		}
		n := len(p.open[0].List)
		return n >= 2 && n%2 == 0
	default:
		return false
	}
	if p.depth == 0 {
		// append = "APPEND" SP mailbox 1*append-message; the mailbox
		// comes first, every later top-level literal is a message.
		return len(p.cmd.Args) >= 2
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
		return len(list.List) == 1 // "UTF8" SP "(" literal8 ")"
	case strings.EqualFold(prev, "CATENATE"):
		// cat-part = "TEXT" SP literal / "URL" SP astring
		n := len(list.List)
		return n > 1 && list.List[n-2].Kind == ArgAtom && strings.EqualFold(list.List[n-2].Value, "TEXT")
	}
	return false
}

// ArgBytes is the memory the arguments parsed so far take (not counting
// their values), for a caller's budget of one command: MaxArguments alone
// lets a short line of one-byte atoms cost far more than its bytes.
func (p *CommandParser) ArgBytes() int64 {
	return int64(p.nargs) * int64(unsafe.Sizeof(Arg{}))
}

// Command returns what is known of the command so far, also when it is
// incomplete: the fields Check derives are filled by Check. It is valid
// until Reset; later calls update the same Command.
func (p *CommandParser) Command() *Command {
	return &p.cmd
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
// the parser runs on every command (ARCHITECTURE.md §16).
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
