package policy

import (
	"context"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/open-policy-agent/opa/v1/ast"

	"github.com/imapwarden/imapwarden/proxy"
)

// Tests of the calls remembered by argument (memo.go, callScopes).

// memoPolicy has functions of each scope called with arguments that only
// an exact key tells apart (1 and 1.0, a string and an array holding it,
// sets), functions undefined for some arguments, and one that fails for
// some (to_number): its failure must never be remembered.
const memoPolicy = `package imapwarden

import rego.v1

tag(x) := sprintf("%v/%s", [x, input.session.user])

tag_unless_trash(x) := t if {
	x != "Trash"
	t := tag(x)
}

nums := [1, 1.0, "1", [1], ["1"], {"1"}, {"a": 1}, {"a": "1"}, null, false]

kinds_in(ks) := {e.kind | some e in input.command.effects; e.kind in ks}

number_in(name) := to_number(name)

deny contains {"policy": "memo", "reason": concat(",", [tag(n) | some n in nums])} if {
	input.point == "command"
	some e in input.command.effects
	tag_unless_trash(e.mailbox) == "Legal/erin"
}

deny contains {"policy": "memo-effects", "reason": concat(",", sort(kinds_in({"expunge", "create-messages", "mark-deleted"})))} if {
	input.point == "command"
	count(kinds_in({"expunge", "create-messages", "mark-deleted"})) > 1
	count(kinds_in(["delete-mailbox"])) == 0
}

deny contains {"policy": "memo-error"} if {
	input.point == "command"
	some e in input.command.effects
	startswith(e.mailbox, "HR")
	number_in(e.mailbox) > 3
}
`

// TestCallMemosMatchTopdown: an engine with its caches, whose sessions
// recur across commands (so that the remembered calls of one command
// answer the next's), decides every generated input, twice in other
// orders and at other times, as topdown alone does, with the shipped
// policies and with memoPolicy.
func TestCallMemosMatchTopdown(t *testing.T) {
	ins := planInputs(t, 3000, 41)
	r := rand.New(rand.NewPCG(5, 6))
	fewSessions(ins, 16, r)
	for _, name := range []string{"all-on", "shipped", "memo"} {
		t.Run(name, func(t *testing.T) {
			var dir string
			if name == "memo" {
				dir = policySubset(t, planVariants["all-on"])
				writeFile(t, filepath.Join(dir, "memo", "memo.rego"), memoPolicy)
			} else {
				dir = policySubset(t, planVariants[name])
			}
			var clock time.Time
			now := func() time.Time { return clock }
			cached, _ := newTestEngine(t, Options{Dirs: []Dir{{Path: dir}}, Groups: planGroups, Now: now})
			ref := topdownEngine(t, Options{Dirs: []Dir{{Path: dir}}, Groups: planGroups, Now: now, CacheSize: -1})
			p := cached.state.Load().dirs[0]
			if p.prog == nil {
				t.Fatalf("not compiled: %s", p.planErr)
			}
			if !p.prog.scoped[scopeSession] || !p.prog.scoped[scopeEffects] {
				t.Fatal("no function remembered by argument: the test proves nothing")
			}
			ctx := context.Background()
			seen := map[string]int{}
			for round := range 2 {
				for _, i := range r.Perm(len(ins)) {
					clock = planTimes[r.IntN(len(planTimes))]
					got, want := cached.Decide(ctx, ins[i]), ref.Decide(ctx, ins[i])
					if fmt.Sprintf("%#v", got) != fmt.Sprintf("%#v", want) {
						t.Fatalf("round %d, input %d (%s %+v):\ncached:  %#v\ntopdown: %#v", round, i, ins[i].Point, ins[i].Command, got, want)
					}
					switch {
					case got.Annotations[AnnotationError] == true:
						seen["error"]++
					case got.Allow:
						seen["allow"]++
					default:
						seen[fmt.Sprint(got.Annotations["policy"])]++
					}
				}
			}
			t.Logf("decisions by policy: %v", seen)
			// first_denial is remembered by deny's value (rulesOfRules).
			if of := p.prog.byPoint["command"].ofRules; of == nil || len(of.entries()) == 0 {
				t.Error("no rule remembered by the value of the rule it reads: the test proves nothing of them")
			}
			if name == "memo" {
				for _, want := range []string{"memo", "memo-effects", "error"} {
					if seen[want] == 0 {
						t.Errorf("no decision by %s: the inputs do not reach it", want)
					}
				}
			}
		})
	}
}

