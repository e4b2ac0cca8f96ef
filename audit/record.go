package audit

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"
)

// SchemaVersion is the "v" of every record. Adding a field keeps it; a
// field that changes meaning or disappears raises it (README.md, "Schema").
const SchemaVersion = 1

// Kind names what a record is about.
type Kind string

// Record kinds. README.md documents the fields each one carries.
const (
	KindSessionOpen     Kind = "session.open"
	KindSessionClose    Kind = "session.close"
	KindTLS             Kind = "tls"
	KindAuth            Kind = "auth"
	KindCommand         Kind = "command"
	KindDelivery        Kind = "delivery" // content pushed while no command ran (NOTIFY)
	KindPolicyDeny      Kind = "policy.deny"
	KindPolicyWouldDeny Kind = "policy.would_deny"
	KindLimit           Kind = "limit"
	KindBackend         Kind = "backend"
	KindSecurity        Kind = "security"
	KindReload          Kind = "reload"
	KindCert            Kind = "cert"
	// KindAdmin is a change made through the admin API or console: who
	// (actor, scope, ip), what (event, detail) and the outcome.
	KindAdmin Kind = "admin"
	// The writer's own records: where a chain (re)starts, where it ends
	// cleanly, and how many records were lost in between (fail-open mode).
	KindAuditStart   Kind = "audit.start"
	KindAuditStop    Kind = "audit.stop"
	KindAuditDropped Kind = "audit.dropped"
)

// Result values of auth records.
const (
	ResultSuccess = "success"
	ResultFailure = "failure"
	// ResultNone is a command's result when the session ended before the
	// backend answered it (the backend may still have carried it out).
	ResultNone = "none"
)

// Fetch classes: what a FETCH read of the messages. The proxy's command
// table classifies each item (imapwire.FetchClass); a writer that cannot
// tell files a FETCH as FetchBody, never as metadata.
const (
	FetchBody     = "body"     // message text: a body section, BINARY, RFC822, RFC822.TEXT, PREVIEW
	FetchHeader   = "header"   // header fields only: HEADER sections, MIME, RFC822.HEADER, ENVELOPE, BODYSTRUCTURE
	FetchMetadata = "metadata" // flags, dates, sizes, UIDs
)

// Caps on what one record carries, so that a hostile client cannot make
// the trail amplify its input, nor make a record no sink carries
// (ARCHITECTURE.md §11, §14); the counts next to them stay exact, and the
// record's cut field says what was shortened and how long it was.
const (
	MaxUIDs = 500 // uids; uid_count has the total
	// DefaultMaxMailboxNames caps the distinct mailboxes one record's
	// sources or mailboxes names (lowered to what MaxRecordBytes holds);
	// the proxy refuses a command naming more (Trail.MaxMailboxNames).
	DefaultMaxMailboxNames = 64
	// DefaultMaxFieldBytes caps each string a client (or a backend,
	// directory, token or policy) chose, and each entry of such a list or
	// map, as encoded: escapes count (a control character takes 6 bytes).
	// RFC 2971 §3.3 caps an ID value at 1024 octets.
	DefaultMaxFieldBytes = 1024
	// DefaultMaxListItems caps the entries of such a list or map (items,
	// flags, patterns, client_id, ...).
	DefaultMaxListItems = 32
	// DefaultMaxRecordBytes bounds a whole record (without its "\n"): one
	// record is one syslog message (RFC 5424 §6.1), each datagram over UDP
	// (RFC 5426 §3.2: 65507 octets at most over IPv4) or /dev/log. A record
	// over it is written again with tighter caps (shrinkCaps).
	DefaultMaxRecordBytes = 16 << 10
	// MinRecordBytes is the least MaxRecordBytes: above the 2048 every
	// syslog receiver should take (RFC 5424 §6.1), since the worst-case
	// command record, shrunk to its identity and counts, takes about
	// 2.5 KiB (Trail.worstCase; New refuses caps it does not fit).
	MinRecordBytes = 4096
)

// caps are the limits one encoding of a record applies to text from
// outside the proxy: field bytes (encoded), list and map entries, and the
// annotations' JSON; ident, at least, for the fields that say who did
// what to what (identStr, set); names, entries of a list of mailboxes a
// command read or watched (sources, mailboxes); uids, the UIDs written;
// identBytes, when set, what those fields may total, encoded: within it
// each is whole, whatever field and ident say (encoding.nameMax); over
// it, the longest names are cut first (encoding.nameCap).
type caps struct{ field, items, annot, ident, names, uids, identBytes int }

// IdentFloor is the least, encoded, a record keeps of each field that
// says who did what to what (user, command, mailbox, destination,
// selected, identifier, rights, each of sources and mailboxes), however
// it is shrunk: enough to recognise it (ARCHITECTURE.md §11).
const IdentFloor = 64

// shrinkCaps are the caps a record over MaxRecordBytes is encoded with
// again, in turn, until it fits (conf are the configured ones): first
// lists, UIDs and other text shrink, with their counts kept (uid_count,
// cut); the fields that say who did what to what keep their cap until
// the last, which cuts them to IdentFloor; a set is never left out
// (encoding.set), nor an entry of sources or mailboxes (the proxy refuses
// a command naming more than the record holds, Trail.MaxMailboxNames, or
// names over Trail.MaxNameBytes). Every step but the last keeps them
// whole when they total at most conf.identBytes, one name longer than the
// field cap too, so a command the proxy carried out is recorded whole;
// over it, the longest names of sources and mailboxes are cut first
// (encoding.nameCap). The last alone bounds the record (Trail.worstCase).
func shrinkCaps(conf caps) [4]caps {
	id, nb := conf.ident, conf.identBytes
	return [...]caps{
		{field: 64, items: 4, annot: 256, ident: id, names: conf.names, uids: 64, identBytes: nb},
		{field: 16, items: 1, ident: id, names: conf.names, uids: 8, identBytes: nb},
		{ident: id, names: conf.names, identBytes: nb},
		{ident: min(id, IdentFloor), names: conf.names},
	}
}

