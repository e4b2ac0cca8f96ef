package policy

import (
	"encoding/binary"
	"math/bits"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/open-policy-agent/opa/v1/ast"

	"github.com/imapwarden/imapwarden/proxy"
	"github.com/imapwarden/imapwarden/proxy/imapwire"
)

// The input document (README.md in policies/ is its reference) is built by
// hand as ast.Value, never through JSON, and only in the parts the loaded
// policies read: each field a policy may read is a slot. The same slots
// make the key of the decision cache, so that a decision is reused exactly
// when nothing it could have read has changed.

// slot is one field of the input document.
type slot uint8

const (
	slotPoint slot = iota

	slotSessionID
	slotListener
	slotClientIP
	slotClientPort
	slotLocalIP
	slotLocalPort
	slotTLS
	slotUser
	slotMechanism
	slotClientID
	slotGroups
	slotAuthenticator
	slotIdentity
	slotBackend
	slotAuthFailures
	slotStartedAt
	slotLimits
	slotDelimiter

	slotTag
	slotName
	slotUID
	slotMailbox
	slotMailboxRaw
	slotReference
	slotDestination
	slotDestinationRaw
	slotEffects
	slotAppendURLs
	slotSources
	slotPatterns
	slotMailboxes
	slotNotify
	slotACL
	slotQuota
	slotEnable
	slotEntries
	slotSelected
	slotSeqSet
	slotFetchItems
	slotStore
	slotLiteralBytes
	slotLiterals
	slotLiteral
	slotPartial
	slotComplete
	slotArgs

	slotNowRFC3339
	slotNowUnix
	slotNowWeekday
	slotNowHour
	slotNowMinute
	slotNowClock
	slotNowDate
	slotNowZone

	numSlots
)

// slotSet is a set of slots.
type slotSet uint64

func (s slotSet) has(x slot) bool { return s&(1<<x) != 0 }

// firstSlot is the lowest slot in s (numSlots when s is empty).
func firstSlot(s slotSet) slot {
	for x := slot(0); x < numSlots; x++ {
		if s.has(x) {
			return x
		}
	}
	return numSlots
}

func setOf(xs ...slot) slotSet {
	var s slotSet
	for _, x := range xs {
		s |= 1 << x
	}
	return s
}

func slotRange(from, to slot) slotSet {
	var s slotSet
	for x := from; x <= to; x++ {
		s |= 1 << x
	}
	return s
}

var (
	sessionSlots = slotRange(slotSessionID, slotDelimiter)
	commandSlots = slotRange(slotTag, slotArgs)
	nowSlots     = slotRange(slotNowRFC3339, slotNowZone)
	allSlots     = slotRange(0, numSlots-1)
)

// Top-level keys of the input document.
const (
	docPoint   = "point"
	docSession = "session"
	docCommand = "command"
	docNow     = "now"
)

// slotNames names each slot: its parent document and its key there.
var slotNames = [numSlots][2]string{
	slotPoint: {"", docPoint},

	slotSessionID:     {docSession, "id"},
	slotListener:      {docSession, "listener"},
	slotClientIP:      {docSession, "client_ip"},
	slotClientPort:    {docSession, "client_port"},
	slotLocalIP:       {docSession, "local_ip"},
	slotLocalPort:     {docSession, "local_port"},
	slotTLS:           {docSession, "tls"},
	slotUser:          {docSession, "user"},
	slotMechanism:     {docSession, "mechanism"},
	slotClientID:      {docSession, "client_id"},
	slotGroups:        {docSession, "groups"},
	slotAuthenticator: {docSession, "authenticator"},
	slotIdentity:      {docSession, "identity"},
	slotBackend:       {docSession, "backend"},
	slotAuthFailures:  {docSession, "auth_failures"},
	slotStartedAt:     {docSession, "started_at"},
	slotLimits:        {docSession, "limits"},
	slotDelimiter:     {docSession, "delimiter"},

	slotTag:            {docCommand, "tag"},
	slotName:           {docCommand, "name"},
	slotUID:            {docCommand, "uid"},
	slotMailbox:        {docCommand, "mailbox"},
	slotMailboxRaw:     {docCommand, "mailbox_raw"},
	slotReference:      {docCommand, "reference"},
	slotDestination:    {docCommand, "destination"},
	slotDestinationRaw: {docCommand, "destination_raw"},
	slotEffects:        {docCommand, "effects"},
	slotAppendURLs:     {docCommand, "append_urls"},
	slotSources:        {docCommand, "sources"},
	slotPatterns:       {docCommand, "patterns"},
	slotMailboxes:      {docCommand, "mailboxes"},
	slotNotify:         {docCommand, "notify"},
	slotACL:            {docCommand, "acl"},
	slotQuota:          {docCommand, "quota"},
	slotEnable:         {docCommand, "enable"},
	slotEntries:        {docCommand, "entries"},
	slotSelected:       {docCommand, "selected"},
	slotSeqSet:         {docCommand, "set"},
	slotFetchItems:     {docCommand, "fetch_items"},
	slotStore:          {docCommand, "store"},
	slotLiteralBytes:   {docCommand, "literal_bytes"},
	slotLiterals:       {docCommand, "literals"},
	slotLiteral:        {docCommand, "literal"},
	slotPartial:        {docCommand, "partial"},
	slotComplete:       {docCommand, "complete"},
	slotArgs:           {docCommand, "args"},

	slotNowRFC3339: {docNow, "rfc3339"},
	slotNowUnix:    {docNow, "unix"},
	slotNowWeekday: {docNow, "weekday"},
	slotNowHour:    {docNow, "hour"},
	slotNowMinute:  {docNow, "minute"},
	slotNowClock:   {docNow, "clock"},
	slotNowDate:    {docNow, "date"},
	slotNowZone:    {docNow, "zone"},
}

