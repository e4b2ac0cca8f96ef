package imapwire

import (
	"strings"
)

// Check holds the command parsed so far to its grammar (RFC 9051 §9 and
// the extensions of table.go) in the session described by ctx, and fills
// the fields of Command derived from its arguments: mailboxes (canonical
// and raw), sets, FETCH items, STORE flags and Effects. It is called at each
// decision point: when the command is complete, and before the "+" of a
// synchronizing literal or at a streamed one, when its arguments end early
// (with a Pending literal) and only what is present is judged.
//
// A command the proxy does not know, one not valid in ctx.State or whose
// capability was not offered, an argument where the grammar has none, a
// literal where no literal may stand, an atom with characters its argument
// does not allow, a mailbox name with two readings: each is a *SyntaxError,
// answered with BAD (ARCHITECTURE.md §7: no ambiguity leaves the proxy).
func (p *CommandParser) Check(ctx *Context) error {
	c := &p.cmd
	k := &p.check
	k.p, k.c, k.ctx, k.partial = p, c, ctx, !c.Complete
	k.stop, k.err, k.ncursor = false, nil, 0
	k.derive()
	err := k.err
	k.p, k.c, k.ctx = nil, nil, nil // the parser outlives the context
	return err
}

// Errors of Check.
var (
	errUnknownCommand = &SyntaxError{Msg: "unknown command"}
	errNotNow         = &SyntaxError{Msg: "command not valid in this state"}
	errNoSelected     = &SyntaxError{Msg: "no mailbox selected"}
	errNotOffered     = &SyntaxError{Msg: "command not available: its capability was not offered"}
	errNoUID          = &SyntaxError{Msg: "no UID form of this command"}
	errArgMissing     = &SyntaxError{Msg: "missing argument"}
	errArgExtra       = &SyntaxError{Msg: "unexpected argument"}
	errArgKind        = &SyntaxError{Msg: "wrong kind of argument"}
	errArgLiteral     = &SyntaxError{Msg: "literal where none may stand"}
	errArgLiteral8    = &SyntaxError{Msg: "literal8 where none may stand (RFC 3516)"}
	errArgChars       = &SyntaxError{Msg: "character not allowed in this argument"}
	errArgWord        = &SyntaxError{Msg: "unknown keyword"}
	errArgNumber      = &SyntaxError{Msg: "bad number"}
	errArgSet         = &SyntaxError{Msg: "bad sequence set"}
	errArgFlag        = &SyntaxError{Msg: "bad flag"}
	errArgDate        = &SyntaxError{Msg: "bad date"}
	errArgFetch       = &SyntaxError{Msg: "bad FETCH item"}
	errArgSection     = &SyntaxError{Msg: "bad FETCH section"}
	errArgHeaderName  = &SyntaxError{Code: "CLIENTBUG", Msg: `header field name empty or with a character servers echo in more than one form: printable US-ASCII but SP ":" "(" ")" "[" "]" "{" DQUOTE "\" "%" only`}
	errArgSearch      = &SyntaxError{Msg: "bad search key"}
	errArgExt         = &SyntaxError{Msg: "extension not offered"}
	errArgTooMany     = &SyntaxError{Msg: "too many parameters"}
	errArgBase64      = &SyntaxError{Msg: "bad base64"}
	errArgMultiAppend = &SyntaxError{Msg: "several messages need MULTIAPPEND (RFC 3502)"}
	// An empty list where the grammar needs an item, or a parameter given
	// twice, is read differently by the backends (Dovecot opens
	// "EXAMINE box ()", Cyrus answers BAD and keeps its old mailbox,
	// Courier NO and deselects; a repeated CHANGEDSINCE or MAXSIZE is
	// the first to one server and the last to another).
	errArgEmptyList = &SyntaxError{Code: "CLIENTBUG", Msg: "empty list where the grammar needs at least one item"}
	errArgRepeated  = &SyntaxError{Code: "CLIENTBUG", Msg: "parameter given more than once"}
)

// checker walks a command's arguments against its grammar.
type checker struct {
	p       *CommandParser
	c       *Command
	ctx     *Context
	partial bool // the command is not complete: its arguments may end early
	stop    bool // they did: nothing more is known
	err     error

	// cursors are the lists' cursors of one check, taken in order.
	cursors [16]cursor
	ncursor int
}

// cursor walks one list of arguments.
type cursor struct {
	args []Arg
	i    int
	open bool // more arguments may follow (an open list, or the top level of a partial command)
}

func (k *checker) fail(err error) {
	if k.err == nil {
		k.err = err
	}
}

func (k *checker) ok() bool { return k.err == nil && !k.stop }

func (k *checker) derive() {
	c, ctx := k.c, k.ctx
	c.Mailbox, c.MailboxRaw, c.Reference, c.Destination, c.DestinationRaw = "", "", "", "", ""
	c.Set, c.StoreOp, c.SetCount, c.AppendURLs, c.ContentItems, c.SearchKeys, c.FetchClass = "", "", 0, 0, false, 0, FetchUnknown
	clear(c.FetchItems)
	clear(c.StoreFlags)
	c.FetchItems, c.StoreFlags = c.FetchItems[:0], c.StoreFlags[:0]
	if k.p.named != nil {
		k.p.named.reset()
	}
	c.Named = nil
	c.Effects = Effects{}
	sp := c.Spec
	switch {
	case sp == nil:
		k.fail(errUnknownCommand)
		return
	case c.UID && !sp.UID:
		k.fail(errNoUID)
		return
	case sp.States&ctx.State == 0:
		if ctx.State == StateAuth && sp.States&StateSelected != 0 {
			k.fail(errNoSelected)
		} else {
			k.fail(errNotNow)
		}
		return
	case ctx.State != StateNotAuth && sp.Cap != 0 && sp.Cap&ctx.Caps == 0 && !sp.Proxy:
		k.fail(errNotOffered)
		return
	}
	sp.check(k)
	if k.ok() && strings.Contains(c.Set, "$") && c.Effects.Mask()&savedResultRefused != 0 {
		k.fail(ErrSavedResultUnnamed)
	}
}

// savedResultRefused is what a command may not do to "$" (RFC 5182: the
// messages a SEARCH RETURN (SAVE) matched, which the backend holds and
// the proxy does not see unless the SEARCH returned them too): mark them
// deleted, expunge, copy or move them. The trail names the messages
// those commands act on by set or by what the backend reports
// (audit/README.md); "$" names none (ARCHITECTURE.md §11).
var savedResultRefused = effs(EffMarkDeleted, EffExpunge, EffCreateMessages)

// ErrSavedResultUnnamed refuses "$" in a command that marks deleted,
// expunges, copies or moves.
var ErrSavedResultUnnamed = &SyntaxError{Code: "CANNOT", Audit: true,
	Msg: "the saved search result ($) cannot be marked deleted, expunged, copied or moved through this proxy: name the messages"}

// top returns a cursor over the command's arguments.
func (k *checker) top() *cursor {
	return k.cursor(k.c.Args, k.partial)
}

// next returns the next argument, or nil when none is left: at the open
// end of a partial command that stops the check, elsewhere it is an error.
func (k *checker) next(cu *cursor) *Arg {
	if !k.ok() {
		return nil
	}
	if cu.i >= len(cu.args) {
		if cu.open && k.partial {
			k.stop = true
		} else {
			k.fail(errArgMissing)
		}
		return nil
	}
	a := &cu.args[cu.i]
	cu.i++
	return a
}

// more reports whether another argument is present.
func (k *checker) more(cu *cursor) bool { return k.ok() && cu.i < len(cu.args) }

// peek returns the next argument without taking it, nil if none.
func (k *checker) peek(cu *cursor) *Arg {
	if !k.more(cu) {
		return nil
	}
	return &cu.args[cu.i]
}

// end checks that no argument is left.
func (k *checker) end(cu *cursor) {
	if k.ok() && cu.i < len(cu.args) {
		k.fail(errArgExtra)
	}
}

// list takes a parenthesized list.
func (k *checker) list(cu *cursor) *cursor {
	a := k.next(cu)
	if a == nil {
		return nil
	}
	if a.Kind != ArgList {
		k.kindErr(a)
		return nil
	}
	return k.cursor(a.List, a.Open)
}

// nonEmpty fails on a closed list with no item, where the grammar has
// 1*item (RFC 4466 §2.1 select-params, §2.4 fetch-modifiers, ...).
func (k *checker) nonEmpty(l *cursor) bool {
	if l != nil && k.ok() && len(l.args) == 0 && !l.open {
		k.fail(errArgEmptyList)
	}
	return l != nil && k.ok()
}

