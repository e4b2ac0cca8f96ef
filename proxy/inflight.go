package proxy

import (
	"sync/atomic"
	"time"

	"github.com/imapwarden/imapwarden/proxy/imapwire"
)

// inflight is a command forwarded to the backend and not yet completed.
type inflight struct {
	cmd   imapwire.Command // snapshot without Args; its Tag is the tag
	start time.Time
	// bytesIn is what the client sent of the command: the client pump
	// counts on while a message literal streams, and the backend may
	// complete the command before it is done (the completion's audit
	// then records what had come).
	bytesIn  atomic.Int64
	decision *Decision
	// selected is the mailbox the command was decided in; readContent that
	// its effects include read-content.
	selected    string
	readContent bool
	// fetch: a FETCH whose items read content, a command FETCH responses
	// with content answer (backendPump.delivered).
	fetch bool
	// owed: the backend owes an answer to it (counted in
	// relay.owing): always, but for an IDLE between its "+" and
	// the client's DONE.
	owed bool
	// uidValidity is the selected mailbox's UIDVALIDITY when the command
	// was registered (0: unknown), which its UIDs are relative to
	// (RFC 9051 §2.3.1.1).
	uidValidity uint32
	// Content the backend delivered while the command ran (backend pump
	// only): messages, their UIDs (capped) and content octets.
	messages int
	uids     []uint32
	content  int64
	// share: what answering keeps of a FETCH once several are in flight.
	share *fetchShare

	// refs counts the pumps holding the record: the client pump until it
	// is done with the command (an IDLE until DONE), the backend pump
	// until the completion is audited. The last to let go recycles it
	// (relay.release): a record is never reused while either can see it.
	refs atomic.Int32
}

// maxFreeInflight bounds the records a relay keeps for reuse.
const maxFreeInflight = 8

// recycle clears f for reuse, keeping the backing arrays of its FETCH
// items and STORE flags, and of its UIDs when small.
func (f *inflight) recycle() {
	fi, sf, uids, share := f.cmd.FetchItems[:0], f.cmd.StoreFlags[:0], f.uids[:0], f.share
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
// (RFC 9051 §5.5 lets a server run some commands concurrently). Not safe
// for concurrent use: relay.mu guards it.
type inflightTable struct {
	q    []*inflight
	head int
	n    int
	// byTag answers "is this tag in flight" in O(1) once many are: a
	// client pipelining thousands of commands must not make each new one
	// scan them all.
	byTag map[string]int
}

// byTagFrom is the number of commands in flight from which byTag is kept.
const byTagFrom = 32

func (t *inflightTable) len() int { return t.n }

func (t *inflightTable) push(f *inflight) {
	if t.head > 0 && t.head == len(t.q) {
		t.q, t.head = t.q[:0], 0
	} else if t.head > 0 && len(t.q) == cap(t.q) && 2*t.head >= len(t.q) {
		// A pipeline that never empties would otherwise grow the array
		// by a slot per command of the session: when at least half of
		// it is completed slots, move the rest down instead (amortised
		// O(1): the head advanced at least as far as what is moved).
		live := copy(t.q, t.q[t.head:])
		clear(t.q[live:])
		t.q, t.head = t.q[:live], 0
	}
	t.q = append(t.q, f)
	t.n++
	if t.byTag != nil {
		t.byTag[f.cmd.Tag]++
	} else if t.n > byTagFrom {
		t.byTag = make(map[string]int, 2*t.n)
		t.each(func(x *inflight) { t.byTag[x.cmd.Tag]++ })
	}
}

// has reports whether a command with tag is in flight.
func (t *inflightTable) has(tag string) bool {
	if t.byTag != nil {
		return t.byTag[tag] > 0
	}
	for i := t.head; i < len(t.q); i++ {
		if f := t.q[i]; f != nil && f.cmd.Tag == tag {
			return true
		}
	}
	return false
}

// take removes and returns the oldest in-flight command with tag, nil if
// none.
func (t *inflightTable) take(tag []byte) *inflight {
	for i := t.head; i < len(t.q); i++ {
		f := t.q[i]
		if f == nil || f.cmd.Tag != string(tag) {
			continue
		}
		t.q[i] = nil
		t.n--
		if t.byTag != nil {
			if t.byTag[f.cmd.Tag]--; t.byTag[f.cmd.Tag] == 0 {
				delete(t.byTag, f.cmd.Tag)
			}
		}
		for t.head < len(t.q) && t.q[t.head] == nil {
			t.head++
		}
		if t.n == 0 {
			t.reset()
		}
		return f
	}
	return nil
}

// reset empties the table, giving back the memory of a long pipeline.
func (t *inflightTable) reset() {
	clear(t.q)
	t.q, t.head, t.n, t.byTag = t.q[:0], 0, 0, nil
	if cap(t.q) > 4*byTagFrom {
		t.q = nil
	}
}

// oldest returns the oldest command in flight, nil if none.
func (t *inflightTable) oldest() *inflight {
	for i := t.head; i < len(t.q); i++ {
		if t.q[i] != nil {
			return t.q[i]
		}
	}
	return nil
}

// find returns the oldest command in flight for which ok holds.
func (t *inflightTable) find(ok func(*inflight) bool) *inflight {
	for i := t.head; i < len(t.q); i++ {
		if f := t.q[i]; f != nil && ok(f) {
			return f
		}
	}
	return nil
}

// until calls fn for the commands in flight, oldest first, until it
// returns false.
func (t *inflightTable) until(fn func(*inflight) bool) {
	for i := t.head; i < len(t.q); i++ {
		if f := t.q[i]; f != nil && !fn(f) {
			return
		}
	}
}

// each calls fn for every command in flight, oldest first.
func (t *inflightTable) each(fn func(*inflight)) {
	for i := t.head; i < len(t.q); i++ {
		if f := t.q[i]; f != nil {
			fn(f)
		}
	}
}