// plannedShipped is the shipped policies, every one switched on, planned.
func plannedShipped(t *testing.T) *compiled {
	t.Helper()
	p, err := compileDir(context.Background(), policySubset(t, planVariants["all-on"]), false)
	if err != nil {
		t.Fatal(err)
	}
	if p.prog == nil {
		t.Fatal(p.planErr)
	}
	return p
}

// TestCallScopesShipped: the shipped policies' functions of the session,
// of the effects, and of the session and the clock are remembered by
// argument (a session rule, user, is remembered as before; rules reading
// the command, deny, not at all); and the remembered values are what a decision uses: replaced
// by wrong ones, they change it.
func TestCallScopesShipped(t *testing.T) {
	p := plannedShipped(t)
	want := map[string]memoScope{
		"held": scopeSession, "holds_inside": scopeSession, "mailbox_under": scopeSession,
		"protected_mailbox": scopeSession, "in_list": scopeSession, "client_allowed": scopeSession,
		"from_any": scopeSession, "effects_of": scopeEffects, "within": scopeClock, "today_listed": scopeClock,
		"outside_hours": scopeClock, "user": scopeNone, "deny": scopeNone, "append_command": scopeNone,
	}
	byName := map[string]*function{}
	for _, fn := range p.prog.funcs {
		if fn.path != nil {
			byName[fn.path[len(fn.path)-1]] = fn
		}
	}
	for name, scope := range want {
		if fn := byName[name]; fn == nil || fn.scope != scope {
			t.Errorf("%s: not of scope %v", name, scope)
		}
	}

	// alice may delete Archive (allowed), not Sent (protected_folders).
	ctx := context.Background()
	rules := make(ruleMemo, p.prog.nsession)
	decide := func(line string, session, effects *callMemo) string {
		in := command(t, "alice", line)
		c := newInputCtx(string(in.Point), in)
		c.groups, c.ids = planGroups, p.ids
		m := getMachine()
		defer m.release()
		mem := memos{rules: rules, calls: [numScopes]*callMemo{scopeSession: session, scopeEffects: effects}}
		v, err := p.prog.run(ctx, m, c.flat(p.uses, m), mem)
		if err != nil {
			t.Fatal(err)
		}
		return toAST(v).String()
	}
	session, effects := &callMemo{}, &callMemo{}
	allowed, denied := decide("a DELETE Archive", session, &callMemo{}), decide("a DELETE Sent", session, effects)
	if allowed == denied {
		t.Fatalf("both %s", allowed)
	}
	if len(session.entries()) == 0 || len(effects.entries()) == 0 {
		t.Fatalf("remembered: %d calls for the session, %d for the effects", len(session.entries()), len(effects.entries()))
	}
	if got := decide("a DELETE Sent", session, effects); got != denied {
		t.Fatalf("remembered: %s, want %s", got, denied)
	}
	// Every remembered call of the session now says "no" (undefined): Sent
	// is no longer protected.
	saved := session.entries()
	wrong := map[string]val{}
	for k := range saved {
		wrong[k] = val{}
	}
	session.m.Store(&wrong)
	if got := decide("a DELETE Sent", session, effects); got != allowed {
		t.Fatalf("with the session's calls remembered undefined: %s, want %s", got, allowed)
	}
	// Likewise the effects': the command has no effect of any kind.
	session.m.Store(&saved)
	wrong = map[string]val{}
	for k := range effects.entries() {
		wrong[k] = val{k: kSet, c: &coll{}}
	}
	effects.m.Store(&wrong)
	if got := decide("a DELETE Sent", session, effects); got != allowed {
		t.Fatalf("with the effects' calls remembered empty: %s, want %s", got, allowed)
	}
}