// once fails when bit is already in *seen: a parameter given twice.
func (k *checker) once(seen *uint32, bit uint32) {
	if *seen&bit != 0 {
		k.fail(errArgRepeated)
	}
	*seen |= bit
}

// cursor returns a new cursor from the checker's own while they last.
func (k *checker) cursor(args []Arg, open bool) *cursor {
	if k.ncursor < len(k.cursors) {
		cu := &k.cursors[k.ncursor]
		k.ncursor++
		*cu = cursor{args: args, open: open}
		return cu
	}
	return &cursor{args: args, open: open}
}

// kindErr fails on an argument of the wrong kind.
func (k *checker) kindErr(a *Arg) {
	switch {
	case a.Kind == ArgLiteral && a.Binary:
		k.fail(errArgLiteral8)
	case a.Kind == ArgLiteral:
		k.fail(errArgLiteral)
	default:
		k.fail(errArgKind)
	}
}

// atom takes an atom of plain ATOM-CHARs and returns it upper case.
func (k *checker) atom(cu *cursor) string {
	a := k.next(cu)
	if a == nil {
		return ""
	}
	if a.Kind != ArgAtom {
		k.kindErr(a)
		return ""
	}
	if a.Chars != 0 {
		k.fail(errArgChars)
		return ""
	}
	return strings.ToUpper(a.Value)
}

// word takes an atom that must be one of words (upper case).
func (k *checker) word(cu *cursor, words ...string) string {
	w := k.atom(cu)
	if !k.ok() {
		return ""
	}
	for _, x := range words {
		if w == x {
			return w
		}
	}
	k.fail(errArgWord)
	return ""
}

// isWord reports whether a is the atom w (upper case), without taking it.
func isWord(a *Arg, w string) bool {
	return a != nil && a.Kind == ArgAtom && a.Chars == 0 && len(a.Value) == len(w) && equalFold([]byte(a.Value), w)
}

// stringArg takes an astring (RFC 9051 §9: 1*ASTRING-CHAR / string), or a
// string only. known is false for a pending literal, whose content is not
// known yet: the check stops there.
func (k *checker) stringArg(cu *cursor, atomOK bool) (v string, known bool) {
	a := k.next(cu)
	if a == nil {
		return "", false
	}
	switch a.Kind {
	case ArgAtom:
		if !atomOK {
			k.fail(errArgKind)
			return "", false
		}
		if a.Chars&^CharBracket != 0 {
			k.fail(errArgChars)
			return "", false
		}
		return a.Value, true
	case ArgQuoted:
		return a.Value, true
	case ArgLiteral:
		if a.Binary {
			k.fail(errArgLiteral8)
			return "", false
		}
		if a.Pending {
			k.stop = true
			return "", false
		}
		if a.Streamed {
			// Only message data is streamed unseen (the relay refuses
			// larger literals elsewhere); a name must be seen.
			k.fail(errArgLiteral)
			return "", false
		}
		return a.Value, true
	}
	k.kindErr(a)
	return "", false
}

func (k *checker) astring(cu *cursor) (string, bool) { return k.stringArg(cu, true) }

// nstring takes a string or NIL (RFC 9051 §9 nstring).
func (k *checker) nstring(cu *cursor) {
	if a := k.peek(cu); isWord(a, "NIL") {
		cu.i++
		return
	}
	k.stringArg(cu, false)
}

// mailbox takes a mailbox name into *canon and *raw (RFC 9051 §9: mailbox =
// "INBOX" / astring), canonical as ctx.Canonical says.
func (k *checker) mailbox(cu *cursor, canon, raw *string) bool {
	if a := k.peek(cu); a != nil && a.Kind == ArgAtom && strings.EqualFold(a.Value, "NIL") {
		// An atom NIL is an astring to Dovecot and nil to Courier.
		k.fail(errNameNIL)
		return false
	}
	v, known := k.astring(cu)
	if !known {
		return false
	}
	name, err := k.ctx.Canonical(v)
	if se, ok := err.(*SyntaxError); ok && se.Audit {
		// Named for the audit of the refusal.
		*canon, *raw = name, v
	}
	if err != nil {
		k.fail(err)
		return false
	}
	*canon, *raw = name, v
	return true
}

// listMailbox takes a LIST pattern (RFC 9051 §9 list-mailbox = 1*list-char
// / string; list-char = ATOM-CHAR / list-wildcards / resp-specials) and
// returns it decoded.
func (k *checker) listMailbox(cu *cursor) string {
	a := k.peek(cu)
	if a != nil && a.Kind == ArgAtom {
		if a.Chars&^(CharWildcard|CharBracket) != 0 {
			k.fail(errArgChars)
			return ""
		}
		cu.i++
		return k.listPattern(a.Value)
	}
	v, known := k.stringArg(cu, false)
	if !known {
		return ""
	}
	return k.listPattern(v)
}

// listPattern decodes a pattern; joined to the reference (decoded into
// Command.Reference before) it must not reach the user's own mailboxes
// through an other-users namespace (Context.patternAlias).
func (k *checker) listPattern(v string) string {
	pat := k.pattern(v)
	if k.ok() {
		if err := k.ctx.patternAlias(k.c.Reference, pat); err != nil {
			k.fail(err)
		}
	}
	return pat
}

func (k *checker) pattern(v string) string {
	name, err := k.ctx.Pattern(v)
	if err != nil {
		k.fail(err)
		return ""
	}
	return name
}

// number takes a number (RFC 9051 §9: number = 1*DIGIT, 32-bit; number64
// with wide); nz refuses 0.
func (k *checker) number(cu *cursor, nz, wide bool) uint64 {
	a := k.next(cu)
	if a == nil {
		return 0
	}
	if a.Kind != ArgAtom {
		k.kindErr(a)
		return 0
	}
	n, ok := parseNumber(a.Value, wide)
	if !ok || (nz && n == 0) {
		k.fail(errArgNumber)
	}
	return n
}

// parseNumber parses 1*DIGIT within 2^32-1, or 2^63-1 when wide.
func parseNumber(s string, wide bool) (uint64, bool) {
	if s == "" || len(s) > 19 {
		return 0, false
	}
	max := uint64(1<<32 - 1)
	if wide {
		max = 1<<63 - 1
	}
	var n uint64
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + uint64(c-'0')
		if n > max {
			return 0, false
		}
	}
	return n, true
}

// seqSet takes a sequence-set (RFC 9051 §9), or "$" with SEARCHRES
// (RFC 5182), into Command.Set and SetCount unless only is false.
func (k *checker) seqSet(cu *cursor, record bool) {
	a := k.next(cu)
	if a == nil {
		return
	}
	if a.Kind != ArgAtom || a.Chars&^CharWildcard != 0 {
		k.kindErr(a)
		return
	}
	set := a.Value
	if set == "$" && k.ctx.Caps&CapSEARCHRES == 0 {
		k.fail(errArgExt)
		return
	}
	n, err := SetCount(set)
	if err != nil {
		k.fail(errArgSet)
		return
	}
	if record {
		k.c.Set, k.c.SetCount = set, n
	}
}

// flag takes a flag (RFC 9051 §9: flag = "\Answered" / ... / flag-keyword
// / flag-extension, flag-extension = "\" atom); "\*" is server-side only.
func (k *checker) flag(cu *cursor) string {
	a := k.next(cu)
	if a == nil {
		return ""
	}
	if a.Kind != ArgAtom {
		k.kindErr(a)
		return ""
	}
	v := a.Value
	if a.Chars == CharBackslash && len(v) > 1 && v[0] == '\\' && strings.IndexByte(v[1:], '\\') < 0 {
		return v
	}
	if a.Chars != 0 {
		k.fail(errArgFlag)
		return ""
	}
	return v
}

// flagList takes "(" [flag *(SP flag)] ")" and returns its flags, and
// whether one of them is \Deleted.
func (k *checker) flagList(cu *cursor, into *[]string) (deleted bool) {
	l := k.list(cu)
	for l != nil && k.more(l) {
		f := k.flag(l)
		if k.err == nil {
			deleted = deleted || isDeleted(f)
			if into != nil {
				*into = append(*into, f)
			}
		}
	}
	return deleted
}

// isDeleted reports whether flag f is \Deleted: flags are
// case-insensitive (RFC 9051 §2.3.2).
func isDeleted(f string) bool { return strings.EqualFold(f, `\Deleted`) }

