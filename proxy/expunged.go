package proxy

import "github.com/imapwarden/imapwarden/proxy/imapwire"

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

// expunger returns the oldest command in flight that may expunge, nil if
// none: an EXPUNGE response with none in flight reports another session's
// expunge (RFC 9051 §7.5.1), recorded by that session. Called with mu
// held.
func (r *relay) expunger() *inflight {
	var found *inflight
	r.inflight.until(func(f *inflight) bool {
		if f.cmd.Effects.Has(imapwire.EffExpunge) {
			found = f
			return false
		}
		return true
	})
	return found
}

// expunges is what untagged responses told of a command that expunges:
// the messages the backend reported expunged while it ran, the sequence
// numbers of its "* n EXPUNGE" responses in order (the first
// Limits.MaxAuditUIDs), and a MOVE's COPYUID.
type expunges struct {
	n       int
	seqs    []uint32
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

// copyUID is a MOVE's COPYUID, "" if none came.
func (f *inflight) copyUID() string {
	if f.exp == nil {
		return ""
	}
	return f.exp.copyUID
}

// vanished reads the UID set of a "* VANISHED" response as it streams,
// piece by piece, into the record of the command that expunges
// (vanishedScan.f): the set may be longer than one read.
type vanishedScan struct {
	f    *inflight
	most int      // UIDs recorded at most (Limits.MaxAuditUIDs)
	elem [24]byte // the set element cut by the end of a piece: "n:m" at most 21 bytes
	n    int
	bad  bool
}

// begin starts reading a VANISHED response whose text after the name is
// rest and returns the set's start in it; an EARLIER one reports
// expunges from before (RFC 7162 §3.2.10), not this command's: false.
func (v *vanishedScan) begin(f *inflight, rest []byte, most int) ([]byte, bool) {
	if len(rest) > 0 && rest[0] == ' ' {
		rest = rest[1:]
	}
	if len(rest) >= len(earlierTag) && wordIs(rest[:len(earlierTag)], earlierTag) {
		return nil, false
	}
	*v = vanishedScan{f: f, most: most}
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
		v.f = nil
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
	f := v.f
	f.expunged().n += int(b - a + 1)
	for u := uint64(a); u <= uint64(b) && len(f.uids) < v.most; u++ {
		f.uids = append(f.uids, uint32(u))
	}
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
