package imapwire

import "strings"

// The one table of what each command does (ARCHITECTURE.md §10: decide on effects,
// not on command names). The front end, the relay, the capability filter,
// the limiter, the audit and the policy input all read it, so that they
// cannot drift apart. Each command's grammar is in grammar.go.

// State is a session state in which a command is valid (RFC 9051 §3).
type State uint8

const (
	StateNotAuth  State = 1 << iota // before login
	StateAuth                       // logged in, nothing selected
	StateSelected                   // a mailbox is selected
)

const stateLoggedIn = StateAuth | StateSelected

// Effect is one thing a command does to the mailstore or the session.
type Effect uint8

// Effects, named as policies see them (input.command.effects[_].kind).
const (
	EffReadMetadata    Effect = iota + 1 // flags, dates, sizes, lists, status, searches by flag/date/size, ACLs
	EffReadContent                       // message content reaches the client (bodies, headers, PREVIEW, ENVELOPE, BODYSTRUCTURE) or is probed (SEARCH/SORT/THREAD by text)
	EffCreateMessages                    // messages added (APPEND, COPY/MOVE destination)
	EffSetFlags                          // flags changed (STORE; FETCH of a body sets \Seen)
	EffMarkDeleted                       // \Deleted set (STORE +FLAGS/FLAGS \Deleted, APPEND with \Deleted): the step before an expunge
	EffExpunge                           // messages destroyed (EXPUNGE, CLOSE, MOVE source)
	EffCreateMailbox                     // CREATE, the new name of RENAME
	EffDeleteMailbox                     // DELETE
	EffRenameMailbox                     // RENAME (the old name; RENAME INBOX empties it)
	EffSubscriptions                     // SUBSCRIBE, UNSUBSCRIBE
	EffACL                               // SETACL, DELETEACL
	EffMetadata                          // SETMETADATA (a vendor entry the server acts on adds expunge and delete-mailbox)
	EffQuota                             // SETQUOTA
	EffSelect                            // the selected mailbox changes, read-only or none (EXAMINE, CLOSE, UNSELECT)
	EffSelectReadWrite                   // a mailbox is opened read-write (SELECT)
	EffSession                           // what the server sends later changes (ENABLE, NOTIFY, COMPRESS, ID)
	numEffects
)

var effectNames = [numEffects]string{
	EffReadMetadata:    "read-metadata",
	EffReadContent:     "read-content",
	EffCreateMessages:  "create-messages",
	EffSetFlags:        "set-flags",
	EffMarkDeleted:     "mark-deleted",
	EffExpunge:         "expunge",
	EffCreateMailbox:   "create-mailbox",
	EffDeleteMailbox:   "delete-mailbox",
	EffRenameMailbox:   "rename-mailbox",
	EffSubscriptions:   "subscriptions",
	EffACL:             "acl",
	EffMetadata:        "metadata",
	EffQuota:           "quota",
	EffSelect:          "select",
	EffSelectReadWrite: "select-read-write",
	EffSession:         "session",
}

func (e Effect) String() string {
	if e > 0 && e < numEffects {
		return effectNames[e]
	}
	return "unknown"
}

// EffectNames lists every effect's name, for documentation and checks.
func EffectNames() []string { return append([]string(nil), effectNames[1:]...) }

// EffectByName returns the effect named n (as String gives it).
func EffectByName(n string) (Effect, bool) {
	for e := Effect(1); e < numEffects; e++ {
		if effectNames[e] == n {
			return e, true
		}
	}
	return 0, false
}

// Target says which mailbox an effect is on.
type Target uint8

const (
	TargetNone        Target = iota // the session or the server
	TargetSelected                  // the selected mailbox
	TargetMailbox                   // Command.Mailbox
	TargetDestination               // Command.Destination
	TargetAny                       // mailboxes the command names by a pattern or set (NOTIFY, LIST)
	TargetSources                   // each of Command.Sources (the mailboxes CATENATE URLs read)
)