var months = [...]string{"JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC"}

// date takes a date (RFC 9051 §9: date = date-text / DQUOTE date-text
// DQUOTE; date-text = date-day "-" date-month "-" date-year).
func (k *checker) date(cu *cursor) {
	a := k.next(cu)
	if a == nil {
		return
	}
	if (a.Kind != ArgAtom || a.Chars != 0) && a.Kind != ArgQuoted {
		k.kindErr(a)
		return
	}
	if !dateText(a.Value) {
		k.fail(errArgDate)
	}
}

// dateText checks 1*2DIGIT "-" date-month "-" 4DIGIT.
func dateText(s string) bool {
	day, rest, ok := strings.Cut(s, "-")
	if !ok || len(day) < 1 || len(day) > 2 || !digits(day) {
		return false
	}
	mon, year, ok := strings.Cut(rest, "-")
	if !ok || len(year) != 4 || !digits(year) {
		return false
	}
	for _, m := range months {
		if len(mon) == 3 && equalFold([]byte(mon), m) {
			return true
		}
	}
	return false
}

func digits(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return s != ""
}

// dateTime checks a quoted date-time: DQUOTE date-day-fixed "-" date-month
// "-" date-year SP time SP zone DQUOTE (RFC 9051 §9).
func dateTime(a *Arg) bool {
	if a.Kind != ArgQuoted || len(a.Value) != 26 {
		return false
	}
	v := a.Value
	day := strings.TrimPrefix(v[0:2], " ")
	if !digits(day) || v[2] != '-' || v[6] != '-' || v[11] != ' ' || v[14] != ':' || v[17] != ':' || v[20] != ' ' {
		return false
	}
	if !dateText(day+v[2:11]) || !digits(v[12:14]) || !digits(v[15:17]) || !digits(v[18:20]) {
		return false
	}
	return (v[21] == '+' || v[21] == '-') && digits(v[22:26])
}

// eff records an effect.
func (k *checker) eff(e Effect, t Target) { k.c.Effects.add(e, t) }

// needCap fails unless the client was offered c.
func (k *checker) needCap(c Cap) bool {
	if k.ctx.Caps&c == 0 {
		k.fail(errArgExt)
		return false
	}
	return true
}

// ---- the commands ----

func gNone(k *checker) { k.end(k.top()) }

func gID(k *checker) {
	cu := k.top()
	k.eff(EffSession, TargetNone)
	if a := k.peek(cu); isWord(a, "NIL") {
		cu.i++
		k.end(cu)
		return
	}
	// id-params-list (RFC 2971 §4): at most 30 pairs (§3.3), fields of 30
	// octets, values of 1024.
	l := k.list(cu)
	n := 0
	for l != nil && k.more(l) {
		if n++; n > 30 {
			k.fail(errArgTooMany)
			return
		}
		if key, known := k.astring(l); known && len(key) > 30 {
			k.fail(errArgTooMany)
			return
		}
		if a := k.peek(l); a != nil && a.Kind != ArgAtom && len(a.Value) > 1024 {
			k.fail(errArgTooMany)
			return
		}
		k.nstring(l)
	}
	k.end(cu)
}

func gLogin(k *checker) {
	cu := k.top()
	k.astring(cu)
	k.astring(cu)
	k.end(cu)
}

func gAuthenticate(k *checker) {
	cu := k.top()
	k.atom(cu)
	if k.more(cu) {
		// RFC 4959: the initial response is base64 or "=".
		a := k.next(cu)
		if a.Kind != ArgAtom || a.Chars != 0 || !isBase64(a.Value) {
			k.fail(errArgBase64)
			return
		}
	}
	k.end(cu)
}

// isBase64 checks RFC 9051 §9 base64 (or "=" for an empty response).
func isBase64(s string) bool {
	if s == "=" {
		return true
	}
	if len(s)%4 != 0 {
		return false
	}
	pad := 0
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '=':
			pad++
			if pad > 2 {
				return false
			}
		case pad > 0:
			return false
		case 'A' <= c && c <= 'Z', 'a' <= c && c <= 'z', '0' <= c && c <= '9', c == '+', c == '/':
		default:
			return false
		}
	}
	return true
}

func gCompress(k *checker) {
	cu := k.top()
	k.atom(cu) // the algorithm: only DEFLATE exists (RFC 4978 §3)
	k.end(cu)
	k.eff(EffSession, TargetNone)
}

func gEnable(k *checker) {
	cu := k.top()
	k.eff(EffSession, TargetNone)
	// 1*(SP capability), kept for the policy and the audit.
	if c := k.atom(cu); k.ok() {
		k.named().Enable = append(k.named().Enable, c)
	}
	for k.more(cu) {
		if c := k.atom(cu); k.ok() {
			k.named().Enable = append(k.named().Enable, c)
		}
	}
	k.end(cu)
}

func gSelect(k *checker) {
	cu := k.top()
	c := k.c
	if c.Name == "SELECT" {
		k.eff(EffSelectReadWrite, TargetMailbox)
	} else {
		k.eff(EffSelect, TargetMailbox)
	}
	k.eff(EffReadMetadata, TargetMailbox)
	if !k.mailbox(cu, &c.Mailbox, &c.MailboxRaw) {
		return
	}
	if k.more(cu) {
		// select-params (RFC 4466 §2.1): "(" select-param *(SP
		// select-param) ")", each once: CONDSTORE (RFC 7162 §3.1.8),
		// QRESYNC (RFC 7162 §3.2.5).
		l := k.list(cu)
		k.nonEmpty(l)
		var seen uint32
		for l != nil && k.more(l) {
			switch k.word(l, "CONDSTORE", "QRESYNC") {
			case "CONDSTORE":
				k.once(&seen, 1)
				k.needCap(CapCONDSTORE)
			case "QRESYNC":
				k.once(&seen, 2)
				if !k.ctx.QRESYNC {
					k.fail(errArgExt)
					return
				}
				k.qresyncParams(l)
			}
		}
	}
	k.end(cu)
}

// qresyncParams: "(" uidvalidity SP mod-sequence-value [SP known-uids] [SP
// seq-match-data] ")" (RFC 7162 §3.2.5).
func (k *checker) qresyncParams(cu *cursor) {
	l := k.list(cu)
	if l == nil {
		return
	}
	k.number(l, true, false)
	k.number(l, true, true)
	if a := k.peek(l); a != nil && a.Kind == ArgAtom {
		k.knownSet(l)
	}
	if a := k.peek(l); a != nil && a.Kind == ArgList {
		// seq-match-data: each sequence number with its UID, so both
		// sets name as many messages (RFC 7162 §3.2.5.2; Dovecot answers
		// BAD otherwise, Cyrus OK).
		m := k.list(l)
		if n, u := k.knownSet(m), k.knownSet(m); k.ok() && n != u {
			k.fail(errArgSet)
		}
		k.end(m)
	}
	k.end(l)
}

// knownSet takes a QRESYNC set of known messages and returns how many it
// names: no "*" or "$", which no SELECT can resolve as the client meant.
func (k *checker) knownSet(cu *cursor) int64 {
	a := k.peek(cu)
	k.seqSet(cu, false)
	if !k.ok() {
		return 0
	}
	n, _ := SetCount(a.Value)
	if n < 0 {
		k.fail(errArgSet)
	}
	return n
}

func gCreate(k *checker) {
	cu := k.top()
	c := k.c
	k.eff(EffCreateMailbox, TargetMailbox)
	if !k.mailbox(cu, &c.Mailbox, &c.MailboxRaw) {
		return
	}
	if k.more(cu) {
		// create-params (RFC 4466): "USE" SP "(" use-attrs ")" (RFC 6154 §3).
		if !k.needCap(CapCREATESPECIALUSE) {
			return
		}
		l := k.list(cu)
		if l == nil {
			return
		}
		k.word(l, "USE")
		u := k.list(l)
		k.nonEmpty(u) // use-attrs = use-attr *(SP use-attr)
		for u != nil && k.more(u) {
			if f := k.flag(u); k.ok() && (len(f) < 2 || f[0] != '\\') {
				k.fail(errArgFlag)
			}
		}
		k.end(l)
	}
	k.end(cu)
}

func gDelete(k *checker) {
	cu := k.top()
	k.eff(EffDeleteMailbox, TargetMailbox)
	k.mailbox(cu, &k.c.Mailbox, &k.c.MailboxRaw)
	k.end(cu)
}

