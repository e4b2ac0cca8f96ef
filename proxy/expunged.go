package proxy

import (
	"slices"

	"github.com/imapwarden/imapwarden/proxy/imapwire"
)

// What the backend reported expunged while a command that expunges ran
// (the expunge effect: EXPUNGE, UID EXPUNGE, CLOSE, MOVE), for its audit
// record (audit/README.md): each "* n EXPUNGE" (RFC 9051 §7.5.1) counts
// one message and gives its sequence number at that moment, each UID of a
// "* VANISHED" (RFC 7162 §3.2.10, with QRESYNC enabled) one message by
// UID. Mapping sequence numbers to UIDs would need the mailbox's whole
// map, which the proxy does not keep (its memory per session is bounded,
// ARCHITECTURE.md §16); CLOSE expunges silently (RFC 9051 §6.4.1), so its
// record has none of them.

var (
	expungeName  = []byte("EXPUNGE")
	vanishedName = []byte("VANISHED")
	earlierTag   = []byte("(EARLIER)")
)

// expunger returns the command in flight an untagged EXPUNGE or
// VANISHED belongs to, nil if none: the one that may report expunges of
// its own, which runs alone (relay.alone). A backend may answer commands
// pipelined together from one mailbox sync (Dovecot reports a later
// EXPUNGE's or MOVE's expunges before an earlier NOOP's OK), so an
// expunge in flight with others would have no one reading. Any other
// (during a NOOP, a FETCH, IDLE, a CLOSE, which reports none:
// Spec.SilentExpunge) is unilateral: another session's expunge (RFC 9051
// §7.5.1), counted on the session (backendPump.othersExpunged).
// Called with mu held.
func (r *relay) expunger() *inflight {
	if r.alone() {
		return r.inflight.oldest()
	}
	return nil
}

// alone reports a command in flight that may report expunges of its own
// (reportsExpunges). It went with nothing else in flight (clientPump.room)
// and later commands wait for it (waitBarrier), so it is the only one, and
// every expunge the backend reports meanwhile is its own or another
// session's, never a neighbour's (ARCHITECTURE.md §11). Called with mu
// held.
func (r *relay) alone() bool {
	f := r.inflight.oldest()
	return f != nil && reportsExpunges(&f.cmd)
}

// reportsExpunges reports a command whose answer may carry expunges of its
// own (EXPUNGE, UID EXPUNGE, MOVE); it is sent alone (relay.alone).
func reportsExpunges(cmd *imapwire.Command) bool {
	return cmd.Effects.Has(imapwire.EffExpunge) && cmd.Spec != nil && !cmd.Spec.SilentExpunge
}

// expunges is what untagged responses told of a command that expunges:
// the messages the backend reported expunged while it ran, the sequence
// numbers of its "* n EXPUNGE" responses in order and the UIDs of its
// "* VANISHED" (the first Limits.MaxAuditUIDs of each), and a MOVE's
// COPYUID. UIDs destroyed are kept apart from the UIDs whose content
// went out (inflight.uids): one field, one reading (audit/README.md).
type expunges struct {
	n       int
	seqs    []uint32
	uids    []uint32
	copyUID string
}

// expunged returns f's expunges, made on the first report.
func (f *inflight) expunged() *expunges {
	if f.exp == nil {
		f.exp = new(expunges)
	}
	return f.exp
}

// expungedSeq records "* n EXPUNGE" against f, at most most numbers.
// Called with mu held.
func (f *inflight) expungedSeq(n uint32, most int) {
	e := f.expunged()
	e.n++
	if len(e.seqs) < most {
		e.seqs = append(e.seqs, n)
	}
}

// expungedCount and expungedSeqs are what the record says (0, nil when
// nothing was reported).
func (f *inflight) expungedCount() int {
	if f.exp == nil {
		return 0
	}
	return f.exp.n
}

func (f *inflight) expungedSeqs() []uint32 {
	if f.exp == nil {
		return nil
	}
	return f.exp.seqs
}

func (f *inflight) expungedUIDs() []uint32 {
	if f.exp == nil {
		return nil
	}
	return f.exp.uids
}

// copyUID is a MOVE's COPYUID, "" if none came.
func (f *inflight) copyUID() string {
	if f.exp == nil {
		return ""
	}
	return f.exp.copyUID
}