// EffectOn is one effect on one target.
type EffectOn struct {
	Effect Effect
	Target Target
}

// Effects is a command's effects, in a fixed array: the parser runs on
// every command and must not allocate for them.
type Effects struct {
	n    uint8
	list [8]EffectOn
}

// Len returns the number of effects.
func (e *Effects) Len() int { return int(e.n) }

// At returns the i-th effect.
func (e *Effects) At(i int) EffectOn { return e.list[i] }

// Has reports whether any effect is eff.
func (e *Effects) Has(eff Effect) bool {
	for i := 0; i < int(e.n); i++ {
		if e.list[i].Effect == eff {
			return true
		}
	}
	return false
}

// Mask returns the effects as a bit set (bit e for Effect e).
func (e *Effects) Mask() uint32 {
	var m uint32
	for i := 0; i < int(e.n); i++ {
		m |= 1 << e.list[i].Effect
	}
	return m
}

func (e *Effects) add(eff Effect, t Target) {
	for i := 0; i < int(e.n); i++ {
		if e.list[i] == (EffectOn{eff, t}) {
			return
		}
	}
	if int(e.n) < len(e.list) {
		e.list[e.n] = EffectOn{eff, t}
		e.n++
	}
}

// Spec is one command of the table.
type Spec struct {
	Name string
	// RFC is where the command is defined.
	RFC string
	// States are where the command may be sent.
	States State
	// Cap is the capability that makes the command available after login
	// (0: IMAP4rev1 itself). The proxy refuses a command whose capability
	// the client was not offered.
	Cap Cap
	// UID: the command also exists as "UID <name>" (RFC 9051 §6.4.9).
	UID bool
	// Barrier: the command changes how later commands read (the selected
	// mailbox, enabled extensions, pushed data). The proxy decides
	// nothing after it until the backend completed it (RFC 9051 §5.5).
	Barrier bool
	// FailsKnown: a NO completion leaves a state the proxy knows
	// (SELECT, EXAMINE: none selected, RFC 9051 §6.3.2; RENAME, DELETE:
	// nothing done; NOTIFY: the proxy keeps nothing of its answer). No
	// RFC defines the state after a BAD, nor after a NO to CLOSE,
	// UNSELECT or ENABLE, which define none: such an answer to a barrier
	// leaves the state unknown, and the proxy ends the session
	// (ARCHITECTURE.md §8).
	FailsKnown bool
	// MayEffect is every effect the command can have, whatever its
	// arguments: what a policy that watches an effect must inspect. It is
	// the worst a backend may do, later included (a SETMETADATA entry that
	// makes the server expunge).
	MayEffect uint32
	// Proxy: the proxy answers it itself and never forwards it.
	Proxy bool
	// SilentExpunge: the command expunges without reporting it, no
	// untagged EXPUNGE or VANISHED of its own (CLOSE, RFC 9051 §6.4.1):
	// any the backend sends while it runs are another session's.
	SilentExpunge bool

	sections bool // FETCH items with "[...]" sections appear in it
	check    func(k *checker)
}

func effs(es ...Effect) uint32 {
	var m uint32
	for _, e := range es {
		m |= 1 << e
	}
	return m
}

