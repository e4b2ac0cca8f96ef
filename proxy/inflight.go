package proxy

import (
	"math"
	"strings"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/imapwarden/imapwarden/proxy/imapwire"
)

// inflight is a command forwarded to the backend and not yet completed.
type inflight struct {
	cmd imapwire.Command // snapshot without Args; its Tag is the tag
	// start is when the command began, as monotonic time since
	// relayEpoch: a time.Time's 24 bytes would push the record past its
	// size class (TestIdleStructsFitSizeClasses).
	start time.Duration
	// bytesIn is what the client sent of the command: the client pump
	// counts on while a message literal streams, and the backend may
	// complete the command before it is done (the completion's audit
	// then records what had come).
	bytesIn  atomic.Int64
	decision *Decision
	// selected is the mailbox the command was decided in, selectedRO
	// whether the backend answered its selection read-only; readContent
	// that its effects include read-content.
	selected    string
	selectedRO  bool
	readContent bool
	// fetch: a FETCH whose items read content (the read-content effect:
	// a body section, ENVELOPE, BODYSTRUCTURE...), a command FETCH
	// responses with content or header items answer
	// (backendPump.delivered).
	fetch bool
	// owed: the backend owes an answer to it (counted in
	// relay.owing): once it has the whole command (sent), or while a
	// literal's "+" is armed for it (relay.arm), but not while the proxy
	// still sends it the client's bytes of the command, nor for an IDLE
	// between its "+" and the client's DONE (ARCHITECTURE.md §13).
	owed bool
	// sent: the whole command went to the backend's writer (register
	// for a command read to its end, relay.sent for one streamed).
	sent bool
	// aborted: the proxy refused the command while the backend held part
	// of it and ended the session, which aborts it (clientPump.abort);
	// the refusal is its record, and no other is written when the
	// session ends with it in flight (Session.endRelay).
	aborted bool
	// uidValidity is the selected mailbox's UIDVALIDITY when the command
	// was registered (0: unknown), which its UIDs are relative to
	// (RFC 9051 §2.3.1.1).
	uidValidity uint32
	// Content the backend delivered in answer to the command, a FETCH
	// that asked for it (backendPump.answering; backend pump only): messages with content items, the UIDs of those and of the
	// messages whose headers went out (ENVELOPE...; capped), those of
	// them without a UID (unnamed), and content octets. 32 bits each,
	// saturating (addCount): the record keeps its size class.
	messages, unnamed uint32
	uids              []uint32
	content           int64
	// exp is what untagged responses told of a command that expunges
	// (expunged.go): the expunges the backend reported while it ran, a
	// MOVE's COPYUID (RFC 6851 §4.3; backendPump.moveCopyUID); nil
	// before the first (one pointer: the record stays in its size class,
	// ARCHITECTURE.md §16). A VANISHED's UIDs go to exp.uids, never uids.
	exp *expunges
	// share: what answering keeps of a FETCH once several are in flight.
	share *fetchShare

	// refs counts the pumps holding the record: the client pump until it
	// is done with the command (an IDLE until DONE), the backend pump
	// until the completion is audited. The last to let go recycles it
	// (relay.release): a record is never reused while either can see it.
	refs atomic.Int32
	// held is what the record may hold (heldBy), charged to the table
	// while it is in flight (Limits.MaxInflightBytes). Beside refs, in
	// its padding.
	held uint32
}

// heldBy is what the record of cmd may hold while it is in flight, for
// Limits.MaxInflightBytes (ARCHITECTURE.md §12): the record, the strings
// and lists its snapshot keeps (snapshotInto), and for a FETCH reading
// content (fetch) what the backend pump may add to it: its set's ranges
// (at most one a set element) and items' keys (fetchShare), and up to
// maxUIDs UIDs (Limits.MaxAuditUIDs), each in an array append may have
// doubled; for a command that expunges, what the backend reports of it
// (expunged.go). Saturates at the field's bound; it does not allocate.
func heldBy(cmd *imapwire.Command, fetch bool, maxUIDs int) uint32 {
	n := int64(unsafe.Sizeof(inflight{})) + int64(len(cmd.Tag)+len(cmd.Mailbox)+len(cmd.MailboxRaw)+
		len(cmd.Reference)+len(cmd.Destination)+len(cmd.DestinationRaw)+len(cmd.Set)) +
		stringsHeld(cmd.FetchItems) + stringsHeld(cmd.StoreFlags)
	if nm := cmd.Named; nm != nil {
		n += int64(unsafe.Sizeof(*nm)) + stringsHeld(nm.Patterns) + stringsHeld(nm.Sources) + stringsHeld(nm.Mailboxes) +
			stringsHeld(nm.Enable) + stringsHeld(nm.Entries) + int64(len(nm.Identifier)+len(nm.Rights)+len(nm.QuotaRoot))
		for _, q := range nm.Quota {
			n += int64(unsafe.Sizeof(q) + uintptr(len(q.Resource)))
		}
		for _, f := range nm.Notify {
			n += int64(unsafe.Sizeof(f)+uintptr(len(f.Filter))) + stringsHeld(f.Mailboxes)
		}
	}
	if fetch {
		elems := int64(strings.Count(cmd.Set, ",") + 1)
		uids := int64(maxUIDs)
		if cmd.SetCount >= 0 {
			uids = min(uids, cmd.SetCount)
		}
		n += int64(unsafe.Sizeof(fetchShare{})) +
			2*elems*int64(unsafe.Sizeof(imapwire.SetRange{})) +
			4*int64(len(cmd.FetchItems))*int64(unsafe.Sizeof(imapwire.ItemKey{})) + // FULL: two keys
			2*uids*int64(unsafe.Sizeof(uint32(0)))
	}
	if cmd.Effects.Has(imapwire.EffExpunge) {
		// What the backend reports it expunged (expunged.go): sequence
		// numbers, or a VANISHED's UIDs, maxUIDs each in an array append
		// may have doubled, and a MOVE's COPYUID (responseCodeArgs keeps
		// less than 4096 bytes).
		n += int64(unsafe.Sizeof(expunges{})) + 2*2*int64(maxUIDs)*int64(unsafe.Sizeof(uint32(0))) + 4096
	}
	return uint32(min(n, math.MaxUint32))
}