// TestConstCallsShareSlots: the shipped policies' calls of effects_of,
// whose kinds are literals, each have a slot of the evaluation's memo
// table and the key of their kinds made at load, one slot per set of
// kinds whichever rule asks (constCalls); a call with a variable
// argument has none.
func TestConstCallsShareSlots(t *testing.T) {
	p := plannedShipped(t)
	calls := map[string]int{}    // function name: call sites
	slots := map[string][]int{}  // kinds' key: slots
	variable := map[string]int{} // function name: call sites without a slot
	var walk func(b block)
	walk = func(b block) {
		for i := range b {
			in := &b[i]
			if in.op == opCall && in.fn.path != nil {
				name := in.fn.path[len(in.fn.path)-1]
				calls[name]++
				if in.cslot > 0 {
					if in.cargs == nil || in.cslot > p.prog.nmemo {
						t.Errorf("%s: slot %d of %d, key %x", name, in.cslot, p.prog.nmemo, in.cargs)
					}
					k := name + "/" + string(in.cargs)
					if !slices.Contains(slots[k], in.cslot) {
						slots[k] = append(slots[k], in.cslot)
					}
				} else if in.fn.memo < 0 {
					variable[name]++
				}
			}
			if in.instrX != nil {
				for _, inner := range in.blocks {
					walk(inner)
				}
				walk(in.body)
			}
		}
	}
	for _, fn := range p.prog.funcs {
		for _, b := range fn.blocks {
			walk(b)
		}
	}
	if calls["effects_of"] < 4 || variable["effects_of"] > 0 {
		t.Errorf("effects_of: %d calls, %d without a slot", calls["effects_of"], variable["effects_of"])
	}
	if variable["held"] == 0 || variable["mailbox_under"] == 0 {
		t.Errorf("calls with variable arguments given slots: %v of %v", variable, calls)
	}
	seen := map[int]string{}
	for k, s := range slots {
		if len(s) != 1 {
			t.Errorf("%q: slots %v", k, s)
		}
		if other, ok := seen[s[0]]; ok {
			t.Errorf("%q and %q share slot %d", k, other, s[0])
		}
		seen[s[0]] = k
	}
	if len(slots) >= calls["effects_of"] {
		t.Errorf("%d slots for %d calls: none shared", len(slots), calls["effects_of"])
	}
}

// TestCallKeysAreExact: two values get the same key exactly when they are
// written the same; undefined has none.
func TestCallKeysAreExact(t *testing.T) {
	var vals []val
	for _, tm := range nativeArgs {
		v, err := fromAST(tm)
		if err != nil {
			t.Fatal(err)
		}
		vals = append(vals, v)
	}
	for _, s := range []string{`"1"`, `["1"]`, `{"1"}`, `{"a": "1"}`, `[[]]`, `[{}]`, `[set()]`, `["ab"]`, `["a", "b", ""]`, `[["a"], "b"]`} {
		v, _ := fromAST(ast.MustParseTerm(s))
		vals = append(vals, v)
	}
	keys := map[string]int{}
	for i, v := range vals {
		k, ok := appendValKey(nil, v, maxCallKey)
		if !ok {
			t.Fatalf("%v: no key", toAST(v))
		}
		if j, dup := keys[string(k)]; dup && toAST(vals[j]).String() != toAST(v).String() {
			t.Fatalf("%v and %v share a key", toAST(vals[j]), toAST(v))
		}
		keys[string(k)] = i
		// A key is a prefix of no other: two arguments in a row are
		// told apart too.
		for other := range keys {
			if other != string(k) && (len(other) > len(k) && other[:len(k)] == string(k)) {
				t.Fatalf("the key of %v is a prefix of another", toAST(v))
			}
		}
	}
	if _, ok := appendValKey(nil, val{}, maxCallKey); ok {
		t.Fatal("undefined has a key")
	}
	long := vStr(string(slices.Repeat([]byte("x"), maxCallKey)))
	if _, ok := appendValKey(nil, long, maxCallKey); ok {
		t.Fatal("a key over maxCallKey")
	}
}

