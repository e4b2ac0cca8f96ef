package policy

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/ir"

	"github.com/imapwarden/imapwarden/proxy"
)

// The interpreter of compiled policies (plan.go, machine.go) must decide
// exactly as topdown does: these tests evaluate generated inputs both ways
// and compare the decision documents.

// planVariants are data for the shipped policies (policy name → data.yaml)
// that switch every rule on somewhere.
var planVariants = map[string]map[string]string{
	"shipped": nil,
	"all-on": {
		"baseline":          "blocked_networks: [203.0.113.0/24]\nplaintext_networks: [10.0.0.0/8]\nproxy_terminates_compress: false\n",
		"legal_hold":        "users: [Erin]\nmailboxes: {\"*\": [Legal], bob: [Archive, \"Proj/Secret\"]}\n",
		"readonly":          "users: [carol]\ngroups: [auditors]\n",
		"acl":               "admin_groups: [admins]\n",
		"append_size":       "default_bytes: 1000\ngroups: {staff: 5000000, contractors: 100}\n",
		"business_hours":    "end_sessions: true\ngroups: {shift: {days: [Mon, Tue, Wed, Thu, Fri], start: \"08:00\", end: \"18:00\"}, weekend: {days: [Saturday, Sunday], start: \"10:00\", end: \"12:30\"}}\n",
		"clients":           "groups: {mobile: [K-9 Mail, FairEmail], staff: [Thunderbird]}\n",
		"network":           "groups: {contractors: [10.8.0.0/16], admins: [192.0.2.0/24, \"2001:db8:1::/48\"]}\n",
		"protected_folders": "mailboxes: [INBOX, Sent, Drafts, Legal]\n",
		"routing":           "users: {alice: b1}\ngroups: {staff: b2, contractors: b3}\n",
	},
	"hours-only-login": {
		"business_hours": "end_sessions: false\ngroups: {staff: {days: [Wed], start: \"00:00\", end: \"23:59\"}}\n",
		"append_size":    "default_bytes: 0\ngroups: {}\n",
		"legal_hold":     "users: []\nmailboxes: {erin: [INBOX]}\n",
	},
}

// planPolicies are user policies that use Rego beyond what the shipped
// ones do, each a policy directory under the framework.
var planPolicies = map[string]string{
	"constructs": `package imapwarden

import rego.v1

default level := "none"

level := "high" if input.session.user == "alice"
else := "mid" if startswith(input.session.user, "e")
else := "low"

lists := {"audit": ["Legal", "HR"], "ops": ["Trash"]}

watched contains m if {
	some name, list in lists
	some m in list
	name != "nobody"
}

sizes := {name: count(list) | some name, list in lists}

deny contains {"policy": "constructs", "reason": sprintf("%s %v %d", [level, sizes, count(watched)])} if {
	input.point == "command"
	some e in input.command.effects
	e.mailbox in watched
	level != "high"
}

deny contains {"policy": "constructs", "reason": "every", "disconnect": true} if {
	input.point == "command"
	count(input.command.effects) > 1
	every e in input.command.effects {
		e.target != "session"
	}
	not input.session.tls
}

deny contains {"policy": "regex", "code": "CANNOT", "annotations": {"n": n, "glob": g}} if {
	input.point == "command"
	regex.match("^(?i)arch", object.get(input.command, "mailbox", ""))
	n := to_number("42") + 1
	g := glob.match("a*", [], input.session.user)
}

deny contains {"policy": "sets", "reason": concat(",", sort(both))} if {
	input.point == "auth"
	mine := {g | some g in input.session.groups}
	both := mine & {"staff", "legal"}
	count(both - {"legal"}) > 0
	count(mine | {"x"}) > 2
	array.slice(sort(mine), 0, 1)[0] < "m"
}

deny contains {"policy": "numbers", "reason": "odd"} if {
	input.point == "command"
	input.command.literal_bytes % 2 == 1
	input.command.literal_bytes / 2 > 100
	1 < "a"
	null != false
}

annotate := {"a": 1, "b": [1, 2, {"c": true}]}

deny contains {"policy": "objects", "annotations": object.union(annotate, {"b": input.session.user})} if {
	input.point == "route"
	object.get(annotate, ["b", 2, "c"], false)
	not input.session.delimiter
}
`,
	"conflict": `package imapwarden

import rego.v1

# A complete rule with two values for some users: an error in both.
mode := "a" if input.session.user == "alice"

mode := "b" if lower(input.session.user) == "alice"

deny contains {"policy": "conflict"} if {
	input.point == "auth"
	mode == "a"
}
`,
	"builtin-error": `package imapwarden

import rego.v1

# to_number fails for most users: evaluation fails, and denies.
deny contains {"policy": "builtin-error"} if {
	input.point == "auth"
	to_number(input.session.user) > 3
}
`,
	// The planner evaluates this body at every point; topdown's rule index
	// skips it unless the point is connect. The plan's error must not
	// decide: topdown evaluates again.
	"indexed-error": `package imapwarden

import rego.v1

deny contains {"policy": "indexed-error"} if {
	to_number(input.session.user) > 3
	input.point == "connect"
}
`,
}

