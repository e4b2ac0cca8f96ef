package policy

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"
)

// TestEvalTimeoutDenies: a decision whose evaluation passes
// Options.EvalTimeout is denied, UNAVAILABLE, and logged, whether the
// interpreter or topdown runs the policy; the deadline is per decision, so
// the next one is evaluated afresh. The policy scans its data squared and
// denies nothing: without a deadline every command is allowed. No clock is
// waited on: a 1ns deadline is past at the first check, after 64 steps.
func TestEvalTimeoutDenies(t *testing.T) {
	xs := make([]string, 50)
	for i := range xs {
		xs[i] = fmt.Sprint(i)
	}
	data := "xs: [" + strings.Join(xs, ", ") + "]\n"
	for _, c := range []struct{ name, rego string }{
		{"planned", `package imapwarden

inspect contains "FETCH"

deny contains {"policy": "slow"} if {
	input.point == "command"
	count([1 | some x in data.slow.xs; some y in data.slow.xs; x != y; y != input.command.name]) < 0
}
`},
		{"topdown", `package imapwarden

inspect contains "FETCH"

deny contains {"policy": "slow"} if {
	input.point == "command"
	count([1 | some x in data.slow.xs; some y in data.slow.xs; x != y; y != input.command.name]) < 0 with input.point as "command"
}
`},
	} {
		t.Run(c.name, func(t *testing.T) {
			dir := regoDir(t, map[string]string{"slow/slow.rego": c.rego, "slow/data.yaml": data})
			fetch := command(t, "alice", "a FETCH 1:* BODY.PEEK[]")
			ctx := context.Background()
			e, _ := newTestEngine(t, Options{Dirs: []Dir{{Path: dir + "/slow"}}, CacheSize: -1, EvalTimeout: time.Hour})
			if d := e.Decide(ctx, fetch); !d.Allow {
				t.Fatalf("without a short deadline: %+v", d)
			}
			if p := e.state.Load().dirs[0]; (p.prog == nil) != (c.name == "topdown") {
				t.Fatalf("interpreted %v: %s", p.prog == nil, p.planErr)
			}
			e, logs := newTestEngine(t, Options{Dirs: []Dir{{Path: dir + "/slow"}}, EvalTimeout: time.Nanosecond})
			for range 2 {
				d := e.Decide(ctx, fetch)
				if d.Allow || d.Code != "UNAVAILABLE" || d.Reason != "Policy evaluation timed out" {
					t.Fatalf("past the deadline: %+v", d)
				}
			}
			if n := logs.FilterMessage("policy evaluation timed out, denied").Len(); n != 2 {
				t.Fatalf("%d timeouts logged, want 2", n)
			}
		})
	}
}
