package policy

import (
	"context"
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
	groups := denyGroups(p, "command")
	if len(groups) != 1 || len(groups[0].blocks) < 9 {
		t.Fatalf("deny's groups at the command point: %d, want one of 9 bodies or more", len(groups))
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