// planInputs generates decision inputs: every point, sessions over users,
// groups, networks, TLS, client IDs and delimiters, commands over mailboxes
// and effects, times over a week.
func planInputs(t testing.TB, n int, seed uint64) []*proxy.DecisionInput {
	t.Helper()
	r := rand.New(rand.NewPCG(seed, 1))
	pick := func(xs ...string) string { return xs[r.IntN(len(xs))] }
	boxes := []string{"INBOX", "inbox", "Sent", "sent", "Drafts", "Legal", "legal/2024", "Legal.2024", "LegalX",
		"Archive", "Archive/Old", "Proj/Secret", "Proj", "Trash", "HR", `"a b"`, "&AOk-t&AOk-"}
	lines := []string{
		"a SELECT %s", "a EXAMINE %s", "a CREATE %s", "a DELETE %s", "a RENAME %s %s",
		`a STORE 1:3 +FLAGS (\Deleted)`, `a UID STORE 4 +FLAGS.SILENT (\Seen)`, `a STORE 1 -FLAGS (\Deleted \Seen)`,
		"a EXPUNGE", "a UID EXPUNGE 1:2", "a CLOSE", "a UNSELECT", "a MOVE 1 %s", "a UID COPY 1:* %s",
		"a APPEND %s (\\Seen) {%d}\r\n%s", "a SETACL %s bob lr", "a DELETEACL %s bob", "a GETACL %s",
		"a FETCH 1 BODY[]", "a UID FETCH 1:* (FLAGS)", "a COMPRESS DEFLATE", "a NOOP", "a SUBSCRIBE %s",
		"a STATUS %s (MESSAGES)", "a LIST \"\" *", "a IDLE", "a SETMETADATA %s (/private/comment \"x\")",
	}
	users := []string{"alice", "Alice", "erin", "Erin", "bob", "carol", "dave", "", "7"}
	groupPool := []string{"staff", "legal", "admins", "contractors", "mobile", "shift", "weekend", "auditors", "small"}
	ips := []string{"192.0.2.10:5000", "10.8.1.2:5000", "10.1.1.1:5000", "203.0.113.5:5000", "[2001:db8:1::5]:5000", "[::ffff:10.8.0.1]:5000", "[2001:db8:2::1]:5000"}
	ids := []map[string]string{nil, {"name": "Thunderbird"}, {"name": "k-9 mail", "version": "6"}, {"version": "1"}, {"name": "FairEmail"}}
	var out []*proxy.DecisionInput
	for range n {
		s := testSession(pick(users...))
		s.ClientAddr = netip.MustParseAddrPort(pick(ips...))
		if r.IntN(4) == 0 {
			s.TLS = nil
		}
		s.ClientID = ids[r.IntN(len(ids))]
		s.Delimiter = pick("", "/", ".")
		s.Selected = pick("", "INBOX", "Legal", "legal/2024", "Sent", "Archive")
		if r.IntN(3) == 0 {
			var gs []string
			for _, g := range groupPool {
				if r.IntN(4) == 0 {
					gs = append(gs, g)
				}
			}
			s.Identity = &proxy.Identity{Authenticator: "ldap", User: s.User, Groups: gs}
		}
		in := &proxy.DecisionInput{Session: s}
		switch r.IntN(8) {
		case 0:
			in.Point = proxy.PointConnect
		case 1:
			in.Point = proxy.PointAuth
		case 2:
			in.Point = PointRoute
		default:
			in.Point = proxy.PointCommand
			l := pick(lines...)
			var args []any
			for range strings.Count(l, "%s") {
				args = append(args, pick(boxes...))
			}
			if strings.Contains(l, "%d") {
				args = []any{pick(boxes...), 3, "abc"}
			}
			in.Command = parseCommand(t, fmt.Sprintf(l, args...))
			if in.Command.Name == "APPEND" {
				in.Command.LiteralBytes = []int64{0, 3, 101, 1000, 1001, 5000001, 60 << 20}[r.IntN(7)]
			}
		}
		out = append(out, in)
	}
	return out
}