// confCaps are the caps of a record's first encoding.
func confCaps(field, items, names int) caps {
	return caps{field: field, items: items, annot: 4 * field, ident: field, names: names, uids: MaxUIDs}
}

// Cut is one field the writer shortened or left out.
type Cut struct {
	Field string `json:"field"`
	// Bytes is the field's size as given: a string's length; the total
	// of a list's entries or a map's keys and values.
	Bytes int `json:"bytes"`
	// Items is a list's or map's number of entries as given.
	Items int `json:"items,omitempty"`
}

// cuts writes the cut list.
func (l *jsonLine) cuts(cut []Cut) {
	l.open("cut", '[')
	for i := range cut {
		c := &cut[i]
		l.sep()
		l.b = append(l.b, '{')
		l.String("field", c.Field)
		l.Int("bytes", int64(c.Bytes))
		if c.Items > 0 {
			l.Int("items", int64(c.Items))
		}
		l.b = append(l.b, '}')
	}
	l.close(']')
}

// encoding is one encoding's state: the caps, the fields cut, and
// formatting space (the writer keeps one, so that encoding does not
// allocate).
type encoding struct {
	scratch []byte
	caps    caps
	cut     []Cut
	// whole, when set, is the size the record had under the configured
	// caps (record_bytes): it was over MaxRecordBytes.
	whole int
	// oneName is what one name of the record may take (nameMax).
	oneName int
	annot   bytes.Buffer
	// set's formatting space
	ranges []setRange
	setBuf []byte
}