func gRename(k *checker) {
	cu := k.top()
	c := k.c
	k.eff(EffRenameMailbox, TargetMailbox)
	k.eff(EffCreateMailbox, TargetDestination)
	if !k.mailbox(cu, &c.Mailbox, &c.MailboxRaw) {
		return
	}
	k.mailbox(cu, &c.Destination, &c.DestinationRaw)
	k.end(cu)
}

func gSubscribe(k *checker) {
	cu := k.top()
	k.eff(EffSubscriptions, TargetMailbox)
	k.mailbox(cu, &k.c.Mailbox, &k.c.MailboxRaw)
	k.end(cu)
}

func gMailboxOnly(k *checker) {
	cu := k.top()
	k.eff(EffReadMetadata, TargetMailbox)
	k.mailbox(cu, &k.c.Mailbox, &k.c.MailboxRaw)
	k.end(cu)
}

var statusAtts = map[string]Cap{
	"MESSAGES": 0, "UIDNEXT": 0, "UIDVALIDITY": 0, "UNSEEN": 0, "RECENT": 0, "DELETED": 0,
	"SIZE": CapSTATUSSIZE, "HIGHESTMODSEQ": CapCONDSTORE, "APPENDLIMIT": CapAPPENDLIMIT, "MAILBOXID": CapOBJECTID,
}

// statusAtts takes "(" status-att *(SP status-att) ")" (RFC 9051 §6.3.11).
func (k *checker) statusAttList(cu *cursor) {
	l := k.list(cu)
	if l == nil {
		return
	}
	if len(l.args) == 0 && !l.open {
		k.fail(errArgMissing)
		return
	}
	for k.more(l) {
		need, ok := statusAtts[k.atom(l)]
		if !k.ok() {
			return
		}
		if !ok {
			k.fail(errArgWord)
			return
		}
		if need != 0 && !k.needCap(need) {
			return
		}
	}
}

func gStatus(k *checker) {
	cu := k.top()
	k.eff(EffReadMetadata, TargetMailbox)
	if !k.mailbox(cu, &k.c.Mailbox, &k.c.MailboxRaw) {
		return
	}
	k.statusAttList(cu)
	k.end(cu)
}

func gList(k *checker) {
	cu := k.top()
	c := k.c
	k.eff(EffReadMetadata, TargetAny)
	if a := k.peek(cu); a != nil && a.Kind == ArgList {
		// list-select-opts (RFC 5258 §3, RFC 6154 §5.3).
		if !k.needCap(CapLISTEXTENDED) {
			return
		}
		l := k.list(cu)
		for l != nil && k.more(l) {
			if k.word(l, "SUBSCRIBED", "REMOTE", "RECURSIVEMATCH", "SPECIAL-USE") == "SPECIAL-USE" {
				k.needCap(CapSPECIALUSE)
			}
		}
	}
	ref, known := k.astring(cu)
	if !known {
		return
	}
	c.Reference = k.pattern(ref)
	if a := k.peek(cu); a != nil && a.Kind == ArgList {
		if !k.needCap(CapLISTEXTENDED) {
			return
		}
		l := k.list(cu)
		c.Mailbox = k.listMailbox(l)
		k.addPattern(c.Mailbox)
		for k.more(l) {
			k.addPattern(k.listMailbox(l))
		}
	} else {
		c.Mailbox = k.listMailbox(cu)
		k.addPattern(c.Mailbox)
	}
	if k.more(cu) {
		// list-return-opts (RFC 5258 §3, RFC 5819, RFC 6154, RFC 8440).
		if !k.needCap(CapLISTEXTENDED) {
			return
		}
		k.word(cu, "RETURN")
		l := k.list(cu)
		var seen uint32
		for l != nil && k.more(l) {
			switch k.word(l, "SUBSCRIBED", "CHILDREN", "SPECIAL-USE", "STATUS", "MYRIGHTS") {
			case "SPECIAL-USE":
				k.needCap(CapSPECIALUSE)
			case "STATUS":
				// Twice, its attributes are the union or the last list.
				k.once(&seen, 1)
				if k.ok() && k.needCap(CapLISTSTATUS) {
					k.statusAttList(l)
				}
			case "MYRIGHTS":
				k.needCap(CapLISTMYRIGHTS)
			}
		}
	}
	k.end(cu)
}

func gLsub(k *checker) {
	cu := k.top()
	c := k.c
	k.eff(EffReadMetadata, TargetAny)
	ref, known := k.astring(cu)
	if !known {
		return
	}
	c.Reference = k.pattern(ref)
	c.Mailbox = k.listMailbox(cu)
	k.addPattern(c.Mailbox)
	k.end(cu)
}

// addPattern records a LIST pattern read whole (RFC 5258 §3: a list of
// them), each as often as sent.
func (k *checker) addPattern(p string) {
	if k.ok() {
		n := k.named()
		n.Patterns = append(n.Patterns, p)
	}
}

func gAppend(k *checker) {
	cu := k.top()
	c := k.c
	k.eff(EffCreateMessages, TargetMailbox)
	if !k.mailbox(cu, &c.Mailbox, &c.MailboxRaw) {
		return
	}
	msgs := 0
	for k.ok() {
		if msgs > 0 && !k.more(cu) {
			break
		}
		if msgs++; msgs == 2 && !k.needCap(CapMULTIAPPEND) {
			k.err = errArgMultiAppend
			return
		}
		k.appendMessage(cu)
	}
	k.end(cu)
}

// appendMessage: [SP flag-list] [SP date-time] SP append-data (RFC 9051
// §9, RFC 4466 §2.1.1); append-data = literal / literal8 (RFC 3516) /
// "UTF8" SP "(" literal8 ")" (RFC 6855) / "CATENATE" SP "(" cat-part
// *(SP cat-part) ")" (RFC 4469).
func (k *checker) appendMessage(cu *cursor) {
	if a := k.peek(cu); a != nil && a.Kind == ArgList && k.flagList(cu, nil) {
		// The message is stored \Deleted, whatever its form (literal,
		// literal8, UTF8, CATENATE): the step before an expunge, as a
		// STORE of \Deleted is (ARCHITECTURE.md §10).
		k.eff(EffMarkDeleted, TargetMailbox)
	}
	if a := k.peek(cu); a != nil && a.Kind == ArgQuoted {
		cu.i++
		if !dateTime(a) {
			k.fail(errArgDate)
			return
		}
	}
	a := k.next(cu)
	if a == nil {
		return
	}
	switch {
	case a.Kind == ArgLiteral:
		if a.Binary {
			k.needCap(CapBINARY)
		}
	case isWord(a, "UTF8"):
		if !k.needCap(CapUTF8ACCEPT) {
			return
		}
		l := k.list(cu)
		if l == nil {
			return
		}
		if x := k.next(l); x != nil && (x.Kind != ArgLiteral || !x.Binary) {
			k.kindErr(x)
		}
		k.end(l)
	case isWord(a, "CATENATE"):
		if !k.needCap(CapCATENATE) {
			return
		}
		l := k.list(cu)
		if l == nil {
			return
		}
		if len(l.args) == 0 && !l.open {
			k.fail(errArgMissing)
		}
		for k.more(l) {
			switch k.word(l, "TEXT", "URL") {
			case "TEXT":
				if x := k.next(l); x != nil && (x.Kind != ArgLiteral || x.Binary) {
					k.kindErr(x)
				}
			case "URL":
				// The URL names a message the backend copies in: its size
				// is not known here (policies see append_urls), and the
				// command reads the mailbox it names.
				k.c.AppendURLs++
				k.catenateURL(l)
			}
		}
	default:
		k.kindErr(a)
	}
}

// catenateURL takes a CATENATE URL (RFC 4469 §3: "URL" SP astring) and
// adds its mailbox to the command's sources, read (Context.URLSource).
func (k *checker) catenateURL(cu *cursor) {
	v, known := k.astring(cu)
	if !known {
		return
	}
	name, err := k.ctx.URLSource(v)
	if err != nil {
		k.fail(err)
		return
	}
	k.eff(EffReadContent, TargetSources)
	n := k.named()
	n.Sources = appendOnce(n.Sources, name)
}

// named returns the command's Named, the parser's from now on.
func (k *checker) named() *Named {
	if k.p.named == nil {
		k.p.named = new(Named)
	}
	k.c.Named = k.p.named
	return k.c.Named
}

