package policy

import (
	"context"
	"fmt"
	"runtime"
	"runtime/metrics"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/rego"
	"go.uber.org/zap"

	"github.com/imapwarden/imapwarden/proxy"
)

// Benchmarks of the policy budget (ARCHITECTURE.md §16): ≤ 10 µs p99 per
// uncached inspected command with the shipped policies, ≤ 1 µs per cached
// one, ≤ 100 ns and no allocation for commands no policy inspects. Run:
//
//	go test -run '^$' -bench . -benchmem ./policy/
//	go test -run '^$' -bench Decide -benchmem ./policy/

func benchEngine(b *testing.B, cache bool, names ...string) *Engine {
	b.Helper()
	dir := policySubset(b, map[string]string{
		"legal_hold": "users: [erin]\nmailboxes: {\"*\": [Legal]}\n",
		"baseline":   "blocked_networks: []\nplaintext_networks: []\nproxy_terminates_compress: false\n",
	}, names...)
	size := 0
	if !cache {
		size = -1
	}
	// A fixed clock: the policies read input.now (business_hours), so at
	// each new minute every decision would be a new one, and
	// BenchmarkDecideCached would fail when a minute begins as it runs.
	now := time.Date(2026, 3, 2, 10, 0, 0, 0, time.UTC)
	e, err := New(Options{Dirs: []Dir{{Path: dir}}, PollInterval: -1, CacheSize: size, Logger: zap.NewNop(),
		Groups: map[string][]string{"alice": {"staff"}, "erin": {"staff", "legal"}}, Now: func() time.Time { return now }})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { e.Close() })
	return e
}

func benchDecide(b *testing.B, e *Engine, in *proxy.DecisionInput, wantAllow bool) {
	ctx := context.Background()
	if d := e.Decide(ctx, in); d.Allow != wantAllow {
		b.Fatalf("decision %+v, want allow=%v", d, wantAllow)
	}
	b.ReportAllocs()
	cpu := processCPU()
	for b.Loop() {
		e.Decide(ctx, in)
	}
	reportCPU(b, cpu)
}

// reportCPU adds cpu-ns/op: the process's CPU time (GC included) per
// operation, which other load on the machine does not inflate as it does
// the wall time of ns/op.
func reportCPU(b *testing.B, start int64) {
	if start > 0 {
		b.ReportMetric(float64(processCPU()-start)/float64(b.N), "cpu-ns/op")
	}
}

// BenchmarkFastPath: a FETCH, which no shipped policy inspects.
func BenchmarkFastPath(b *testing.B) {
	e := benchEngine(b, true)
	in := &proxy.DecisionInput{Point: proxy.PointCommand, Session: testSession("alice"), Command: parseCommand(b, "a1 UID FETCH 1:* (FLAGS)")}
	benchDecide(b, e, in, true)
}

// BenchmarkInspected: commands the policies evaluate, with every shipped
// policy or only the baseline, with the decision cache (the engine's
// default) and without (every decision a Rego evaluation).
func BenchmarkInspected(b *testing.B) {
	cases := []struct {
		name     string
		policies []string
		point    proxy.Point
		user     string
		cmd      string
		allow    bool
	}{
		{"shipped/STORE-allowed", nil, proxy.PointCommand, "alice", `a1 UID STORE 1:5 +FLAGS.SILENT (\Deleted)`, true},
		{"shipped/STORE-denied", nil, proxy.PointCommand, "erin", `a1 UID STORE 1:5 +FLAGS.SILENT (\Deleted)`, false},
		{"shipped/DELETE-protected", nil, proxy.PointCommand, "alice", `a1 DELETE Sent`, false},
		{"shipped/auth", nil, proxy.PointAuth, "alice", "", true},
		{"baseline/COMPRESS", []string{"baseline"}, proxy.PointCommand, "alice", `a1 COMPRESS DEFLATE`, false},
		{"baseline/auth", []string{"baseline"}, proxy.PointAuth, "alice", "", true},
	}
	for _, cache := range []bool{true, false} {
		mode := "cached"
		if !cache {
			mode = "uncached"
		}
		for _, c := range cases {
			b.Run(mode+"/"+c.name, func(b *testing.B) {
				e := benchEngine(b, cache, c.policies...)
				in := &proxy.DecisionInput{Point: c.point, Session: testSession(c.user)}
				if c.cmd != "" {
					in.Command = parseCommand(b, c.cmd)
				}
				benchDecide(b, e, in, c.allow)
			})
		}
	}
}

