package policy

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/topdown"

	"github.com/imapwarden/imapwarden/internal/testenv"
	"github.com/imapwarden/imapwarden/proxy"
)

// Tests of the flat interpreter (flat.go, machine.go) beyond
// TestPlanMatchesTopdown: its natives against topdown's builtins, its
// values against OPA's, its verdicts against parseDecision, and what an
// uncached decision allocates.

// nativeArgs are values the natives are called with: every type, numbers
// written as integers and otherwise, strings in and out of ASCII and case,
// collections empty, small and nested.
var nativeArgs = func() []*ast.Term {
	var out []*ast.Term
	for _, s := range []string{`null`, `true`, `false`, `0`, `1`, `-3`, `1.0`, `2.5`, `1e3`, `9223372036854775807`,
		`12345678901234567890`, `""`, `"a"`, `"Sent"`, `"INBOX"`, `"inbox"`, `"Legal/2024"`, `"légal"`, `"ÉTÉ"`, `"%d items"`,
		`"%s is %s"`, `"/"`, `"."`, `"abc"`, `[]`, `["a", "b"]`, `["Legal", "."]`, `[1, 2, 3]`, `[1, "a", null]`, `[1.0, 1]`,
		`{}`, `{"a": 1}`, `{"a": {"b": 2}, "c": 3}`, `{"a": {"x": 1}}`, `{"b": [1]}`, `{1: "one"}`, `set()`, `{"x", "y"}`,
		`{1, 2, 10}`, `{[1], [2]}`, `{"staff", "legal"}`, `["%s %d", "x"]`, `[3]`, `["x", 2]`} {
		out = append(out, ast.MustParseTerm(s))
	}
	return out
}()

// TestNativesMatchTopdown: wherever a native answers, topdown's builtin
// answers the same value, written the same; where topdown fails, the
// native leaves the call to it.
func TestNativesMatchTopdown(t *testing.T) {
	m := getMachine()
	defer m.release()
	m.p = &program{lowered: map[string]string{"INBOX": "inbox"}}
	r := rand.New(rand.NewPCG(1, 2))
	ctx := context.Background()
	bctx := topdown.BuiltinContext{Context: ctx, Metrics: noMetrics, Capabilities: capabilities()}
	for name, native := range natives {
		bi := topdown.GetBuiltin(name)
		decl := ast.BuiltinMap[name]
		if bi == nil || decl == nil {
			t.Fatalf("%s: no such builtin", name)
		}
		arity := len(decl.Decl.FuncArgs().Args)
		answered := 0
		for range 20000 {
			terms := make([]*ast.Term, arity)
			vals := make([]val, arity)
			for i := range terms {
				terms[i] = nativeArgs[r.IntN(len(nativeArgs))]
				var err error
				if vals[i], err = fromAST(terms[i]); err != nil {
					t.Fatal(err)
				}
			}
			got, ok := native(m, vals)
			var want *ast.Term
			err := bi(bctx, terms, func(x *ast.Term) error { want = x; return nil })
			if !ok {
				continue
			}
			answered++
			switch {
			case err != nil:
				t.Fatalf("%s%v: native %v, topdown fails: %v", name, terms, toAST(got), err)
			case want == nil && got.k != kUndef, want != nil && got.k == kUndef:
				t.Fatalf("%s%v: native %v, topdown %v", name, terms, toAST(got), want)
			case want != nil && (ast.Compare(toAST(got), want) != 0 || toAST(got).String() != want.String()):
				t.Fatalf("%s%v: native %v, topdown %v", name, terms, toAST(got), want)
			}
		}
		if answered == 0 {
			t.Errorf("%s: the native never answered: the test proves nothing", name)
		}
	}
}

