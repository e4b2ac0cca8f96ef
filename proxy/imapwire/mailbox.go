package imapwire

import (
	"strings"
	"unicode/utf8"
)

// Context is what the proxy knows of the session that changes how a
// command reads: the state and selected mailbox as the backend's answers
// left them (ARCHITECTURE.md §8), the hierarchy delimiter and the extensions in
// effect.
type Context struct {
	// Caps are the capabilities the client was offered.
	Caps Cap
	// Names are the backend's namespaces and the backend user (nil when
	// the backend announced no namespaces): a name in an other-users
	// namespace whose owner is the user is one of the user's own
	// mailboxes under a second name, and refused (ErrOwnMailboxAlias).
	Names *Names
	// State is StateNotAuth, StateAuth or StateSelected.
	State State
	// Examined: the selected mailbox was opened by EXAMINE, read-only by
	// protocol whatever its rights become (RFC 9051 §6.3.3). A SELECT
	// answered [READ-ONLY] is not: that is the backend's state at SELECT,
	// and a backend may decide again later (Dovecot at CLOSE), so it
	// removes no effect (ARCHITECTURE.md §8).
	Examined bool
	// Delim is the hierarchy delimiter of the personal namespace, from the
	// backend's LIST "" "" (RFC 9051 §6.3.9); 0 when flat or unknown.
	Delim byte
	// UTF8: ENABLE UTF8=ACCEPT (or IMAP4rev2) is in effect; mailbox names
	// are UTF-8 rather than modified UTF-7 (RFC 6855 §3, RFC 9051 §6.3.1).
	UTF8 bool
	// QRESYNC: ENABLE QRESYNC is in effect (RFC 7162 §3.2.3).
	QRESYNC bool
	// NotifyPush: a NOTIFY in effect has fetch attributes that read
	// content or set \Seen (RFC 5465 §5.2): the backend may push message
	// text under any command (ARCHITECTURE.md §11).
	NotifyPush bool
}

// Names is what the name model knows of the session beyond the delimiter:
// the backend's namespaces, from its NAMESPACE answer at login (RFC 2342),
// and the backend user the session is logged in as. Kept behind one
// pointer: Context is in structs every idle session keeps
// (ARCHITECTURE.md §16).
type Names struct {
	NS   *Namespaces
	User string
	// Rights are the rights the backend's RIGHTS= capability names
	// beyond RFC 4314's (BackendRights), which a SETACL may use.
	Rights RightSet
}

// Errors of mailbox names: each name must mean one mailbox to the proxy
// and to every backend, so anything a backend might read otherwise is
// refused (ARCHITECTURE.md §10).
var (
	errNameUTF7      = &SyntaxError{Msg: "mailbox name is not valid modified UTF-7 (RFC 3501 §5.1.3)"}
	errNameUTF8      = &SyntaxError{Msg: "mailbox name is not valid UTF-8 (RFC 6855 §3)"}
	errNameAmp       = &SyntaxError{Msg: `"&" in a mailbox name after UTF8=ACCEPT has two readings`}
	errNameCTL       = &SyntaxError{Msg: "control character in mailbox name"}
	errNameEmptyPart = &SyntaxError{Msg: "empty hierarchy level in mailbox name"}
	errNameDots      = &SyntaxError{Msg: `"." or ".." as a hierarchy level in mailbox name`}
	errNameNIL       = &SyntaxError{Msg: "NIL is not a mailbox name (quote it)"}
	errNameBackslash = &SyntaxError{Msg: "backslash in a mailbox name: backends read it differently"}
	// ErrOwnMailboxAlias: the name is in an other-users namespace and its
	// owner is the session's own user (Cyrus "user.alice.Legal" is alice's
	// "INBOX.Legal"): one mailbox under two names, which policies would
	// see under the one they do not know (RFC 2342 §3.2).
	ErrOwnMailboxAlias = &SyntaxError{Msg: "mailbox name reaches your own mailbox through the other users' namespace: use its personal name", Code: "CANNOT", Audit: true}
	// ErrAliasUnread: a name under a declared alias of the personal
	// namespace (NSAlias) with no one personal name: the alias's root,
	// its prefix spelt in another case (a backend may or may not fold
	// it), a delimiter other than the personal namespace's, no personal
	// namespace, a first level INBOX in any case (the alias has no
	// INBOX), or a first level that names a namespace (an alias again).
	ErrAliasUnread = &SyntaxError{Msg: "mailbox name under an alias namespace has no one personal name: use its personal name", Code: "CANNOT", Audit: true}
	// ErrNameWildcard: "*" or "%" (RFC 9051 §9 list-wildcards) in a
	// mailbox argument that names one mailbox. Cyrus reads them as a LIST
	// pattern in SETMETADATA and GETMETADATA and acts on every mailbox
	// matched; Dovecot and Courier read one name. All three create such
	// names (Cyrus "*" only), which are unreachable through the proxy
	// (ARCHITECTURE.md §10).
	ErrNameWildcard = &SyntaxError{Msg: `"*" or "%" in a mailbox name has two readings (a name, or a LIST pattern): refused`, Code: "CANNOT", Audit: true}
)