var specs = []*Spec{
	// Any state (RFC 9051 §6.1).
	{Name: "CAPABILITY", RFC: "RFC 9051 §6.1.1", States: StateNotAuth | stateLoggedIn, check: gNone},
	{Name: "NOOP", RFC: "RFC 9051 §6.1.2", States: StateNotAuth | stateLoggedIn, check: gNone},
	{Name: "LOGOUT", RFC: "RFC 9051 §6.1.3", States: StateNotAuth | stateLoggedIn, check: gNone},
	{Name: "ID", RFC: "RFC 2971", States: StateNotAuth | stateLoggedIn, Cap: CapID, MayEffect: effs(EffSession), check: gID},
	// Not authenticated (RFC 9051 §6.2).
	{Name: "STARTTLS", RFC: "RFC 9051 §6.2.1", States: StateNotAuth | stateLoggedIn, Proxy: true, check: gNone},
	{Name: "AUTHENTICATE", RFC: "RFC 9051 §6.2.2, RFC 4959", States: StateNotAuth | stateLoggedIn, Proxy: true, check: gAuthenticate},
	{Name: "LOGIN", RFC: "RFC 9051 §6.2.3", States: StateNotAuth | stateLoggedIn, Proxy: true, check: gLogin},
	// Authenticated (RFC 9051 §6.3).
	{Name: "ENABLE", RFC: "RFC 5161", States: stateLoggedIn, Cap: CapENABLE, Barrier: true, MayEffect: effs(EffSession), check: gEnable},
	{Name: "SELECT", RFC: "RFC 9051 §6.3.2, RFC 7162", States: stateLoggedIn, Barrier: true, MayEffect: effs(EffSelectReadWrite, EffReadMetadata), FailsKnown: true, check: gSelect},
	{Name: "EXAMINE", RFC: "RFC 9051 §6.3.3, RFC 7162", States: stateLoggedIn, Barrier: true, MayEffect: effs(EffSelect, EffReadMetadata), FailsKnown: true, check: gSelect},
	{Name: "CREATE", RFC: "RFC 9051 §6.3.4, RFC 6154", States: stateLoggedIn, MayEffect: effs(EffCreateMailbox), check: gCreate},
	{Name: "DELETE", RFC: "RFC 9051 §6.3.5", States: stateLoggedIn, MayEffect: effs(EffDeleteMailbox), FailsKnown: true, check: gDelete},
	{Name: "RENAME", RFC: "RFC 9051 §6.3.6", States: stateLoggedIn, MayEffect: effs(EffRenameMailbox, EffCreateMailbox), FailsKnown: true, check: gRename},
	{Name: "SUBSCRIBE", RFC: "RFC 9051 §6.3.7", States: stateLoggedIn, MayEffect: effs(EffSubscriptions), check: gSubscribe},
	{Name: "UNSUBSCRIBE", RFC: "RFC 9051 §6.3.8", States: stateLoggedIn, MayEffect: effs(EffSubscriptions), check: gSubscribe},
	{Name: "LIST", RFC: "RFC 9051 §6.3.9, RFC 5258, RFC 5819, RFC 6154, RFC 8440", States: stateLoggedIn, MayEffect: effs(EffReadMetadata), check: gList},
	{Name: "LSUB", RFC: "RFC 3501 §6.3.9", States: stateLoggedIn, MayEffect: effs(EffReadMetadata), check: gLsub},
	{Name: "NAMESPACE", RFC: "RFC 9051 §6.3.10", States: stateLoggedIn, Cap: CapNAMESPACE, MayEffect: effs(EffReadMetadata), check: gNone},
	{Name: "STATUS", RFC: "RFC 9051 §6.3.11, RFC 8438, RFC 8474", States: stateLoggedIn, MayEffect: effs(EffReadMetadata), check: gStatus},
	{Name: "APPEND", RFC: "RFC 9051 §6.3.12, RFC 3502, RFC 4469, RFC 3516, RFC 6855", States: stateLoggedIn, MayEffect: effs(EffCreateMessages, EffReadContent, EffMarkDeleted), check: gAppend},
	{Name: "IDLE", RFC: "RFC 9051 §6.3.13", States: stateLoggedIn, Cap: CapIDLE, check: gNone},
	{Name: "NOTIFY", RFC: "RFC 5465", States: stateLoggedIn, Cap: CapNOTIFY, Barrier: true, sections: true, MayEffect: effs(EffSession, EffReadMetadata, EffReadContent, EffSetFlags), FailsKnown: true, check: gNotify},
	{Name: "GETACL", RFC: "RFC 4314 §3.3", States: stateLoggedIn, Cap: CapACL, MayEffect: effs(EffReadMetadata), check: gMailboxOnly},
	{Name: "MYRIGHTS", RFC: "RFC 4314 §3.5", States: stateLoggedIn, Cap: CapACL, MayEffect: effs(EffReadMetadata), check: gMailboxOnly},
	{Name: "LISTRIGHTS", RFC: "RFC 4314 §3.4", States: stateLoggedIn, Cap: CapACL, MayEffect: effs(EffReadMetadata), check: gListRights},
	{Name: "SETACL", RFC: "RFC 4314 §3.1", States: stateLoggedIn, Cap: CapACL, MayEffect: effs(EffACL), check: gSetACL},
	{Name: "DELETEACL", RFC: "RFC 4314 §3.2", States: stateLoggedIn, Cap: CapACL, MayEffect: effs(EffACL), check: gDeleteACL},
	{Name: "GETQUOTA", RFC: "RFC 9208 §4.2", States: stateLoggedIn, Cap: CapQUOTA, MayEffect: effs(EffReadMetadata), check: gGetQuota},
	{Name: "GETQUOTAROOT", RFC: "RFC 9208 §4.3", States: stateLoggedIn, Cap: CapQUOTA, MayEffect: effs(EffReadMetadata), check: gMailboxOnly},
	{Name: "SETQUOTA", RFC: "RFC 9208 §4.1", States: stateLoggedIn, Cap: CapQUOTA, MayEffect: effs(EffQuota), check: gSetQuota},
	{Name: "GETMETADATA", RFC: "RFC 5464 §4.2", States: stateLoggedIn, Cap: CapMETADATA | CapMETADATASERVER, MayEffect: effs(EffReadMetadata), check: gGetMetadata},
	{Name: "SETMETADATA", RFC: "RFC 5464 §4.3", States: stateLoggedIn, Cap: CapMETADATA | CapMETADATASERVER, MayEffect: effs(EffMetadata, EffExpunge, EffDeleteMailbox), check: gSetMetadata},
	{Name: "COMPRESS", RFC: "RFC 4978", States: stateLoggedIn, Proxy: true, MayEffect: effs(EffSession), check: gCompress},
	// Selected (RFC 9051 §6.4).
	{Name: "CHECK", RFC: "RFC 3501 §6.4.1", States: StateSelected, check: gNone},
	{Name: "CLOSE", RFC: "RFC 9051 §6.4.1", States: StateSelected, Barrier: true, MayEffect: effs(EffSelect, EffExpunge), SilentExpunge: true, check: gClose},
	{Name: "UNSELECT", RFC: "RFC 9051 §6.4.2", States: StateSelected, Cap: CapUNSELECT, Barrier: true, MayEffect: effs(EffSelect), check: gUnselect},
	{Name: "EXPUNGE", RFC: "RFC 9051 §6.4.3, RFC 4315 §2.1", States: StateSelected, UID: true, MayEffect: effs(EffExpunge), check: gExpunge},
	{Name: "SEARCH", RFC: "RFC 9051 §6.4.4, RFC 4731, RFC 5182", States: StateSelected, UID: true, MayEffect: effs(EffReadMetadata, EffReadContent), check: gSearch},
	{Name: "FETCH", RFC: "RFC 9051 §6.4.5, RFC 3516, RFC 7162, RFC 8970", States: StateSelected, UID: true, sections: true, MayEffect: effs(EffReadMetadata, EffReadContent, EffSetFlags), check: gFetch},
	{Name: "STORE", RFC: "RFC 9051 §6.4.6, RFC 7162", States: StateSelected, UID: true, MayEffect: effs(EffSetFlags, EffMarkDeleted), check: gStore},
	{Name: "COPY", RFC: "RFC 9051 §6.4.7", States: StateSelected, UID: true, MayEffect: effs(EffCreateMessages, EffReadMetadata), check: gCopy},
	{Name: "MOVE", RFC: "RFC 9051 §6.4.8", States: StateSelected, UID: true, Cap: CapMOVE, MayEffect: effs(EffCreateMessages, EffExpunge), check: gCopy},
	{Name: "SORT", RFC: "RFC 5256 §3, RFC 5267", States: StateSelected, UID: true, Cap: CapSORT, MayEffect: effs(EffReadMetadata, EffReadContent), check: gSort},
	{Name: "THREAD", RFC: "RFC 5256 §3", States: StateSelected, UID: true, Cap: CapTHREAD, MayEffect: effs(EffReadMetadata, EffReadContent), check: gThread},
}