// BenchmarkPlainRego is the reference ARCHITECTURE.md §16 compares against: the
// rego package's prepared query on the same policies and an equivalent
// input (ast.Value, as the engine builds it).
func BenchmarkPlainRego(b *testing.B) {
	dir := policySubset(b, nil)
	ctx := context.Background()
	pq, err := rego.New(rego.Query("data.imapwarden.decision"), rego.Load([]string{dir}, skipFile),
		rego.SetRegoVersion(ast.RegoV1)).PrepareForEval(ctx)
	if err != nil {
		b.Fatal(err)
	}
	in := &proxy.DecisionInput{Point: proxy.PointCommand, Session: testSession("alice"), Command: parseCommand(b, `a1 UID STORE 1:5 +FLAGS.SILENT (\Deleted)`)}
	c := newInputCtx("command", in)
	c.ids = idUse{all: true}
	input := c.build(allSlots).Value
	b.ReportAllocs()
	cpu := processCPU()
	for b.Loop() {
		rs, err := pq.Eval(ctx, rego.EvalParsedInput(input))
		if err != nil || len(rs) != 1 {
			b.Fatal(err, rs)
		}
	}
	reportCPU(b, cpu)
}

// BenchmarkSessionMix replays what mail clients send, with every shipped
// policy and business hours switched on (so that every command is
// inspected), over 50 users, and reports the distribution of the cost of
// one decision: p50 is the median ARCHITECTURE.md §16 budgets. Every APPEND has a
// size not seen before, so each is a cache miss (a full evaluation), as it
// would be in real traffic.
func BenchmarkSessionMix(b *testing.B) {
	dir := policySubset(b, map[string]string{
		"legal_hold":     "users: [user7]\nmailboxes: {\"*\": [Legal]}\n",
		"business_hours": "end_sessions: true\ngroups: {shift: {days: [Mon, Tue, Wed, Thu, Fri], start: \"08:00\", end: \"18:00\"}}\n",
	})
	groups := map[string][]string{}
	for i := range 50 {
		groups[fmt.Sprintf("user%d", i)] = []string{"staff", []string{"shift", "contractors", "small"}[i%3]}
	}
	e, err := New(Options{Dirs: []Dir{{Path: dir}}, PollInterval: -1, Logger: zap.NewNop(), Groups: groups,
		Now: func() time.Time { return time.Date(2026, 3, 2, 10, 0, 0, 0, time.UTC) }})
	if err != nil {
		b.Fatal(err)
	}
	defer e.Close()
	lines := []string{
		"a SELECT INBOX", "a UID FETCH 1:* (FLAGS)", "a UID FETCH %d BODY.PEEK[]",
		`a UID STORE %d +FLAGS.SILENT (\Seen)`, `a UID STORE %d:%d +FLAGS (\Deleted)`,
		"a UID EXPUNGE %d", "a UID MOVE %d Trash", "a UID COPY %d Archive", "a IDLE", "a NOOP",
		"a SELECT Sent", "a STATUS INBOX (UNSEEN)", "a APPEND Sent (\\Seen) {%d}",
	}
	var ins []*proxy.DecisionInput
	for i := range 4000 {
		s := testSession(fmt.Sprintf("user%d", i%50))
		l := lines[i%len(lines)]
		if strings.Count(l, "%d") > 0 {
			l = fmt.Sprintf(l, []any{i, i + 3}[:strings.Count(l, "%d")]...)
		}
		ins = append(ins, &proxy.DecisionInput{Point: proxy.PointCommand, Session: s, Command: parseCommandPartial(b, l)})
	}
	decideTimed(b, e, ins, func(i int, in *proxy.DecisionInput) {
		if in.Command.Name == "APPEND" {
			// A message of a size not seen before: a new decision.
			in.Command.LiteralBytes = int64(1000 + i)
		}
	})
	s := e.Stats()
	b.ReportMetric(float64(s.CacheHits)/float64(s.CacheHits+s.Evaluations), "hit-ratio")
}