// Canonical returns a mailbox name as policies, limits and the audit see
// it: decoded from modified UTF-7 (RFC 3501 §5.1.3; UTF-8 as sent after
// UTF8=ACCEPT), "INBOX" in upper case as its first hierarchy level however
// it was spelled (RFC 9051 §5.1: INBOX is case-insensitive; Dovecot, Cyrus
// and Courier all fold "inbox.x" to "INBOX.x"). Names with empty levels
// (a trailing delimiter included, also in CREATE), "." or ".." levels,
// list-wildcards, backslashes or controls are refused: the backends answer them differently, or reach
// other names through them. RFC 9051 §6.3.4 lets CREATE "foo/" create
// "foo", and Dovecot and Cyrus do; Courier answers OK and creates nothing
// (found by internal/difftest).
func (ctx *Context) Canonical(raw string) (string, error) {
	name, err := ctx.decodeName(raw)
	if err != nil {
		return "", err
	}
	for _, r := range name {
		// C0, DEL and C1 controls: no backend agrees on them, and no name
		// needs them.
		if r < 0x20 || (r >= 0x7f && r <= 0x9f) {
			return "", errNameCTL
		}
		// Backends differ: Cyrus opens INBOX for "\\INBOX" (found by
		// internal/difftest), where the proxy would see another name.
		if r == '\\' {
			return "", errNameBackslash
		}
		if r == '*' || r == '%' {
			// Named for the audit of the refusal.
			return name, ErrNameWildcard
		}
	}
	d := ctx.Delim
	if d == 0 || name == "" {
		if name, err = ctx.unalias(name); err != nil {
			return name, err
		}
		return ctx.ownAlias(foldInbox(name, 0))
	}
	start := 0
	for i := 0; i <= len(name); i++ {
		if i < len(name) && name[i] != d {
			continue
		}
		part := name[start:i]
		switch {
		case part == "":
			return "", errNameEmptyPart
		case d != '.' && (part == "." || part == ".."):
			return "", errNameDots
		}
		start = i + 1
	}
	if name, err = ctx.unalias(name); err != nil {
		return name, err
	}
	return ctx.ownAlias(foldInbox(name, d))
}

// unalias gives a name under a declared alias of the personal namespace
// (NSAlias, Dovecot's alias_for: "mail/Legal" is "Legal") its personal
// name, the one policies, limits, the audit and the selected mailbox
// read (ARCHITECTURE.md §8); the backend still gets the name as sent.
// A name with no one personal name is refused (ErrAliasUnread), returned
// as sent for the audit of the refusal.
func (ctx *Context) unalias(name string) (string, error) {
	n := ctx.Names
	if n == nil || n.NS == nil {
		return name, nil
	}
	for _, ns := range n.NS.List {
		if ns.Kind == NSAlias && strings.EqualFold(name+string(ns.Delim), ns.Prefix) {
			// The alias's root: Dovecot reads it as the namespace itself.
			return name, ErrAliasUnread
		}
	}
	i := n.NS.longest(name)
	if i < 0 || n.NS.List[i].Kind != NSAlias {
		return name, nil
	}
	a := n.NS.List[i]
	p, ok := n.NS.Personal()
	if name[:len(a.Prefix)] != a.Prefix || !ok || p.Delim != a.Delim {
		return name, ErrAliasUnread
	}
	rest := name[len(a.Prefix):]
	first := rest
	if k := strings.IndexByte(rest, a.Delim); k >= 0 {
		first = rest[:k]
	}
	// A name is given only where the backend's reading is exactly that
	// personal name. The alias has no INBOX of its own (Dovecot: no
	// inbox = yes), so its "INBOX" in any case is an ordinary mailbox
	// there, "mail/inbox/x" is folded by Dovecot to "INBOX/x" but
	// "mail/inbox" is not. A first level that is another namespace's
	// prefix or root in any case ("mail/mail/Legal", "mail/shared") is
	// a folder of the alias, but that namespace's to the proxy.
	if strings.EqualFold(first, "INBOX") {
		return name, ErrAliasUnread
	}
	for _, ns := range n.NS.List {
		if ns.Prefix == p.Prefix && ns.Kind == p.Kind {
			continue
		}
		nsFirst := strings.TrimSuffix(ns.Prefix, string(ns.Delim))
		if k := strings.IndexByte(nsFirst, a.Delim); k >= 0 {
			nsFirst = nsFirst[:k]
		}
		if nsFirst != "" && strings.EqualFold(first, nsFirst) {
			return name, ErrAliasUnread
		}
	}
	out := p.Prefix + rest
	if j := n.NS.longest(out); j >= 0 && n.NS.List[j].Prefix != p.Prefix {
		return name, ErrAliasUnread
	}
	return out, nil
}