var specTable = func() map[string]*Spec {
	m := make(map[string]*Spec, len(specs))
	for _, s := range specs {
		m[s.Name] = s
	}
	return m
}()

// lookup returns the spec of an upper-case command name, nil if unknown.
func lookup(name string) *Spec { return specTable[name] }

// Lookup returns the spec of a command name (any case), nil if unknown.
func Lookup(name string) *Spec { return specTable[strings.ToUpper(name)] }

// Specs returns the table, for documentation, policies and tests.
func Specs() []*Spec { return specs }

// SearchKeys is a set of the kinds of content a SEARCH, SORT or THREAD
// probes (Command.SearchKeys): the keys and criteria with EffReadContent,
// named by fixed words, so that the audit trail can say what was probed
// without the strings searched for, which may be content themselves
// (ARCHITECTURE.md §14).
type SearchKeys uint16

// Search keys and criteria that read content (RFC 9051 §6.4.4, RFC 5256
// §3, RFC 5957 DISPLAYFROM/DISPLAYTO sort as FROM/TO).
const (
	SearchBody    SearchKeys = 1 << iota // BODY
	SearchText                           // TEXT: header and body
	SearchSubject                        // SUBJECT (SEARCH, SORT)
	SearchFrom                           // FROM (SEARCH, SORT, SORT DISPLAYFROM)
	SearchTo                             // TO (SEARCH, SORT, SORT DISPLAYTO)
	SearchCc                             // CC (SEARCH, SORT)
	SearchBcc                            // BCC
	SearchHeader                         // HEADER field string (the field's name not kept)
	SearchThread                         // THREAD: Subject, Message-ID, In-Reply-To, References
	numSearchKeys = iota
)