// vanishedScan reads the UID set of a "* VANISHED" response as it
// streams, piece by piece, into the record of the command that expunges
// (f), the set may be longer than one read. UIDs outside a UID EXPUNGE's
// or UID MOVE's own set are not its own (RFC 4315 §2.1, RFC 6851 §3.3),
// and with no command to credit (f nil) none are: those count on the
// session (others).
type vanishedScan struct {
	on     bool // a VANISHED response is being read
	f      *inflight
	others *uint32  // backendPump.othersExpunged
	most   int      // UIDs recorded at most (Limits.MaxAuditUIDs)
	elem   [24]byte // the set element cut by the end of a piece: "n:m" at most 21 bytes
	n      int
	bad    bool
}

// begin starts reading a VANISHED response whose text after the name is
// rest, credited to f (nil: to no command), and returns the set's start
// in it; an EARLIER one reports expunges from before (RFC 7162
// §3.2.10), not news: false.
func (v *vanishedScan) begin(f *inflight, others *uint32, rest []byte, most int) ([]byte, bool) {
	if len(rest) > 0 && rest[0] == ' ' {
		rest = rest[1:]
	}
	if len(rest) >= len(earlierTag) && wordIs(rest[:len(earlierTag)], earlierTag) {
		return nil, false
	}
	*v = vanishedScan{on: true, f: f, others: others, most: most}
	return rest, true
}

// piece reads one piece of the set (the response's first piece from the
// set on); final ends it. Called with mu held.
func (v *vanishedScan) piece(p []byte, final bool) {
	for _, c := range p {
		switch {
		case c == ',' || c == '\r' || c == '\n':
			v.element()
		case v.n < len(v.elem):
			v.elem[v.n] = c
			v.n++
		default:
			v.bad = true
		}
	}
	if final {
		v.element()
		v.on, v.f, v.others = false, nil, nil
	}
}

// element adds the UIDs of the set element read, "u" or "u:w".
func (v *vanishedScan) element() {
	if v.n == 0 {
		return
	}
	e := v.elem[:v.n]
	v.n = 0
	if v.bad {
		v.bad = false
		return
	}
	lo, hi := e, e
	for i, c := range e {
		if c == ':' {
			lo, hi = e[:i], e[i+1:]
			break
		}
	}
	a, okA := uidNumber(lo)
	b, okB := uidNumber(hi)
	if !okA || !okB {
		return
	}
	if a > b {
		a, b = b, a
	}
	total := int(uint64(b) - uint64(a) + 1) // 1:4294967295 is 2³² - 1 of them
	f := v.f
	if f == nil {
		addCount(v.others, uint64(total))
		return
	}
	x := f.expunged()
	var ranges []imapwire.SetRange
	all := !f.cmd.UID // EXPUNGE, MOVE by sequence number: every one
	if !all {
		ranges, all = f.uidRanges()
	}
	if all {
		x.n += total
		x.add(imapwire.SetRange{Lo: a, Hi: b}, v.most)
		return
	}
	// The ranges are sorted and disjoint: from the first that may hold a,
	// O(log) and the ranges that overlap a:b, not every range an element.
	i, _ := slices.BinarySearchFunc(ranges, a, func(r imapwire.SetRange, a uint32) int {
		if r.Hi < a {
			return -1
		}
		return 1
	})
	own := 0
	for _, r := range ranges[i:] {
		if r.Lo > b {
			break
		}
		in := imapwire.SetRange{Lo: max(r.Lo, a), Hi: min(r.Hi, b)}
		own += int(uint64(in.Hi) - uint64(in.Lo) + 1)
		x.add(in, v.most)
	}
	x.n += own
	addCount(v.others, uint64(total-own))
}

// add appends the UIDs of r to the record's, at most most of them.
func (x *expunges) add(r imapwire.SetRange, most int) {
	for u := uint64(r.Lo); u <= uint64(r.Hi) && len(x.uids) < most; u++ {
		x.uids = append(x.uids, uint32(u))
	}
}

// uidRanges returns a UID command's set as ranges, read once (kept in
// f.share, as answering keeps a FETCH's): all when it may name any UID.
func (f *inflight) uidRanges() ([]imapwire.SetRange, bool) {
	if f.share == nil {
		f.share = &fetchShare{}
	}
	f.share.load(f)
	return f.share.ranges, f.share.all
}

// uidNumber parses a nz-number (RFC 9051 §9).
func uidNumber(b []byte) (uint32, bool) {
	if len(b) == 0 || len(b) > 10 {
		return 0, false
	}
	var n uint64
	for _, c := range b {
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + uint64(c-'0')
	}
	if n == 0 || n >= 1<<32 {
		return 0, false
	}
	return uint32(n), true
}