// TestCallMemoBounded: a callMemo holds at most maxCalls entries and
// maxEntry bytes of values, and a value larger than that not at all.
func TestCallMemoBounded(t *testing.T) {
	c := &callMemo{}
	for i := range 10 * maxCalls {
		c.put(fmt.Appendf(nil, "k%d", i), vInt(int64(i)), 40)
		if len(c.entries()) > maxCalls || c.size > maxEntry {
			t.Fatalf("%d entries, %d bytes", len(c.entries()), c.size)
		}
	}
	if v, ok := c.get(fmt.Appendf(nil, "k%d", 10*maxCalls-1)); !ok || v.n != 10*maxCalls-1 {
		t.Fatal("the last value is not remembered")
	}
	for i := range 100 {
		c.put(fmt.Appendf(nil, "big%d", i), vInt(0), 4000)
		if c.size > maxEntry {
			t.Fatalf("%d bytes", c.size)
		}
	}
	c.put([]byte("huge"), vInt(0), maxEntry)
	if _, ok := c.get([]byte("huge")); ok {
		t.Fatal("a value over maxEntry is remembered")
	}
}

// TestConstantVerdicts: the shipped policies' allow decision is a constant
// of the plan, parsed at load as parseDecision parses it, and an allowed
// command's decision is that constant.
func TestConstantVerdicts(t *testing.T) {
	p, err := compileDir(context.Background(), policySubset(t, nil), false)
	if err != nil {
		t.Fatal(err)
	}
	if p.prog == nil {
		t.Fatal(p.planErr)
	}
	for c, d := range p.prog.verdicts {
		want, err := parseDecision(c.term.Value)
		if err != nil || fmt.Sprintf("%#v", d) != fmt.Sprintf("%#v", want) {
			t.Fatalf("%v: %#v, parseDecision %#v (%v)", c.term, d, want, err)
		}
	}
	in := command(t, "alice", "a DELETE Archive")
	c := newInputCtx(string(in.Point), in)
	c.groups, c.ids = planGroups, p.ids
	m := getMachine()
	defer m.release()
	v, err := p.prog.run(context.Background(), m, c.flat(p.uses, m), memos{})
	if err != nil {
		t.Fatal(err)
	}
	if d, ok := p.prog.verdicts[v.c]; !ok || !d.allow {
		t.Fatalf("decision %v is not a constant verdict", toAST(v))
	}
}

// TestSpecializedByPoint: the shipped policies' program has a copy per
// decision point, each shorter than the program as planned (the bodies of
// rules of other points end at their test of input.point, and tests that
// hold are gone), and runs it
// for an input of that point; a plan that passes the input on in another
// local is not specialized.
func TestSpecializedByPoint(t *testing.T) {
	p := plannedShipped(t)
	if len(p.prog.byPoint) != len(decisionPoints) {
		t.Fatal("not specialized")
	}
	var count func(bs []block) int
	count = func(bs []block) int {
		n := 0
		for _, b := range bs {
			for _, in := range b {
				n++
				if in.instrX != nil {
					n += count(in.blocks) + count([]block{in.body})
				}
			}
		}
		return n
	}
	size := func(p *program) int {
		n := count(p.entry)
		for _, fn := range p.funcs {
			n += count(fn.blocks)
		}
		return n
	}
	all := size(p.prog)
	for point, v := range p.prog.byPoint {
		if n := size(v); n >= all {
			t.Errorf("%s: %d statements of %d", point, n, all)
		}
		t.Logf("%s: %d statements of %d", point, size(v), all)
	}
	// input.point != "connect" and input.point in {"auth", "route"} are
	// decided at load: no such test is left at the command point.
	var pointTests func(bs []block) int
	pointTests = func(bs []block) int {
		n := 0
		for _, b := range bs {
			for _, in := range b {
				if in.op == opCallBuiltin && (in.name == ast.NotEqual.Name || in.name == ast.Member.Name) {
					for _, a := range in.args {
						if a.local < 0 && p.prog.consts[-1-a.local].k == kStr && slices.Contains(decisionPoints, p.prog.consts[-1-a.local].s) {
							n++
						}
					}
				}
				if in.instrX != nil {
					n += pointTests(in.blocks) + pointTests([]block{in.body})
				}
			}
		}
		return n
	}
	for _, fn := range p.prog.byPoint["command"].funcs {
		if n := pointTests(fn.blocks); n > 0 {
			t.Errorf("%s tests input.point %d times at the command point", fn.name, n)
		}
	}

	// A call passing the input in another local: no copies.
	prog := &program{consts: []val{vStr("point")}, funcs: []*function{{params: []int{0, 1, 2}}}}
	prog.entry = []block{{{op: opAssignVar, target: 5, a: operand{local: 0}},
		{op: opCall, target: 6, instrX: &instrX{fn: prog.funcs[0], args: []operand{{local: 5}, {local: 1}, {local: 2}}}}}}
	specialize(prog)
	if prog.byPoint != nil {
		t.Fatal("specialized a program that passes the input in another local")
	}
}