// stringsHeld is what a list of strings holds.
func stringsHeld(xs []string) int64 {
	n := int64(len(xs)) * int64(unsafe.Sizeof(""))
	for _, x := range xs {
		n += int64(len(x))
	}
	return n
}

// relayEpoch is what inflight.start counts from.
var relayEpoch = time.Now()

// since returns the time since start, an offset from relayEpoch.
func since(start time.Duration) time.Duration { return time.Since(relayEpoch) - start }

// maxFreeInflight bounds the records a relay keeps for reuse.
const maxFreeInflight = 8

// recycle clears f for reuse, keeping the backing arrays of its FETCH
// items and STORE flags, and of its UIDs when small.
func (f *inflight) recycle() {
	fi, sf, uids, exp, share := f.cmd.FetchItems[:0], f.cmd.StoreFlags[:0], f.uids[:0], f.exp, f.share
	clear(f.cmd.FetchItems)
	clear(f.cmd.StoreFlags)
	*f = inflight{}
	f.cmd.FetchItems, f.cmd.StoreFlags = fi, sf
	if share != nil {
		share.reset()
		f.share = share
	}
	if cap(uids) <= keepUIDs {
		f.uids = uids
	}
	if exp != nil && cap(exp.seqs) <= keepUIDs && cap(exp.uids) <= keepUIDs {
		*exp = expunges{seqs: exp.seqs[:0], uids: exp.uids[:0]}
		f.exp = exp
	}
}

// keepUIDs bounds the UID array a recycled record keeps.
const keepUIDs = 64

// snapshotInto copies what the audit needs of c into dst, reusing dst's
// slices: never Args, which may hold search text or small literal data.
func snapshotInto(dst *imapwire.Command, c *imapwire.Command) {
	fi, sf := dst.FetchItems[:0], dst.StoreFlags[:0]
	*dst = *c
	dst.Args = nil
	dst.FetchItems, dst.StoreFlags = nil, nil
	if len(c.FetchItems) > 0 {
		dst.FetchItems = append(fi, c.FetchItems...)
	}
	if len(c.StoreFlags) > 0 {
		dst.StoreFlags = append(sf, c.StoreFlags...)
	}
	dst.Named = c.Named.Clone() // the parser's, reused for the next command
}

// inflightTable is the commands in flight, oldest first. Servers complete
// commands in order almost always, so completion pops the head in O(1);
// one completed out of order leaves a hole that the head skips later
// (RFC 9051 §5.5 lets a server run some commands concurrently). Once many
// are in flight a tag index finds a command in O(1), and holes are
// squeezed out when they fill half the array, so that no response's work
// grows with the commands in flight or the session's length. Not safe
// for concurrent use: relayState.mu guards it.
type inflightTable struct {
	q []*inflight
	// head and n: int32 (MaxInflight is an int but no table holds 2^31
	// commands), so that held fits the relay's size class
	// (ARCHITECTURE.md §16).
	head, n int32
	// held sums the held of the records in flight (Limits.MaxInflightBytes).
	held int64
	// byTag finds a tag in flight in O(1) once many are: a client
	// pipelining thousands of commands must not make each new one, or
	// each completion, scan them all.
	byTag map[string]tagSlot
}

// tagSlot is where the oldest command with a tag is in the table, and
// how many are in flight with it (more than one only past the table: the
// proxy refuses a tag in flight, ARCHITECTURE.md §9).
type tagSlot struct {
	at int
	n  int
}

// byTagFrom is the number of commands in flight from which byTag is kept.
const byTagFrom = 32

