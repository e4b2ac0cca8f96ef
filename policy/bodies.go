package policy

import (
	"encoding/binary"
	"fmt"
	"sync"
	"sync/atomic"

	"github.com/open-policy-agent/opa/v1/ast"
)

// Bodies of a set rule remembered per session and command effects
// (ARCHITECTURE.md §10). A rule such as deny is planned as one function
// whose blocks are its bodies, each adding what it finds to the rule's
// set. After specialization by point, a body that reads nothing of the
// input but the session and the command's effects (the shipped
// legal_hold's, protected_folders' and readonly's) adds the same elements
// for the same session and the same effects: a run of such bodies is replaced by
// one statement (opBodies) that adds the elements the run added before,
// remembered with the session (inputPart.bodies) by the effects' part
// (its id), and runs the bodies otherwise. Only where skipping them
// changes nothing else: no body of the run reads a local it did not write
// first, returns, or touches the rule's set but to add to it, and no later
// body reads a local the run writes before writing it.

// bodyGroup is a run of a set rule's bodies remembered together.
type bodyGroup struct {
	fn     string
	index  int // in its program: the first part of its memo key
	result int // the rule's set
	blocks []block
}

// bodyInfo is what a body reads and writes.
type bodyInfo struct {
	ok      bool         // no return, no result set, the rule's set only added to
	exposed map[int]bool // locals it may read before writing them (input and data aside)
	writes  map[int]bool
	uses    slotSet // the input slots it may read
}

// groupBodies replaces the runs of bodies of fn (a rule of p, specialized
// by point) that may be remembered by opBodies statements; next numbers
// the groups of the program and its copies.
func groupBodies(p *program, fn *function, next *int) {
	n := len(fn.blocks)
	if fn.memo < 0 || n < 3 || len(fn.blocks[0]) != 1 || len(fn.blocks[n-1]) != 1 {
		return
	}
	mk, ret := fn.blocks[0][0], fn.blocks[n-1][0]
	if mk.op != opMakeSet || ret.op != opReturn || ret.target != mk.target || mk.target < 2 {
		return
	}
	result := mk.target
	infos := make([]bodyInfo, n)
	for i := 1; i < n-1; i++ {
		infos[i] = analyzeBody(p, fn.blocks[i], result)
	}
	allowed := sessionSlots | setOf(slotEffects, slotPoint)
	member := func(i int) bool {
		in := infos[i]
		return i > 0 && i < n-1 && in.ok && len(in.exposed) == 0 && in.uses&^allowed == 0
	}
	out := []block{fn.blocks[0]}
	for i := 1; i < n-1; {
		j := i
		writes := map[int]bool{}
		for j < n-1 && member(j) {
			for l := range infos[j].writes {
				writes[l] = true
			}
			j++
		}
		// The later bodies must not read what the run leaves in locals.
		for j > i && exposedAfter(infos, j, n, writes) {
			j--
			writes = map[int]bool{}
			for k := i; k < j; k++ {
				for l := range infos[k].writes {
					writes[l] = true
				}
			}
		}
		if j == i || !worthGrouping(fn.blocks[i:j]) {
			j = max(j, i+1)
			out = append(out, fn.blocks[i:j]...)
			i = j
			continue
		}
		g := &bodyGroup{fn: fn.name, index: *next, result: result, blocks: fn.blocks[i:j]}
		*next++
		out = append(out, block{{op: opBodies, instrX: &instrX{group: g}}})
		p.bodies = true
		i = j
	}
	fn.blocks = append(out, fn.blocks[n-1])
}

// exposedAfter: a body from j on (up to the return, n-1) may read a local
// in writes before writing it.
func exposedAfter(infos []bodyInfo, j, n int, writes map[int]bool) bool {
	for k := j; k < n-1; k++ {
		for l := range infos[k].exposed {
			if writes[l] {
				return true
			}
		}
	}
	return false
}

// analyzeBody finds what body b of a set rule whose set is local result
// reads and writes.
func analyzeBody(p *program, b block, result int) bodyInfo {
	w := &bodyWalk{p: p, info: bodyInfo{ok: true, exposed: map[int]bool{}, writes: map[int]bool{}}, result: result, docs: map[int]string{}}
	w.findDocs(b)
	w.block(b, wset{})
	return w.info
}