// topdownEngine is an engine deciding with topdown alone, the reference
// of the differential tests.
func topdownEngine(t *testing.T, opts Options) *Engine {
	e, _ := newTestEngine(t, opts)
	for _, p := range e.state.Load().dirs {
		if p.prog == nil {
			t.Fatalf("the policies are not compiled: %s", p.planErr)
		}
		p.prog = nil // topdown alone
	}
	return e
}

// fewSessions gives ins n sessions only (the first n), each with many
// commands, so that what is remembered per session is used.
func fewSessions(ins []*proxy.DecisionInput, n int, r *rand.Rand) {
	var sessions []*proxy.SessionInfo
	for _, in := range ins {
		if len(sessions) < n {
			sessions = append(sessions, in.Session)
		}
	}
	for _, in := range ins {
		in.Session = sessions[r.IntN(len(sessions))]
	}
}

// TestSharedOutcomesMatchTopdown: with the input's parts and calls
// remembered but no decision cache, so that every input is evaluated, the
// outcomes made once (a shared verdict deciding alone, sharedVerdict.alone;
// an allow with nothing to add, state.allowed) are taken, and every
// decision is topdown's.
func TestSharedOutcomesMatchTopdown(t *testing.T) {
	ins := append(planInputs(t, 1500, 51), randomCommands(t, 1500, 52)...)
	fewSessions(ins, 8, rand.New(rand.NewPCG(7, 8)))
	for _, name := range []string{"all-on", "shipped"} {
		t.Run(name, func(t *testing.T) {
			dir := policySubset(t, planVariants[name])
			var clock time.Time
			now := func() time.Time { return clock }
			e, _ := newTestEngine(t, Options{Dirs: []Dir{{Path: dir}}, Groups: planGroups, Now: now})
			ref := topdownEngine(t, Options{Dirs: []Dir{{Path: dir}}, Groups: planGroups, Now: now, CacheSize: -1})
			st := e.state.Load()
			st.cache = nil // every decision an evaluation
			ctx := context.Background()
			seen := map[*outcome]int{}
			alone, allowed := 0, 0
			for i, in := range ins {
				clock = planTimes[i%len(planTimes)]
				evals := e.Stats().Evaluations
				o := e.decide(ctx, st, in)
				got, want := o.decision, ref.Decide(ctx, in)
				if fmt.Sprintf("%#v", got) != fmt.Sprintf("%#v", want) {
					t.Fatalf("input %d (%s %+v):\nflat:    %#v\ntopdown: %#v", i, in.Point, in.Command, got, want)
				}
				if e.Stats().Evaluations == evals {
					continue // no policy concerned
				}
				switch {
				case o == st.allowed:
					allowed++
				case seen[o] > 0:
					alone++
				}
				seen[o]++
			}
			if s := e.Stats(); s.Errors > 0 {
				t.Fatalf("%d evaluations failed", s.Errors)
			}
			t.Logf("%d inputs: %d shared denials, %d plain allows", len(ins), alone, allowed)
			if alone == 0 || allowed == 0 {
				t.Fatalf("shared outcomes not taken: %d denials, %d allows", alone, allowed)
			}
		})
	}
}