// Record is one audit event. Fields that are zero are not written. A
// Record handed to Trail.Log belongs to the trail: the caller must not
// change it, nor any slice or map in it, afterwards.
//
// Seq, Prev, HMAC and Version are set by the writer (and by decoding); a
// caller leaves them zero.
type Record struct {
	Time    time.Time `json:"ts"`
	Kind    Kind      `json:"kind"`
	Version int       `json:"v"`
	Seq     uint64    `json:"seq"`
	Prev    string    `json:"prev,omitempty"` // SHA-256 of the previous record, hex
	HMAC    string    `json:"hmac,omitempty"` // or its HMAC-SHA256 with the trail's key

	// The session: every record of one carries these.
	Session  string     `json:"session,omitempty"`
	IP       netip.Addr `json:"ip,omitzero"`
	Port     uint16     `json:"port,omitempty"`
	Listener string     `json:"listener,omitempty"`
	User     string     `json:"user,omitempty"`
	Local    string     `json:"local,omitempty"` // session.open: the address the client connected to
	Backend  string     `json:"backend,omitempty"`
	// Server is the backend's server (its name in the pool).
	Server string `json:"server,omitempty"`

	// Event refines the kind: backend "connect-failed", security
	// "starttls-injection", reload "policy", cert "renewed", ...
	Event string `json:"event,omitempty"`

	// tls
	TLSVersion string `json:"tls_version,omitempty"`
	Cipher     string `json:"cipher,omitempty"`
	SNI        string `json:"sni,omitempty"`
	ALPN       string `json:"alpn,omitempty"`
	ClientCert string `json:"client_cert,omitempty"`

	// auth
	Mechanism string            `json:"mechanism,omitempty"`
	Attempt   int               `json:"attempt,omitempty"`
	ClientID  map[string]string `json:"client_id,omitempty"`
	// Who verified the user and what it said of them; a token's issuer,
	// client and scopes. Never the credential itself.
	Authenticator string   `json:"authenticator,omitempty"`
	Identity      string   `json:"identity,omitempty"`
	Groups        []string `json:"groups,omitempty"`
	TokenIssuer   string   `json:"token_issuer,omitempty"`
	TokenClientID string   `json:"token_client_id,omitempty"`
	Scopes        []string `json:"scopes,omitempty"`

	// command, policy.*, limit
	Tag         string   `json:"tag,omitempty"`
	Command     string   `json:"command,omitempty"` // upper case; "FETCH" for UID FETCH, with UID set
	UID         bool     `json:"uid,omitempty"`
	Mailbox     string   `json:"mailbox,omitempty"`     // canonical: decoded, INBOX folded
	MailboxRaw  string   `json:"mailbox_raw,omitempty"` // as sent, when it differs from mailbox
	Destination string   `json:"destination,omitempty"`
	Sources     []string `json:"sources,omitempty"`   // mailboxes CATENATE URLs copied from (RFC 4469)
	Mailboxes   []string `json:"mailboxes,omitempty"` // mailboxes NOTIFY's filters name (RFC 5465)
	Patterns    []string `json:"patterns,omitempty"`  // LIST/LSUB patterns, all of them
	Effects     []string `json:"effects,omitempty"`   // what the command did (proxy/imapwire's table)
	Selected    string   `json:"selected,omitempty"`
	UIDValidity uint32   `json:"uidvalidity,omitempty"` // the selected mailbox's, which UIDs and UID sets are relative to
	ReadOnly    bool     `json:"read_only,omitempty"`
	Set         string   `json:"set,omitempty"`       // as the client sent it
	SetCount    int64    `json:"set_count,omitempty"` // messages named; -1 when it has "*"
	Fetch       string   `json:"fetch,omitempty"`     // FetchBody, FetchHeader or FetchMetadata
	Items       []string `json:"items,omitempty"`
	SearchKeys  []string `json:"search_keys,omitempty"` // what a SEARCH/SORT/THREAD probed of content: BODY, SUBJECT, ... (never the text)
	StoreOp     string   `json:"store,omitempty"`
	Flags       []string `json:"flags,omitempty"`
	// What SETACL, DELETEACL, LISTRIGHTS, GETQUOTA, SETQUOTA, ENABLE and
	// SETMETADATA were about, as sent (README.md).
	Identifier   string           `json:"identifier,omitempty"` // ACL identifier; "-" before it: negative rights (RFC 4314 §2)
	Rights       string           `json:"rights,omitempty"`     // SETACL's rights, "+" or "-" before them to add or remove (RFC 4314 §3.1)
	QuotaRoot    string           `json:"quota_root,omitempty"`
	Quota        map[string]int64 `json:"quota,omitempty"`   // SETQUOTA's limits by resource (RFC 9208 §4.1)
	Enable       []string         `json:"enable,omitempty"`  // ENABLE's capabilities
	Entries      []string         `json:"entries,omitempty"` // SETMETADATA's entries
	LiteralBytes int64            `json:"literal_bytes,omitempty"`
	UIDs         []uint32         `json:"uids,omitempty"` // messages whose content the responses carried
	ContentBytes int64            `json:"content_bytes,omitempty"`
	UIDCount     int              `json:"uid_count,omitempty"` // all of them, when more than uids holds
	// Unnamed counts the responses whose content or headers went out
	// with no UID to name their message (the backend sent none, or not
	// before the response was cut): counted in messages, absent from
	// uids. UnnamedSeqs are their message sequence numbers as numbered
	// when sent (a delivery's; a command's are within its set).
	Unnamed     int      `json:"unnamed,omitempty"`
	UnnamedSeqs []uint32 `json:"unnamed_seqs,omitempty"`
	// Expunged: messages the backend reported expunged while a command
	// that expunges ran (EXPUNGE, UID EXPUNGE, MOVE); ExpungedSeqs the
	// sequence numbers of its "* n EXPUNGE" responses, in order, each as
	// numbered when sent; ExpungedUIDs the UIDs of its "* VANISHED"
	// (QRESYNC). UIDs never holds a destroyed message (README.md).
	Expunged     int      `json:"expunged,omitempty"`
	ExpungedSeqs []uint32 `json:"expunged_seqs,omitempty"`
	ExpungedUIDs []uint32 `json:"expunged_uids,omitempty"`
	// SharedWith tags the other FETCHes in flight that the content
	// counted here may have answered instead (a FETCH response carries
	// no tag): each message is counted in one record only. The proxy
	// names at most 16; SharedCount is how many there were when more.
	SharedWith  []string `json:"content_shared_with,omitempty"`
	SharedCount int      `json:"content_shared_count,omitempty"`
	CodeArgs    string   `json:"code_args,omitempty"` // COPYUID/APPENDUID text

	// Outcome. Result is ResultSuccess/ResultFailure for auth, the IMAP
	// status (OK, NO, BAD) or ResultNone for commands, "ok"/"error" for
	// reload and cert.
	Result   string `json:"result,omitempty"`
	Code     string `json:"code,omitempty"` // IMAP response code, e.g. NOPERM
	Reason   string `json:"reason,omitempty"`
	Revision string `json:"revision,omitempty"`  // policy revision
	Limit    string `json:"limit,omitempty"`     // which limit was hit
	LimitKey string `json:"limit_key,omitempty"` // what it counts by: ip, subnet, user, ...
	// LimitOwn: the refusal is for what the client's address did itself
	// (a lockout of this address or of the user from it, ip_bits at full
	// length; a user's lockout mostly of its failures), not for what
	// other addresses of the user or of the prefix did.
	LimitOwn   bool           `json:"limit_own,omitempty"`
	Disconnect bool           `json:"disconnect,omitempty"`
	Annot      map[string]any `json:"annotations,omitempty"`
	Detail     string         `json:"detail,omitempty"`

	// admin: the token's name and scope (never the token).
	Actor string `json:"actor,omitempty"`
	Scope string `json:"scope,omitempty"`

	Duration time.Duration `json:"-"` // written as duration_ms
	Delay    time.Duration `json:"-"` // limit: the delay imposed, written as delay_ms
	BytesIn  int64         `json:"bytes_in,omitempty"`
	BytesOut int64         `json:"bytes_out,omitempty"`

	// session.close
	Commands     int            `json:"commands,omitempty"`
	Counts       map[string]int `json:"counts,omitempty"`   // commands by name
	Messages     int            `json:"messages,omitempty"` // messages whose content was fetched (command, session.close)
	AuthFailures int            `json:"auth_failures,omitempty"`
	// OthersExpunged: messages the backend reported expunged that no
	// command of the session caused (another session's).
	OthersExpunged int `json:"others_expunged,omitempty"`

	// cert
	Subject  string    `json:"subject,omitempty"`
	Names    []string  `json:"names,omitempty"`
	Issuer   string    `json:"issuer,omitempty"`
	NotAfter time.Time `json:"not_after,omitzero"`

	// audit.*
	Host     string `json:"host,omitempty"`
	PID      int    `json:"pid,omitempty"`
	Software string `json:"software,omitempty"`
	Chain    string `json:"chain,omitempty"`  // "sha256" or "hmac-sha256"
	KeyID    string `json:"key_id,omitempty"` // which HMAC key (not the key)
	Count    uint64 `json:"count,omitempty"`  // audit.dropped: records lost; audit.stop: records written; limit: hits recorded together
	Torn     int64  `json:"torn_bytes,omitempty"`
	// ResumedAt, in an audit.start, is the seq of the checkpoint a writer
	// whose sink cannot read back continued the chain from.
	ResumedAt uint64 `json:"resumed_at,omitempty"`

	// Cut and RecordBytes are set by the writer (and by decoding): the
	// fields it shortened or left out under its caps, and, when the
	// record was over MaxRecordBytes and was encoded again with tighter
	// caps, the size it had.
	Cut         []Cut `json:"cut,omitempty"`
	RecordBytes int   `json:"record_bytes,omitempty"`

	// ack, set by LogWait, learns the seq the writer gives the record.
	ack *ack
}