// TestValuesMatchAST: flat values order, compare and convert as OPA's.
func TestValuesMatchAST(t *testing.T) {
	for _, a := range nativeArgs {
		va, _ := fromAST(a)
		if back := toAST(va); ast.Compare(back, a) != 0 || back.String() != a.String() {
			t.Fatalf("%v converts back to %v", a, back)
		}
		// Made again from the elements (as the interpreter makes
		// collections), not kept from the term.
		if p := remake(va); toAST(p).String() != a.String() || compareVal(p, va) != 0 {
			t.Fatalf("%v remade as %v", a, toAST(p))
		}
		for _, b := range nativeArgs {
			vb, _ := fromAST(b)
			want := ast.Compare(a, b)
			if got := compareVal(va, vb); sign(got) != sign(want) {
				t.Fatalf("compare(%v, %v) = %d, ast says %d", a, b, got, want)
			}
		}
	}
}

// remake builds v again, element by element, without its term.
func remake(v val) val {
	if v.c == nil {
		return v
	}
	c := &coll{}
	out := val{k: v.k, c: c}
	switch v.k {
	case kArr:
		for _, e := range v.c.vals {
			c.vals = append(c.vals, remake(e))
		}
	case kSet:
		for i := len(v.c.keys) - 1; i >= 0; i-- { // out of order: setAdd sorts
			c.setAdd(remake(v.c.keys[i]))
		}
	case kObj:
		for i := len(v.c.keys) - 1; i >= 0; i-- {
			c.insert(remake(v.c.keys[i]), remake(v.c.vals[i]), false)
		}
	}
	return out
}

func sign(n int) int {
	switch {
	case n < 0:
		return -1
	case n > 0:
		return 1
	}
	return 0
}

// TestVerdictsMatchParseDecision: the interpreter's decisions are read
// as parseDecision reads their terms, malformed ones with its errors.
func TestVerdictsMatchParseDecision(t *testing.T) {
	for _, s := range []string{
		`{"allow": true}`, `{"allow": false, "reason": "no", "code": "nOPerm", "disconnect": true}`,
		`{"allow": false, "annotations": {"policy": "x", "n": 3, "f": 1.5, "l": [1, "a", null, true], "s": {"b", "a"}, "o": {"k": {}}}}`,
		`{"allow": true, "backend": "b1", "annotations": {}}`, `{"allow": false, "reason": "` + strings.Repeat("r", 300) + `"}`,
		`{"allow": "yes"}`, `{"reason": "x"}`, `{"allow": true, "code": "NO] BYE"}`, `{"allow": true, "code": 3}`,
		`{"allow": true, "disconnect": "no"}`, `{"allow": true, "annotations": []}`, `{"allow": true, "annotations": {1: "a"}}`,
		`{"allow": true, "backend": 1}`, `true`, `[]`,
	} {
		term := ast.MustParseTerm(s)
		v, err := fromAST(term)
		if err != nil {
			t.Fatal(err)
		}
		v = remake(v) // as the interpreter makes it: no term to read
		got, gerr := parseVerdict(v)
		want, werr := parseDecision(term.Value)
		if fmt.Sprint(got, gerr) != fmt.Sprint(want, werr) {
			t.Fatalf("%s:\nflat:  %+v %v\nterm:  %+v %v", s, got, gerr, want, werr)
		}
	}
}