// kindNames are the argument kinds of input.command.args.
var kindNames = map[imapwire.ArgKind]string{
	imapwire.ArgAtom:    "atom",
	imapwire.ArgQuoted:  "quoted",
	imapwire.ArgLiteral: "literal",
	imapwire.ArgList:    "list",
}

// slotsOfRef returns the slots a reference into input may read: the slot
// it names, every slot under the document it names, or all of them when it
// names input itself or goes through a variable before reaching a slot.
// A reference to a field that does not exist reads nothing.
func slotsOfRef(ref ast.Ref) slotSet {
	if len(ref) < 2 {
		return allSlots
	}
	top, ok := ref[1].Value.(ast.String)
	if !ok {
		return allSlots
	}
	var under slotSet
	switch string(top) {
	case docPoint:
		return setOf(slotPoint)
	case docSession:
		under = sessionSlots
	case docCommand:
		under = commandSlots
	case docNow:
		under = nowSlots
	default:
		return 0
	}
	if len(ref) < 3 {
		return under
	}
	name, ok := ref[2].Value.(ast.String)
	if !ok {
		return under
	}
	for x := slot(0); x < numSlots; x++ {
		if under.has(x) && slotNames[x][1] == string(name) {
			return setOf(x)
		}
	}
	return 0
}

// inputCtx is what one decision is about.
type inputCtx struct {
	point   string
	s       *proxy.SessionInfo // never nil
	cmd     *imapwire.Command  // nil except at the command point
	ns      *imapwire.Names    // the backend's namespaces and user, for the effects' mailboxes; nil if none
	partial bool
	lit     *imapwire.Literal // announced at the decision point, or nil
	now     time.Time         // in the configured zone; zero unless a now slot is used
	zone    string
	groups  map[string][]string // lower-cased user → groups
	ids     idUse               // what policies read of the client ID
	// limitsFn gives the limiter's counters (input.session.limits); read
	// once, and only when a policy uses the slot.
	limitsFn func() map[string]int64
	limits   map[string]int64
	limitsOK bool
	// session, nowDoc and effects, when defined, are input.session,
	// input.now and input.command.effects already built (cached ones,
	// sealed: never modified).
	session, nowDoc, effects val
	// keys are the keys of those parts, within the decision's key (nil:
	// cachedDoc makes them).
	keys [numParts][]byte
	// sess is the session's part of the key (sessionkey.go), or nil.
	sess *sessionEntry
}

// sessionPart is the session's remembered part of the input, or nil.
func (c *inputCtx) sessionPart() *inputPart {
	if c.sess == nil {
		return nil
	}
	return c.sess.part
}

// inputPartKind names the parts of the input the engine remembers
// (cachedDoc).
type inputPartKind uint8

const (
	partSession inputPartKind = iota
	partNow
	partEffects
	numParts
)

func (c *inputCtx) sessionLimits() map[string]int64 {
	if !c.limitsOK && c.limitsFn != nil && c.s != &noSession {
		c.limits, c.limitsOK = c.limitsFn(), true
	}
	return c.limits
}

var noSession proxy.SessionInfo

func newInputCtx(point string, in *proxy.DecisionInput) inputCtx {
	c := inputCtx{point: point, s: in.Session, ns: in.Names, partial: in.Partial, lit: announcedLiteral(in)}
	if c.s == nil {
		c.s = &noSession
	}
	if in.Point == proxy.PointCommand {
		c.cmd = in.Command
	}
	if in.Limits != nil {
		c.limitsFn = in.Limits.Snapshot
	}
	return c
}