// appendOnce appends s to l unless it holds it.
func appendOnce(l []string, s string) []string {
	for _, x := range l {
		if x == s {
			return l
		}
	}
	return append(l, s)
}

func gClose(k *checker) {
	k.end(k.top())
	k.eff(EffSelect, TargetNone)
	if !k.ctx.Examined {
		// CLOSE expunges unless the mailbox was EXAMINEd (RFC 9051
		// §6.4.1); a SELECT answered [READ-ONLY] may expunge all the
		// same, the backend deciding at CLOSE (ARCHITECTURE.md §8).
		k.eff(EffExpunge, TargetSelected)
	}
}

func gUnselect(k *checker) {
	k.end(k.top())
	k.eff(EffSelect, TargetNone)
}

func gExpunge(k *checker) {
	cu := k.top()
	k.eff(EffExpunge, TargetSelected)
	if k.c.UID {
		// RFC 4315 §2.1: "UID EXPUNGE" SP sequence-set.
		if !k.needCap(CapUIDPLUS) {
			return
		}
		k.seqSet(cu, true)
	}
	k.end(cu)
}

func gCopy(k *checker) {
	cu := k.top()
	c := k.c
	k.eff(EffCreateMessages, TargetDestination)
	if c.Name == "MOVE" {
		k.eff(EffExpunge, TargetSelected)
	} else {
		k.eff(EffReadMetadata, TargetSelected)
	}
	k.seqSet(cu, true)
	k.mailbox(cu, &c.Destination, &c.DestinationRaw)
	k.end(cu)
}

func gStore(k *checker) {
	cu := k.top()
	c := k.c
	k.eff(EffSetFlags, TargetSelected)
	k.seqSet(cu, true)
	if a := k.peek(cu); a != nil && a.Kind == ArgList {
		// store-modifiers (RFC 4466, RFC 7162 §3.1.3): UNCHANGEDSINCE.
		if !k.needCap(CapCONDSTORE) {
			return
		}
		l := k.list(cu)
		k.word(l, "UNCHANGEDSINCE")
		k.number(l, false, true)
		k.end(l)
	}
	op := k.word(cu, "FLAGS", "+FLAGS", "-FLAGS", "FLAGS.SILENT", "+FLAGS.SILENT", "-FLAGS.SILENT")
	if !k.ok() {
		return
	}
	c.StoreOp = op
	if a := k.peek(cu); a != nil && a.Kind == ArgList {
		k.flagList(cu, &c.StoreFlags)
	} else {
		c.StoreFlags = append(c.StoreFlags, k.flag(cu))
		for k.more(cu) {
			c.StoreFlags = append(c.StoreFlags, k.flag(cu))
		}
	}
	k.end(cu)
	if op[0] != '-' {
		for _, f := range c.StoreFlags {
			if isDeleted(f) {
				k.eff(EffMarkDeleted, TargetSelected)
			}
		}
	}
}

func gListRights(k *checker) {
	cu := k.top()
	k.eff(EffReadMetadata, TargetMailbox)
	if !k.mailbox(cu, &k.c.Mailbox, &k.c.MailboxRaw) {
		return
	}
	k.identifier(cu)
	k.end(cu)
}

// identifier takes an ACL identifier (RFC 4314 §2: an astring) into
// Named.Identifier: whom the command is about decides what it does, so
// the policy and the trail get it (ARCHITECTURE.md §10).
func (k *checker) identifier(cu *cursor) bool {
	id, known := k.astring(cu)
	if !known {
		return false
	}
	k.aclIdentifier(id)
	if !k.ok() {
		return false
	}
	k.named().Identifier = id
	return true
}

func gSetACL(k *checker) {
	cu := k.top()
	k.eff(EffACL, TargetMailbox)
	if !k.mailbox(cu, &k.c.Mailbox, &k.c.MailboxRaw) || !k.identifier(cu) {
		return
	}
	if r, known := k.astring(cu); known { // mod-rights (RFC 4314 §3.1)
		k.aclRights(r)
		if k.ok() {
			k.named().Rights = r
		}
	}
	k.end(cu)
}

func gDeleteACL(k *checker) {
	cu := k.top()
	k.eff(EffACL, TargetMailbox)
	if !k.mailbox(cu, &k.c.Mailbox, &k.c.MailboxRaw) {
		return
	}
	k.identifier(cu)
	k.end(cu)
}

// quotaRoot takes a quota root (RFC 9208 §4.1: an astring) into
// Named.QuotaRoot, as sent: the root names whose limits change.
func (k *checker) quotaRoot(cu *cursor) bool {
	r, known := k.astring(cu)
	if known {
		k.named().QuotaRoot = r
	}
	return known && k.ok()
}

func gGetQuota(k *checker) {
	cu := k.top()
	k.eff(EffReadMetadata, TargetNone)
	k.quotaRoot(cu)
	k.end(cu)
}

func gSetQuota(k *checker) {
	cu := k.top()
	k.eff(EffQuota, TargetNone)
	if !k.quotaRoot(cu) {
		return
	}
	l := k.list(cu)
	for l != nil && k.more(l) {
		res := k.atom(l) // resource name
		n := k.number(l, false, true)
		if !k.ok() {
			return
		}
		// A resource named twice has two readings (the first or the
		// last limit): refused.
		nm := k.named()
		for _, q := range nm.Quota {
			if q.Resource == res {
				k.fail(errQuotaResource)
				return
			}
		}
		nm.Quota = append(nm.Quota, QuotaLimit{Resource: res, Limit: n})
	}
	k.end(cu)
}

func gGetMetadata(k *checker) {
	cu := k.top()
	k.eff(EffReadMetadata, TargetMailbox)
	if a := k.peek(cu); a != nil && a.Kind == ArgList {
		// getmetadata-options (RFC 5464 §4.2): "(" getmetadata-option
		// *(SP getmetadata-option) ")", each once: MAXSIZE n, DEPTH
		// 0/1/infinity.
		l := k.list(cu)
		k.nonEmpty(l)
		var seen uint32
		for l != nil && k.more(l) {
			switch k.word(l, "MAXSIZE", "DEPTH") {
			case "MAXSIZE":
				k.once(&seen, 1)
				k.number(l, false, false)
			case "DEPTH":
				k.once(&seen, 2)
				k.word(l, "0", "1", "INFINITY")
			}
		}
	}
	if !k.metadataMailbox(cu) {
		return
	}
	if a := k.peek(cu); a != nil && a.Kind == ArgList {
		l := k.list(cu)
		k.astring(l)
		for k.more(l) {
			k.astring(l)
		}
		k.end(l)
	} else {
		k.astring(cu)
	}
	k.end(cu)
}

// metadataMailbox takes a mailbox, or "" for the server's entries
// (RFC 5464 §4.2).
func (k *checker) metadataMailbox(cu *cursor) bool {
	if a := k.peek(cu); a != nil && a.Kind != ArgAtom && a.Kind != ArgList && !a.Pending && a.Value == "" {
		cu.i++
		return true
	}
	return k.mailbox(cu, &k.c.Mailbox, &k.c.MailboxRaw)
}

func gSetMetadata(k *checker) {
	cu := k.top()
	k.eff(EffMetadata, TargetMailbox)
	if !k.metadataMailbox(cu) {
		return
	}
	server := k.c.Mailbox == "" // "" names the server's entries (RFC 5464 §4.3)
	l := k.list(cu)
	for l != nil && k.more(l) {
		if entry, known := k.astring(l); known {
			k.metadataEntry(entry, server)
			if k.ok() {
				k.named().Entries = append(k.named().Entries, strings.ToLower(entry))
			}
		}
		// value = nstring / literal8 (RFC 5464 §4.3); a literal value is
		// streamed like message data.
		a := k.next(l)
		switch {
		case a == nil:
		case a.Kind == ArgLiteral:
		case isWord(a, "NIL"), a.Kind == ArgQuoted:
		default:
			k.kindErr(a)
		}
	}
	k.end(cu)
}

// Errors of metadataEntry.
var (
	errMetaEntry   = &SyntaxError{Msg: "bad metadata entry name (RFC 5464 §3.2)"}
	errMetaUnknown = &SyntaxError{Code: "CANNOT", Refuse: true, Msg: "metadata entry the proxy cannot classify: a server may act on mail by its own entries (RFC 5464 §3.2)"}
)

