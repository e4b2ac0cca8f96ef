package imapwire

import (
	"slices"
	"strings"
	"sync"
)

// NSKind is the kind of namespace a mailbox name is in (RFC 2342 §4,
// RFC 9051 §6.3.10).
type NSKind uint8

const (
	NSUnknown  NSKind = iota // in no namespace the backend announced
	NSPersonal               // the user's own mailboxes
	NSOther                  // other users' mailboxes: prefix, owner, name
	NSShared                 // shared mailboxes
	// NSAlias is a second prefix of the personal namespace (Dovecot's
	// alias_for), which only the operator declares (Declared): no name
	// reaches policies in it, Canonical gives its personal name.
	NSAlias
)

var nsKindNames = [...]string{NSUnknown: "", NSPersonal: "personal", NSOther: "other", NSShared: "shared", NSAlias: "alias"}

// String is the kind as policies see it (input.command.effects[_].namespace).
func (k NSKind) String() string {
	if int(k) < len(nsKindNames) {
		return nsKindNames[k]
	}
	return ""
}

// Namespace is one namespace of the backend's NAMESPACE answer: its
// prefix, decoded as Canonical decodes names, and its delimiter (0: flat).
type Namespace struct {
	Kind   NSKind
	Prefix string
	Delim  byte
}

// Namespaces is what the backend said of its namespaces. One value is
// shared by every session of a backend that gave the same answer.
type Namespaces struct {
	List []Namespace
}

// Personal returns the first personal namespace.
func (n *Namespaces) Personal() (Namespace, bool) {
	if n != nil {
		for _, ns := range n.List {
			if ns.Kind == NSPersonal {
				return ns, true
			}
		}
	}
	return Namespace{}, false
}

// Declared are the namespaces the operator declares for a backend
// (ARCHITECTURE.md §8): a backend may serve namespaces its NAMESPACE
// answer leaves out (Dovecot's hidden = yes), which the proxy cannot
// discover (RFC 2342 lets a server announce only some). One value is
// shared by every server and session of the backend.
type Declared struct {
	List []Namespace
	mu   sync.Mutex
	// from, to: the last announced namespaces and their merge, so that
	// the sessions of a backend share one value (ARCHITECTURE.md §16).
	from, to *Namespaces
}