var searchKeyNames = [numSearchKeys]string{"BODY", "TEXT", "SUBJECT", "FROM", "TO", "CC", "BCC", "HEADER", "THREAD"}

// searchKeyOf returns the kind of a SEARCH key or SORT criterion, any
// case, without allocating.
func searchKeyOf(w string) SearchKeys {
	for _, k := range [...]struct {
		name string
		key  SearchKeys
	}{
		{"BODY", SearchBody}, {"TEXT", SearchText}, {"SUBJECT", SearchSubject}, {"FROM", SearchFrom},
		{"DISPLAYFROM", SearchFrom}, {"TO", SearchTo}, {"DISPLAYTO", SearchTo}, {"CC", SearchCc}, {"BCC", SearchBcc},
	} {
		if equalFoldString(w, k.name) {
			return k.key
		}
	}
	return 0
}

// Names lists the kinds in k, in a fixed order; nil when none. The list
// of a single kind is shared: the caller must not change it.
func (k SearchKeys) Names() []string {
	if k == 0 {
		return nil
	}
	if k&(k-1) == 0 {
		for i := range searchKeyNames {
			if k == 1<<i {
				return searchKeyNames[i : i+1 : i+1]
			}
		}
	}
	var out []string
	for i, n := range searchKeyNames {
		if k&(1<<i) != 0 {
			out = append(out, n)
		}
	}
	return out
}