// recordPool recycles records the writer has written (NewRecord).
var recordPool = sync.Pool{New: func() any { return new(Record) }}

// NewRecord returns a zeroed Record, reused from one the writer is done
// with, so that auditing a command does not allocate once warm: its Items,
// Flags and UIDs are empty but may have room, to be filled by appending.
// A record from NewRecord or new(Record) alike belongs to the trail after
// Log.
func NewRecord() *Record { return recordPool.Get().(*Record) }

// recycle zeroes r, dropping what it pointed to but the small backing
// arrays of Items, Flags and UIDs (filled by appending, see NewRecord), and
// pools it.
func recycle(r *Record) {
	items, flags, uids := r.Items[:0], r.Flags[:0], r.UIDs[:0]
	clear(r.Items)
	clear(r.Flags)
	*r = Record{}
	if cap(items) <= keepSmall {
		r.Items = items
	}
	if cap(flags) <= keepSmall {
		r.Flags = flags
	}
	if cap(uids) <= keepSmall {
		r.UIDs = uids
	}
	recordPool.Put(r)
}

// keepSmall bounds the slices a pooled record keeps.
const keepSmall = 64

// marshal writes the record's own fields (everything after seq and prev,
// which the writer adds) in a fixed order, the session first, so that ip
// always precedes what a client chose (README.md, fail2ban), under enc's
// caps. Text from outside the proxy (a client's, a backend's, a
// directory's, a token's, a policy's) goes through enc.str, enc.strs and
// the capped maps; the proxy's own words (kinds, events, results,
// configured names) through str.
func (r *Record) marshal(e *jsonLine, enc *encoding) {
	enc.cut = enc.cut[:0]
	enc.oneName = enc.nameMax(r)
	str(e, "session", r.Session)
	if r.IP.IsValid() {
		enc.scratch = r.IP.AppendTo(enc.scratch[:0])
		e.ByteString("ip", enc.scratch)
	}
	if r.Port != 0 {
		e.Uint("port", uint64(r.Port))
	}
	str(e, "listener", r.Listener)
	enc.identStr(e, "user", r.User)
	str(e, "local", r.Local)
	str(e, "backend", r.Backend)
	str(e, "server", r.Server)
	str(e, "event", r.Event)

	str(e, "tls_version", r.TLSVersion)
	str(e, "cipher", r.Cipher)
	enc.str(e, "sni", r.SNI)
	enc.str(e, "alpn", r.ALPN)
	enc.str(e, "client_cert", r.ClientCert)

	enc.str(e, "mechanism", r.Mechanism)
	num(e, "attempt", int64(r.Attempt))
	if len(r.ClientID) > 0 {
		enc.stringMap(e, "client_id", r.ClientID)
	}
	str(e, "authenticator", r.Authenticator)
	enc.str(e, "identity", r.Identity)
	enc.strs(e, "groups", r.Groups)
	enc.str(e, "token_issuer", r.TokenIssuer)
	enc.str(e, "token_client_id", r.TokenClientID)
	enc.strs(e, "scopes", r.Scopes)

	enc.str(e, "tag", r.Tag)
	enc.identStr(e, "command", r.Command)
	if r.UID {
		e.True("uid")
	}
	enc.identStr(e, "mailbox", r.Mailbox)
	enc.str(e, "mailbox_raw", r.MailboxRaw)
	enc.identStr(e, "destination", r.Destination)
	nc := enc.nameCap(r)
	enc.names(e, "sources", r.Sources, nc)
	enc.names(e, "mailboxes", r.Mailboxes, nc)
	enc.strs(e, "patterns", r.Patterns)
	e.strings("effects", r.Effects)
	enc.identStr(e, "selected", r.Selected)
	num(e, "uidvalidity", int64(r.UIDValidity))
	if r.ReadOnly {
		e.True("read_only")
	}
	enc.set(e, "set", r.Set)
	num(e, "set_count", r.SetCount)
	str(e, "fetch", r.Fetch)
	enc.strs(e, "items", r.Items)
	e.strings("search_keys", r.SearchKeys)
	enc.str(e, "store", r.StoreOp)
	enc.strs(e, "flags", r.Flags)
	enc.identStr(e, "identifier", r.Identifier) // to whom SETACL gives what: cut last
	enc.identStr(e, "rights", r.Rights)
	enc.str(e, "quota_root", r.QuotaRoot)
	if r.Quota != nil {
		intMap(enc, e, "quota", r.Quota)
	}
	enc.strs(e, "enable", r.Enable)
	enc.strs(e, "entries", r.Entries)
	num(e, "literal_bytes", r.LiteralBytes)
	if len(r.UIDs) > 0 && enc.caps.uids > 0 {
		e.uids("uids", r.UIDs, enc.caps.uids)
	}
	if n := r.UIDCount; n > 0 || len(r.UIDs) > enc.caps.uids {
		e.Int("uid_count", int64(max(n, len(r.UIDs))))
	}
	num(e, "unnamed", int64(r.Unnamed))
	if len(r.UnnamedSeqs) > 0 && enc.caps.uids > 0 {
		// Shrunk as uids are; unnamed keeps the count.
		e.uids("unnamed_seqs", r.UnnamedSeqs, enc.caps.uids)
	}
	num(e, "expunged", int64(r.Expunged))
	if len(r.ExpungedSeqs) > 0 && enc.caps.uids > 0 {
		// Shrunk as uids are; expunged keeps the count.
		e.uids("expunged_seqs", r.ExpungedSeqs, enc.caps.uids)
	}
	if len(r.ExpungedUIDs) > 0 && enc.caps.uids > 0 {
		e.uids("expunged_uids", r.ExpungedUIDs, enc.caps.uids)
	}
	num(e, "content_bytes", r.ContentBytes)
	enc.strs(e, "content_shared_with", r.SharedWith)
	num(e, "content_shared_count", int64(r.SharedCount))
	enc.str(e, "code_args", r.CodeArgs)

	str(e, "result", r.Result)
	enc.str(e, "code", r.Code)
	enc.str(e, "reason", r.Reason)
	str(e, "revision", r.Revision)
	str(e, "limit", r.Limit)
	str(e, "limit_key", r.LimitKey)
	if r.LimitOwn {
		e.True("limit_own")
	}
	if r.Delay != 0 {
		e.Millis("delay_ms", r.Delay.Microseconds())
	}
	if r.Disconnect {
		e.True("disconnect")
	}
	if len(r.Annot) > 0 {
		enc.annotations(e, r.Annot)
	}
	enc.str(e, "detail", r.Detail)
	str(e, "actor", r.Actor)
	str(e, "scope", r.Scope)

	if r.Duration != 0 {
		e.Millis("duration_ms", r.Duration.Microseconds())
	}
	num(e, "bytes_in", r.BytesIn)
	num(e, "bytes_out", r.BytesOut)

	num(e, "commands", int64(r.Commands))
	if len(r.Counts) > 0 {
		intMap(enc, e, "counts", r.Counts)
	}
	num(e, "messages", int64(r.Messages))
	num(e, "others_expunged", int64(r.OthersExpunged))
	num(e, "auth_failures", int64(r.AuthFailures))

	enc.str(e, "subject", r.Subject)
	enc.strs(e, "names", r.Names)
	enc.str(e, "issuer", r.Issuer)
	if !r.NotAfter.IsZero() {
		e.Time("not_after", r.NotAfter.UTC(), time.RFC3339)
	}

	str(e, "host", r.Host)
	num(e, "pid", int64(r.PID))
	str(e, "software", r.Software)
	str(e, "chain", r.Chain)
	str(e, "key_id", r.KeyID)
	if r.Count != 0 {
		e.Uint("count", r.Count)
	}
	num(e, "torn_bytes", r.Torn)
	if r.ResumedAt != 0 {
		e.Uint("resumed_at", r.ResumedAt)
	}
	if len(enc.cut) > 0 {
		e.cuts(enc.cut)
	}
	if enc.whole > 0 {
		e.Int("record_bytes", int64(enc.whole))
	}
}