// metadataEntry classifies one entry a SETMETADATA sets or removes, by
// what the server may do with it, later included (ARCHITECTURE.md §10: an
// effect is the worst a backend may do). Standard entries
// (/private/comment, /shared/comment, /shared/admin, /private/specialuse,
// RFC 5464 §3.2, RFC 6154 §4) are stored and shown, nothing more:
// EffMetadata. Every other entry is the server's own, vendor or not
// (RFC 6785's /shared/imapsieve/script attaches a Sieve script the server
// runs on later mail). Cyrus's
// /vendor/cmu/cyrus-imapd/expire, archive and delete tell cyr_expire to
// expunge the mailbox's messages, move them away, or remove its deleted
// inferiors, and each applies to every inferior that sets none itself
// (inherited): the command may destroy the content of the whole subtree,
// so it has expunge and delete-mailbox on the mailbox, which legal_hold
// and protected_folders judge on the mailbox and its parents. Removing one
// (NIL) is the same: an inferior's value of 0 may hold its parent's off.
// Any other entry, and every vendor entry of the server (""), has no
// reading the proxy knows: refused with NO [CANNOT] (ARCHITECTURE.md §7),
// never guessed. Entry names are compared in lower case: servers differ
// in folding them; only ASCII is allowed, so folding is exact.
func (k *checker) metadataEntry(entry string, server bool) {
	e := strings.ToLower(entry)
	rest, ok := strings.CutPrefix(e, "/private/")
	if !ok {
		rest, ok = strings.CutPrefix(e, "/shared/")
	}
	// RFC 5464 §3.2: no "*" or "%", no "//", no "/" at the end; and no
	// control or 8-bit character, which servers read differently.
	if !ok || rest == "" || strings.Contains(e, "//") || strings.HasSuffix(e, "/") || strings.ContainsAny(e, "*%") {
		k.fail(errMetaEntry)
		return
	}
	for i := 0; i < len(e); i++ {
		if e[i] <= ' ' || e[i] >= 0x7f {
			k.fail(errMetaEntry)
			return
		}
	}
	switch e {
	case "/private/comment", "/shared/comment", "/shared/admin", "/private/specialuse":
		return // a standard entry: EffMetadata
	case "/shared/vendor/cmu/cyrus-imapd/expire", "/shared/vendor/cmu/cyrus-imapd/archive", "/shared/vendor/cmu/cyrus-imapd/delete",
		"/private/vendor/cmu/cyrus-imapd/expire", "/private/vendor/cmu/cyrus-imapd/archive", "/private/vendor/cmu/cyrus-imapd/delete":
		if !server {
			k.eff(EffExpunge, TargetMailbox)
			k.eff(EffDeleteMailbox, TargetMailbox)
			return
		}
	}
	k.fail(errMetaUnknown)
}

func gNotify(k *checker) {
	cu := k.top()
	k.eff(EffSession, TargetNone)
	if k.word(cu, "NONE", "SET") != "SET" {
		k.end(cu)
		return
	}
	if isWord(k.peek(cu), "STATUS") {
		cu.i++
	}
	groups := 0
	for k.ok() && (groups == 0 || k.more(cu)) {
		groups++
		k.notifyGroup(cu)
	}
	k.end(cu)
}

// notifyGroup: "(" filter-mailboxes SP events ")" (RFC 5465 §8).
func (k *checker) notifyGroup(cu *cursor) {
	l := k.list(cu)
	if l == nil {
		return
	}
	filter := k.word(l, "SELECTED", "SELECTED-DELAYED", "INBOXES", "PERSONAL", "SUBSCRIBED", "SUBTREE", "MAILBOXES")
	if !k.ok() {
		return
	}
	n := k.named()
	n.Notify = append(n.Notify, NotifyFilter{Filter: strings.ToLower(filter)})
	f := &n.Notify[len(n.Notify)-1]
	switch filter {
	case "SUBTREE", "MAILBOXES":
		// one-or-more-mailbox = mailbox / "(" mailbox *(SP mailbox) ")"
		if a := k.peek(l); a != nil && a.Kind == ArgList {
			m := k.list(l)
			k.notifyMailbox(m, f)
			for k.more(m) {
				k.notifyMailbox(m, f)
			}
			k.end(m)
		} else {
			k.notifyMailbox(l, f)
		}
	}
	if isWord(k.peek(l), "NONE") {
		l.i++
		k.end(l)
		return
	}
	ev := k.list(l)
	k.nonEmpty(ev) // events = "(" event *(SP event) ")" / "NONE"
	for ev != nil && k.more(ev) {
		switch k.word(ev, "MESSAGENEW", "MESSAGEEXPUNGE", "FLAGCHANGE", "ANNOTATIONCHANGE",
			"MAILBOXNAME", "SUBSCRIPTIONCHANGE", "MAILBOXMETADATACHANGE", "SERVERMETADATACHANGE") {
		case "MESSAGENEW":
			k.eff(EffReadMetadata, TargetAny)
			if a := k.peek(ev); a != nil && a.Kind == ArgList {
				f := k.list(ev)
				k.nonEmpty(f) // "(" fetch-att *(SP fetch-att) ")"
				for f != nil && k.more(f) {
					k.fetchAtt(f, false)
				}
			}
		default:
			k.eff(EffReadMetadata, TargetAny)
		}
	}
	k.end(l)
}

// notifyMailbox takes a mailbox of a NOTIFY filter into f and the
// command's Mailboxes.
func (k *checker) notifyMailbox(cu *cursor, f *NotifyFilter) {
	var canon, raw string
	if k.mailbox(cu, &canon, &raw) {
		f.Mailboxes = append(f.Mailboxes, canon)
		n := k.named()
		n.Mailboxes = appendOnce(n.Mailboxes, canon)
	}
}

func gFetch(k *checker) {
	cu := k.top()
	k.eff(EffReadMetadata, TargetSelected)
	k.seqSet(cu, true)
	a := k.peek(cu)
	switch {
	case a == nil:
		k.next(cu) // missing, or the end of a partial command
		return
	case a.Kind == ArgList:
		l := k.list(cu)
		if len(l.args) == 0 && !l.open {
			k.fail(errArgMissing)
			return
		}
		for k.more(l) {
			k.fetchAtt(l, true)
		}
	default:
		if w := strings.ToUpper(a.Value); a.Kind == ArgAtom && (w == "ALL" || w == "FAST" || w == "FULL") {
			cu.i++
			k.c.FetchItems = append(k.c.FetchItems, w)
			k.c.FetchClass = max(k.c.FetchClass, fetchMacroClass[w])
			if w != "FAST" {
				// ALL and FULL hold ENVELOPE, FULL BODY too (RFC 9051 §6.4.5).
				k.eff(EffReadContent, TargetSelected)
			}
		} else {
			k.fetchAtt(cu, true)
		}
	}
	if k.more(cu) {
		// fetch-modifiers (RFC 4466 §2.4, RFC 7162 §3.1.4.1, §3.2.6):
		// "(" fetch-modifier *(SP fetch-modifier) ")", each once.
		l := k.list(cu)
		k.nonEmpty(l)
		var seen uint32
		for l != nil && k.more(l) {
			switch k.word(l, "CHANGEDSINCE", "VANISHED") {
			case "CHANGEDSINCE":
				k.once(&seen, 1)
				k.needCap(CapCONDSTORE)
				k.number(l, false, true)
			case "VANISHED":
				k.once(&seen, 2)
				if !k.c.UID || !k.ctx.QRESYNC {
					k.fail(errArgExt)
				}
			}
		}
	}
	k.end(cu)
}