// TestUncachedDecisionAllocates: an inspected command the caches have
// not seen, with the shipped policies, allocates nothing once the caches
// are warm: not the input, not the evaluation's values (108 objects per
// decision before the flat interpreter), not its cache key (the key cache
// copies keys into bytes it keeps: keyCache), not a denial made before
// (verdictOf). An allocation per
// decision is garbage, and garbage sets off the collector, which the
// decisions made during its cycles pay for (ARCHITECTURE.md §10).
func TestUncachedDecisionAllocates(t *testing.T) {
	if testenv.Race() {
		t.Skip("the race detector drops pooled machines; .ci/run runs this test without it")
	}
	dir := policySubset(t, map[string]string{
		"legal_hold": "users: [erin]\nmailboxes: {\"*\": [Legal]}\n",
		"baseline":   "blocked_networks: []\nplaintext_networks: []\nproxy_terminates_compress: false\n",
	})
	e, _ := newTestEngine(t, Options{Dirs: []Dir{{Path: dir}}, Groups: map[string][]string{"alice": {"staff"}, "erin": {"staff", "legal"}}})
	ctx := context.Background()
	cases := []struct {
		user, line string
		allow      bool
		max        float64
	}{
		// The outcome is made once (state.allowed,
		// sharedVerdict.alone) and the key is copied into the cache.
		{"alice", `a UID STORE 1:5 +FLAGS.SILENT (\Deleted)`, true, 0},
		{"alice", "a UID MOVE 7 Archive", true, 0},
		// A denial the plan makes: its reason (sprintf) is
		// remembered by the machine, its verdict by its value
		// (verdictOf), and its outcome with that verdict.
		{"alice", "a RENAME Drafts Old", false, 0},
		{"erin", "a UID EXPUNGE 1:5", false, 0},
		{"alice", "b APPEND Sent (\\Seen) {5}\r\nhello", true, 0},
	}
	for _, c := range cases {
		in := command(t, c.user, c.line)
		n := int64(1000)
		decide := func() {
			n++
			in.Command.LiteralBytes = n // read by append_size: a new decision each time
			if d := e.Decide(ctx, in); d.Allow != c.allow {
				t.Fatalf("%s %s: %+v", c.user, c.line, d)
			}
		}
		// The session's part of the input and its rules, then enough
		// decisions to fill the decision cache and empty it: it has
		// then all the table and key bytes it will take for such keys.
		evals := e.Stats().Evaluations
		for range DefaultCacheSize + 100 {
			decide()
		}
		if e.Stats().Evaluations-evals < DefaultCacheSize+100 {
			t.Fatalf("%s %s: decisions were cached: the test measures nothing", c.user, c.line)
		}
		evals = e.Stats().Evaluations
		allocs := testing.AllocsPerRun(200, decide)
		if e.Stats().Evaluations-evals < 200 {
			t.Fatalf("%s %s: decisions were cached: the test measures nothing", c.user, c.line)
		}
		t.Logf("%s %s: %v allocations", c.user, c.line, allocs)
		if allocs > c.max {
			t.Errorf("%s %s: an uncached decision allocates %v times, want at most %v", c.user, c.line, allocs, c.max)
		}
	}
}

// TestFlatInputMatchesTerm: the input the interpreter reads is the
// document topdown reads, for generated inputs at every point.
func TestFlatInputMatchesTerm(t *testing.T) {
	m := getMachine()
	defer m.release()
	for i, in := range planInputs(t, 500, 21) {
		c := newInputCtx(string(in.Point), in)
		c.now, c.zone, c.groups, c.ids = planTimes[i%len(planTimes)], "UTC", planGroups, idUse{all: true}
		flat := c.flat(allSlots, m)
		if got, want := toAST(flat), c.build(allSlots); ast.Compare(got, want) != 0 {
			t.Fatalf("flat %v\nterm %v", got, want)
		}
	}
}

