package policy

import (
	"context"
	"path/filepath"
	"testing"
)

// TestAttackPolicyWithoutInspectInTreeSeesEveryCommand: policies/README.md
// says a policy without an inspect document sees every command, and
// ARCHITECTURE.md §10 lists it under fail closed. An operator's directory
// added to the shipped tree, with a deny but no inspect of its own, must
// therefore be asked about a FETCH even though the shipped policies'
// inspect documents do not name FETCH.
func TestAttackPolicyWithoutInspectInTreeSeesEveryCommand(t *testing.T) {
	root := policySubset(t, nil)
	writeFile(t, filepath.Join(root, "quarantine", "quarantine.rego"), `package imapwarden

deny contains {"policy": "quarantine", "reason": "account quarantined"} if {
	input.point == "command"
	user == "mallory"
}
`)
	e, _ := newTestEngine(t, Options{Dirs: []Dir{{Path: root}}})
	d := e.Decide(context.Background(), command(t, "mallory", "a FETCH 1:* BODY.PEEK[]"))
	if d.Allow {
		t.Fatalf("the quarantine policy (no inspect document) was never asked about FETCH: %+v", d)
	}
}