// appendKey appends slot x's value to a cache key. Every variable-length
// part is length-prefixed so that two different inputs never make one key.
func (c *inputCtx) appendKey(b []byte, x slot) []byte {
	b = append(b, byte(x))
	s := c.s
	switch x {
	case slotPoint:
		return appendStr(b, c.point)
	case slotSessionID:
		return appendStr(b, s.ID)
	case slotListener:
		return appendStr(b, s.Listener)
	// An address slot's key holds the address and a port slot's the port,
	// each alone: keyed by both, every connection of one client (a new
	// source port each) would remember its own input.session and
	// decisions, though no policy reading only client_ip can tell them
	// apart.
	case slotClientIP:
		return appendAddr(b, s.ClientAddr)
	case slotClientPort:
		return appendPort(b, s.ClientAddr)
	case slotLocalIP:
		return appendAddr(b, s.LocalAddr)
	case slotLocalPort:
		return appendPort(b, s.LocalAddr)
	case slotTLS:
		t := s.TLS
		if t == nil {
			return append(b, 0)
		}
		b = append(b, 1)
		b = appendStr(b, t.Version)
		b = appendStr(b, t.Cipher)
		b = appendStr(b, t.ServerName)
		b = appendStr(b, t.ALPN)
		b = appendStr(b, t.ClientCertSubject)
		b = appendBool(b, t.ClientCertVerified)
		b = binary.AppendUvarint(b, uint64(len(t.ClientCertSANs)))
		for _, san := range t.ClientCertSANs {
			b = appendStr(b, san)
		}
		return b
	case slotUser:
		return appendStr(b, s.User)
	case slotGroups:
		// The groups file's are a function of the user within one state
		// (a groups change makes a new state with an empty cache); the
		// directory's come with the identity.
		b = appendStr(b, s.User)
		if s.Identity == nil {
			return append(b, 0)
		}
		return appendStrs(append(b, 1), s.Identity.Groups)
	case slotAuthenticator:
		if s.Identity == nil {
			return append(b, 0)
		}
		return appendStr(append(b, 1), s.Identity.Authenticator)
	case slotIdentity:
		id := s.Identity
		if id == nil {
			return append(b, 0)
		}
		b = append(b, 1)
		for _, v := range [...]string{id.Authenticator, id.User, id.Issuer, id.ClientID, id.Route} {
			b = appendStr(b, v)
		}
		b = appendStrs(b, id.Groups)
		// Scopes absent and empty are two values (identityVal).
		b = appendStrs(appendBool(b, id.Scopes != nil), id.Scopes)
		return appendSortedMap(b, id.Attributes, appendStr)
	case slotMechanism:
		return appendStr(b, s.Mechanism)
	case slotClientID:
		if !c.ids.all {
			for _, k := range c.ids.keys {
				v, ok := s.ClientID[k]
				b = appendBool(b, ok)
				b = appendStr(b, v)
			}
			return b
		}
		return appendClientID(b, s.ClientID)
	case slotBackend:
		return appendStr(b, s.Backend)
	case slotAuthFailures:
		return binary.AppendVarint(b, int64(s.AuthFailures))
	case slotLimits:
		return appendSortedMap(b, c.sessionLimits(), binary.AppendVarint)
	case slotStartedAt:
		return binary.AppendVarint(b, s.Started.UnixNano())
	case slotDelimiter:
		return appendStr(b, s.Delimiter)
	case slotSelected:
		b = appendStr(b, s.Selected)
		return appendBool(b, s.SelectedReadOnly)
	case slotNowRFC3339, slotNowUnix:
		return binary.AppendVarint(b, c.now.Unix())
	case slotNowWeekday, slotNowDate:
		y, m, d := c.now.Date()
		return binary.AppendVarint(b, int64(y)<<9|int64(m)<<5|int64(d))
	case slotNowHour:
		return append(b, byte(c.now.Hour()))
	case slotNowMinute:
		return append(b, byte(c.now.Minute()))
	case slotNowClock:
		return append(b, byte(c.now.Hour()), byte(c.now.Minute()))
	case slotNowZone:
		return b // one zone per engine
	}
	cmd := c.cmd
	if cmd == nil {
		return append(b, 0)
	}
	b = append(b, 1)
	switch x {
	case slotTag:
		return appendStr(b, cmd.Tag)
	case slotName:
		return appendStr(b, cmd.Name)
	case slotUID:
		return appendBool(b, cmd.UID)
	case slotMailbox:
		return appendStr(b, cmd.Mailbox)
	case slotMailboxRaw:
		return appendStr(b, cmd.MailboxRaw)
	case slotReference:
		return appendStr(b, cmd.Reference)
	case slotDestination:
		return appendStr(b, cmd.Destination)
	case slotDestinationRaw:
		return appendStr(b, cmd.DestinationRaw)
	case slotEffects:
		// The effects and the mailboxes they resolve to (the selected
		// one may have changed since the last decision).
		e := &cmd.Effects
		b = binary.AppendUvarint(b, uint64(e.Len()))
		for i := 0; i < e.Len(); i++ {
			eo := e.At(i)
			b = append(b, byte(eo.Effect), byte(eo.Target))
			if eo.Target == imapwire.TargetSources {
				b = appendStrs(b, cmd.Sources())
				for _, src := range cmd.Sources() {
					b = appendWhere(b, c.ns, src)
				}
				continue
			}
			mb := effectMailbox(s, cmd, eo.Target)
			b = appendStr(b, mb)
			b = appendWhere(b, c.ns, mb)
		}
		return b
	case slotAppendURLs:
		return binary.AppendUvarint(b, uint64(cmd.AppendURLs))
	case slotSources:
		return appendStrs(b, cmd.Sources())
	case slotPatterns:
		return appendStrs(b, cmd.Patterns())
	case slotMailboxes:
		return appendStrs(b, cmd.Mailboxes())
	case slotNotify:
		// A selected filter names the selected mailbox (notifyVal).
		b = appendStr(b, s.Selected)
		b = binary.AppendUvarint(b, uint64(len(cmd.NotifyFilters())))
		for i := range cmd.NotifyFilters() {
			b = appendStr(b, cmd.NotifyFilters()[i].Filter)
			b = appendStrs(b, cmd.NotifyFilters()[i].Mailboxes)
		}
		return b
	case slotACL:
		b = appendStr(b, cmd.Name)
		b = appendStr(b, cmd.Extra().Identifier)
		b = appendBool(b, cmd.Complete)
		return appendStr(b, cmd.Extra().Rights)
	case slotQuota:
		b = appendStr(b, cmd.Name)
		b = appendStr(b, cmd.Extra().QuotaRoot)
		b = binary.AppendUvarint(b, uint64(len(cmd.Extra().Quota)))
		for _, q := range cmd.Extra().Quota {
			b = appendStr(b, q.Resource)
			b = binary.AppendUvarint(b, q.Limit)
		}
		return b
	case slotEnable:
		return appendStrs(appendBool(b, cmd.Name == "ENABLE"), cmd.Extra().Enable)
	case slotEntries:
		return appendStrs(appendBool(b, cmd.Name == "SETMETADATA"), cmd.Extra().Entries)
	case slotSeqSet:
		b = appendStr(b, cmd.Set)
		return binary.AppendVarint(b, cmd.SetCount)
	case slotFetchItems:
		b = binary.AppendUvarint(b, uint64(len(cmd.FetchItems)))
		for _, f := range cmd.FetchItems {
			b = appendStr(b, f)
		}
		return b
	case slotStore:
		b = appendStr(b, cmd.StoreOp)
		b = binary.AppendUvarint(b, uint64(len(cmd.StoreFlags)))
		for _, f := range cmd.StoreFlags {
			b = appendStr(b, f)
		}
		return b
	case slotLiteralBytes, slotLiteral:
		b = binary.AppendVarint(b, cmd.LiteralBytes)
		if c.lit == nil {
			return append(b, 0)
		}
		b = append(b, 1)
		b = binary.AppendVarint(b, c.lit.Size)
		b = appendBool(b, c.lit.NonSync)
		return appendBool(b, c.lit.Binary)
	case slotLiterals:
		return binary.AppendUvarint(b, uint64(cmd.Literals))
	case slotPartial:
		return appendBool(b, c.partial)
	case slotComplete:
		return appendBool(b, cmd.Complete)
	case slotArgs:
		b = binary.AppendUvarint(b, uint64(len(cmd.Args)))
		for i := range cmd.Args {
			a := &cmd.Args[i]
			b = append(b, byte(a.Kind))
			b = binary.AppendVarint(b, argSize(a))
		}
		return b
	}
	return b
}