// planGroups is the groups file of the differential tests.
var planGroups = map[string][]string{
	"alice": {"staff", "mobile"}, "erin": {"legal", "staff"}, "bob": {"contractors"},
	"carol": {"auditors", "weekend"}, "dave": {"admins", "shift"},
}

// planTimes are the clocks the inputs are decided at: weekdays and the
// weekend, inside and outside every listed hour.
var planTimes = []time.Time{
	time.Date(2026, 3, 2, 10, 0, 0, 0, time.UTC),   // Monday
	time.Date(2026, 3, 4, 7, 59, 0, 0, time.UTC),   // Wednesday
	time.Date(2026, 3, 6, 18, 0, 0, 0, time.UTC),   // Friday
	time.Date(2026, 3, 7, 12, 29, 0, 0, time.UTC),  // Saturday
	time.Date(2026, 3, 8, 23, 59, 59, 0, time.UTC), // Sunday
}

// comparePlan evaluates every input with p's plan and with topdown, and
// fails on any difference. It returns how many inputs the plan could not
// decide alone (the engine then asks topdown), and how many decisions
// each policy denied or each backend routed (by "policy" or "backend").
func comparePlan(t *testing.T, p *compiled, ins []*proxy.DecisionInput) (fallbacks int, seen map[string]int) {
	t.Helper()
	ctx := context.Background()
	for i, in := range ins {
		now := planTimes[i%len(planTimes)]
		c := newInputCtx(string(in.Point), in)
		c.now, c.zone, c.groups, c.ids = now, "UTC", planGroups, p.ids
		input := c.build(p.uses)
		want, werr := p.evalTopdown(ctx, input, now)
		got, gerr := p.prog.eval(ctx, input, memos{})
		seen = tally(seen, want)
		if gerr != nil {
			fallbacks++
		} else if werr != nil || ast.Compare(got, want) != 0 {
			t.Fatalf("input %v:\nplan:    %v\ntopdown: %v (%v)", input, got, want, werr)
		}
		// What the engine evaluates: the plan, or topdown after it failed.
		got, gerr = p.eval(ctx, input, now, memos{})
		if (gerr == nil) != (werr == nil) || (gerr == nil && ast.Compare(got, want) != 0) {
			t.Fatalf("input %v:\neval:    %v (%v)\ntopdown: %v (%v)", input, got, gerr, want, werr)
		}
	}
	return fallbacks, seen
}

// tally counts a decision by the policy that denied or the backend chosen.
func tally(seen map[string]int, v ast.Value) map[string]int {
	if seen == nil {
		seen = map[string]int{}
	}
	name := "allow"
	if obj, ok := v.(ast.Object); ok {
		if b := obj.Get(ast.StringTerm("backend")); b != nil {
			name = "backend " + b.String()
		}
		if a := obj.Get(ast.StringTerm("annotations")); a != nil {
			if n := a.Get(ast.StringTerm("policy")); n != nil {
				name = n.String()
			}
		}
	} else if v == nil {
		name = "error"
	}
	seen[name]++
	return seen
}