func str(e *jsonLine, k, v string) {
	if v != "" {
		e.String(k, v)
	}
}

func num(e *jsonLine, k string, v int64) {
	if v != 0 {
		e.Int(k, v)
	}
}

// str writes a string from outside the proxy, clipped to the field cap.
func (enc *encoding) str(e *jsonLine, k, v string) {
	if v != "" { // inlined: most fields are empty
		enc.clipped(e, k, v, enc.caps.field)
	}
}

// clipped writes v clipped to n bytes encoded.
func (enc *encoding) clipped(e *jsonLine, k, v string, n int) {
	c, size, whole := clipSize(v, n)
	if !whole {
		enc.cut = append(enc.cut, Cut{Field: k, Bytes: len(v)})
	}
	switch {
	case c == "":
	case size == len(c): // clipSize found nothing to escape
		e.key(k)
		e.b = append(e.b, '"')
		e.b = append(e.b, c...)
		e.b = append(e.b, '"')
	default:
		e.String(k, c)
	}
}

// identStr writes a field that says who did what to what: clipped to
// enc.oneName (nameMax).
func (enc *encoding) identStr(e *jsonLine, k, v string) {
	if v != "" {
		enc.clipped(e, k, v, enc.oneName)
	}
}

// nameMax is what one name of r (user, command, mailbox, destination,
// selected, identifier, rights, an entry of sources or mailboxes) may
// take, encoded: when they total at most the names' budget
// (caps.identBytes), the budget, so that each is whole whatever the field
// cap (a command the proxy carried out, ARCHITECTURE.md §11); else the
// larger of the field cap and the identity cap.
func (enc *encoding) nameMax(r *Record) int {
	c, nb := max(enc.caps.field, enc.caps.ident), enc.caps.identBytes
	if nb <= c {
		return c
	}
	left := nb
	fits := func(s string) bool {
		_, n, whole := clipSize(s, left)
		left -= n
		return whole
	}
	for _, s := range [...]string{r.User, r.Command, r.Mailbox, r.Destination, r.Selected, r.Identifier, r.Rights} {
		if !fits(s) {
			return c
		}
	}
	for _, l := range [...][]string{r.Sources, r.Mailboxes} {
		for _, s := range l[:min(len(l), enc.caps.names)] {
			if !fits(s) {
				return c
			}
		}
	}
	return nb
}

// names writes a list of mailboxes a command read or watched (sources,
// mailboxes), each once already: up to caps.names entries, each clipped
// to n (nameCap), whatever max_list_items says, since each names a
// distinct mailbox an auditor asks about.
func (enc *encoding) names(e *jsonLine, k string, l []string, n int) {
	c := enc.caps
	enc.caps.field, enc.caps.items = n, c.names
	enc.strs(e, k, l)
	enc.caps = c
}