// appendSlots appends the key of the slots in uses, in their order.
func (c *inputCtx) appendSlots(b []byte, uses slotSet) []byte {
	for ; uses != 0; uses &= uses - 1 {
		b = c.appendKey(b, slot(bits.TrailingZeros64(uint64(uses))))
	}
	return b
}

// appendDecisionKey is appendSlots, noting in c.keys where the keys of
// the parts the engine remembers (cachedDoc) are within it: the same
// slots' keys in the same order (the point, the session's, the
// command's, input.now's). With a session entry (c.sess) the session's
// part is the entry's (sessionEntry.appendKey), made once per session.
func (c *inputCtx) appendDecisionKey(b []byte, uses slotSet) []byte {
	below := setOf(slotEffects) - 1 // the slots before effects
	b = c.appendSlots(b, uses&setOf(slotPoint))
	s0 := len(b)
	if c.sess != nil {
		b = c.sess.appendKey(b)
	} else {
		b = c.appendSlots(b, uses&sessionSlots)
	}
	s1 := len(b)
	b = c.appendSlots(b, uses&commandSlots&below)
	e0 := len(b)
	b = c.appendSlots(b, uses&setOf(slotEffects))
	e1 := len(b)
	b = c.appendSlots(b, uses&commandSlots&^below&^setOf(slotEffects))
	n0 := len(b)
	b = c.appendSlots(b, uses&nowSlots)
	c.keys = [numParts][]byte{partSession: b[s0:s1], partNow: b[n0:], partEffects: b[e0:e1]}
	if c.sess != nil {
		c.keys[partSession] = c.sess.key
	}
	return b
}