// fetchAtt takes one FETCH item (RFC 9051 §9 fetch-att, RFC 3516 BINARY,
// RFC 7162 MODSEQ, RFC 8474 EMAILID/THREADID, RFC 8514 SAVEDATE, RFC 8970
// PREVIEW) and records its effects; record adds it to FetchItems and its
// class to FetchClass.
func (k *checker) fetchAtt(cu *cursor, record bool) {
	a := k.next(cu)
	if a == nil {
		return
	}
	if a.Kind != ArgAtom || (a.Chars&CharSection == 0 && a.Chars != 0) {
		k.kindErr(a)
		return
	}
	item := strings.ToUpper(a.Value)
	it, ok := k.fetchItem(item)
	if !ok {
		k.fail(errArgFetch)
		return
	}
	if (item == "PREVIEW" || item == "SNIPPET") && k.more(cu) && k.peek(cu).Kind == ArgList {
		// PREVIEW (LAZY) (RFC 8970 §3.1); Dovecot's SNIPPET (LAZY=FUZZY).
		l := k.list(cu)
		for l != nil && k.more(l) {
			k.atom(l)
		}
	}
	if it.class >= FetchHeader {
		// Header content in a structure too: ENVELOPE is the Date,
		// Subject, From, Sender, Reply-To, To, Cc, Bcc, In-Reply-To and
		// Message-ID fields (RFC 9051 §7.5.2), what BODY[HEADER.FIELDS
		// (...)] would read; BODYSTRUCTURE and BODY hold the envelope of
		// every attached message (body-type-msg) and the parts'
		// descriptions and file names. They read content (a policy
		// refusing it sees them), but carry no item the response tracker
		// counts as content octets, so they are charged to no cap
		// (ContentItems stays false).
		k.eff(EffReadContent, TargetSelected)
	}
	if it.content {
		k.c.ContentItems = true
	}
	if it.seen && !(record && k.ctx.Examined) {
		// Reading a body without .PEEK sets \Seen (RFC 9051 §6.4.5),
		// unless a FETCH's mailbox was EXAMINEd (§6.3.3; see gClose). A
		// NOTIFY's (not recorded) fetches in whatever mailbox is selected
		// when a message arrives (RFC 5465 §5.2), later included.
		k.eff(EffSetFlags, TargetSelected)
	}
	if record {
		k.c.FetchItems = append(k.c.FetchItems, item)
		k.c.FetchClass = max(k.c.FetchClass, it.class)
	}
}

// FetchClass is what a FETCH item returns of a message, as the audit
// files it (ARCHITECTURE.md §11): one table, fetchItems and fetchItem,
// which the effects, the caps and the record all read. Ordered: a
// command's class is the highest of its items'.
type FetchClass uint8

const (
	// FetchUnknown is no class: a reader must take it as FetchBody
	// (fail closed), never as metadata.
	FetchUnknown FetchClass = iota
	// FetchMetadata: flags, dates, sizes, identifiers.
	FetchMetadata
	// FetchHeader: header fields, alone (HEADER sections, MIME,
	// RFC822.HEADER) or in a structure (ENVELOPE, BODYSTRUCTURE, BODY).
	FetchHeader
	// FetchBody: message text (a body section, BINARY, RFC822,
	// RFC822.TEXT, PREVIEW, SNIPPET).
	FetchBody
)

// fetchItemSpec is what one FETCH item does: content, octets the
// response tracker counts (FetchTracker, ContentItems); class, what it
// returns; seen, an implicit \Seen (RFC 9051 §6.4.5); cp, the
// capability it needs (0: none).
type fetchItemSpec struct {
	content bool
	class   FetchClass
	seen    bool
	cp      Cap
}

// fetchItems are the FETCH items without a section (RFC 9051 §6.4.5,
// §7.5.2; the capability names the RFC of the others).
var fetchItems = map[string]fetchItemSpec{
	"FLAGS":         {class: FetchMetadata},
	"INTERNALDATE":  {class: FetchMetadata},
	"RFC822.SIZE":   {class: FetchMetadata},
	"UID":           {class: FetchMetadata},
	"MODSEQ":        {class: FetchMetadata, cp: CapCONDSTORE},
	"EMAILID":       {class: FetchMetadata, cp: CapOBJECTID},
	"THREADID":      {class: FetchMetadata, cp: CapOBJECTID},
	"SAVEDATE":      {class: FetchMetadata, cp: CapSAVEDATE},
	"ENVELOPE":      {class: FetchHeader},
	"BODY":          {class: FetchHeader},
	"BODYSTRUCTURE": {class: FetchHeader},
	"RFC822.HEADER": {content: true, class: FetchHeader},
	"RFC822":        {content: true, class: FetchBody, seen: true},
	"RFC822.TEXT":   {content: true, class: FetchBody, seen: true},
	"PREVIEW":       {content: true, class: FetchBody, cp: CapPREVIEW},
	// Dovecot's start of the message text (SNIPPET=FUZZY).
	"SNIPPET": {content: true, class: FetchBody, cp: CapSNIPPET},
}

// fetchMacroClass is the class of a FETCH macro (RFC 9051 §6.4.5): ALL
// holds ENVELOPE, FULL ENVELOPE and BODY.
var fetchMacroClass = map[string]FetchClass{"ALL": FetchHeader, "FAST": FetchMetadata, "FULL": FetchHeader}

// fetchItem reads an upper-case FETCH item by the table; ok is false for
// an unknown or malformed item.
func (k *checker) fetchItem(item string) (fetchItemSpec, bool) {
	if it, found := fetchItems[item]; found {
		return it, it.cp == 0 || k.needCap(it.cp)
	}
	name, rest, found := strings.Cut(item, "[")
	if !found {
		return fetchItemSpec{}, false
	}
	end := sectionEnd(rest)
	if end < 0 {
		return fetchItemSpec{}, false
	}
	section, partial := rest[:end], rest[end+1:]
	it := fetchItemSpec{content: true, class: sectionClass(section)}
	binary := false
	switch name {
	case "BODY":
		it.seen = true
	case "BODY.PEEK":
	case "BINARY":
		binary, it.seen = true, true
	case "BINARY.PEEK":
		binary = true
	case "BINARY.SIZE":
		if !k.needCap(CapBINARY) || !sectionPart(section, true) || partial != "" {
			return fetchItemSpec{}, false
		}
		return fetchItemSpec{class: FetchMetadata}, true
	default:
		return fetchItemSpec{}, false
	}
	if binary {
		if !k.needCap(CapBINARY) || !sectionPart(section, true) {
			return fetchItemSpec{}, false
		}
	} else if err := sectionSpec(section); err != nil {
		k.fail(err)
		return fetchItemSpec{}, false
	}
	if partial != "" && !partialSpec(partial) {
		return fetchItemSpec{}, false
	}
	return it, true
}

// sectionClass is what a body section returns: header fields for HEADER,
// HEADER.FIELDS[.NOT] and MIME of the message or a part ("1.2.HEADER"),
// text for everything else (TEXT, a part, the whole message).
func sectionClass(section string) FetchClass {
	spec := strings.TrimLeft(section, "0123456789.")
	if strings.HasPrefix(spec, "HEADER") || spec == "MIME" {
		return FetchHeader
	}
	return FetchBody
}

// sectionEnd returns the index of the "]" closing a section, skipping
// quoted header names; -1 if none.
func sectionEnd(s string) int {
	for i := 0; i < len(s); i++ {
		switch s[i] {
		case '"':
			for i++; i < len(s) && s[i] != '"'; i++ {
				if s[i] == '\\' {
					i++
				}
			}
		case ']':
			return i
		}
	}
	return -1
}

// sectionSpec checks section-spec (RFC 9051 §9): empty, section-msgtext,
// or section-part ["." section-text].
func sectionSpec(s string) error {
	if s == "" {
		return nil
	}
	i := 0
	for i < len(s) && '0' <= s[i] && s[i] <= '9' {
		j := i
		for j < len(s) && '0' <= s[j] && s[j] <= '9' {
			j++
		}
		if s[i] == '0' {
			return errArgSection // nz-number
		}
		if j == len(s) {
			return nil
		}
		if s[j] != '.' {
			return errArgSection
		}
		i = j + 1
	}
	text := s[i:]
	if i > 0 && text == "MIME" {
		return nil
	}
	switch {
	case text == "HEADER", text == "TEXT":
		return nil
	case strings.HasPrefix(text, "HEADER.FIELDS.NOT "):
		return headerList(text[len("HEADER.FIELDS.NOT "):])
	case strings.HasPrefix(text, "HEADER.FIELDS "):
		return headerList(text[len("HEADER.FIELDS "):])
	}
	return errArgSection
}

// headerList checks "(" header-fld-name *(SP header-fld-name) ")", each
// name an atom or a quoted string that headerName takes (a literal's
// content is checked as it is read, CommandParser.literal).
func headerList(s string) error {
	if len(s) < 3 || s[0] != '(' || s[len(s)-1] != ')' {
		return errArgSection
	}
	for _, f := range strings.Split(s[1:len(s)-1], " ") {
		if len(f) >= 2 && f[0] == '"' && f[len(f)-1] == '"' {
			f = f[1 : len(f)-1]
		}
		if !headerName(f) {
			return errArgHeaderName
		}
	}
	return nil
}

