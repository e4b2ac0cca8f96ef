package policy

import (
	"encoding/binary"
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

// Key terms, made once: the input of every evaluation shares them (OPA
// never modifies an input).
var (
	slotKeys   [numSlots]*ast.Term
	docKeys    = map[string]*ast.Term{}
	termKind   = ast.StringTerm("kind")
	termSize   = ast.StringTerm("size")
	termText   = ast.StringTerm("text")
	termCount  = ast.StringTerm("count")
	termOp     = ast.StringTerm("op")
	termSilent = ast.StringTerm("silent")
	termFlags  = ast.StringTerm("flags")
	termSync   = ast.StringTerm("sync")
	termBinary = ast.StringTerm("binary")
	termMbox   = ast.StringTerm("mailbox")
	termRO     = ast.StringTerm("read_only")
	termVer    = ast.StringTerm("version")
	termCipher = ast.StringTerm("cipher")
	termSNI    = ast.StringTerm("sni")
	termALPN   = ast.StringTerm("alpn")
	termCert   = ast.StringTerm("client_cert")
	kindTerms  = map[imapwire.ArgKind]*ast.Term{
		imapwire.ArgAtom:    ast.StringTerm("atom"),
		imapwire.ArgQuoted:  ast.StringTerm("quoted"),
		imapwire.ArgLiteral: ast.StringTerm("literal"),
		imapwire.ArgList:    ast.StringTerm("list"),
	}
)

func init() {
	for i, n := range slotNames {
		slotKeys[i] = ast.StringTerm(n[1])
	}
	for _, d := range []string{docPoint, docSession, docCommand, docNow} {
		docKeys[d] = ast.StringTerm(d)
	}
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
	// session, nowDoc and effects, when set, are input.session,
	// input.now and input.command.effects already built (cached ones:
	// never modified).
	session, nowDoc, effects *ast.Term
}

func (c *inputCtx) sessionLimits() map[string]int64 {
	if !c.limitsOK && c.limitsFn != nil && c.s != &noSession {
		c.limits, c.limitsOK = c.limitsFn(), true
	}
	return c.limits
}

var noSession proxy.SessionInfo

func newInputCtx(point string, in *proxy.DecisionInput) inputCtx {
	c := inputCtx{point: point, s: in.Session, partial: in.Partial, lit: announcedLiteral(in)}
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
		b = appendStrs(b, id.Scopes)
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
			b = appendStr(b, effectMailbox(s, cmd, eo.Target))
		}
		return b
	case slotAppendURLs:
		return binary.AppendUvarint(b, uint64(cmd.AppendURLs))
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

// appendAddr keys what addrTerm makes of ap: nothing when it is invalid,
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

// appendPort keys what portTerm makes of ap.
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

// build makes the input document with the slots in uses.
func (c *inputCtx) build(uses slotSet) *ast.Term {
	top := make([][2]*ast.Term, 0, 4)
	if uses.has(slotPoint) {
		top = append(top, ast.Item(docKeys[docPoint], ast.StringTerm(c.point)))
	}
	if uses&sessionSlots != 0 {
		s := c.session
		if s == nil {
			s = c.object(uses & sessionSlots)
		}
		top = append(top, ast.Item(docKeys[docSession], s))
	}
	if uses&commandSlots != 0 && c.cmd != nil {
		top = append(top, ast.Item(docKeys[docCommand], c.object(uses&commandSlots)))
	}
	if uses&nowSlots != 0 {
		n := c.nowDoc
		if n == nil {
			n = c.object(uses & nowSlots)
		}
		top = append(top, ast.Item(docKeys[docNow], n))
	}
	return ast.NewTerm(ast.NewObject(top...))
}

// object builds one second-level document from its slots in uses.
func (c *inputCtx) object(uses slotSet) *ast.Term {
	items := make([][2]*ast.Term, 0, 16)
	for x := slot(0); x < numSlots; x++ {
		if !uses.has(x) {
			continue
		}
		if v := c.value(x); v != nil {
			items = append(items, ast.Item(slotKeys[x], v))
		}
	}
	return ast.NewTerm(ast.NewObject(items...))
}

// value returns slot x's value, or nil when the field is absent (Rego:
// undefined): tls before TLS, mailbox for commands without one, ...
func (c *inputCtx) value(x slot) *ast.Term {
	s := c.s
	switch x {
	case slotSessionID:
		return ast.StringTerm(s.ID)
	case slotListener:
		return ast.StringTerm(s.Listener)
	case slotClientIP:
		return addrTerm(s.ClientAddr)
	case slotClientPort:
		return portTerm(s.ClientAddr)
	case slotLocalIP:
		return addrTerm(s.LocalAddr)
	case slotLocalPort:
		return portTerm(s.LocalAddr)
	case slotTLS:
		t := s.TLS
		if t == nil {
			return nil
		}
		items := [][2]*ast.Term{
			ast.Item(termVer, ast.StringTerm(t.Version)),
			ast.Item(termCipher, ast.StringTerm(t.Cipher)),
			ast.Item(termSNI, ast.StringTerm(t.ServerName)),
			ast.Item(termALPN, ast.StringTerm(t.ALPN)),
		}
		if t.ClientCertSubject != "" {
			items = append(items, ast.Item(termCert, ast.StringTerm(t.ClientCertSubject)),
				ast.Item(ast.StringTerm("client_cert_sans"), stringsTerm(t.ClientCertSANs)),
				ast.Item(ast.StringTerm("client_cert_verified"), ast.BooleanTerm(t.ClientCertVerified)))
		}
		return ast.ObjectTerm(items...)
	case slotUser:
		return ast.StringTerm(s.User)
	case slotMechanism:
		return ast.StringTerm(s.Mechanism)
	case slotClientID:
		items := make([][2]*ast.Term, 0, len(s.ClientID))
		if !c.ids.all {
			for _, k := range c.ids.keys {
				if v, ok := s.ClientID[k]; ok {
					items = append(items, ast.Item(ast.StringTerm(k), ast.StringTerm(v)))
				}
			}
			return ast.ObjectTerm(items...)
		}
		for k, v := range s.ClientID {
			items = append(items, ast.Item(ast.StringTerm(k), ast.StringTerm(v)))
		}
		return ast.ObjectTerm(items...)
	case slotGroups:
		return stringsTerm(c.sessionGroups())
	case slotAuthenticator:
		if s.Identity == nil {
			return nil
		}
		return ast.StringTerm(s.Identity.Authenticator)
	case slotIdentity:
		return identityTerm(s.Identity)
	case slotBackend:
		return ast.StringTerm(s.Backend)
	case slotAuthFailures:
		return ast.InternedTerm(s.AuthFailures)
	case slotLimits:
		m := c.sessionLimits()
		if m == nil {
			return nil
		}
		items := make([][2]*ast.Term, 0, len(m))
		for k, v := range m {
			items = append(items, ast.Item(ast.StringTerm(k), ast.IntNumberTerm(int(v))))
		}
		return ast.ObjectTerm(items...)
	case slotStartedAt:
		if s.Started.IsZero() {
			return nil
		}
		return ast.StringTerm(s.Started.In(c.now.Location()).Format(time.RFC3339))
	case slotDelimiter:
		if s.Delimiter == "" {
			return nil
		}
		return ast.StringTerm(s.Delimiter)
	case slotSelected:
		if s.Selected == "" {
			return nil
		}
		return ast.ObjectTerm(
			ast.Item(termMbox, ast.StringTerm(s.Selected)),
			ast.Item(termRO, ast.InternedTerm(s.SelectedReadOnly)),
		)
	case slotNowRFC3339:
		return ast.StringTerm(c.now.Format(time.RFC3339))
	case slotNowUnix:
		return ast.InternedTerm(c.now.Unix())
	case slotNowWeekday:
		return ast.StringTerm(c.now.Weekday().String())
	case slotNowHour:
		return ast.InternedTerm(c.now.Hour())
	case slotNowMinute:
		return ast.InternedTerm(c.now.Minute())
	case slotNowClock:
		// "HH:MM": zero-padded, so that policies compare times as strings.
		return ast.StringTerm(c.now.Format("15:04"))
	case slotNowDate:
		return ast.StringTerm(c.now.Format(time.DateOnly))
	case slotNowZone:
		return ast.StringTerm(c.zone)
	}
	cmd := c.cmd
	if cmd == nil {
		return nil
	}
	switch x {
	case slotTag:
		return ast.StringTerm(cmd.Tag)
	case slotName:
		return ast.StringTerm(cmd.Name)
	case slotUID:
		return ast.InternedTerm(cmd.UID)
	case slotMailbox:
		return mailboxTerm(cmd.Mailbox)
	case slotMailboxRaw:
		return mailboxTerm(cmd.MailboxRaw)
	case slotReference:
		return mailboxTerm(cmd.Reference)
	case slotDestination:
		return mailboxTerm(cmd.Destination)
	case slotDestinationRaw:
		return mailboxTerm(cmd.DestinationRaw)
	case slotEffects:
		if c.effects != nil {
			return c.effects
		}
		return effectsTerm(s, cmd)
	case slotAppendURLs:
		if cmd.Name != "APPEND" {
			return nil
		}
		return ast.InternedTerm(cmd.AppendURLs)
	case slotSeqSet:
		if cmd.Set == "" {
			return nil
		}
		items := [][2]*ast.Term{ast.Item(termText, ast.StringTerm(cmd.Set))}
		if cmd.SetCount >= 0 {
			items = append(items, ast.Item(termCount, ast.InternedTerm(cmd.SetCount)))
		}
		return ast.ObjectTerm(items...)
	case slotFetchItems:
		if len(cmd.FetchItems) == 0 {
			return nil
		}
		return stringsTerm(cmd.FetchItems)
	case slotStore:
		if cmd.StoreOp == "" {
			return nil
		}
		op, silent := strings.CutSuffix(cmd.StoreOp, ".SILENT")
		return ast.ObjectTerm(
			ast.Item(termOp, ast.StringTerm(op)),
			ast.Item(termSilent, ast.InternedTerm(silent)),
			ast.Item(termFlags, stringsTerm(cmd.StoreFlags)),
		)
	case slotLiteralBytes:
		n := cmd.LiteralBytes
		if c.lit != nil && c.lit.Size > 0 {
			n = satAdd(n, c.lit.Size)
		}
		return ast.InternedTerm(n)
	case slotLiterals:
		return ast.InternedTerm(cmd.Literals)
	case slotLiteral:
		if c.lit == nil {
			return nil
		}
		return ast.ObjectTerm(
			ast.Item(termSize, ast.InternedTerm(c.lit.Size)),
			ast.Item(termSync, ast.InternedTerm(!c.lit.NonSync)),
			ast.Item(termBinary, ast.InternedTerm(c.lit.Binary)),
		)
	case slotPartial:
		return ast.InternedTerm(c.partial)
	case slotComplete:
		return ast.InternedTerm(cmd.Complete)
	case slotArgs:
		// A redacted summary: kinds and sizes, never content (search
		// text, small literals and ID values could be secrets).
		terms := make([]*ast.Term, len(cmd.Args))
		for i := range cmd.Args {
			a := &cmd.Args[i]
			kind := kindTerms[a.Kind]
			if kind == nil {
				kind = ast.StringTerm(a.Kind.String())
			}
			terms[i] = ast.ObjectTerm(ast.Item(termKind, kind), ast.Item(termSize, ast.InternedTerm(argSize(a))))
		}
		return ast.ArrayTerm(terms...)
	}
	return nil
}

// sessionGroups are the user's groups: the groups file's and the
// directory's (Identity.Groups), sorted, each once.
func (c *inputCtx) sessionGroups() []string {
	file := c.groups[strings.ToLower(c.s.User)]
	if c.s.Identity == nil || len(c.s.Identity.Groups) == 0 {
		return file
	}
	all := append(slices.Clone(file), c.s.Identity.Groups...)
	slices.Sort(all)
	return slices.Compact(all)
}

// identityTerm is input.session.identity: who the authenticator verified,
// with only the fields it set (README.md in policies/).
func identityTerm(id *proxy.Identity) *ast.Term {
	if id == nil {
		return nil
	}
	items := make([][2]*ast.Term, 0, 8)
	str := func(k, v string) {
		if v != "" {
			items = append(items, ast.Item(ast.StringTerm(k), ast.StringTerm(v)))
		}
	}
	str("authenticator", id.Authenticator)
	str("user", id.User)
	items = append(items, ast.Item(ast.StringTerm("groups"), stringsTerm(id.Groups)))
	str("issuer", id.Issuer)
	str("client_id", id.ClientID)
	if id.Scopes != nil {
		items = append(items, ast.Item(ast.StringTerm("scopes"), stringsTerm(id.Scopes)))
	}
	if len(id.Attributes) > 0 {
		attrs := make([][2]*ast.Term, 0, len(id.Attributes))
		for k, v := range id.Attributes {
			attrs = append(attrs, ast.Item(ast.StringTerm(k), ast.StringTerm(v)))
		}
		items = append(items, ast.Item(ast.StringTerm("attributes"), ast.ObjectTerm(attrs...)))
	}
	str("route", id.Route)
	return ast.ObjectTerm(items...)
}

func satAdd(a, b int64) int64 {
	if a > (1<<63-1)-b {
		return 1<<63 - 1
	}
	return a + b
}

func addrTerm(ap netip.AddrPort) *ast.Term {
	if !ap.IsValid() {
		return nil
	}
	// Unmapped, so that "::ffff:192.0.2.1" from a dual-stack listener
	// matches IPv4 networks.
	return ast.StringTerm(ap.Addr().Unmap().String())
}

func portTerm(ap netip.AddrPort) *ast.Term {
	if !ap.IsValid() {
		return nil
	}
	return ast.InternedTerm(int(ap.Port()))
}

func stringsTerm(ss []string) *ast.Term {
	terms := make([]*ast.Term, len(ss))
	for i, s := range ss {
		terms[i] = ast.StringTerm(s)
	}
	return ast.ArrayTerm(terms...)
}

// mailboxTerm is a mailbox name as the proxy's parser made it canonical
// (imapwire.Context.Canonical: decoded, INBOX folded), absent when empty.
func mailboxTerm(name string) *ast.Term {
	if name == "" {
		return nil
	}
	return ast.StringTerm(name)
}

var (
	termKindKey = ast.StringTerm("kind")
	termTarget  = ast.StringTerm("target")
	effectTerms = func() map[imapwire.Effect]*ast.Term {
		m := map[imapwire.Effect]*ast.Term{}
		for _, n := range imapwire.EffectNames() {
			e, _ := imapwire.EffectByName(n)
			m[e] = ast.StringTerm(n)
		}
		return m
	}()
	targetTerms = [...]*ast.Term{
		imapwire.TargetNone:        ast.StringTerm("session"),
		imapwire.TargetSelected:    ast.StringTerm("selected"),
		imapwire.TargetMailbox:     ast.StringTerm("mailbox"),
		imapwire.TargetDestination: ast.StringTerm("destination"),
		imapwire.TargetAny:         ast.StringTerm("any"),
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

// effectsTerm is input.command.effects: what the command does, each
// {"kind", "target", "mailbox"} (policies/README.md), from the one table
// of proxy/imapwire (ARCHITECTURE.md §10: decide on effects, not on names).
func effectsTerm(s *proxy.SessionInfo, cmd *imapwire.Command) *ast.Term {
	e := &cmd.Effects
	terms := make([]*ast.Term, e.Len())
	for i := range terms {
		eo := e.At(i)
		items := [][2]*ast.Term{
			ast.Item(termKindKey, effectTerms[eo.Effect]),
			ast.Item(termTarget, targetTerms[eo.Target]),
		}
		if m := effectMailbox(s, cmd, eo.Target); m != "" {
			items = append(items, ast.Item(termMbox, ast.StringTerm(m)))
		}
		terms[i] = ast.ObjectTerm(items...)
	}
	return ast.ArrayTerm(terms...)
}