// nameCap is what each entry of r's sources and mailboxes is clipped to:
// the identity cap, or, when caps.identBytes is set and the fields that
// say who did what to what would total more, the largest cap, at least
// IdentFloor, under which they fit: the longest names are cut first and
// the shorter ones, and the single fields (user, mailbox, ...), stay
// whole (ARCHITECTURE.md §11).
func (enc *encoding) nameCap(r *Record) int {
	c := enc.oneName
	if enc.caps.identBytes == 0 || len(r.Sources)+len(r.Mailboxes) == 0 {
		return c
	}
	budget := enc.caps.identBytes
	for _, s := range [...]string{r.User, r.Command, r.Mailbox, r.Destination, r.Selected, r.Identifier, r.Rights} {
		budget -= clipLen(s, c)
	}
	fits := func(n int) bool {
		t := 0
		for _, l := range [...][]string{r.Sources, r.Mailboxes} {
			for _, s := range l[:min(len(l), enc.caps.names)] {
				t += clipLen(s, n)
			}
		}
		return t <= budget
	}
	if c <= IdentFloor || fits(c) {
		return c
	}
	lo, hi := IdentFloor, c // fits(lo) is assumed, fits(hi) is false
	for hi-lo > 1 {
		if m := (lo + hi) / 2; fits(m) {
			lo = m
		} else {
			hi = m
		}
	}
	return lo
}

// strs writes a list from outside the proxy: its first caps.items
// entries, each clipped.
func (enc *encoding) strs(e *jsonLine, k string, l []string) {
	if len(l) == 0 {
		return
	}
	n, whole := 0, len(l) <= enc.caps.items
	for i, s := range l {
		n += len(s)
		if whole && i < enc.caps.items {
			_, whole = clip(s, enc.caps.field)
		}
	}
	if !whole {
		enc.cut = append(enc.cut, Cut{Field: k, Bytes: n, Items: len(l)})
	}
	if enc.caps.items == 0 {
		return
	}
	e.open(k, '[')
	for _, s := range l[:min(len(l), enc.caps.items)] {
		s, _ = clip(s, enc.caps.field)
		e.elem(s)
	}
	e.close(']')
}

// sameKey tells whether the trail's readers take a and b, written as
// keys of one object, for one key (dupKey: bytes.EqualFold, after
// unescaping). Both encoders write a byte that is not UTF-8 as U+FFFD,
// and EqualFold decodes such a byte as U+FFFD too, so comparing the keys
// as given is comparing them as read.
func sameKey(a, b string) bool { return strings.EqualFold(a, b) }

// keptKey tells whether key joins kept, the keys already written in one
// object: not when a reader would take it for one of them (sameKey).
func keptKey(kept []string, key string) bool {
	for _, o := range kept {
		if sameKey(o, key) {
			return false
		}
	}
	return true
}

// stringMap writes a map from outside the proxy (client_id): its first
// caps.items entries in key order whose key fits the field cap whole (a
// key cut short could equal another) and is not one a reader takes for
// an earlier key (sameKey: a record has one reading, ARCHITECTURE.md
// §11), values clipped; what is left out is named in cut.
func (enc *encoding) stringMap(e *jsonLine, k string, m map[string]string) {
	keys := sortedKeys(m)
	n, kept, whole := 0, keys[:0], true
	for _, key := range keys {
		v := m[key]
		n += len(key) + len(v)
		_, wk := clip(key, enc.caps.field)
		if !wk || len(kept) == enc.caps.items || !keptKey(kept, key) {
			whole = false
			continue
		}
		kept = append(kept, key)
		if _, wv := clip(v, enc.caps.field); !wv {
			whole = false
		}
	}
	if !whole {
		enc.cut = append(enc.cut, Cut{Field: k, Bytes: n, Items: len(m)})
	}
	if len(kept) > 0 {
		e.open(k, '{')
		for _, key := range kept {
			v, _ := clip(m[key], enc.caps.field)
			e.outsideKey(key)
			e.quote(v)
		}
		e.close('}')
	}
}

// intMap writes counts by name (session.close counts, SETQUOTA's quota)
// as stringMap does.
func intMap[V int | int64](enc *encoding, e *jsonLine, k string, m map[string]V) {
	keys := sortedKeys(m)
	n, kept := 0, keys[:0]
	for _, key := range keys {
		n += len(key)
		if _, wk := clip(key, enc.caps.field); wk && len(kept) < enc.caps.items && keptKey(kept, key) {
			kept = append(kept, key)
		}
	}
	if len(kept) < len(m) {
		enc.cut = append(enc.cut, Cut{Field: k, Bytes: n, Items: len(m)})
	}
	if len(kept) > 0 {
		e.open(k, '{')
		for _, key := range kept {
			e.outsideKey(key)
			e.b = strconv.AppendInt(e.b, int64(m[key]), 10)
		}
		e.close('}')
	}
}

// annotations writes the policy's annotations (which may quote a
// client's text) when their JSON fits caps.annot; else none of them.
// Reflection is fine on the writer's goroutine; encoding/json sorts the
// keys.
func (enc *encoding) annotations(e *jsonLine, a map[string]any) {
	enc.annot.Reset()
	je := json.NewEncoder(&enc.annot)
	je.SetEscapeHTML(false) // as zap's own reflection encoder
	if err := je.Encode(a); err != nil {
		e.String("annotations_error", err.Error())
		return
	}
	b := bytes.TrimSuffix(enc.annot.Bytes(), []byte("\n"))
	if _, dup := dupKey(b); dup {
		// Keys a reader takes for one (sameKey): each object keeps the
		// first in key order, and cut says so.
		enc.cut = append(enc.cut, Cut{Field: "annotations", Bytes: len(b), Items: len(a)})
		var v any
		d := json.NewDecoder(bytes.NewReader(b))
		d.UseNumber()
		if d.Decode(&v) != nil {
			return
		}
		enc.annot.Reset()
		if je.Encode(oneKeyEach(v)) != nil {
			return
		}
		b = bytes.TrimSuffix(enc.annot.Bytes(), []byte("\n"))
	}
	if len(b) > enc.caps.annot {
		enc.cut = append(enc.cut, Cut{Field: "annotations", Bytes: len(b), Items: len(a)})
		return
	}
	// As compact as encoding/json writes a json.RawMessage, which is
	// how zapcore wrote them.
	e.Raw("annotations", b)
}