// decideTimed decides ins in turn, prepare(i, input) first when given,
// and reports the CPU time, the quantiles of the time per decision, and
// the garbage collections that ran meanwhile (gc-cycles: decisions made
// during one pay for it, in the tail).
func decideTimed(b *testing.B, e *Engine, ins []*proxy.DecisionInput, prepare func(int, *proxy.DecisionInput)) {
	ctx := context.Background()
	times := make([]time.Duration, 0, 1<<16)
	b.ReportAllocs()
	gcs := gcCycles()
	defer func() { b.ReportMetric(float64(gcCycles()-gcs), "gc-cycles") }()
	cpu := processCPU()
	i := 0
	for b.Loop() {
		in := ins[i%len(ins)]
		if prepare != nil {
			prepare(i, in)
		}
		t0 := time.Now()
		e.Decide(ctx, in)
		if len(times) < cap(times) {
			times = append(times, time.Since(t0))
		}
		i++
	}
	reportCPU(b, cpu)
	reportQuantiles(b, times)
}

// gcCycles is the number of garbage collections completed so far.
func gcCycles() uint64 {
	s := []metrics.Sample{{Name: "/gc/cycles/total:gc-cycles"}}
	metrics.Read(s)
	return s[0].Value.Uint64()
}

// reportQuantiles reports p50, p90 and p99 of times.
func reportQuantiles(b *testing.B, times []time.Duration) {
	slices.Sort(times)
	for _, q := range []float64{0.5, 0.9, 0.99} {
		b.ReportMetric(float64(times[int(q*float64(len(times)-1))].Nanoseconds()), fmt.Sprintf("p%02.0f-ns", q*100))
	}
}

// decideCommands are inspected commands of the shipped policies, allowed
// and denied, for alice (staff) and erin (under legal hold).
func decideCommands(b *testing.B) []*proxy.DecisionInput {
	var ins []*proxy.DecisionInput
	for _, user := range []string{"alice", "erin"} {
		for _, l := range []string{
			`a1 UID STORE 1:5 +FLAGS.SILENT (\Deleted)`, "a2 UID EXPUNGE 1:5", "a3 DELETE Sent", "a4 DELETE Projects/2025",
			"a5 RENAME Drafts Old", "a6 UID MOVE 7 Archive", "a7 EXPUNGE", "a8 SETACL Shared bob lr", "a9 CLOSE",
			"b1 APPEND Sent (\\Seen) {5}\r\nhello",
		} {
			ins = append(ins, command(b, user, l))
		}
	}
	return ins
}

// BenchmarkDecideUncached: inspected commands with the shipped policies
// and the engine as configured (decision cache on), each decision one the
// cache has not seen (the announced literal size, which the policies
// read, differs every time): an evaluation each, as for the first command
// of its kind in a session. Reports the p99 ARCHITECTURE.md §16 budgets.
func BenchmarkDecideUncached(b *testing.B) {
	e := benchEngine(b, true)
	ins := decideCommands(b)
	warmCaches(e, ins)
	decideTimed(b, e, ins, func(i int, in *proxy.DecisionInput) {
		in.Command.LiteralBytes = int64(1000 + i)
	})
	if s := e.Stats(); s.CacheHits > 0 {
		b.Fatalf("%d cache hits: the benchmark measures hits", s.CacheHits)
	}
}

