package policy

import (
	"bytes"
	"context"
	"testing"
)

// TestShippedPolicies runs the Rego tests of policies/ (go test ./... runs
// them, like "imapwarden policy test policies").
func TestShippedPolicies(t *testing.T) {
	rep, err := RunTests(context.Background(), shippedDir(t))
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	if err := rep.Write(&out, testing.Verbose()); err != nil {
		t.Fatal(err)
	}
	if !rep.OK() {
		t.Fatalf("Rego tests failed:\n%s", out.String())
	}
	t.Logf("%d Rego tests passed\n%s", rep.Passed, out.String())
}