// randomCommands generates commands beyond planInputs': random mailbox
// names (levels, case, either delimiter, modified UTF-7), flags, sets and
// literal sizes, for users of random case.
func randomCommands(t testing.TB, n int, seed uint64) []*proxy.DecisionInput {
	r := rand.New(rand.NewPCG(seed, 9))
	pick := func(xs ...string) string { return xs[r.IntN(len(xs))] }
	box := func() string {
		var parts []string
		for range 1 + r.IntN(3) {
			parts = append(parts, pick("INBOX", "inbox", "Sent", "SENT", "Legal", "legal", "LEGAL", "Archive", "Proj",
				"Secret", "2024", "&AOk-t&AOk-", "Drafts", "Trash", "HR", "x"))
		}
		return `"` + strings.Join(parts, pick("/", ".")) + `"`
	}
	flags := func() string {
		var fs []string
		for _, f := range []string{`\Seen`, `\Deleted`, `\Flagged`, `$Junk`, `\Answered`} {
			if r.IntN(3) == 0 {
				fs = append(fs, f)
			}
		}
		return strings.Join(fs, " ")
	}
	var out []*proxy.DecisionInput
	for range n {
		user := pick("alice", "ALICE", "Erin", "erin", "bob", "carol", "Dave", "mallory", "7")
		var line string
		switch r.IntN(12) {
		case 0:
			line = fmt.Sprintf("a STORE %d:%d %sFLAGS%s (%s)", 1+r.IntN(5), 5+r.IntN(9), pick("+", "-", ""), pick("", ".SILENT"), flags())
		case 1:
			line = fmt.Sprintf("a UID STORE %d %sFLAGS (%s)", 1+r.IntN(99), pick("+", "-"), flags())
		case 2:
			line = "a DELETE " + box()
		case 3:
			line = "a RENAME " + box() + " " + box()
		case 4:
			line = fmt.Sprintf("a UID MOVE %d:* %s", 1+r.IntN(9), box())
		case 5:
			line = fmt.Sprintf("a COPY 1 %s", box())
		case 6:
			line = fmt.Sprintf("a APPEND %s (%s) {3}\r\nabc", box(), flags())
		case 7:
			verb := pick("SELECT", "EXAMINE", "CREATE", "SUBSCRIBE", "UNSUBSCRIBE", "STATUS")
			line = "a " + verb + " " + box()
			if verb == "STATUS" {
				line += " (MESSAGES)"
			}
		case 8:
			line = "a " + pick("EXPUNGE", "CLOSE", "NOOP", "IDLE", "CHECK", "UNSELECT", "COMPRESS DEFLATE", "UID EXPUNGE 1:3")
		case 9:
			line = fmt.Sprintf("a SETACL %s %s lr", box(), pick("bob", "anyone"))
		case 10:
			line = fmt.Sprintf("a DELETEACL %s bob", box())
		default:
			line = fmt.Sprintf("a UID FETCH %d (FLAGS)", 1+r.IntN(99))
		}
		in := command(t, user, line)
		s := in.Session
		s.Selected = pick("", "INBOX", "Legal", "Legal/2024", "Sent", "Archive", "legal.x")
		s.Delimiter = pick("", "/", ".")
		if r.IntN(2) == 0 {
			var gs []string
			for _, g := range []string{"staff", "legal", "admins", "contractors", "readonly", "auditors", "shift"} {
				if r.IntN(3) == 0 {
					gs = append(gs, g)
				}
			}
			s.Identity = &proxy.Identity{Authenticator: "ldap", User: s.User, Groups: gs}
		}
		if r.IntN(5) == 0 {
			s.TLS = nil
		}
		in.Command.LiteralBytes = []int64{0, 3, 100, 101, 4999999, 5000001, 60 << 20}[r.IntN(7)]
		in.Partial = r.IntN(6) == 0
		out = append(out, in)
	}
	return out
}

// TestEngineMatchesTopdown: the engine deciding as it runs (the input
// built flat, the plan, natives, verdicts read from flat values) gives
// every field of every decision as the same engine deciding with topdown
// alone, for generated inputs at every point under every data variant.
func TestEngineMatchesTopdown(t *testing.T) {
	ins := append(planInputs(t, 1500, 31), randomCommands(t, 1500, 32)...)
	for name, data := range planVariants {
		t.Run(name, func(t *testing.T) {
			dir := policySubset(t, data)
			var clock time.Time
			opts := Options{Dirs: []Dir{{Path: dir}}, Groups: planGroups, CacheSize: -1, Now: func() time.Time { return clock }}
			flat, _ := newTestEngine(t, opts)
			ref := topdownEngine(t, opts)
			ctx := context.Background()
			for i, in := range ins {
				clock = planTimes[i%len(planTimes)]
				got, want := flat.Decide(ctx, in), ref.Decide(ctx, in)
				if fmt.Sprintf("%#v", got) != fmt.Sprintf("%#v", want) {
					t.Fatalf("input %d (%s %+v):\nflat:    %#v\ntopdown: %#v", i, in.Point, in.Command, got, want)
				}
			}
			if s := flat.Stats(); s.Errors > 0 {
				t.Fatalf("%d evaluations failed", s.Errors)
			}
		})
	}
}

