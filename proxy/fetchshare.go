package proxy

import (
	"sync/atomic"

	"github.com/imapwarden/imapwarden/proxy/imapwire"
)

// fetchShare is what backendPump.answering keeps about a FETCH in flight
// once several are: its set read once into ranges (a set may be 64 KiB,
// asked about at every response), and the group its content is shared
// in, and its items' keys (as many items: O(log items) a response). Made
// the first time it is needed, kept with a recycled record. Backend pump
// only, under relay.mu.
type fetchShare struct {
	ranges []imapwire.SetRange
	keys   []imapwire.ItemKey
	all    bool // the set may name any message
	read   bool // ranges, all and keys are the command's
	group  *shareGroup
}

// keepShare bounds the ranges and keys a recycled record keeps.
const keepShare = 64

// reset clears s for another command, keeping small arrays.
func (s *fetchShare) reset() {
	rs, ks := s.ranges[:0], s.keys[:0]
	if cap(rs) > keepShare {
		rs = nil
	}
	if cap(ks) > keepShare {
		ks = nil
	}
	clear(ks[:cap(ks)]) // no strings of the last command kept
	*s = fetchShare{ranges: rs, keys: ks}
}

// fits reports whether the response t tracks, of message n (a UID for a
// UID FETCH), may answer f: its set may name n and its items include the
// response's first content item. It reads the set into ranges and the
// items into keys on first use: O(log) a response, not O(command).
func (s *fetchShare) fits(f *inflight, t *imapwire.FetchTracker, n uint32) bool {
	s.load(f)
	return (s.all || imapwire.RangesContain(s.ranges, n)) && t.AnswersKeys(s.keys)
}

// load reads f's set into ranges and its items into keys, once.
func (s *fetchShare) load(f *inflight) {
	if !s.read {
		s.ranges, s.all = imapwire.SetRanges(s.ranges, f.cmd.Set)
		s.keys = imapwire.ItemKeys(s.keys, f.cmd.FetchItems)
		s.read = true
	}
}

// shareGroup is FETCHes that responses were credited among without
// telling which one they answered (backendPump.answering): content
// credited to one may have answered any other. Groups merge (union-find):
// a response ambiguous between members of two groups joins them, so that
// each response costs O(1) per candidate, not a comparison of every pair,
// and each command O(1) memory. A member's record names the group's
// others when it completes (sharedWith).
type shareGroup struct {
	parent *shareGroup // nil at the root
	// At the root: the first members' tags (Limits.MaxAuditSharedWith+1
	// of them: a record names the others), how many members there were,
	// and how many are still in flight.
	names       []string
	count, live int
}

// root returns g's root, halving the path there.
func (g *shareGroup) root() *shareGroup {
	for g.parent != nil {
		if gp := g.parent.parent; gp != nil {
			g.parent = gp
		}
		g = g.parent
	}
	return g
}

// join makes f a member of the group g (a root; nil: a new one) and
// returns the root of the merged group, which keeps maxNames+1 tags.
func (g *shareGroup) join(maxNames int, f *inflight) *shareGroup {
	if g == nil {
		g = &shareGroup{}
	}
	if f.share == nil {
		f.share = &fetchShare{}
	}
	fs := f.share
	if fs.group == nil {
		fs.group = g
		g.count++
		g.live++
		if len(g.names) <= maxNames {
			g.names = append(g.names, f.cmd.Tag)
		}
		return g
	}
	h := fs.group.root()
	if h == g {
		return g
	}
	if h.count > g.count { // the larger group stays the root
		g, h = h, g
	}
	h.parent = g
	g.count += h.count
	g.live += h.live
	for _, n := range h.names {
		if len(g.names) > maxNames {
			break
		}
		g.names = append(g.names, n)
	}
	h.names = nil
	return g
}

// left records that f, a member of a group, is no longer in flight.
func (s *fetchShare) left() {
	if s != nil && s.group != nil {
		s.group.root().live--
	}
}

// sharedWith is what f's record says of the FETCHes its content may have
// answered instead: the first maxNames others' tags, and how many others
// there were when that is more than the names (0 otherwise).
func (s *fetchShare) sharedWith(f *inflight, maxNames int) ([]string, int) {
	if s == nil || s.group == nil {
		return nil, 0
	}
	g := s.group.root()
	names := make([]string, 0, min(len(g.names), maxNames))
	self := false
	for _, n := range g.names {
		if !self && n == f.cmd.Tag {
			self = true // its own name (a tag may be in flight twice)
			continue
		}
		if len(names) < maxNames {
			names = append(names, n)
		}
	}
	others := g.count - 1
	if others <= len(names) {
		return names, 0
	}
	return names, others
}

// answerSteps, when set (tests), counts the FETCHes in flight that
// answering looks at: its work per response.
var answerSteps *atomic.Int64
