package policy

import (
	"context"
	"fmt"
	"testing"

	"github.com/open-policy-agent/opa/v1/ast"
)

// Tests of the bodies of rules remembered per session and effects
// (bodies.go). TestCallMemosMatchTopdown and TestSharedOutcomesMatchTopdown
// hold decisions that read them (few sessions, many commands) to
// topdown's.

// denyGroups are the opBodies groups of deny in prog's copy for point.
func denyGroups(prog *program, point string) []*bodyGroup {
	var out []*bodyGroup
	for _, fn := range prog.byPoint[point].funcs {
		if fn.path == nil || fn.path[len(fn.path)-1] != "deny" {
			continue
		}
		for _, b := range fn.blocks {
			for i := range b {
				if b[i].op == opBodies {
					out = append(out, b[i].group)
				}
			}
		}
	}
	return out
}

// TestBodiesRememberedShipped: at the command point, the shipped deny's
// bodies of legal_hold, protected_folders and readonly (those reading only
// the session and the effects) are remembered together, and a decision
// reads them from its session's memo: made empty there, alice's DELETE
// Sent (protected_folders) is allowed; given back, denied again.
func TestBodiesRememberedShipped(t *testing.T) {
	e, _ := newTestEngine(t, Options{Dirs: []Dir{{Path: policySubset(t, nil)}}, Groups: planGroups})
	st := e.state.Load()
	st.cache = nil // every decision an evaluation
	p := st.dirs[0].prog
	most := 0
	for _, g := range denyGroups(p, "command") {
		most = max(most, len(g.blocks))
	}
	if most < 9 {
		t.Fatalf("deny's largest group at the command point has %d bodies, want 9 or more", most)
	}
	ctx := context.Background()
	in := command(t, "alice", "a DELETE Sent")
	if d := e.Decide(ctx, in); d.Allow || d.Annotations["policy"] != "protected_folders" {
		t.Fatalf("DELETE Sent: %+v", d)
	}
	c := newInputCtx(string(in.Point), in)
	c.groups, c.ids = st.groups, st.ids
	c.now, c.zone = e.now().In(e.loc), e.loc.String()
	part := cachedDoc(st, &c, st.uses&sessionSlots, partSession)
	memo := part.bodies[0]
	saved := memo.entries()
	if len(saved) == 0 {
		t.Fatal("nothing remembered")
	}
	none := map[string]val{}
	for k := range saved {
		none[k] = val{k: kSet, c: &coll{term: ast.SetTerm()}}
	}
	memo.m.Store(&none)
	if d := e.Decide(ctx, in); !d.Allow {
		t.Fatalf("with the bodies remembered adding nothing: %+v", d)
	}
	memo.m.Store(&saved)
	if d := e.Decide(ctx, in); d.Allow {
		t.Fatalf("remembered again: %+v", d)
	}
}

// TestBodyExposedFollowsExits: a local read after a nested block is
// written when every way the block goes on to the read writes it (the
// planner's `not data.x.y`: a Block whose inner block breaks out past the
// read when the data is undefined), and exposed when some way skips the
// write.
func TestBodyExposedFollowsExits(t *testing.T) {
	p := &program{consts: []val{vStr("x"), vStr("y"), vFalse}}
	x, y, f := operand{local: -1}, operand{local: -2}, operand{local: -3}
	inner := func(tail ...instr) block {
		b := block{{op: opDot, target: 9, a: operand{local: 1}, b: x}, {op: opDot, target: 10, a: operand{local: 9}, b: y}}
		return append(b, tail...)
	}
	nested := func(innerTail instr, outerTail ...instr) instr {
		in := instr{op: opBlock, instrX: &instrX{blocks: []block{append(block{{op: opBlock, instrX: &instrX{blocks: []block{inner(innerTail)}}}}, outerTail...)}}}
		return in
	}
	read := instr{op: opNotEqual, a: operand{local: 10}, b: f}
	for _, c := range []struct {
		name    string
		body    block
		exposed bool
	}{
		// Undefined data leaves the Not's body (break 1 past the read).
		{"planned", block{{op: opNot, instrX: &instrX{body: block{nested(instr{op: opBreak, n: 1}, instr{op: opBreak, n: 1}), read}}}}, false},
		// Undefined data goes on to the read.
		{"falls through", block{nested(instr{op: opBreak, n: 1})}, true},
		{"no break", block{nested(instr{op: opNop}), read}, true},
	} {
		if c.name == "falls through" {
			c.body = append(c.body, read)
		}
		info := analyzeBody(p, c.body, 2)
		if got := info.exposed[10]; got != c.exposed || !info.ok {
			t.Errorf("%s: local 10 exposed %v, want %v (ok %v)", c.name, got, c.exposed, info.ok)
		}
	}
}