// TestFindMatchesSearch: find's scans of small collections (deciding by
// first bytes) and compareStr agree with a binary search by compareVal
// and with strings.Compare, on keys that share first bytes or not, empty,
// non-ASCII, and of other types.
func TestFindMatchesSearch(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 47))
	strs := []string{"", "a", "ab", "abc", "b", "ba", "acl", "append_urls", "complete", "effects", "name",
		"literal_bytes", "literal", "\xc3\xa4", "\xff", "A", "Z", "z", "zz"}
	pick := func() val {
		switch r.IntN(6) {
		case 0:
			return vInt(int64(r.IntN(3)))
		case 1:
			return vBool(r.IntN(2) == 0)
		case 2:
			return val{k: kArr, c: &coll{vals: []val{vStr(strs[r.IntN(len(strs))])}}}
		default:
			return vStr(strs[r.IntN(len(strs))])
		}
	}
	for range 20000 {
		c := &coll{}
		for range r.IntN(20) {
			c.setAdd(pick())
		}
		key := pick()
		i, ok := find(c.keys, key)
		j, found := slices.BinarySearchFunc(c.keys, key, compareVal)
		if i != j || ok != found {
			t.Fatalf("find(%v, %v) = %d, %v; a binary search says %d, %v", toAST(val{k: kSet, c: c}), toAST(key), i, ok, j, found)
		}
		a, b := strs[r.IntN(len(strs))], strs[r.IntN(len(strs))]
		if got, want := compareStr(a, b), strings.Compare(a, b); sign(got) != sign(want) {
			t.Fatalf("compareStr(%q, %q) = %d, strings.Compare %d", a, b, got, want)
		}
	}
}

// TestFastBuiltinsMatchCalls: the builtins exec answers itself
// (fastBuiltin) answer as callBuiltin does (their natives, topdown's
// builtin for the arguments a native leaves to it, failures included), on
// every pair of nativeArgs and undefined ones.
func TestFastBuiltinsMatchCalls(t *testing.T) {
	m := getMachine()
	defer m.release()
	m.p = &program{}
	m.bctx = topdown.BuiltinContext{Context: context.Background(), Metrics: noMetrics, Capabilities: capabilities()}
	args := append([]*ast.Term{nil}, nativeArgs...) // nil: undefined
	for name, fast := range fastBuiltins {
		arity := 2
		if fast == fastCount {
			arity = 1
		}
		x := &instrX{args: []operand{{local: 0}, {local: 1}}[:arity], builtin: topdown.GetBuiltin(name), native: natives[name], name: name}
		fastIn, callIn := instr{op: opCallBuiltin, target: 2, n: fast, instrX: x}, instr{op: opCallBuiltin, target: 2, instrX: x}
		seconds := args
		if arity == 1 {
			seconds = args[:1] // no second argument: one round
		}
		for _, a := range args {
			for _, b := range seconds {
				run := func(in *instr) (bool, val, error) {
					base := m.push(3)
					defer func() { m.stack = m.stack[:base] }()
					for i, term := range []*ast.Term{a, b} {
						if term != nil {
							m.stack[base+i], _ = fromAST(term)
						}
					}
					m.berr = nil
					var ok bool
					if in.n != fastNone {
						ok = m.fastBuiltin(in, base)
					} else {
						ok = m.callBuiltin(in, base)
					}
					return ok, m.stack[base+2], m.berr
				}
				okF, gotF, errF := run(&fastIn)
				okC, gotC, errC := run(&callIn)
				if okF != okC || (errF == nil) != (errC == nil) || okF && (gotF.k != gotC.k || compareVal(gotF, gotC) != 0) {
					t.Fatalf("%s(%v, %v): fast %v %v %v, call %v %v %v", name, a, b, okF, toAST(gotF), errF, okC, toAST(gotC), errC)
				}
			}
		}
	}
}