// TestSharedOutcomeKeepsItsState: an outcome kept with a shared verdict
// is reused only by evaluations of the state that made it: another
// revision makes its own, with its own revision annotation.
func TestSharedOutcomeKeepsItsState(t *testing.T) {
	dir := policySubset(t, map[string]string{"legal_hold": "users: [erin]\nmailboxes: {}\n"})
	e, _ := newTestEngine(t, Options{Dirs: []Dir{{Path: dir}}, Groups: map[string][]string{"erin": {"staff"}}})
	ctx := context.Background()
	in := command(t, "erin", "a UID EXPUNGE 1:5")
	st := e.state.Load()
	st.cache = nil
	first := e.decide(ctx, st, in)
	if first.decision.Allow || e.decide(ctx, st, in) != first {
		t.Fatalf("the denial %+v is not made once", first.decision)
	}
	other := *st
	other.revision = "other"
	o := e.decide(ctx, &other, in)
	if o == first || o.decision.Annotations[AnnotationRevision] != "other" {
		t.Fatalf("another state's evaluation got %+v", o.decision)
	}
	if first.decision.Annotations[AnnotationRevision] != st.revision {
		t.Fatalf("the first state's outcome changed: %+v", first.decision)
	}
}

// TestVerdictsRememberedExactly: decisions the plan makes are remembered
// by their exact value (verdictOf): a decision made again is shared with
// its outcome (the same annotations map), and values only an exact key
// tells apart (1 and 1.0, an array and a set, a string and an object, a
// string and its prefix) each decide as topdown does, in any order.
func TestVerdictsRememberedExactly(t *testing.T) {
	dir := regoDir(t, map[string]string{"p.rego": `package imapwarden

import rego.v1

default decision := {"allow": true}

decision := {"allow": false, "code": "NOPERM", "reason": reason, "annotations": {"v": value(input.command.mailbox)}} if {
	input.point == "command"
	reason := sprintf("%s (%d)", ["refused", count(input.command.mailbox)])
}

value(m) := 1 if m == "one"

value(m) := 1.0 if m == "onef"

value(m) := ["x"] if m == "arr"

value(m) := {"x"} if m == "set"

value(m) := {"x": "x"} if m == "obj"

value(m) := m if not m in {"one", "onef", "arr", "set", "obj"}
`})
	opts := Options{Dirs: []Dir{{Path: dir}}, CacheSize: -1}
	e, _ := newTestEngine(t, opts)
	if p := e.state.Load().dirs[0]; p.prog == nil {
		t.Fatalf("the policy is not planned: %s", p.planErr)
	}
	ref := topdownEngine(t, opts)
	ctx := context.Background()
	var ins []*proxy.DecisionInput
	for _, m := range []string{"one", "onef", "arr", "set", "obj", "x", "xx", "X", "x/y", "one1", "on", "abc", "ab"} {
		ins = append(ins, command(t, "alice", "a DELETE "+m))
	}
	first := map[int]string{}
	for round := range 3 {
		for j := range ins {
			i := (j*7 + round*3) % len(ins)
			got, want := e.Decide(ctx, ins[i]), ref.Decide(ctx, ins[i])
			if fmt.Sprintf("%#v", got) != fmt.Sprintf("%#v", want) {
				t.Fatalf("round %d, %s:\nflat:    %#v\ntopdown: %#v", round, ins[i].Command.Mailbox, got, want)
			}
			p := fmt.Sprintf("%p", got.Annotations)
			if round == 0 {
				first[i] = p
			} else if first[i] != p {
				t.Fatalf("round %d, %s: a decision made again was not shared", round, ins[i].Command.Mailbox)
			}
		}
	}
	if n := e.state.Load().dirs[0].verdicts.len(); n != len(ins) {
		t.Fatalf("%d verdicts remembered for %d decisions", n, len(ins))
	}
}