// warmCaches makes more uncached decisions of ins than the decision cache
// holds, with literal sizes the benchmarks do not use, before they time
// theirs, as a running proxy's caches are warm: the first entries take the
// table and the key bytes that later ones reuse (keyCache), a growth that
// is no decision's cost, and its garbage collections would otherwise fall
// among the decisions timed.
func warmCaches(e *Engine, ins []*proxy.DecisionInput) {
	ctx := context.Background()
	for i := range DefaultCacheSize + 2*len(ins) {
		in := ins[i%len(ins)]
		in.Command.LiteralBytes = 1<<40 + int64(i)
		e.Decide(ctx, in)
	}
}

// BenchmarkDecideUncachedUnderGC is BenchmarkDecideUncached while the
// rest of a proxy runs the collector: a pointer-rich live heap of about 8
// MiB (as a thousand sessions hold) and 64 KiB of new garbage every
// millisecond from another goroutine, so that collections run among the
// decisions timed (gc-cycles). A decision that allocates pays mark assists
// during them; one that does not pays for the collector's share of the
// CPU and its write barriers only. B/op and allocs/op count the other
// goroutine's garbage too (about 550 B per decision).
func BenchmarkDecideUncachedUnderGC(b *testing.B) {
	e := benchEngine(b, true)
	ins := decideCommands(b)
	warmCaches(e, ins)
	type node struct {
		next *node
		ptrs [6]*node
	}
	var live *node
	for range 8 << 20 / 64 {
		live = &node{next: live}
	}
	stop, done := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(done)
		t := time.NewTicker(time.Millisecond)
		defer t.Stop()
		var garbage *node
		for {
			select {
			case <-stop:
				return
			case <-t.C:
			}
			garbage = nil
			for range 64 << 10 / 64 {
				garbage = &node{next: garbage, ptrs: [6]*node{live}}
			}
		}
	}()
	decideTimed(b, e, ins, func(i int, in *proxy.DecisionInput) {
		in.Command.LiteralBytes = int64(1000 + i)
	})
	close(stop)
	<-done
	runtime.KeepAlive(live)
}

// BenchmarkDecideUncachedByCommand is BenchmarkDecideUncached for each of
// its inputs alone, the caches warmed by the whole mix first as there:
// what the quantiles of the mix are made of. A p99 far above its p50 for
// every command alike is the machine's (scheduling, other load), not a
// slow rule. Each command's instructions per decision, which other load
// does not change, are the difference of two runs of its sub-benchmark
// under callgrind, divided by 2000:
//
//	GODEBUG=asyncpreemptoff=1 GOGC=off valgrind --tool=callgrind \
//	  --toggle-collect='*policy.(*Engine).Decide' ./policy.test -test.run '^$' \
//	  -test.bench 'DecideUncachedByCommand/alice/a8-SETACL$' -test.benchtime 2001x
//
// and the same with -test.benchtime 1x (the warming, the same for every
// command, cancels out; a toggle on decideTimed alone miscounts).
func BenchmarkDecideUncachedByCommand(b *testing.B) {
	for _, in := range decideCommands(b) {
		b.Run(in.Session.User+"/"+in.Command.Tag+"-"+in.Command.Name, func(b *testing.B) {
			e := benchEngine(b, true)
			warmCaches(e, decideCommands(b))
			decideTimed(b, e, []*proxy.DecisionInput{in}, func(i int, in *proxy.DecisionInput) {
				in.Command.LiteralBytes = int64(1000 + i)
			})
		})
	}
}

// BenchmarkDecideCached: the same commands, decided before: cache hits.
func BenchmarkDecideCached(b *testing.B) {
	e := benchEngine(b, true)
	ins := decideCommands(b)
	ctx := context.Background()
	for _, in := range ins {
		e.Decide(ctx, in)
	}
	warm := e.Stats().Evaluations
	decideTimed(b, e, ins, nil)
	if n := e.Stats().Evaluations - warm; n > 0 {
		b.Fatalf("%d evaluations: the benchmark measures misses", n)
	}
}

