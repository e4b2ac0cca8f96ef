package policy

import (
	"context"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// TestInspectIsPerPolicy: a policy of a tree that adds denials which may
// hold at the command point, without an inspect document of its own,
// makes the unit inspect every command, and the load log names it; one
// that declares its own, or whose denials hold only at other points (the
// shipped network and clients policies), keeps the others' inspect set
// (ARCHITECTURE.md §10).
func TestInspectIsPerPolicy(t *testing.T) {
	shipped, _ := newTestEngine(t, Options{Dirs: []Dir{{Path: shippedDir(t)}}})
	if st := shipped.state.Load(); st.inspectAll {
		t.Fatalf("the shipped policies inspect everything (%v): their fast path is lost", st.dirs[0].inspectAllBy)
	}
	ctx := context.Background()
	fetch := command(t, "mallory", "a FETCH 1:* BODY.PEEK[]")
	cases := []struct {
		name, rego string
		all        bool
	}{
		{"without inspect", `package imapwarden

deny contains {"policy": "quarantine"} if {
	input.point == "command"
	user == "mallory"
}
`, true},
		{"without a point test", `package imapwarden

deny contains {"policy": "quarantine"} if user == "mallory"
`, true},
		{"a point test negated", `package imapwarden

deny contains {"policy": "quarantine"} if {
	not input.point == "auth"
	user == "mallory"
}
`, true},
		{"a set of points with command", `package imapwarden

deny contains {"policy": "quarantine"} if {
	input.point in {"auth", "command"}
	user == "mallory"
}
`, true},
		{"its own inspect", `package imapwarden

inspect contains "STORE"

deny contains {"policy": "quarantine"} if {
	input.point == "command"
	user == "mallory"
}
`, false},
		{"only at other points", `package imapwarden

deny contains {"policy": "quarantine"} if {
	input.point in {"auth", "route"}
	user == "mallory"
}

deny contains {"policy": "quarantine"} if {
	"connect" == input.point
	user == "mallory"
}

deny contains {"policy": "quarantine"} if {
	input.point != "command"
	user == "mallory"
}
`, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			root := policySubset(t, nil)
			writeFile(t, filepath.Join(root, "quarantine", "quarantine.rego"), c.rego)
			e, logs := newTestEngine(t, Options{Dirs: []Dir{{Path: root}}})
			st := e.state.Load()
			if st.inspectAll != c.all {
				t.Fatalf("inspect all %v, want %v (%v)", st.inspectAll, c.all, st.dirs[0].inspectAllBy)
			}
			loaded := logs.FilterMessage("policy loaded").All()
			if len(loaded) != 1 {
				t.Fatalf("%d load logs", len(loaded))
			}
			by, _ := loaded[0].ContextMap()["inspect_all_by"].([]any)
			named := slices.Contains(by, any(filepath.Join(root, "quarantine")))
			if named != c.all {
				t.Fatalf("inspect_all_by %v", loaded[0].ContextMap()["inspect_all_by"])
			}
			if c.all {
				if d := e.Decide(ctx, fetch); d.Allow {
					t.Fatalf("FETCH not asked of the quarantine policy: %+v", d)
				}
			}
		})
	}
}

// TestDataErrorsRefuseLoad: a routing.users key not in lower case would
// never match the folded login (ARCHITECTURE.md §17): the load is refused,
// naming it, and a reload keeps the policy in force.
func TestDataErrorsRefuseLoad(t *testing.T) {
	root := policySubset(t, map[string]string{"routing": "users: {alice: main}\ngroups: {}\n"})
	e, _ := newTestEngine(t, Options{Dirs: []Dir{{Path: root}}})
	rev := e.Revision()
	writeFile(t, filepath.Join(root, "routing", "data.yaml"), "users: {alice: main, Kate: archive}\ngroups: {}\n")
	err := e.Reload()
	if err == nil || !strings.Contains(err.Error(), `routing.users: "Kate" is not lower case`) {
		t.Fatalf("reload with a key not lower case: %v", err)
	}
	if e.Revision() != rev {
		t.Fatal("the refused policy is in force")
	}
	if _, err := New(Options{Dirs: []Dir{{Path: root}}, PollInterval: -1}); err == nil {
		t.Fatal("loaded with a key not lower case")
	}
}