// oneKeyEach returns v, decoded JSON, with each object's keys that a
// reader takes for an earlier one in key order (sameKey) left out.
func oneKeyEach(v any) any {
	switch x := v.(type) {
	case map[string]any:
		keys := sortedKeys(x)
		kept := keys[:0]
		out := make(map[string]any, len(x))
		for _, k := range keys {
			if keptKey(kept, k) {
				kept = append(kept, k)
				out[k] = oneKeyEach(x[k])
			}
		}
		return out
	case []any:
		for i := range x {
			x[i] = oneKeyEach(x[i])
		}
	}
	return v
}

// clip returns the longest prefix of s, cut between runes, whose JSON
// encoding (zapcore's: \u00XX for a control character, \ufffd for a
// byte that is not UTF-8) takes at most n bytes, and whether that is s.
func clip(s string, n int) (string, bool) {
	c, _, whole := clipSize(s, n)
	return c, whole
}

// clipLen is the size of clip(s, n) encoded.
func clipLen(s string, n int) int {
	_, size, _ := clipSize(s, n)
	return size
}

// clipSize is clip, and the size of the prefix encoded.
func clipSize(s string, n int) (string, int, bool) {
	if len(s) <= n {
		// Fast path: most strings need no escape.
		plain := true
		for i := 0; i < len(s); i++ {
			if c := s[i]; c < 0x20 || c == '"' || c == '\\' || c >= utf8.RuneSelf {
				plain = false
				break
			}
		}
		if plain {
			return s, len(s), true
		}
	}
	size := 0
	for i := 0; i < len(s); {
		c, w, k := s[i], 1, 1
		switch {
		case c >= utf8.RuneSelf:
			r, rw := utf8.DecodeRuneInString(s[i:])
			if r == utf8.RuneError && rw == 1 {
				k = 6 // \ufffd
			} else {
				w, k = rw, rw
			}
		case c == '"' || c == '\\' || c == '\n' || c == '\r' || c == '\t':
			k = 2
		case c < 0x20:
			k = 6
		}
		if size+k > n {
			return s[:i], size, false
		}
		size += k
		i += w
	}
	return s, size, true
}

// strings writes a list of the proxy's own words (effects, search
// keys), when it has any.
func (l *jsonLine) strings(k string, list []string) {
	if len(list) == 0 {
		return
	}
	l.open(k, '[')
	for _, s := range list {
		l.elem(s)
	}
	l.close(']')
}