// BenchmarkPlanRun: the interpreter alone (machine.go) on the inputs of
// BenchmarkDecideUncached, built beforehand, with each session's rules
// remembered, and the calls remembered by argument (callMemo): what an
// uncached decision costs less the engine's keys, caches and the building
// of its input.
func BenchmarkPlanRun(b *testing.B) {
	e := benchEngine(b, true)
	p := e.state.Load().dirs[0]
	if p.prog == nil {
		b.Fatal(p.planErr)
	}
	var inputs []val
	var mems []memos
	byUser := map[string]memos{}
	for _, in := range decideCommands(b) {
		c := newInputCtx(string(in.Point), in)
		c.groups, c.ids = e.state.Load().groups, p.ids
		inputs = append(inputs, seal(c.flat(p.uses, nil)))
		if byUser[in.Session.User].rules == nil {
			byUser[in.Session.User] = memos{rules: make(ruleMemo, p.prog.nsession), calls: [numScopes]*callMemo{scopeSession: {}}}
		}
		mem := byUser[in.Session.User]
		mem.calls[scopeEffects] = &callMemo{} // each command's effects differ
		mems = append(mems, mem)
	}
	ctx := context.Background()
	b.ReportAllocs()
	cpu := processCPU()
	i := 0
	for b.Loop() {
		m := getMachine()
		if _, err := p.prog.run(ctx, m, inputs[i%len(inputs)], mems[i%len(inputs)]); err != nil {
			b.Fatal(err)
		}
		m.release()
		i++
	}
	reportCPU(b, cpu)
}

// BenchmarkDecideUncachedControl tells the engine's tail from the
// machine's: it alternates the decisions of BenchmarkDecideUncached with a
// control, a fixed computation (no allocation, no lock, no system call,
// no memory) calibrated to take as long as their median, each timed the
// same way. Both meet the same scheduling, interrupts and other load at
// the same moments; a decision tail that the control's matches is the
// machine's (ctl-p99-ns against p99-ns). The control touches no memory,
// so a machine whose other load evicts the caches slows the decisions
// alone.
func BenchmarkDecideUncachedControl(b *testing.B) {
	e := benchEngine(b, true)
	ins := decideCommands(b)
	warmCaches(e, ins)
	ctx := context.Background()
	n := 0
	decide := func() {
		in := ins[n%len(ins)]
		in.Command.LiteralBytes = int64(1000 + n)
		e.Decide(ctx, in)
		n++
	}
	// Calibrate: the control's rounds per decision median.
	var ds, cs []time.Duration
	for range 2000 {
		t0 := time.Now()
		decide()
		ds = append(ds, time.Since(t0))
		t0 = time.Now()
		controlWork(1000)
		cs = append(cs, time.Since(t0))
	}
	slices.Sort(ds)
	slices.Sort(cs)
	rounds := max(1, int(1000*ds[len(ds)/2]/cs[len(cs)/2]))
	times := make([]time.Duration, 0, 1<<16)
	ctl := make([]time.Duration, 0, cap(times))
	b.ReportAllocs()
	for b.Loop() {
		t0 := time.Now()
		decide()
		d := time.Since(t0)
		t0 = time.Now()
		controlWork(rounds)
		c := time.Since(t0)
		if len(times) < cap(times) {
			times, ctl = append(times, d), append(ctl, c)
		}
	}
	if s := e.Stats(); s.CacheHits > 0 {
		b.Fatalf("%d cache hits: the benchmark measures hits", s.CacheHits)
	}
	reportQuantiles(b, times)
	slices.Sort(ctl)
	for _, q := range []float64{0.5, 0.99} {
		b.ReportMetric(float64(ctl[int(q*float64(len(ctl)-1))].Nanoseconds()), fmt.Sprintf("ctl-p%02.0f-ns", q*100))
	}
}

// controlSink keeps controlWork from being optimized away.
var controlSink uint64

// controlWork is a fixed computation: rounds steps of a xorshift.
func controlWork(rounds int) {
	x := uint64(88172645463325252)
	for range rounds {
		x ^= x << 13
		x ^= x >> 7
		x ^= x << 17
	}
	controlSink += x
}