// TestPlanMatchesTopdown: the shipped policies under several data files,
// and user policies with Rego beyond them, decide every generated input as
// topdown does. The shipped ones are all compiled and never need topdown.
func TestPlanMatchesTopdown(t *testing.T) {
	ins := planInputs(t, 3000, 12)
	for name, data := range planVariants {
		t.Run(name, func(t *testing.T) {
			p, err := compileDir(context.Background(), policySubset(t, data), false)
			if err != nil {
				t.Fatal(err)
			}
			if p.prog == nil {
				t.Fatalf("the shipped policies are not compiled: %s", p.planErr)
			}
			n, seen := comparePlan(t, p, ins)
			if n > 0 {
				t.Fatalf("%d of %d inputs needed topdown", n, len(ins))
			}
			t.Logf("decisions: %v", seen)
			if name == "all-on" {
				// Every policy denies some input, and routing routes.
				for _, want := range []string{"baseline", "legal_hold", "readonly", "acl", "append_size",
					"business_hours", "clients", "network", "protected_folders", "backend \"b1\"", "backend \"b2\""} {
					if seen[strconv.Quote(want)] == 0 && seen[want] == 0 {
						t.Errorf("no input decided by %s: the inputs do not cover it", want)
					}
				}
			}
		})
	}
	for name, src := range planPolicies {
		t.Run(name, func(t *testing.T) {
			root := policySubset(t, planVariants["all-on"])
			writeFile(t, filepath.Join(root, name, name+".rego"), src)
			p, err := compileDir(context.Background(), root, false)
			if err != nil {
				t.Fatal(err)
			}
			if p.prog == nil {
				t.Fatalf("not compiled: %s", p.planErr)
			}
			n, seen := comparePlan(t, p, ins)
			t.Logf("%d of %d inputs needed topdown; decisions: %v", n, len(ins), seen)
			if strings.HasSuffix(name, "error") || name == "conflict" {
				if n == 0 {
					t.Fatal("the plan never failed: the test proves nothing")
				}
			} else if n > 0 {
				t.Fatalf("%d of %d inputs needed topdown", n, len(ins))
			}
		})
	}
}

// TestPlanFallsBackToTopdown: a policy the interpreter cannot run (a
// builtin outside planBuiltins, with, a nondeterministic builtin) is
// evaluated by topdown, decides as before, and the load log says why.
func TestPlanFallsBackToTopdown(t *testing.T) {
	cases := map[string]struct{ src, why string }{
		"builtin": {`deny contains {"policy": "x"} if {
	input.point == "auth"
	crypto.sha256(input.session.user) == "2bd806c97f0e00af1a1fc3328fa763a9269723c8db8fac4f93af71db186d6e90"
}`, "crypto.sha256"},
		"with": {`deny contains {"policy": "x"} if {
	input.point == "auth"
	user_is_bob with input.session.user as "bob"
}

user_is_bob if input.session.user == "bob"`, "With"},
		"dynamic": {`deny contains {"policy": "x"} if {
	input.point == "auth"
	some name
	data.aliases[name] == lower(input.session.user)
	name != "nobody"
}`, ""},
		"nondeterministic": {`deny contains {"policy": "x"} if {
	input.point == "auth"
	time.now_ns() < 0
}`, "time.now_ns"},
	}
	ins := planInputs(t, 300, 7)
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			dir := regoDir(t, map[string]string{"x/x.rego": "package imapwarden\n\nimport rego.v1\n\n" + c.src,
				"x/aliases.rego": "package aliases\n\nbob := \"bob\"\n\nrobert := lower(\"BOB\")\n"})
			p, err := compileDir(context.Background(), filepath.Join(dir, "x"), false)
			if err != nil {
				t.Fatal(err)
			}
			if p.prog != nil {
				if c.why != "" {
					t.Fatal("compiled")
				}
				// Planned after all (the planner reads data.aliases
				// whole): it must then decide as topdown does.
				if _, seen := comparePlan(t, p, ins); seen[`"x"`] == 0 {
					t.Fatalf("no input denied: %v", seen)
				}
				return
			}
			if !strings.Contains(p.planErr, c.why) {
				t.Fatalf("reason %q, want it to name %s", p.planErr, c.why)
			}
			_, logs := newTestEngine(t, Options{Dirs: []Dir{{Path: filepath.Join(dir, "x")}}})
			loaded := logs.FilterMessage("policy loaded").All()
			if len(loaded) != 1 || !strings.Contains(fmt.Sprint(loaded[0].ContextMap()["interpreted"]), c.why) {
				t.Fatalf("load log %v does not say the policy is interpreted", loaded)
			}
		})
	}
}