type bodyWalk struct {
	p      *program // whose constants the body reads
	info   bodyInfo
	result int
	// docs are the locals a statement of the body sets to a document of
	// the input (input.session, input.command, ...), by its key.
	docs map[int]string
}

// constKey is the string constant of operand o, if it is one.
func constKey(p *program, o operand) (string, bool) {
	if o.local >= 0 {
		return "", false
	}
	v := p.consts[-1-o.local]
	return v.s, v.k == kStr
}

func (w *bodyWalk) findDocs(b block) {
	for i := range b {
		in := &b[i]
		if in.op == opDot && in.a.local == 0 {
			if k, ok := constKey(w.p, in.b); ok {
				if old, seen := w.docs[in.target]; seen && old != k {
					w.docs[in.target] = "" // either: every slot
				} else {
					w.docs[in.target] = k
				}
			}
		}
		if in.instrX != nil {
			for _, inner := range in.blocks {
				w.findDocs(inner)
			}
			w.findDocs(in.body)
		}
	}
}

// slotsOf are the slots under input's key doc, or (field not "") that
// field of it.
func slotsOf(doc, field string) slotSet {
	if doc == "" {
		return allSlots
	}
	ref := ast.Ref{ast.VarTerm("input"), ast.StringTerm(doc)}
	if field != "" {
		ref = append(ref, ast.StringTerm(field))
	}
	return slotsOfRef(ref)
}

func (w *bodyWalk) read(l int, written wset) {
	switch {
	case l == 0:
		w.info.uses = allSlots // input read otherwise than by a field
	case l == 1:
	case l == w.result:
		w.info.ok = false
	default:
		if !written[l] {
			w.info.exposed[l] = true
		}
		if doc, ok := w.docs[l]; ok {
			w.info.uses |= slotsOf(doc, "")
		}
	}
}

func (w *bodyWalk) readOp(o operand, written wset) {
	if o.local >= 0 {
		w.read(int(o.local), written)
	}
}

func (w *bodyWalk) write(l int, written wset) {
	if l == w.result || l < 2 {
		w.info.ok = false
		return
	}
	w.info.writes[l] = true
	written[l] = true
}

// block walks b, cur holding the locals surely written when it begins,
// and returns those surely written when it is left with each r
// (fellThrough, or the blocks left: 0, 1, ...; absent when never): a
// statement that fails leaves its block (0), a break n more, and the
// blocks of a Block, Not and Scan pass them on as exec does.
func (w *bodyWalk) block(b block, cur wset) exitSets {
	ex := exitSets{}
	for i := range b {
		in := &b[i]
		if mayFail(in.op) {
			ex.add(0, cur)
		}
		switch in.op {
		case opNop:
		case opBreak:
			ex.add(int(in.n), cur)
			return ex
		case opArrayAppend, opObjectInsert, opObjectInsertOnce:
			w.readOp(in.a, cur)
			if in.op != opArrayAppend {
				w.readOp(in.b, cur)
			}
			w.read(in.target, cur)
		case opSetAdd:
			w.readOp(in.a, cur)
			if in.target != w.result {
				w.read(in.target, cur)
			}
		case opAssignInt, opMakeArray, opMakeObject, opMakeSet, opResetLocal:
			w.write(in.target, cur)
		case opAssignVar, opMakeConst, opLen:
			w.readOp(in.a, cur)
			w.write(in.target, cur)
		case opAssignVarOnce:
			w.readOp(in.a, cur)
			w.read(in.target, cur)
			w.write(in.target, cur)
		case opDot:
			src := int(in.a.local)
			key, isConst := constKey(w.p, in.b)
			switch doc, isDoc := w.docs[src]; {
			case in.a.local == 0 && isConst:
				if key == docPoint {
					w.info.uses |= 1 << slotPoint
				}
			case in.a.local >= 0 && isDoc && isConst:
				if !cur[src] {
					w.info.exposed[src] = true
				}
				w.info.uses |= slotsOf(doc, key)
			default:
				w.readOp(in.a, cur)
				w.readOp(in.b, cur)
			}
			w.write(in.target, cur)
		case opEqual, opNotEqual:
			w.readOp(in.a, cur)
			w.readOp(in.b, cur)
		case opIsArray, opIsObject, opIsSet:
			w.readOp(in.a, cur)
		case opIsDefined, opIsUndefined:
			w.read(in.target, cur)
		case opCall:
			if in.fn.usesOK {
				w.info.uses |= in.fn.uses
			} else {
				w.info.uses = allSlots
			}
			for k, a := range in.args {
				if k >= 2 || a.local != int32(k) {
					w.readOp(a, cur)
				}
			}
			w.write(in.target, cur)
		case opCallBuiltin:
			for _, a := range in.args {
				w.readOp(a, cur)
			}
			w.write(in.target, cur)
		case opObjectMerge:
			w.read(in.key, cur)
			w.read(in.val, cur)
			w.write(in.target, cur)
		case opBlock:
			// Each block begins where the one before it was left with
			// fellThrough or 0; one left with r > 0 leaves this one with
			// r-1.
			next := cur
			for _, inner := range in.blocks {
				ie := w.block(inner, next.clone())
				ex.passOn(ie, 1)
				var ok bool
				if next, ok = ie.join(fellThrough, 0); !ok {
					return ex // never goes on
				}
			}
			cur = next
		case opNot:
			// The body holding (fellThrough) fails the Not.
			ie := w.block(in.body, cur.clone())
			ex.passOn(ie, 1)
			if held, ok := ie[fellThrough]; ok {
				ex.add(0, held)
			}
			var ok bool
			if cur, ok = ie.join(0); !ok {
				return ex
			}
		case opScan:
			// Left with 0 or fellThrough, the body runs for the next
			// element, with 1 the scan ends, with r > 1 it leaves this
			// block with r-2. It may run no time: after it, cur.
			w.read(in.target, cur)
			inner := cur.clone()
			w.write(in.key, inner)
			w.write(in.val, inner)
			ex.passOn(w.block(in.body, inner), 2)
		default: // opReturn, opResultSetAdd, opBodies, and any other
			w.info.ok = false
		}
	}
	ex.add(fellThrough, cur)
	return ex
}