func (t *inflightTable) len() int { return int(t.n) }

func (t *inflightTable) push(f *inflight) {
	if len(t.q) == cap(t.q) && 2*int(t.n) <= len(t.q) {
		// Half the array or more is holes (completed commands, before the
		// head or out of order behind it): squeeze them out rather than
		// grow by a slot per command of the session. Amortised O(1): at
		// least half the array is pushed again before the next time.
		live := 0
		for _, x := range t.q[t.head:] {
			if x != nil {
				t.q[live] = x
				live++
			}
		}
		clear(t.q[live:])
		t.q, t.head = t.q[:live], 0
		if t.byTag != nil {
			t.index()
		}
	}
	t.q = append(t.q, f)
	t.n++
	t.held += int64(f.held)
	if t.byTag != nil {
		t.indexOne(f.cmd.Tag, len(t.q)-1)
	} else if t.n > byTagFrom {
		t.byTag = make(map[string]tagSlot, 2*int(t.n))
		t.index()
	}
}

// index builds byTag from the table.
func (t *inflightTable) index() {
	clear(t.byTag)
	for i := int(t.head); i < len(t.q); i++ {
		if f := t.q[i]; f != nil {
			t.indexOne(f.cmd.Tag, i)
		}
	}
}

// indexOne adds the command at q[i], the newest with tag, to byTag.
func (t *inflightTable) indexOne(tag string, i int) {
	s, ok := t.byTag[tag]
	if !ok {
		s.at = i
	}
	s.n++
	t.byTag[tag] = s
}

// has reports whether a command with tag is in flight.
func (t *inflightTable) has(tag string) bool {
	return t.at(tag) >= 0
}

// holds reports whether f is in flight.
func (t *inflightTable) holds(f *inflight) bool {
	i := t.at(f.cmd.Tag)
	if i < 0 || t.q[i] == f {
		return i >= 0
	}
	if t.byTag != nil && t.byTag[f.cmd.Tag].n == 1 {
		return false // the only one with its tag is another
	}
	// The same tag twice (§9: only past the proxy), or a short table.
	for ; i < len(t.q); i++ {
		if t.q[i] == f {
			return true
		}
	}
	return false
}

// at is the index in q of the oldest command in flight with tag, -1 if
// none.
func (t *inflightTable) at(tag string) int {
	if t.byTag != nil {
		if s, ok := t.byTag[tag]; ok {
			return s.at
		}
		return -1
	}
	for i := int(t.head); i < len(t.q); i++ {
		if f := t.q[i]; f != nil && f.cmd.Tag == tag {
			return i
		}
	}
	return -1
}

// take removes and returns the oldest in-flight command with tag, nil if
// none.
func (t *inflightTable) take(tag []byte) *inflight {
	i := -1
	if t.byTag != nil {
		if s, ok := t.byTag[string(tag)]; ok { // no copy of tag
			i = s.at
		}
	} else {
		for j := int(t.head); j < len(t.q); j++ {
			if f := t.q[j]; f != nil && f.cmd.Tag == string(tag) {
				i = j
				break
			}
		}
	}
	if i < 0 {
		return nil
	}
	f := t.q[i]
	t.q[i] = nil
	t.n--
	t.held -= int64(f.held)
	if t.byTag != nil {
		if s := t.byTag[f.cmd.Tag]; s.n == 1 {
			delete(t.byTag, f.cmd.Tag)
		} else {
			// The same tag again (§9: only past the proxy): the next one.
			s.n--
			for s.at++; t.q[s.at] == nil || t.q[s.at].cmd.Tag != f.cmd.Tag; s.at++ {
			}
			t.byTag[f.cmd.Tag] = s
		}
	}
	for int(t.head) < len(t.q) && t.q[t.head] == nil {
		t.head++
	}
	if t.n == 0 {
		t.reset()
	}
	return f
}

// reset empties the table, giving back the memory of a long pipeline.
func (t *inflightTable) reset() {
	clear(t.q)
	t.q, t.head, t.n, t.held, t.byTag = t.q[:0], 0, 0, 0, nil
	if cap(t.q) > 4*byTagFrom {
		t.q = nil
	}
}

// oldest returns the oldest command in flight, nil if none.
func (t *inflightTable) oldest() *inflight {
	for i := int(t.head); i < len(t.q); i++ {
		if t.q[i] != nil {
			return t.q[i]
		}
	}
	return nil
}

// until calls fn for the commands in flight, oldest first, until it
// returns false.
func (t *inflightTable) until(fn func(*inflight) bool) {
	for i := int(t.head); i < len(t.q); i++ {
		if f := t.q[i]; f != nil && !fn(f) {
			return
		}
	}
}

// each calls fn for every command in flight, oldest first.
func (t *inflightTable) each(fn func(*inflight)) {
	for i := int(t.head); i < len(t.q); i++ {
		if f := t.q[i]; f != nil {
			fn(f)
		}
	}
}
