package policy

import (
	"encoding/binary"
	"maps"
	"math/bits"
	"slices"
	"sync/atomic"
	"unsafe"

	"github.com/imapwarden/imapwarden/proxy"
)

// The session's part of a decision's key is the same at every decision of
// a session while its facts stay: it is encoded, and its part of the input
// (inputPart) found, once per session, and each decision's key holds that
// part's id in its place (ARCHITECTURE.md §10). The home of that per
// session is the engine's state, not the proxy's Session (whose size class
// is full, ARCHITECTURE.md §16), and it does not rely on the proxy saying
// when a fact changes: an entry keeps its own copy of every field the
// state's session slots read, and is used only while the session's fields
// equal it. A field changed anywhere, in place or replaced, makes a new
// entry, never a stale key (TestSessionEntryFollowsEveryField).

// sessionFields are the fields of proxy.SessionInfo some slot reads.
type sessionFields uint16

const (
	fieldID sessionFields = 1 << iota
	fieldListener
	fieldClientAddr
	fieldLocalAddr
	fieldTLS
	fieldUser
	fieldMechanism
	fieldClientID
	fieldBackend
	fieldStarted
	fieldIdentity
	fieldAuthFailures
	fieldDelimiter
)

// slotFields are the fields each session slot's key and value read
// (inputCtx.appendKey, flatValue). slotLimits reads the limiter, not the
// session: a state whose policies read it keeps no entries.
var slotFields = [numSlots]sessionFields{
	slotSessionID:     fieldID,
	slotListener:      fieldListener,
	slotClientIP:      fieldClientAddr,
	slotClientPort:    fieldClientAddr,
	slotLocalIP:       fieldLocalAddr,
	slotLocalPort:     fieldLocalAddr,
	slotTLS:           fieldTLS,
	slotUser:          fieldUser,
	slotMechanism:     fieldMechanism,
	slotClientID:      fieldClientID,
	slotGroups:        fieldUser | fieldIdentity,
	slotAuthenticator: fieldIdentity,
	slotIdentity:      fieldIdentity,
	slotBackend:       fieldBackend,
	slotAuthFailures:  fieldAuthFailures,
	slotStartedAt:     fieldStarted,
	slotDelimiter:     fieldDelimiter,
}

// sessionTable holds the entries of one state, by the address of the
// session's SessionInfo: the address only says where to look (a session
// ended and another made at its address is compared as any other), and
// no entry keeps a session alive. Two places per address; a full pair
// loses its first.
type sessionTable struct {
	slots  []atomic.Pointer[sessionEntry]
	shift  uint8
	uses   slotSet // the state's session slots
	fields sessionFields
	ids    idUse
}

// sessionEntry is one session's part of the key. Never modified once
// stored.
type sessionEntry struct {
	at uintptr
	// info is a copy of the session's fields, its TLS, Identity and
	// ClientID (those the slots read) copied deeply and never modified,
	// so that a change made in place is seen.
	info proxy.SessionInfo
	// idv are the client ID's values the policies read (idUse.keys),
	// when not all of them.
	idv []idValue
	// key is the session slots' key (inputCtx.appendSlots); part their
	// part of the input when the state's docs remember it (an id that
	// no other part has), else nil.
	key  []byte
	part *inputPart
}

type idValue struct {
	v  string
	ok bool
}

// newSessionTable makes st's table, nil when it would hold nothing or
// could not be exact (input.session.limits changes at every command).
func newSessionTable(st *state, size int) *sessionTable {
	uses := st.uses & sessionSlots
	if st.docs == nil || uses == 0 || uses.has(slotLimits) {
		return nil
	}
	t := &sessionTable{uses: uses, ids: st.ids}
	for u := uses; u != 0; u &= u - 1 {
		t.fields |= slotFields[bits.TrailingZeros64(uint64(u))]
	}
	n := 16
	for n < size {
		n *= 2
	}
	t.slots = make([]atomic.Pointer[sessionEntry], n)
	t.shift = uint8(64 - bits.TrailingZeros(uint(n)))
	return t
}

// entry returns the entry of c's session, made and stored when there is
// none or the session's fields are no longer its; nil when its key is
// longer than maxKey.
func (t *sessionTable) entry(st *state, c *inputCtx) *sessionEntry {
	at := uintptr(unsafe.Pointer(c.s))
	i := (uint64(at) * 0x9E3779B97F4A7C15) >> t.shift
	p, q := &t.slots[i], &t.slots[i^1]
	if e := p.Load(); e != nil && e.at == at && t.same(e, c.s) {
		return e
	}
	if e := q.Load(); e != nil && e.at == at && t.same(e, c.s) {
		return e
	}
	e := t.make(st, c, at)
	if e == nil {
		return nil
	}
	if old := p.Load(); old != nil && old.at != at {
		if other := q.Load(); other == nil || other.at == at {
			p = q
		}
	}
	p.Store(e)
	return e
}