// TestHugeDecisionKeepsScratchSmall: a decision holding a string larger
// than maxVerdictKey (a mailbox name in a reason, up to the line limit)
// decides as topdown does and is not remembered, and neither verdictOf
// nor sprintf grows the machine's scratch key past its bound first: the
// pooled machine would keep it for every later decision. release drops a
// scratch key over the bound and keeps a small one.
func TestHugeDecisionKeepsScratchSmall(t *testing.T) {
	dir := regoDir(t, map[string]string{"p.rego": `package imapwarden

import rego.v1

default decision := {"allow": true}

decision := {"allow": false, "code": "NOPERM", "reason": sprintf("%s is protected", [input.command.mailbox])} if {
	input.point == "command"
}
`})
	opts := Options{Dirs: []Dir{{Path: dir}}, CacheSize: -1}
	e, _ := newTestEngine(t, opts)
	p := e.state.Load().dirs[0]
	if p.prog == nil {
		t.Fatalf("the policy is not planned: %s", p.planErr)
	}
	ref := topdownEngine(t, opts)
	ctx := context.Background()
	huge := strings.Repeat("x", 60<<10)
	in := command(t, "alice", "a DELETE "+huge)
	for range 2 {
		got, want := e.Decide(ctx, in), ref.Decide(ctx, in)
		if fmt.Sprintf("%#v", got) != fmt.Sprintf("%#v", want) || got.Allow || !strings.HasPrefix(got.Reason, "xxx") {
			t.Fatalf("flat %.300v\ntopdown %.300v", got, want)
		}
	}
	if n := p.verdicts.len(); n != 0 {
		t.Fatalf("%d verdicts remembered, one over maxVerdictKey among them", n)
	}

	m := getMachine()
	defer m.release()
	v, err := fromAST(ast.MustParseTerm(fmt.Sprintf(`{"allow": false, "code": "NOPERM", "reason": %q}`, huge)))
	if err != nil {
		t.Fatal(err)
	}
	v.c.term = nil // as the plan makes it: verdictOf keys it
	d, err := p.verdictOf(m, v)
	want, werr := parseVerdict(v)
	if err != nil || werr != nil || fmt.Sprintf("%#v", d) != fmt.Sprintf("%#v", want) {
		t.Fatalf("verdictOf %#v (%v), parseVerdict %#v (%v)", d, err, want, werr)
	}
	if cap(m.vkey) > maxScratchKey || p.verdicts.len() != 0 {
		t.Fatalf("verdictOf grew the scratch key to %d bytes, remembered %d verdicts", cap(m.vkey), p.verdicts.len())
	}
	args, err := fromAST(ast.MustParseTerm(fmt.Sprintf(`[%q]`, huge)))
	if err != nil {
		t.Fatal(err)
	}
	cached := len(m.sprintfCache) // the pooled machine's, of earlier decisions
	if s, ok := natives[ast.Sprintf.Name](m, []val{vStr("%s is protected"), args}); !ok || s.s != huge+" is protected" {
		t.Fatalf("sprintf: %.80q, %v", s.s, ok)
	}
	if cap(m.vkey) > maxScratchKey || len(m.sprintfCache) != cached {
		t.Fatalf("sprintf grew the scratch key to %d bytes, remembered %d results", cap(m.vkey), len(m.sprintfCache)-cached)
	}

	m.key, m.vkey = make([]byte, 0, 1<<20), make([]byte, 0, 1<<20)
	m.tidy()
	if m.key != nil || m.vkey != nil {
		t.Fatalf("kept scratch keys of %d and %d bytes", cap(m.key), cap(m.vkey))
	}
	m.key, m.vkey = make([]byte, 3, 64), make([]byte, 3, 64)
	m.tidy()
	if len(m.key) != 0 || cap(m.key) != 64 || len(m.vkey) != 0 || cap(m.vkey) != 64 {
		t.Fatalf("small scratch keys not kept empty: %d/%d, %d/%d", len(m.key), cap(m.key), len(m.vkey), cap(m.vkey))
	}
}