func appendStr(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

func appendStrs(b []byte, ss []string) []byte {
	b = binary.AppendUvarint(b, uint64(len(ss)))
	for _, s := range ss {
		b = appendStr(b, s)
	}
	return b
}

// appendSortedMap appends m sorted by key (map order is random).
func appendSortedMap[V any](b []byte, m map[string]V, appendV func([]byte, V) []byte) []byte {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	b = binary.AppendUvarint(b, uint64(len(keys)))
	for _, k := range keys {
		b = appendStr(b, k)
		b = appendV(b, m[k])
	}
	return b
}

func appendBool(b []byte, v bool) []byte {
	if v {
		return append(b, 1)
	}
	return append(b, 0)
}

// appendAddr keys what addrVal makes of ap: nothing when it is invalid,
// else the unmapped address with its zone.
func appendAddr(b []byte, ap netip.AddrPort) []byte {
	if !ap.IsValid() {
		return append(b, 0)
	}
	a := ap.Addr().Unmap()
	a16 := a.As16()
	b = append(b, 1)
	b = append(b, a16[:]...)
	return appendStr(b, a.Zone())
}

// appendPort keys what portVal makes of ap.
func appendPort(b []byte, ap netip.AddrPort) []byte {
	if !ap.IsValid() {
		return append(b, 0)
	}
	return binary.AppendUvarint(append(b, 1), uint64(ap.Port()))
}

// appendClientID appends the ID parameters sorted by key (map order is
// random).
func appendClientID(b []byte, id map[string]string) []byte {
	b = binary.AppendUvarint(b, uint64(len(id)))
	if len(id) == 0 {
		return b
	}
	var buf [32]string
	keys := buf[:0]
	for k := range id {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		b = appendStr(b, k)
		b = appendStr(b, id[k])
	}
	return b
}

// argSize is what the redacted summary tells of an argument's size: bytes
// of a string or literal, elements of a list.
func argSize(a *imapwire.Arg) int64 {
	switch a.Kind {
	case imapwire.ArgList:
		return int64(len(a.List))
	case imapwire.ArgLiteral:
		return a.Size
	}
	return int64(len(a.Value))
}

// build makes the input document with the slots in uses as an OPA term,
// for topdown.
func (c *inputCtx) build(uses slotSet) *ast.Term { return toAST(c.flat(uses, nil)) }

// flat makes the input document with the slots in uses, its collections
// from m's arena (nil: the heap).
func (c *inputCtx) flat(uses slotSet, m *machine) val {
	// In the order of the keys, appended: command, now, point, session.
	top := mk(m, kObj, 4)
	if uses&commandSlots != 0 && c.cmd != nil {
		top.c.appendKV(vStr(docCommand), c.object(uses&commandSlots, m))
	}
	if uses&nowSlots != 0 {
		n := c.nowDoc
		if n.k == kUndef {
			n = c.object(uses&nowSlots, m)
		}
		top.c.appendKV(vStr(docNow), n)
	}
	if uses.has(slotPoint) {
		top.c.appendKV(vStr(docPoint), vStr(c.point))
	}
	if uses&sessionSlots != 0 {
		s := c.session
		if s.k == kUndef {
			s = c.object(uses&sessionSlots, m)
		}
		top.c.appendKV(vStr(docSession), s)
	}
	return top
}

// mk makes an empty collection of n elements, from m's arena or (m nil)
// the heap.
func mk(m *machine, k vkind, n int) val {
	if m != nil {
		return m.newVal(k, n)
	}
	c := &coll{}
	if k == kArr {
		c.vals = make([]val, 0, n)
	} else {
		c.keys = make([]val, 0, n)
		if k == kObj {
			c.vals = make([]val, 0, n)
		}
	}
	return val{k: k, c: c}
}

// slotsByName are the slots in the order of their keys, and slotRank
// each slot's place there: an object built in that order is appended to,
// never searched and shifted (coll.appendKV).
var slotsByName, slotRank = func() ([]slot, [numSlots]uint8) {
	xs := make([]slot, numSlots)
	for x := range xs {
		xs[x] = slot(x)
	}
	slices.SortFunc(xs, func(a, b slot) int { return strings.Compare(slotNames[a][1], slotNames[b][1]) })
	var rank [numSlots]uint8
	for i, x := range xs {
		rank[x] = uint8(i)
	}
	return xs, rank
}()

// object builds one second-level document from its slots in uses, in
// the order of their names: uses's slots are mapped to their ranks, whose
// set is walked in order, rather than every slot tested.
func (c *inputCtx) object(uses slotSet, m *machine) val {
	obj := mk(m, kObj, 16)
	var ranks uint64
	for u := uses; u != 0; u &= u - 1 {
		ranks |= 1 << slotRank[bits.TrailingZeros64(uint64(u))]
	}
	for ; ranks != 0; ranks &= ranks - 1 {
		x := slotsByName[bits.TrailingZeros64(ranks)]
		if v := c.flatValue(x, m); v.k != kUndef {
			obj.c.appendKV(vStr(slotNames[x][1]), v)
		}
	}
	return obj
}

// value returns slot x's value as an OPA term, or nil when the field is
// absent.
func (c *inputCtx) value(x slot) *ast.Term { return toAST(c.flatValue(x, nil)) }

// kv is a key and its value.
type kv struct {
	k string
	v val
}

// items makes an object of kvs, those with an undefined value left out;
// kvs in the keys' order are appended (coll.insert), cheaper than inserted.
func items(m *machine, kvs ...kv) val {
	obj := mk(m, kObj, len(kvs))
	for _, e := range kvs {
		if e.v.k != kUndef {
			obj.c.insert(vStr(e.k), e.v, false)
		}
	}
	return obj
}

// flatValue returns slot x's value, or undefined when the field is absent
// (Rego: undefined): tls before TLS, mailbox for commands without one, ...
func (c *inputCtx) flatValue(x slot, m *machine) val {
	s := c.s
	switch x {
	case slotSessionID:
		return vStr(s.ID)
	case slotListener:
		return vStr(s.Listener)
	case slotClientIP:
		return addrVal(s.ClientAddr)
	case slotClientPort:
		return portVal(s.ClientAddr)
	case slotLocalIP:
		return addrVal(s.LocalAddr)
	case slotLocalPort:
		return portVal(s.LocalAddr)
	case slotTLS:
		t := s.TLS
		if t == nil {
			return val{}
		}
		obj := items(m, kv{"alpn", vStr(t.ALPN)}, kv{"cipher", vStr(t.Cipher)}, kv{"sni", vStr(t.ServerName)}, kv{"version", vStr(t.Version)})
		if t.ClientCertSubject != "" {
			obj.c.insert(vStr("client_cert"), vStr(t.ClientCertSubject), false)
			obj.c.insert(vStr("client_cert_sans"), stringsVal(m, t.ClientCertSANs), false)
			obj.c.insert(vStr("client_cert_verified"), vBool(t.ClientCertVerified), false)
		}
		return obj
	case slotUser:
		return vStr(s.User)
	case slotMechanism:
		return vStr(s.Mechanism)
	case slotClientID:
		obj := mk(m, kObj, len(s.ClientID))
		if !c.ids.all {
			for _, k := range c.ids.keys {
				if v, ok := s.ClientID[k]; ok {
					obj.c.insert(vStr(k), vStr(v), false)
				}
			}
			return obj
		}
		for k, v := range s.ClientID {
			obj.c.insert(vStr(k), vStr(v), false)
		}
		return obj
	case slotGroups:
		return stringsVal(m, c.sessionGroups())
	case slotAuthenticator:
		if s.Identity == nil {
			return val{}
		}
		return vStr(s.Identity.Authenticator)
	case slotIdentity:
		return identityVal(m, s.Identity)
	case slotBackend:
		return vStr(s.Backend)
	case slotAuthFailures:
		return vInt(int64(s.AuthFailures))
	case slotLimits:
		lim := c.sessionLimits()
		if lim == nil {
			return val{}
		}
		obj := mk(m, kObj, len(lim))
		for k, v := range lim {
			obj.c.insert(vStr(k), vInt(v), false)
		}
		return obj
	case slotStartedAt:
		if s.Started.IsZero() {
			return val{}
		}
		return vStr(s.Started.In(c.now.Location()).Format(time.RFC3339))
	case slotDelimiter:
		return optStr(s.Delimiter)
	case slotSelected:
		if s.Selected == "" {
			return val{}
		}
		return items(m, kv{"mailbox", vStr(s.Selected)}, kv{"read_only", vBool(s.SelectedReadOnly)})
	case slotNowRFC3339:
		return vStr(c.now.Format(time.RFC3339))
	case slotNowUnix:
		return vInt(c.now.Unix())
	case slotNowWeekday:
		return vStr(c.now.Weekday().String())
	case slotNowHour:
		return vInt(int64(c.now.Hour()))
	case slotNowMinute:
		return vInt(int64(c.now.Minute()))
	case slotNowClock:
		// "HH:MM": zero-padded, so that policies compare times as strings.
		return vStr(c.now.Format("15:04"))
	case slotNowDate:
		return vStr(c.now.Format(time.DateOnly))
	case slotNowZone:
		return vStr(c.zone)
	}
	cmd := c.cmd
	if cmd == nil {
		return val{}
	}
	switch x {
	case slotTag:
		return vStr(cmd.Tag)
	case slotName:
		return vStr(cmd.Name)
	case slotUID:
		return vBool(cmd.UID)
	// Mailbox names are as the proxy's parser made them canonical
	// (imapwire.Context.Canonical: decoded, INBOX folded), absent when
	// empty.
	case slotMailbox:
		return optStr(cmd.Mailbox)
	case slotMailboxRaw:
		return optStr(cmd.MailboxRaw)
	case slotReference:
		return optStr(cmd.Reference)
	case slotDestination:
		return optStr(cmd.Destination)
	case slotDestinationRaw:
		return optStr(cmd.DestinationRaw)
	case slotEffects:
		if c.effects.k != kUndef {
			return c.effects
		}
		return effectsVal(m, s, c.ns, cmd)
	case slotAppendURLs:
		if cmd.Name != "APPEND" {
			return val{}
		}
		return vInt(int64(cmd.AppendURLs))
	case slotSources:
		if cmd.Name != "APPEND" {
			return val{}
		}
		return stringsVal(m, cmd.Sources())
	case slotPatterns:
		if cmd.Name != "LIST" && cmd.Name != "LSUB" {
			return val{}
		}
		return stringsVal(m, cmd.Patterns())
	case slotMailboxes:
		if cmd.Name != "NOTIFY" {
			return val{}
		}
		return stringsVal(m, cmd.Mailboxes())
	case slotNotify:
		if cmd.Name != "NOTIFY" {
			return val{}
		}
		return notifyVal(m, s, cmd)
	case slotACL:
		return aclVal(m, cmd)
	case slotQuota:
		return quotaVal(m, cmd)
	case slotEnable:
		if cmd.Name != "ENABLE" {
			return val{}
		}
		return stringsVal(m, cmd.Extra().Enable)
	case slotEntries:
		if cmd.Name != "SETMETADATA" {
			return val{}
		}
		return stringsVal(m, cmd.Extra().Entries)
	case slotSeqSet:
		if cmd.Set == "" {
			return val{}
		}
		obj := items(m, kv{"text", vStr(cmd.Set)})
		if cmd.SetCount >= 0 {
			obj.c.insert(vStr("count"), vInt(cmd.SetCount), false)
		}
		return obj
	case slotFetchItems:
		if len(cmd.FetchItems) == 0 {
			return val{}
		}
		return stringsVal(m, cmd.FetchItems)
	case slotStore:
		if cmd.StoreOp == "" {
			return val{}
		}
		op, silent := strings.CutSuffix(cmd.StoreOp, ".SILENT")
		return items(m, kv{"flags", stringsVal(m, cmd.StoreFlags)}, kv{"op", vStr(op)}, kv{"silent", vBool(silent)})
	case slotLiteralBytes:
		n := cmd.LiteralBytes
		if c.lit != nil && c.lit.Size > 0 {
			n = satAdd(n, c.lit.Size)
		}
		return vInt(n)
	case slotLiterals:
		return vInt(int64(cmd.Literals))
	case slotLiteral:
		if c.lit == nil {
			return val{}
		}
		return items(m, kv{"binary", vBool(c.lit.Binary)}, kv{"size", vInt(c.lit.Size)}, kv{"sync", vBool(!c.lit.NonSync)})
	case slotPartial:
		return vBool(c.partial)
	case slotComplete:
		return vBool(cmd.Complete)
	case slotArgs:
		// A redacted summary: kinds and sizes, never content (search
		// text, small literals and ID values could be secrets).
		arr := mk(m, kArr, len(cmd.Args))
		for i := range cmd.Args {
			a := &cmd.Args[i]
			kind, ok := kindNames[a.Kind]
			if !ok {
				kind = a.Kind.String()
			}
			arr.c.vals = append(arr.c.vals, items(m, kv{"kind", vStr(kind)}, kv{"size", vInt(argSize(a))}))
		}
		return arr
	}
	return val{}
}

// sessionGroups are the user's groups: the groups file's and the
// directory's (Identity.Groups), sorted, each once.
func (c *inputCtx) sessionGroups() []string {
	file := c.groups[proxy.FoldUser(c.s.User)]
	if c.s.Identity == nil || len(c.s.Identity.Groups) == 0 {
		return file
	}
	all := append(slices.Clone(file), c.s.Identity.Groups...)
	slices.Sort(all)
	return slices.Compact(all)
}

// identityVal is input.session.identity: who the authenticator verified,
// with only the fields it set (README.md in policies/).
func identityVal(m *machine, id *proxy.Identity) val {
	if id == nil {
		return val{}
	}
	obj := items(m, kv{"authenticator", optStr(id.Authenticator)}, kv{"user", optStr(id.User)},
		kv{"groups", stringsVal(m, id.Groups)}, kv{"issuer", optStr(id.Issuer)}, kv{"client_id", optStr(id.ClientID)},
		kv{"route", optStr(id.Route)})
	if id.Scopes != nil {
		obj.c.insert(vStr("scopes"), stringsVal(m, id.Scopes), false)
	}
	if len(id.Attributes) > 0 {
		attrs := mk(m, kObj, len(id.Attributes))
		for k, v := range id.Attributes {
			attrs.c.insert(vStr(k), vStr(v), false)
		}
		obj.c.insert(vStr("attributes"), attrs, false)
	}
	return obj
}

// optStr is a string, absent when empty.
func optStr(s string) val {
	if s == "" {
		return val{}
	}
	return vStr(s)
}

func satAdd(a, b int64) int64 {
	if a > (1<<63-1)-b {
		return 1<<63 - 1
	}
	return a + b
}

func addrVal(ap netip.AddrPort) val {
	if !ap.IsValid() {
		return val{}
	}
	// Unmapped, so that "::ffff:192.0.2.1" from a dual-stack listener
	// matches IPv4 networks.
	return vStr(ap.Addr().Unmap().String())
}

func portVal(ap netip.AddrPort) val {
	if !ap.IsValid() {
		return val{}
	}
	return vInt(int64(ap.Port()))
}

func stringsVal(m *machine, ss []string) val {
	arr := mk(m, kArr, len(ss))
	for _, s := range ss {
		arr.c.vals = append(arr.c.vals, vStr(s))
	}
	return arr
}

// effectNames and targetNames name effects and targets in the input.
var (
	effectNames = func() map[imapwire.Effect]string {
		m := map[imapwire.Effect]string{}
		for _, n := range imapwire.EffectNames() {
			e, _ := imapwire.EffectByName(n)
			m[e] = n
		}
		return m
	}()
	targetNames = [...]string{
		imapwire.TargetNone:        "session",
		imapwire.TargetSelected:    "selected",
		imapwire.TargetMailbox:     "mailbox",
		imapwire.TargetDestination: "destination",
		imapwire.TargetAny:         "any",
		imapwire.TargetSources:     "source",
	}
)

// effectMailbox is the mailbox an effect is on ("" for none).
func effectMailbox(s *proxy.SessionInfo, cmd *imapwire.Command, t imapwire.Target) string {
	switch t {
	case imapwire.TargetSelected:
		return s.Selected
	case imapwire.TargetMailbox:
		return cmd.Mailbox
	case imapwire.TargetDestination:
		return cmd.Destination
	}
	return ""
}

// effectsVal is input.command.effects: what the command does, each
// {"kind", "target", "mailbox"} (policies/README.md), from the one table
// of proxy/imapwire (ARCHITECTURE.md §10: decide on effects, not on names),
// with the mailbox's "namespace" (personal, other, shared; absent when the
// backend announced none that holds it) and, in another user's namespace,
// its "owner" and "owner_mailbox", the owner's own name for it (RFC 2342).
func effectsVal(m *machine, s *proxy.SessionInfo, ns *imapwire.Names, cmd *imapwire.Command) val {
	e := &cmd.Effects
	arr := mk(m, kArr, e.Len()+len(cmd.Sources()))
	for i := range e.Len() {
		eo := e.At(i)
		if eo.Target == imapwire.TargetSources {
			// One effect per mailbox a CATENATE URL reads, so that
			// policies match e.mailbox as for any other effect.
			for _, src := range cmd.Sources() {
				arr.c.vals = append(arr.c.vals, effectVal(m, eo, src, ns))
			}
			continue
		}
		arr.c.vals = append(arr.c.vals, effectVal(m, eo, effectMailbox(s, cmd, eo.Target), ns))
	}
	return arr
}

// effectVal is one effect on mailbox mb (policies/README.md), with its
// namespace, owner and owner_mailbox where the backend's namespaces say.
func effectVal(m *machine, eo imapwire.EffectOn, mb string, ns *imapwire.Names) val {
	w := where(ns, mb)
	return items(m, kv{"kind", vStr(effectNames[eo.Effect])},
		kv{"target", vStr(targetNames[eo.Target])}, kv{"mailbox", optStr(mb)},
		kv{"namespace", optStr(w.Kind.String())}, kv{"owner", optStr(w.Owner)}, kv{"owner_mailbox", optStr(w.OwnerName)})
}

// where is what the namespaces say of mailbox mb. A name whose owner has
// no one login reading was refused before any decision (imapwire.
// ErrOwnerUnread); were one to come, its owner is absent and its
// owner_mailbox too, so no policy reads an owner the backend does not.
func where(ns *imapwire.Names, mb string) imapwire.NameInfo {
	if mb == "" {
		return imapwire.NameInfo{}
	}
	w, _ := ns.Where(mb)
	return w
}

// appendWhere appends what the namespaces say of mailbox mb to a key: the
// same name is another mailbox on another backend.
func appendWhere(b []byte, ns *imapwire.Names, mb string) []byte {
	w := where(ns, mb)
	b = append(b, byte(w.Kind))
	b = appendStr(b, w.Owner)
	return appendStr(b, w.OwnerName)
}

// notifyVal is input.command.notify: NOTIFY SET's event groups, each
// {"filter", "mailboxes"} (RFC 5465 §6); a selected filter names the
// selected mailbox, when one is.
func notifyVal(m *machine, s *proxy.SessionInfo, cmd *imapwire.Command) val {
	arr := mk(m, kArr, len(cmd.NotifyFilters()))
	for i := range cmd.NotifyFilters() {
		f := &cmd.NotifyFilters()[i]
		boxes := f.Mailboxes
		if (f.Filter == "selected" || f.Filter == "selected-delayed") && s.Selected != "" {
			boxes = []string{s.Selected}
		}
		obj := items(m, kv{"filter", vStr(f.Filter)})
		if len(boxes) > 0 {
			obj.c.insert(vStr("mailboxes"), stringsVal(m, boxes), false)
		}
		arr.c.vals = append(arr.c.vals, obj)
	}
	return arr
}

// aclVal is input.command.acl of SETACL, DELETEACL and LISTRIGHTS
// (policies/README.md): the identifier as sent, the grantee (the
// identifier without the "-" of negative rights, RFC 4314 §2) and
// negative; for SETACL the rights without their modifier and the mode
// it says ("replace", "add" or "remove", RFC 4314 §3.1), for DELETEACL
// the mode "delete". Absent until the identifier is known.
func aclVal(m *machine, cmd *imapwire.Command) val {
	n := cmd.Extra()
	if n.Identifier == "" {
		return val{}
	}
	grantee, negative := strings.CutPrefix(n.Identifier, "-")
	var mode, rights val // undefined unless known
	switch cmd.Name {
	case "SETACL":
		if !cmd.Complete && n.Rights == "" {
			break // the rights are not known yet (a literal identifier's decision)
		}
		md, r := "replace", n.Rights
		if r != "" && r[0] == '+' {
			md, r = "add", r[1:]
		} else if r != "" && r[0] == '-' {
			md, r = "remove", r[1:]
		}
		mode, rights = vStr(md), vStr(r)
	case "DELETEACL":
		mode = vStr("delete")
	}
	// In the keys' order: each is appended, none inserted (coll.insert).
	return items(m, kv{"grantee", vStr(grantee)}, kv{"identifier", vStr(n.Identifier)}, kv{"mode", mode},
		kv{"negative", vBool(negative)}, kv{"rights", rights})
}

// quotaVal is input.command.quota of GETQUOTA and SETQUOTA
// (policies/README.md): the root as sent and, for SETQUOTA, the limits by
// resource name, upper case (RFC 9208 §4.1; "STORAGE" in KiB).
func quotaVal(m *machine, cmd *imapwire.Command) val {
	n := cmd.Extra()
	if cmd.Name != "SETQUOTA" && cmd.Name != "GETQUOTA" {
		return val{}
	}
	obj := items(m, kv{"root", vStr(n.QuotaRoot)})
	if cmd.Name == "SETQUOTA" {
		lim := mk(m, kObj, len(n.Quota))
		for _, q := range n.Quota {
			lim.c.insert(vStr(q.Resource), vInt(int64(min(q.Limit, 1<<63-1))), false)
		}
		obj.c.insert(vStr("limits"), lim, false)
	}
	return obj
}