// make builds c's session's entry, nil when its key is longer than
// maxKey.
func (t *sessionTable) make(st *state, c *inputCtx, at uintptr) *sessionEntry {
	s := c.s
	e := &sessionEntry{at: at, info: *s}
	f, info := t.fields, &e.info
	if f&fieldTLS != 0 && s.TLS != nil {
		tls := *s.TLS
		tls.ClientCertSANs = slices.Clone(tls.ClientCertSANs)
		info.TLS = &tls
	}
	if f&fieldIdentity != 0 && s.Identity != nil {
		id := *s.Identity
		id.Groups, id.Scopes = slices.Clone(id.Groups), slices.Clone(id.Scopes)
		id.Attributes = maps.Clone(id.Attributes)
		info.Identity = &id
	}
	if f&fieldClientID != 0 {
		if t.ids.all {
			info.ClientID = maps.Clone(s.ClientID)
		} else {
			e.idv = make([]idValue, len(t.ids.keys))
			info.ClientID = make(map[string]string, len(e.idv))
			for i, k := range t.ids.keys {
				v, ok := s.ClientID[k]
				e.idv[i] = idValue{v, ok}
				if ok {
					info.ClientID[k] = v
				}
			}
		}
	}
	// The key and the part of the copy, not of the session: what the
	// entry is compared with is what they were made of.
	cc := *c
	cc.s = info
	if e.key = cc.appendSlots(nil, t.uses); len(e.key) > maxKey {
		// Nothing so large is kept: such a session's key is made at
		// each decision, as its decisions are never remembered.
		return nil
	}
	cc.keys[partSession] = e.key
	if part := cachedDoc(st, &cc, t.uses, partSession); part.id != 0 {
		e.part = part
	}
	return e
}

// same tells whether s's fields the slots read are still e's.
func (t *sessionTable) same(e *sessionEntry, s *proxy.SessionInfo) bool {
	f, p := t.fields, &e.info
	switch {
	case f&fieldUser != 0 && s.User != p.User,
		f&fieldClientAddr != 0 && s.ClientAddr != p.ClientAddr,
		f&fieldTLS != 0 && !sameTLS(s.TLS, p.TLS),
		f&fieldIdentity != 0 && !sameIdentity(s.Identity, p.Identity),
		f&fieldDelimiter != 0 && s.Delimiter != p.Delimiter,
		f&fieldID != 0 && s.ID != p.ID,
		f&fieldListener != 0 && s.Listener != p.Listener,
		f&fieldLocalAddr != 0 && s.LocalAddr != p.LocalAddr,
		f&fieldMechanism != 0 && s.Mechanism != p.Mechanism,
		f&fieldBackend != 0 && s.Backend != p.Backend,
		f&fieldStarted != 0 && s.Started != p.Started,
		f&fieldAuthFailures != 0 && s.AuthFailures != p.AuthFailures:
		return false
	}
	if f&fieldClientID == 0 {
		return true
	}
	if t.ids.all {
		return (s.ClientID == nil) == (p.ClientID == nil) && maps.Equal(s.ClientID, p.ClientID)
	}
	for i, k := range t.ids.keys {
		if v, ok := s.ClientID[k]; ok != e.idv[i].ok || v != e.idv[i].v {
			return false
		}
	}
	return true
}

// sameStrs is slices.Equal that tells nil from empty too.
func sameStrs(a, b []string) bool { return (a == nil) == (b == nil) && slices.Equal(a, b) }

func sameTLS(a, b *proxy.TLSInfo) bool {
	if a == nil || b == nil {
		return a == b
	}
	return a.Version == b.Version && a.Cipher == b.Cipher && a.ServerName == b.ServerName && a.ALPN == b.ALPN &&
		a.ClientCertSubject == b.ClientCertSubject && a.ClientCertCN == b.ClientCertCN &&
		a.ClientCertVerified == b.ClientCertVerified && sameStrs(a.ClientCertSANs, b.ClientCertSANs)
}

func sameIdentity(a, b *proxy.Identity) bool {
	if a == nil || b == nil {
		return a == b
	}
	return a.Authenticator == b.Authenticator && a.User == b.User && a.Issuer == b.Issuer &&
		a.ClientID == b.ClientID && a.Route == b.Route && sameStrs(a.Groups, b.Groups) &&
		sameStrs(a.Scopes, b.Scopes) && (a.Attributes == nil) == (b.Attributes == nil) &&
		maps.Equal(a.Attributes, b.Attributes)
}

// sessionMark begins a session's part of a decision's key written as its
// part's id: no slot's key begins with it (slot < numSlots).
const sessionMark = 0xff

// appendSessionKey appends the session's part of a decision's key: its
// part's id when the entry has one (equal ids, equal parts: ids are never
// reused, TestSessionIDKeysAreExact), else the slots' key.
func (e *sessionEntry) appendKey(b []byte) []byte {
	if e.part != nil {
		return binary.LittleEndian.AppendUint64(append(b, sessionMark), e.part.id)
	}
	return append(b, e.key...)
}