// headerName reports whether f is a header field name with one reading
// in every backend's echo of it. Servers repeat the names in the
// response's item name (RFC 9051 §7.5.2): Cyrus unquoted
// (BODY[HEADER.FIELDS (X[Y)]) or as a literal ("%", DQUOTE, "\"),
// Dovecot and Courier quoted, Courier without escaping DQUOTE; and the
// relay reads that name to find the content after it (FetchTracker;
// ARCHITECTURE.md §7, §12). So a name is RFC 5322 §3.6.8 field-name
// characters (printable US-ASCII but ":") none of which makes an echo one
// the tracker cannot read back: no "(", ")", "[", "]", "{", DQUOTE, "\"
// or "%"; and not empty.
func headerName(f string) bool {
	if f == "" {
		return false
	}
	for i := 0; i < len(f); i++ {
		switch c := f[i]; c {
		case ':', '(', ')', '[', ']', '{', '"', '\\', '%':
			return false
		default:
			if c <= ' ' || c >= 0x7f {
				return false
			}
		}
	}
	return true
}

// sectionPart checks [section-part] (RFC 3516 section-binary).
func sectionPart(s string, emptyOK bool) bool {
	if s == "" {
		return emptyOK
	}
	for _, p := range strings.Split(s, ".") {
		if p == "" || p[0] == '0' || !digits(p) {
			return false
		}
	}
	return true
}

// partialSpec checks "<" number "." nz-number ">" (RFC 9051 §9).
func partialSpec(s string) bool {
	if len(s) < 5 || s[0] != '<' || s[len(s)-1] != '>' {
		return false
	}
	off, n, ok := strings.Cut(s[1:len(s)-1], ".")
	if !ok {
		return false
	}
	_, ok1 := parseNumber(off, false)
	m, ok2 := parseNumber(n, false)
	return ok1 && ok2 && m > 0
}

// searchProgram: ["CHARSET" SP charset SP] search-key *(SP search-key)
// (RFC 9051 §9, RFC 4466 §2.6).
func gSearch(k *checker) {
	cu := k.top()
	k.eff(EffReadMetadata, TargetSelected)
	if isWord(k.peek(cu), "RETURN") {
		// search-return-opts (RFC 4731 §3, RFC 5182 §2).
		if !k.needCap(CapESEARCH) {
			return
		}
		cu.i++
		k.returnOpts(cu, "MIN", "MAX", "ALL", "COUNT", "SAVE")
	}
	if isWord(k.peek(cu), "CHARSET") {
		cu.i++
		k.astring(cu)
	}
	k.searchKeys(cu)
	k.end(cu)
}

// returnOpts takes "(" [opt *(SP opt)] ")" of words.
func (k *checker) returnOpts(cu *cursor, words ...string) {
	l := k.list(cu)
	for l != nil && k.more(l) {
		if k.word(l, words...) == "SAVE" {
			k.needCap(CapSEARCHRES)
		}
	}
}

// searchKeys takes 1*(SP search-key).
func (k *checker) searchKeys(cu *cursor) {
	k.searchKey(cu, 0)
	for k.more(cu) {
		k.searchKey(cu, 0)
	}
}

func (k *checker) searchKey(cu *cursor, depth int) {
	if depth > k.p.bounds().MaxSearchDepth {
		k.fail(errArgSearch)
		return
	}
	a := k.next(cu)
	if a == nil {
		return
	}
	if a.Kind == ArgList {
		l := k.cursor(a.List, a.Open)
		k.searchKey(l, depth+1)
		for k.more(l) {
			k.searchKey(l, depth+1)
		}
		return
	}
	if a.Kind != ArgAtom {
		k.kindErr(a)
		return
	}
	if a.Chars&^CharWildcard == 0 && (a.Value[0] >= '0' && a.Value[0] <= '9' || a.Value[0] == '*' || a.Value == "$") {
		cu.i--
		k.seqSet(cu, false)
		return
	}
	if a.Chars != 0 {
		k.fail(errArgChars)
		return
	}
	switch strings.ToUpper(a.Value) {
	case "ALL", "ANSWERED", "DELETED", "FLAGGED", "NEW", "OLD", "RECENT", "SEEN", "UNANSWERED",
		"UNDELETED", "UNFLAGGED", "UNSEEN", "DRAFT", "UNDRAFT":
	case "BCC", "BODY", "CC", "FROM", "SUBJECT", "TEXT", "TO":
		// Keys matching message text: each answer tells whether the
		// message holds the string, an oracle on its content.
		k.eff(EffReadContent, TargetSelected)
		k.c.SearchKeys |= searchKeyOf(a.Value)
		k.astring(cu)
	case "KEYWORD", "UNKEYWORD":
		if f := k.flag(cu); k.ok() && strings.HasPrefix(f, `\`) {
			k.fail(errArgFlag)
		}
	case "BEFORE", "ON", "SINCE", "SENTBEFORE", "SENTON", "SENTSINCE":
		k.date(cu)
	case "SAVEDBEFORE", "SAVEDON", "SAVEDSINCE":
		if k.needCap(CapSAVEDATE) {
			k.date(cu)
		}
	case "SAVEDATESUPPORTED":
		k.needCap(CapSAVEDATE)
	case "HEADER":
		k.eff(EffReadContent, TargetSelected)
		k.c.SearchKeys |= SearchHeader // the field's name is not kept either
		k.astring(cu)
		k.astring(cu)
	case "LARGER", "SMALLER":
		k.number(cu, false, true)
	case "NOT":
		k.searchKey(cu, depth+1)
	case "OR":
		k.searchKey(cu, depth+1)
		k.searchKey(cu, depth+1)
	case "UID":
		k.seqSet(cu, false)
	case "OLDER", "YOUNGER":
		if k.needCap(CapWITHIN) {
			k.number(cu, true, false)
		}
	case "MODSEQ":
		// "MODSEQ" [SP entry-name SP entry-type-req] SP mod-sequence-valzer
		// (RFC 7162 §3.1.5).
		if !k.needCap(CapCONDSTORE) {
			return
		}
		if a := k.peek(cu); a != nil && a.Kind == ArgQuoted {
			cu.i++
			k.word(cu, "PRIV", "SHARED", "ALL")
		}
		k.number(cu, false, true)
	case "EMAILID", "THREADID":
		if k.needCap(CapOBJECTID) {
			k.atom(cu)
		}
	case "FUZZY":
		if k.needCap(CapSEARCHFUZZY) {
			k.searchKey(cu, depth+1)
		}
	default:
		k.fail(errArgSearch)
	}
}

func gSort(k *checker) {
	cu := k.top()
	k.eff(EffReadMetadata, TargetSelected)
	if isWord(k.peek(cu), "RETURN") {
		// sort-return-opts (RFC 5267 §3).
		if !k.needCap(CapESORT) {
			return
		}
		cu.i++
		k.returnOpts(cu, "MIN", "MAX", "ALL", "COUNT")
	}
	l := k.list(cu)
	if l != nil && len(l.args) == 0 && !l.open {
		k.fail(errArgMissing)
	}
	for l != nil && k.more(l) {
		w := k.word(l, "REVERSE", "ARRIVAL", "CC", "DATE", "FROM", "SIZE", "SUBJECT", "TO", "DISPLAYFROM", "DISPLAYTO")
		if w == "REVERSE" {
			w = k.word(l, "ARRIVAL", "CC", "DATE", "FROM", "SIZE", "SUBJECT", "TO", "DISPLAYFROM", "DISPLAYTO")
		}
		if w == "DISPLAYFROM" || w == "DISPLAYTO" {
			k.needCap(CapSORTDISPLAY)
		}
		switch w {
		case "CC", "FROM", "SUBJECT", "TO", "DISPLAYFROM", "DISPLAYTO":
			// The order is by header content (RFC 5256 §3): an oracle on
			// it. ARRIVAL, DATE and SIZE are what FETCH INTERNALDATE and
			// RFC822.SIZE tell.
			k.eff(EffReadContent, TargetSelected)
			k.c.SearchKeys |= searchKeyOf(w)
		}
	}
	k.astring(cu) // charset
	k.searchKeys(cu)
	k.end(cu)
}

func gThread(k *checker) {
	cu := k.top()
	k.eff(EffReadMetadata, TargetSelected)
	// Every algorithm groups by Subject, Message-ID, In-Reply-To and
	// References (RFC 5256 §2.1): the answer shows header content.
	k.eff(EffReadContent, TargetSelected)
	k.c.SearchKeys |= SearchThread
	k.atom(cu) // thread-alg
	k.astring(cu)
	k.searchKeys(cu)
	k.end(cu)
}