// mayFail: a statement of op may be undefined, leaving its block (0).
func mayFail(op opcode) bool {
	switch op {
	case opNop, opBreak, opAssignInt, opMakeConst, opMakeArray, opMakeObject, opMakeSet, opResetLocal,
		opBlock, opNot, opScan, opReturn:
		return false
	}
	return true
}

// wset is a set of locals.
type wset map[int]bool

func (s wset) clone() wset {
	c := make(wset, len(s))
	for l := range s {
		c[l] = true
	}
	return c
}

// exitSets are the locals surely written at each way out of a block.
type exitSets map[int]wset

// add notes a way out with r, s written.
func (e exitSets) add(r int, s wset) {
	old, ok := e[r]
	if !ok {
		e[r] = s.clone()
		return
	}
	for l := range old {
		if !s[l] {
			delete(old, l)
		}
	}
}

// passOn notes the ways out of an inner block that leave this one: r >= n
// leaves it with r-n.
func (e exitSets) passOn(inner exitSets, n int) {
	for r, s := range inner {
		if r >= n {
			e.add(r-n, s)
		}
	}
}

// join is what is surely written at every one of the ways out rs that
// were taken; ok is false when none was.
func (e exitSets) join(rs ...int) (wset, bool) {
	var out exitSets = exitSets{}
	for _, r := range rs {
		if s, ok := e[r]; ok {
			out.add(0, s)
		}
	}
	s, ok := out[0]
	return s, ok
}

// bodies runs opBodies: adds to the rule's set what the group's bodies
// add, remembered for the session (m.mem.bodies) by the command's effects
// (m.mem.effects), or made by running them.
func (m *machine) bodies(g *bodyGroup, base int) error {
	memo := m.mem.bodies
	set := m.stack[base+g.result]
	if memo == nil || m.mem.effects == 0 || set.k != kSet || !set.c.arena {
		// Nothing to remember them by, or no set of the rule's own:
		// the bodies say what they do.
		return m.runBodies(g, base)
	}
	start := len(m.key)
	m.key = binary.AppendUvarint(binary.AppendUvarint(m.key, uint64(g.index)), m.mem.effects)
	v, hit := memo.get(m.key[start:])
	m.key = m.key[:start]
	if hit {
		set.c.term = nil // no longer what it was converted to
		for _, e := range v.c.keys {
			set.c.setAdd(e)
		}
		return nil
	}
	// The bodies add to a set of their own, then to the rule's.
	own := m.newVal(kSet, 0)
	m.stack[base+g.result] = own
	if err := m.runBodies(g, base); err != nil {
		return err
	}
	m.stack[base+g.result] = set
	set.c.term = nil
	for _, e := range own.c.keys {
		set.c.setAdd(e)
	}
	if m.berr == nil {
		kept, n := m.shareSet(own)
		m.key = binary.AppendUvarint(binary.AppendUvarint(m.key, uint64(g.index)), m.mem.effects)
		memo.put(m.key[start:], kept, n)
		m.key = m.key[:start]
	}
	return nil
}