// TestSharedValsBounded: the program's shared values are at most
// maxShared, none over maxEntry, and never emptied: a memo counts what it
// holds alone (share) only while the value is counted here.
func TestSharedValsBounded(t *testing.T) {
	var s sharedVals
	for i := range 2 * maxShared {
		shared := s.put(fmt.Appendf(nil, "k%d", i), vInt(int64(i)), 40, false)
		if shared != (i < maxShared) {
			t.Fatalf("value %d shared: %v", i, shared)
		}
	}
	if v, ok := s.get([]byte("k0")); !ok || v.n != 0 {
		t.Fatal("the first value is no longer shared")
	}
	if (&sharedVals{}).put([]byte("huge"), vInt(0), maxEntry+1, false) {
		t.Fatal("a value over maxEntry is shared")
	}
}

// TestSharedKeysAreExact: a shared collection's key is its id
// (appendValKey), which no other collection has: equal keys still mean
// equal values. Two equal values shared apart have two keys (a miss, not
// a wrong hit), a value refused by a full sharedVals gets no id, so that
// share counts it in full, and one with an id is shared already.
func TestSharedKeysAreExact(t *testing.T) {
	obj := func(reason string) val {
		c := &coll{arena: true, keys: []val{vStr("reason")}, vals: []val{vStr(reason)}}
		return val{k: kObj, c: c}
	}
	key := func(v val) string {
		k, ok := appendValKey(nil, v, maxCallKey)
		if !ok {
			t.Fatalf("no key for %v", toAST(v))
		}
		return string(k)
	}
	p := &program{elements: &sharedVals{}}
	m := &machine{p: p}
	a, _ := m.share(obj("no"))
	b, n := m.share(obj("no"))
	if a.c != b.c || n != 40 {
		t.Fatalf("an equal value is shared again: %p %p, counted %d", a.c, b.c, n)
	}
	if again, n := m.share(a); again.c != a.c || n != 40 {
		t.Fatalf("a shared value shared again: counted %d", n)
	}
	other, _ := m.share(obj("yes"))
	if a.c.id == 0 || other.c.id == 0 || a.c.id == other.c.id {
		t.Fatalf("ids %d and %d", a.c.id, other.c.id)
	}
	if key(a) == key(other) || key(a) == key(obj("no")) || key(obj("no")) != key(obj(string([]byte("no")))) {
		t.Fatal("keys of shared values are not exact")
	}
	set := func(es ...val) val { return val{k: kSet, c: &coll{arena: true, keys: es}} }
	if key(set(a)) == key(set(other)) || key(set(a)) != key(set(b)) {
		t.Fatal("keys of sets of shared values are not exact")
	}
	// A second sharedVals: the same contents, another id.
	m2 := &machine{p: &program{elements: &sharedVals{}}}
	c, _ := m2.share(obj("no"))
	if c.c.id == a.c.id || key(c) == key(a) {
		t.Fatal("two collections share an id")
	}
	// A full sharedVals: no id, counted in full.
	for i := range maxShared {
		p.elements.put(fmt.Appendf(nil, "k%d", i), vInt(int64(i)), 40, false)
	}
	full, n := m.share(obj("later"))
	if full.c.id != 0 || n == 40 {
		t.Fatalf("a value not shared has id %d, counted %d", full.c.id, n)
	}
}