// uids writes the first n of list.
func (l *jsonLine) uids(k string, list []uint32, n int) {
	l.open(k, '[')
	for _, u := range list[:min(len(list), n)] {
		l.elemUint(uint64(u))
	}
	l.close(']')
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// UnmarshalJSON decodes a record as written, duration_ms included.
func (r *Record) UnmarshalJSON(b []byte) error {
	type plain Record
	aux := struct {
		*plain
		DurationMS float64 `json:"duration_ms"`
		DelayMS    float64 `json:"delay_ms"`
	}{plain: (*plain)(r)}
	if err := json.Unmarshal(b, &aux); err != nil {
		return err
	}
	r.Duration = time.Duration(aux.DurationMS * float64(time.Millisecond))
	r.Delay = time.Duration(aux.DelayMS * float64(time.Millisecond))
	return nil
}

// ParseRecord decodes one line of a trail. A line that does not start
// with "{" may carry a prefix a log shipper added (a syslog header): the
// record starts at the first `{"ts":`.
func ParseRecord(line []byte) (*Record, error) {
	line = recordStart(line)
	var r Record
	if err := json.Unmarshal(line, &r); err != nil {
		return nil, fmt.Errorf("audit: not a record: %w", err)
	}
	if r.Kind == "" || r.Version == 0 {
		return nil, fmt.Errorf("audit: not a record: no kind or version")
	}
	if k, dup := dupKey(line); dup {
		return nil, fmt.Errorf("audit: not a record: the key %q is there twice, which readers read differently (forged or edited)", k)
	}
	return &r, nil
}

// Summary is a one-line human description of the record, for the table
// output of "imapwarden audit query".
func (r *Record) Summary() string {
	var b strings.Builder
	w := func(parts ...string) {
		for _, p := range parts {
			if p == "" {
				continue
			}
			if b.Len() > 0 {
				b.WriteByte(' ')
			}
			b.WriteString(p)
		}
	}
	opt := func(k, v string) string {
		if v == "" {
			return ""
		}
		return k + "=" + v
	}
	switch r.Kind {
	case KindSessionOpen:
		w("via "+r.Listener, opt("local", r.Local))
	case KindTLS:
		w(r.TLSVersion, r.Cipher, opt("sni", word(r.SNI)), opt("alpn", word(r.ALPN)), opt("cert", word(r.ClientCert)))
	case KindAuth:
		w(r.Mechanism, r.Result)
		if r.Reason != "" {
			w("(" + r.Reason + ")")
		}
		w(opt("by", r.Authenticator), opt("as", word(r.Identity)), opt("issuer", word(r.TokenIssuer)))
		if r.Attempt > 0 {
			w("attempt " + strconv.Itoa(r.Attempt))
		}
		w(opt("backend", r.Backend))
	case KindCommand, KindPolicyDeny, KindPolicyWouldDeny:
		name := r.Command
		if r.UID {
			name = "UID " + name
		}
		w(word(r.Tag), name, r.Set, word(r.Mailbox))
		if r.Destination != "" {
			w("->", word(r.Destination))
		}
		if r.Fetch != "" {
			w("[" + r.Fetch + "]")
		}
		if r.StoreOp != "" {
			w(r.StoreOp, "("+strings.Join(r.Flags, " ")+")")
		}
		if r.Selected != "" && r.Mailbox == "" {
			w("in", word(r.Selected))
		}
		res := r.Result
		if r.Code != "" {
			res += " [" + r.Code + "]"
		}
		w("=>", res)
		if r.Duration > 0 {
			w(fmtDuration(r.Duration))
		}
		if r.Kind != KindCommand {
			w(opt("reason", quoted(r.Reason)), opt("revision", r.Revision))
		}
		if len(r.UIDs) > 0 {
			w("uids " + uidsText(r.UIDs, r.UIDCount))
		} else if r.Messages > 0 {
			w(plural(r.Messages, "message"))
		}
		if r.Unnamed > 0 {
			w(plural(r.Unnamed, "message") + " without UID")
			if len(r.UnnamedSeqs) > 0 {
				w("(seqs " + uidsText(r.UnnamedSeqs, r.Unnamed) + ")")
			}
		}
		if r.Expunged > 0 {
			w("expunged " + strconv.Itoa(r.Expunged))
			if len(r.ExpungedUIDs) > 0 {
				w("(uids " + uidsText(r.ExpungedUIDs, r.Expunged) + ")")
			}
		}
		if len(r.SharedWith) > 0 {
			w("shared with " + words(r.SharedWith, ","))
			if r.SharedCount > len(r.SharedWith) {
				w(fmt.Sprintf("(%d in all)", r.SharedCount))
			}
		}
		w(r.CodeArgs)
	case KindLimit:
		w(r.Limit, opt("by", word(r.LimitKey)), r.Event, opt("code", r.Code), opt("reason", quoted(r.Reason)))
		if r.Count > 0 {
			w(plural(int(min(r.Count, 1<<31)), "hit"))
		}
		if r.Delay > 0 {
			w("delay " + fmtDuration(r.Delay))
		}
	case KindSessionClose:
		w(r.Reason, "after "+fmtDuration(r.Duration), strconv.Itoa(r.Commands)+" commands",
			"in "+strconv.FormatInt(r.BytesIn, 10)+"B", "out "+strconv.FormatInt(r.BytesOut, 10)+"B")
		if r.Messages > 0 {
			w(plural(r.Messages, "message") + " read")
		}
		if r.OthersExpunged > 0 {
			w(plural(r.OthersExpunged, "message") + " expunged by others")
		}
	case KindReload:
		w(r.Event, r.Result, opt("revision", r.Revision), r.Detail)
	case KindAdmin:
		w(r.Event, r.Detail, r.Result, opt("by", word(r.Actor)), opt("scope", r.Scope))
	case KindAuditDropped:
		w(strconv.FormatUint(r.Count, 10)+" records lost", r.Reason)
	case KindAuditStart:
		w("chain "+r.Chain, opt("host", r.Host), opt("pid", strconv.Itoa(r.PID)), opt("software", r.Software))
		if r.Torn > 0 {
			w("cut " + strconv.FormatInt(r.Torn, 10) + " torn bytes")
		}
		if r.ResumedAt > 0 {
			w("resumed at checkpoint seq " + strconv.FormatUint(r.ResumedAt, 10))
		}
	default:
		w(r.Event, r.Backend, r.Server, r.Result, r.Limit, r.Reason, word(r.Subject), words(r.Names, ","), r.Detail)
	}
	return b.String()
}

func plural(n int, what string) string {
	if n == 1 {
		return "1 " + what
	}
	return strconv.Itoa(n) + " " + what + "s"
}

// word is a name from outside (a mailbox, a tag, a user) as the summary
// writes it: as is when it is one plain printable ASCII word that is not
// one of the summary's own tokens, else quoted, so that a mailbox named
// "X => NO" or "a,b" cannot read as another record's text.
func word(s string) string {
	switch s {
	case "":
		return ""
	case "->", "=>", "in", "-":
		return strconv.Quote(s)
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; c <= ' ' || c >= 0x7f || strings.IndexByte("\"\\()[],", c) >= 0 {
			return strconv.Quote(s)
		}
	}
	return s
}

// words joins names, each as word writes it.
func words(l []string, sep string) string {
	var b strings.Builder
	for i, s := range l {
		if i > 0 {
			b.WriteString(sep)
		}
		if s == "" {
			s = `""`
		} else {
			s = word(s)
		}
		b.WriteString(s)
	}
	return b.String()
}

func quoted(s string) string {
	if s == "" {
		return ""
	}
	return strconv.Quote(s)
}

func fmtDuration(d time.Duration) string {
	switch {
	case d >= time.Second:
		return d.Round(time.Millisecond).String()
	case d >= time.Millisecond:
		return d.Round(10 * time.Microsecond).String()
	}
	return d.String()
}

func uidsText(uids []uint32, total int) string {
	var b strings.Builder
	for i, u := range uids {
		if i > 0 {
			b.WriteByte(',')
		}
		if i == 20 {
			b.WriteString("...")
			break
		}
		b.WriteString(strconv.FormatUint(uint64(u), 10))
	}
	if total > len(uids) {
		b.WriteString(" (" + strconv.Itoa(total) + " in all)")
	}
	return b.String()
}