// shareSet persists set, an arena's, its elements shared (share), so that
// the sessions' memos hold the same denials once, not each its own copy.
// n is its size as valSize counts it, less what is shared.
func (m *machine) shareSet(set val) (_ val, n int) {
	c := &coll{keys: make([]val, len(set.c.keys))}
	n = 40 + 80
	for i, e := range set.c.keys {
		var size int
		c.keys[i], size = m.share(e)
		n += size
	}
	v := seal(val{k: kSet, c: c})
	return v, n + heapSize(c.term, true, maxEntry)
}

// share persists v for a memo: a collection once by its exact key
// (appendValKey) in the program's shared values, which the memos holding
// it share. n is what the memo holds alone: the val, or all of v when it
// is not shared.
func (m *machine) share(v val) (_ val, n int) {
	if v.c == nil {
		return v, valSize(v, maxEntry)
	}
	if v.c.id != 0 {
		return v, 40 // shared already
	}
	key, ok := appendValKey(m.vkey[:0], v, maxVerdictKey)
	m.vkey = key
	if ok {
		if shared, found := m.p.elements.get(key); found {
			return shared, 40
		}
	}
	kept := persist(v)
	size := valSize(kept, maxEntry)
	// A copy no one holds yet gets its id as it is shared, before the
	// memos publish it.
	if ok && m.p.elements.put(key, kept, size, v.c.arena) {
		return kept, 40
	}
	return kept, size
}

// sharedIDs numbers the collections shared (coll.id).
var sharedIDs atomic.Uint64

// sharedVals are values persisted once by their exact key, shared by the
// memos that hold them. Never emptied, so that what a memo counts as
// shared is counted here: at most maxShared values of at most maxEntry,
// the later ones refused (their memos count them).
type sharedVals struct {
	mu sync.RWMutex
	m  map[string]val
}

// maxShared bounds sharedVals.
const maxShared = 256

func (s *sharedVals) get(key []byte) (val, bool) {
	s.mu.RLock()
	v, ok := s.m[string(key)]
	s.mu.RUnlock()
	return v, ok
}

// put shares v, of size n, unless full or too large; it reports whether
// v is shared. When fresh (a copy no one else holds), v gets its id
// (coll.id): a collection with one is in a sharedVals, counted there.
func (s *sharedVals) put(key []byte, v val, n int, fresh bool) bool {
	if n > maxEntry {
		return false
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.m == nil {
		s.m = map[string]val{}
	}
	if _, ok := s.m[string(key)]; ok || len(s.m) >= maxShared {
		return false
	}
	if fresh {
		v.c.id = sharedIDs.Add(1)
	}
	s.m[string(key)] = v
	return true
}

// worthGrouping: some body of bs calls, or scans: a memo look-up costs
// more than a few plain statements.
func worthGrouping(bs []block) bool {
	var any func(b block) bool
	any = func(b block) bool {
		for i := range b {
			in := &b[i]
			switch in.op {
			case opCall, opCallBuiltin, opScan:
				return true
			}
			if in.instrX != nil {
				for _, inner := range in.blocks {
					if any(inner) {
						return true
					}
				}
				if any(in.body) {
					return true
				}
			}
		}
		return false
	}
	for _, b := range bs {
		if any(b) {
			return true
		}
	}
	return false
}

// runBodies runs the group's bodies, as invoke runs a function's blocks.
func (m *machine) runBodies(g *bodyGroup, base int) error {
	for _, b := range g.blocks {
		r, err := m.exec(b, base)
		if err != nil {
			return err
		}
		if r == returned || r > 0 {
			return fmt.Errorf("policy: plan function %s breaks out of its body", g.fn)
		}
	}
	return nil
}