// Over returns the declared namespaces over the announced ones (nil when
// none was announced): a declared prefix replaces the announced namespace
// of that prefix, the others are added.
func (d *Declared) Over(announced *Namespaces) *Namespaces {
	if d == nil || len(d.List) == 0 {
		return announced
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.to != nil && d.from == announced {
		return d.to
	}
	out := &Namespaces{}
	if announced != nil {
		for _, ns := range announced.List {
			if !slices.ContainsFunc(d.List, func(x Namespace) bool { return x.Prefix == ns.Prefix }) {
				out.List = append(out.List, ns)
			}
		}
	}
	out.List = append(out.List, d.List...)
	d.from, d.to = announced, out
	return out
}

// nsCache shares parsed answers: every session of a backend gets the same
// one, and an idle session holds a pointer, not a copy (ARCHITECTURE.md §16).
var nsCache struct {
	sync.Mutex
	m map[string]*Namespaces
}

const maxNSCache = 64

var errNSSyntax = &SyntaxError{Msg: "malformed NAMESPACE response (RFC 2342 §5)"}

// ParseNamespace parses an untagged NAMESPACE response (RFC 2342 §5,
// RFC 9051 §7.3.1... Namespace-Response): ok is false when line is not
// one; err when it is one the proxy cannot read strictly (a literal, an
// unknown token, a prefix that is not modified UTF-7).
func ParseNamespace(line []byte) (ns *Namespaces, ok bool, err error) {
	r, after, perr := parseResponse(line)
	if perr != nil || r.Kind != Untagged || r.Status != StatusNone || !equalFold(r.Name, "NAMESPACE") {
		return nil, false, nil
	}
	if after < 0 {
		return nil, true, errNSSyntax
	}
	key := string(line[after:])
	nsCache.Lock()
	if c := nsCache.m[key]; c != nil {
		nsCache.Unlock()
		return c, true, nil
	}
	nsCache.Unlock()
	p := nsParser{b: strings.TrimRight(key, "\r\n")}
	out := &Namespaces{}
	for _, kind := range []NSKind{NSPersonal, NSOther, NSShared} {
		if !p.sp() || !p.list(kind, out) {
			return nil, true, errNSSyntax
		}
	}
	if p.i != len(p.b) {
		return nil, true, errNSSyntax
	}
	nsCache.Lock()
	if nsCache.m == nil {
		nsCache.m = map[string]*Namespaces{}
	}
	if len(nsCache.m) < maxNSCache {
		nsCache.m[key] = out
	}
	nsCache.Unlock()
	return out, true, nil
}

type nsParser struct {
	b string
	i int
}

func (p *nsParser) sp() bool { return p.lit(" ") }
func (p *nsParser) lit(s string) bool {
	if strings.HasPrefix(p.b[p.i:], s) {
		p.i += len(s)
		return true
	}
	return false
}

func (p *nsParser) nil() bool {
	if len(p.b)-p.i >= 3 && strings.EqualFold(p.b[p.i:p.i+3], "NIL") {
		p.i += 3
		return true
	}
	return false
}

// quoted reads a quoted string (RFC 9051 §9); literals are refused.
func (p *nsParser) quoted() (string, bool) {
	if !p.lit(`"`) {
		return "", false
	}
	var sb strings.Builder
	for p.i < len(p.b) {
		c := p.b[p.i]
		p.i++
		switch c {
		case '"':
			return sb.String(), true
		case '\\':
			if p.i >= len(p.b) || (p.b[p.i] != '"' && p.b[p.i] != '\\') {
				return "", false
			}
			c = p.b[p.i]
			p.i++
		case '\r', '\n', 0:
			return "", false
		}
		sb.WriteByte(c)
	}
	return "", false
}

// list reads NIL or "(" 1*Namespace ")", Namespace = "(" string SP
// (DQUOTE QUOTED-CHAR DQUOTE / nil) *(Namespace-Response-Extension) ")",
// Namespace-Response-Extension = SP string SP "(" string *(SP string) ")".
func (p *nsParser) list(kind NSKind, out *Namespaces) bool {
	if p.nil() {
		return true
	}
	if !p.lit("(") {
		return false
	}
	for n := 0; ; n++ {
		if n > 0 && p.lit(")") {
			return true
		}
		if !p.lit("(") {
			return false
		}
		raw, ok := p.quoted()
		if !ok || !p.sp() {
			return false
		}
		var delim byte
		if !p.nil() {
			d, ok := p.quoted()
			if !ok || len(d) != 1 || d[0] >= 0x80 {
				return false
			}
			delim = d[0]
		}
		for p.sp() {
			if _, ok := p.quoted(); !ok || !p.sp() || !p.lit("(") {
				return false
			}
			for first := true; first || p.sp(); first = false {
				if _, ok := p.quoted(); !ok {
					return false
				}
			}
			if !p.lit(")") {
				return false
			}
		}
		if !p.lit(")") {
			return false
		}
		prefix, err := DecodeMailbox(raw)
		if err != nil {
			return false
		}
		out.List = append(out.List, Namespace{Kind: kind, Prefix: prefix, Delim: delim})
	}
}

// NameInfo is where a canonical mailbox name is: its namespace, and for a
// name in another user's namespace its owner, the login the backend maps
// the owner level to (OwnerLogin), and the owner's own (personal) name for
// it, e.g. Cyrus "user.bob^smith.Legal": owner "bob.smith", "INBOX.Legal".
type NameInfo struct {
	Kind      NSKind
	Owner     string
	OwnerName string
}

// ErrOwnerUnread: a name in an other-users namespace whose owner level
// has no one login reading (OwnerLogin): policies would judge one user
// while the backend acts on another's mailbox (ARCHITECTURE.md §17).
var ErrOwnerUnread = &SyntaxError{Msg: "the owner of this mailbox name has no one login reading: refused", Code: "CANNOT", Audit: true}

// Where says which namespace the canonical name is in, and for another
// user's name whose login owns it (OwnerLogin, for the session's user);
// err is ErrOwnerUnread when that login has more than one reading. Every
// mailbox argument was refused so before the command was judged
// (Context.ownAlias), so err is nil for every name a policy sees.
func (n *Names) Where(name string) (NameInfo, error) {
	if n == nil {
		return NameInfo{}, nil
	}
	info, level, delim := n.NS.where(name)
	if level == "" {
		return info, nil
	}
	owner, err := OwnerLogin(level, delim, n.User)
	if err != nil {
		return NameInfo{Kind: info.Kind}, err
	}
	info.Owner = owner
	return info, nil
}

// OwnerLogin is the one reading of an owner level of an other-users
// namespace whose delimiter is delim, for a session logged in as user:
// the login the backend maps the level to (ARCHITECTURE.md §17), or
// ErrOwnerUnread when the backends the proxy knows read it as different
// logins:
//   - "^" with the delimiter ".": Cyrus (unixhierarchysep: no) cannot
//     write a login's "." at a level split on "." and writes "^" instead
//     (bob.smith's Legal is "user.bob^smith.Legal"): the login has ".".
//   - "^" with another delimiter: Cyrus (unixhierarchysep: yes) still
//     reads it as ".", any other backend as "^": refused.
//   - no "@" in the level of a user whose login has "@domain": Cyrus with
//     virtdomains and Dovecot's "%%n" shared prefixes show other users of
//     the user's domain without it ("bob" is bob@domain), a backend
//     without domains the login "bob": refused.
//
// Logins compare with the level's reading under the policies' folding
// (strings.ToLower, proxy.FoldUser).
func OwnerLogin(level string, delim byte, user string) (string, error) {
	if strings.IndexByte(level, '^') >= 0 {
		if delim != '.' {
			return "", ErrOwnerUnread
		}
		level = strings.ReplaceAll(level, "^", ".")
	}
	if strings.IndexByte(user, '@') >= 0 && strings.IndexByte(level, '@') < 0 {
		return "", ErrOwnerUnread
	}
	return level, nil
}

// where says which namespace the canonical name is in: the announced (or
// declared) namespace with the longest matching prefix (RFC 2342 §3); INBOX is
// always personal (RFC 9051 §5.1); nothing is known without namespaces.
// Prefixes of other users' namespaces match in any case: a backend that
// folds them would reach the same mailboxes. For another user's name it
// returns the owner level as written and the namespace's delimiter, which
// only OwnerLogin reads.
func (n *Namespaces) where(name string) (info NameInfo, level string, delim byte) {
	if n == nil {
		return NameInfo{}, "", 0
	}
	if name == "INBOX" {
		return NameInfo{Kind: NSPersonal}, "", 0
	}
	best := n.longest(name)
	if best < 0 {
		if p, ok := n.Personal(); ok && p.Delim != 0 && strings.HasPrefix(name, "INBOX"+string(p.Delim)) {
			return NameInfo{Kind: NSPersonal}, "", 0
		}
		return NameInfo{}, "", 0
	}
	ns := n.List[best]
	info = NameInfo{Kind: ns.Kind}
	if ns.Kind != NSOther {
		return info, "", 0
	}
	rest := name[len(ns.Prefix):]
	if rest == "" {
		return info, "", 0 // the namespace's root: no owner named
	}
	owner, sub := rest, ""
	if ns.Delim != 0 {
		if i := strings.IndexByte(rest, ns.Delim); i >= 0 {
			owner, sub = rest[:i], rest[i+1:]
		}
	}
	// The owner's own name for it: under the personal namespace's prefix;
	// the root is the owner's INBOX when that prefix is "INBOX" and its
	// delimiter (Cyrus: user.bob is bob's INBOX).
	p, ok := n.Personal()
	switch {
	case !ok:
	case sub != "":
		if p.Delim != 0 && ns.Delim != 0 && p.Delim != ns.Delim {
			sub = strings.ReplaceAll(sub, string(ns.Delim), string(p.Delim))
		}
		info.OwnerName = foldInbox(p.Prefix+sub, p.Delim)
	case p.Delim != 0 && strings.EqualFold(p.Prefix, "INBOX"+string(p.Delim)):
		info.OwnerName = "INBOX"
	}
	return info, owner, ns.Delim
}

// longest is the index of the namespace with the longest prefix of name,
// -1 if none.
func (n *Namespaces) longest(name string) int {
	best := -1
	for i, ns := range n.List {
		if !hasNSPrefix(name, ns) {
			continue
		}
		if best < 0 || len(ns.Prefix) > len(n.List[best].Prefix) {
			best = i
		}
	}
	return best
}

// hasNSPrefix: name is under ns. Prefixes of other users' namespaces and
// of aliases match in any case (Context.unalias refuses an alias spelt
// otherwise).
func hasNSPrefix(name string, ns Namespace) bool {
	if len(name) < len(ns.Prefix) {
		return false
	}
	if ns.Kind == NSOther || ns.Kind == NSAlias {
		if strings.EqualFold(name[:len(ns.Prefix)], ns.Prefix) {
			return true
		}
		// The prefix without its delimiter names the namespace's root
		// ("user" for "user.").
	} else if name[:len(ns.Prefix)] == ns.Prefix {
		return true
	}
	return false
}

// SameUser reports whether owner, the owner level of an other-users name,
// may be the backend user user: compared as loosely as any backend might
// (case-insensitively, by the local part before "@", Cyrus's "^" for "."
// in user names), so that every spelling of oneself is caught. Only the
// own-alias check uses it, beside OwnerLogin's one reading (ownLevel);
// what policies read is OwnerLogin's.
func SameUser(owner, user string) bool {
	if owner == "" || user == "" {
		return false
	}
	norm := func(s string) string {
		s = strings.ReplaceAll(s, "^", ".")
		if i := strings.IndexByte(s, '@'); i >= 0 {
			s = s[:i]
		}
		return strings.ToLower(s)
	}
	return strings.EqualFold(owner, user) || norm(owner) == norm(user)
}