// TestFixedCallSlots: the shipped effects_of calls, whose kinds are
// literals, are remembered with the effects' part in the slots fixed at
// load (callMemo.fixed), not by a key made at each call, and a decision
// reads them there: made empty, another session's DELETE Sent (its bodies
// not yet remembered) is allowed; given back, denied again.
func TestFixedCallSlots(t *testing.T) {
	e, _ := newTestEngine(t, Options{Dirs: []Dir{{Path: policySubset(t, nil)}}, Groups: planGroups})
	st := e.state.Load()
	st.cache = nil // every decision an evaluation
	ctx := context.Background()
	if d := e.Decide(ctx, command(t, "alice", "a DELETE Sent")); d.Allow {
		t.Fatalf("alice's DELETE Sent: %+v", d)
	}
	in := command(t, "erin", "a DELETE Sent")
	c := newInputCtx(string(in.Point), in)
	c.groups, c.ids = st.groups, st.ids
	part := cachedDoc(st, &c, setOf(slotEffects), partEffects)
	memo := part.calls[0]
	var kept []int
	for i := range memo.fixed {
		if memo.fixed[i].Load() != nil {
			kept = append(kept, i)
		}
	}
	if len(kept) == 0 || len(memo.entries()) != 0 {
		t.Fatalf("%d fixed slots and %d keyed entries remembered, want fixed ones only", len(kept), len(memo.entries()))
	}
	saved := make([]*fixedVal, len(kept))
	for j, i := range kept {
		saved[j] = memo.fixed[i].Load()
		memo.fixed[i].Store(&fixedVal{v: val{k: kSet, c: &coll{term: ast.SetTerm()}}})
	}
	if d := e.Decide(ctx, in); !d.Allow {
		t.Fatalf("with effects_of remembered empty: %+v", d)
	}
	for j, i := range kept {
		memo.fixed[i].Store(saved[j])
	}
	if d := e.Decide(ctx, command(t, "carol", "a DELETE Sent")); d.Allow {
		t.Fatalf("remembered again: %+v", d)
	}
}

// TestFixedClockSlots: a rule of the session and the clock (business
// hours' outside_hours for dave, of the shift group) is remembered in its
// fixed slot with input.now's key, and a value of another minute there is
// not used: the decision stays what it was, and the slot is made again
// for this minute.
func TestFixedClockSlots(t *testing.T) {
	at := time.Date(2026, 3, 2, 20, 0, 0, 0, time.UTC) // a Monday, after the shift
	e, _ := newTestEngine(t, Options{Dirs: []Dir{{Path: policySubset(t, planVariants["all-on"])}}, Groups: planGroups,
		Now: func() time.Time { return at }})
	st := e.state.Load()
	st.cache = nil // every decision an evaluation
	ctx := context.Background()
	in := command(t, "dave", "a NOOP")
	want := e.Decide(ctx, in)
	if want.Allow {
		t.Fatalf("dave's NOOP after hours: %+v", want)
	}
	c := newInputCtx(string(in.Point), in)
	c.groups, c.ids = st.groups, st.ids
	c.now, c.zone = e.now().In(e.loc), e.loc.String()
	memo := cachedDoc(st, &c, st.uses&sessionSlots, partSession).calls[0]
	var clock []int
	for i := range memo.fixed {
		if p := memo.fixed[i].Load(); p != nil && p.now != "" {
			clock = append(clock, i)
		}
	}
	if len(clock) == 0 {
		t.Fatal("no call of the clock in a fixed slot")
	}
	for _, i := range clock {
		memo.fixed[i].Store(&fixedVal{now: "another minute", v: val{}})
	}
	if got := e.Decide(ctx, in); got.Allow != want.Allow || got.Reason != want.Reason {
		t.Fatalf("with another minute's values: %+v, want %+v", got, want)
	}
	for _, i := range clock {
		if p := memo.fixed[i].Load(); p == nil || p.now == "another minute" {
			t.Fatalf("slot %d not made again for this minute: %+v", i, p)
		}
	}
}