// TestCachesAreExact: an engine with its caches (decisions, parts of the
// input, session rules) decides every generated input, each twice, in
// another order and at another time, as one that evaluates everything
// afresh.
func TestCachesAreExact(t *testing.T) {
	dir := policySubset(t, planVariants["all-on"])
	var clock time.Time // set before each decision; read by both engines
	now := func() time.Time { return clock }
	cached, _ := newTestEngine(t, Options{Dirs: []Dir{{Path: dir}}, Groups: planGroups, Now: now})
	fresh, _ := newTestEngine(t, Options{Dirs: []Dir{{Path: dir}}, Groups: planGroups, Now: now, CacheSize: -1})
	ins := planInputs(t, 2000, 99)
	ctx := context.Background()
	r := rand.New(rand.NewPCG(3, 4))
	for round := range 2 {
		for _, i := range r.Perm(len(ins)) {
			clock = planTimes[r.IntN(len(planTimes))]
			got, want := cached.Decide(ctx, ins[i]), fresh.Decide(ctx, ins[i])
			if fmt.Sprint(got) != fmt.Sprint(want) {
				t.Fatalf("round %d, input %d: cached %+v, evaluated %+v", round, i, got, want)
			}
		}
	}
	if s := cached.Stats(); s.CacheHits == 0 {
		t.Fatal("no cache hit: the test proves nothing")
	}
}

// TestOwnershipFollowsEveryExit: a block may be left at any statement, so
// a local the next block modifies in place must be the function's own on
// every exit, not only after the block's last statement. Here the first
// block may leave local 2 holding the input: the second must not add to it.
func TestOwnershipFollowsEveryExit(t *testing.T) {
	const l = ir.Local(2)
	blocks := []*ir.Block{
		{Stmts: []ir.Stmt{
			&ir.AssignVarStmt{Source: ir.Operand{Value: ir.Input}, Target: l},
			&ir.IsDefinedStmt{Source: ir.Local(3)},
			&ir.MakeSetStmt{Target: l},
		}},
		{Stmts: []ir.Stmt{&ir.SetAddStmt{Value: ir.Operand{Value: ir.Bool(true)}, Set: l}}},
	}
	if err := checkOwnership(blocks, []ir.Local{ir.Input, ir.Data}, nil); err == nil {
		t.Fatal("the input may be modified in place, and the check passed")
	}
	// Made on every path: fine.
	blocks[0].Stmts = blocks[0].Stmts[2:]
	if err := checkOwnership(blocks, []ir.Local{ir.Input, ir.Data}, nil); err != nil {
		t.Fatal(err)
	}
}

// TestCachesShared: sessions share their remembered input and session
// rules across goroutines; under -race, deciding the same inputs at once
// from several goroutines gives each the decision of a fresh evaluation.
func TestCachesShared(t *testing.T) {
	dir := policySubset(t, planVariants["all-on"])
	now := func() time.Time { return planTimes[1] }
	cached, _ := newTestEngine(t, Options{Dirs: []Dir{{Path: dir}}, Groups: planGroups, Now: now})
	fresh, _ := newTestEngine(t, Options{Dirs: []Dir{{Path: dir}}, Groups: planGroups, Now: now, CacheSize: -1})
	ins := planInputs(t, 300, 5)
	ctx := context.Background()
	want := make([]string, len(ins))
	for i, in := range ins {
		want[i] = fmt.Sprint(fresh.Decide(ctx, in))
	}
	errs := make(chan string, 4)
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for k := range ins {
				i := (k + g*len(ins)/4) % len(ins)
				if got := fmt.Sprint(cached.Decide(ctx, ins[i])); got != want[i] {
					errs <- fmt.Sprintf("input %d: %s, want %s", i, got, want[i])
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for e := range errs {
		t.Error(e)
	}
}

// TestPlanNotRetained: once a policy is planned, nothing keeps the
// planner's IR (the plan capture's global once kept the last one for the
// process's life, about 130 KiB of scannable heap with the shipped policies).
func TestPlanNotRetained(t *testing.T) {
	e, _ := newTestEngine(t, Options{Dirs: []Dir{{Path: shippedDir(t)}}})
	if p := e.state.Load().dirs[0]; p.prog == nil {
		t.Fatalf("the policies are not planned: %s", p.planErr)
	}
	planMu.Lock()
	defer planMu.Unlock()
	if planCaptured != nil {
		t.Fatal("the last plan's IR is still referenced")
	}
}