// ownAlias refuses a canonical name that reaches the user's own mailboxes
// through an other-users namespace (ErrOwnMailboxAlias), and one whose
// owner level has no one login reading (ErrOwnerUnread, Names.Where); the
// name is returned with the error, for the audit of the refusal. Every
// mailbox argument of every command is canonicalised here (grammar.go's
// checker.mailbox), so that no command can name one.
func (ctx *Context) ownAlias(name string) (string, error) {
	n := ctx.Names
	if n == nil || n.NS == nil || n.User == "" {
		return name, nil
	}
	info, level, delim := n.NS.where(name)
	if info.Kind != NSOther || level == "" {
		return name, nil
	}
	if ownLevel(level, delim, n.User) {
		return name, ErrOwnMailboxAlias
	}
	if _, err := OwnerLogin(level, delim, n.User); err != nil {
		return name, err
	}
	return name, nil
}

// ownLevel: the owner level is the user's own, by its one reading
// (OwnerLogin) under case folding at least as wide as the policies', or
// by any looser reading a backend might use (SameUser): every spelling of
// oneself is caught.
func ownLevel(level string, delim byte, user string) bool {
	if o, err := OwnerLogin(level, delim, user); err == nil && strings.EqualFold(o, user) {
		return true
	}
	return SameUser(level, user)
}

// patternAlias refuses a LIST reference and pattern (RFC 9051 §6.3.9:
// the server joins them) whose owner level, in an other-users namespace,
// is the user's own, written without wildcards: it would list the user's
// own mailboxes under their other names. A wildcard owner level (user.%)
// is left to the backend, which lists other users' mailboxes there.
func (ctx *Context) patternAlias(ref, pat string) error {
	n := ctx.Names
	if n == nil || n.NS == nil || n.User == "" {
		return nil
	}
	info, level, delim := n.NS.where(foldInbox(ref+pat, ctx.Delim))
	if info.Kind == NSOther && level != "" && !strings.ContainsAny(level, "%*") && ownLevel(level, delim, n.User) {
		return ErrOwnMailboxAlias
	}
	return nil
}

// decodeName decodes a name as the backend will.
func (ctx *Context) decodeName(raw string) (string, error) {
	if ctx.UTF8 {
		if !utf8.ValidString(raw) {
			return "", errNameUTF8
		}
		if strings.IndexByte(raw, '&') >= 0 {
			return "", errNameAmp
		}
		return raw, nil
	}
	name, err := DecodeMailbox(raw)
	if err != nil {
		return "", errNameUTF7
	}
	return name, nil
}

// foldInbox upper-cases a first hierarchy level spelled "inbox" in any
// case.
func foldInbox(name string, d byte) string {
	if len(name) < 5 || !strings.EqualFold(name[:5], "INBOX") || name[:5] == "INBOX" {
		return name
	}
	if len(name) == 5 || (d != 0 && name[5] == d) {
		return "INBOX" + name[5:]
	}
	return name
}

// Pattern decodes a LIST pattern or reference (RFC 9051 §6.3.9) for
// policies: modified UTF-7 decoded, wildcards and delimiters kept.
func (ctx *Context) Pattern(raw string) (string, error) {
	return ctx.decodeName(raw)
}
