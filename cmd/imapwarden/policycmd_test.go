package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func runPolicyCLI(args ...string) (code int, stdout, stderr string) {
	var out, errOut bytes.Buffer
	code = runPolicy(args, &out, &errOut)
	return code, out.String(), errOut.String()
}

const shippedPolicies = "../../policies"

func TestPolicyTestCommand(t *testing.T) {
	code, out, errOut := runPolicyCLI("test", shippedPolicies)
	if code != 0 || !strings.Contains(out, "PASS: ") {
		t.Fatalf("shipped policies: code %d\n%s\n%s", code, out, errOut)
	}

	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "p.rego"), []byte("package imapwarden\n\ndecision := {\"allow\": true}\n"), 0o644)
	os.WriteFile(filepath.Join(dir, "p_test.rego"), []byte("package imapwarden_test\n\nimport data.imapwarden\n\ntest_ok if imapwarden.decision.allow\n\ntest_fails if not imapwarden.decision.allow\n"), 0o644)
	code, out, _ = runPolicyCLI("test", "-v", dir)
	if code != 1 || !strings.Contains(out, "p_test.rego:7") || !strings.Contains(out, "FAIL: 1/2") {
		t.Errorf("failing test: code %d\n%s", code, out)
	}

	os.WriteFile(filepath.Join(dir, "p.rego"), []byte("package imapwarden\n\ndecision := {\"allow\": tru}\n"), 0o644)
	if code, _, errOut = runPolicyCLI("test", dir); code != 1 || !strings.Contains(errOut, "p.rego:3") {
		t.Errorf("broken policy: code %d, stderr %q", code, errOut)
	}
	empty := t.TempDir()
	if code, _, errOut = runPolicyCLI("test", empty); code != 1 || !strings.Contains(errOut, "no tests") {
		t.Errorf("no tests: code %d, stderr %q", code, errOut)
	}
}

func TestPolicyEvalCommand(t *testing.T) {
	dir := t.TempDir()
	input := filepath.Join(dir, "in.json")
	os.WriteFile(input, []byte(`{
		"point": "command",
		"session": {"user": "alice", "groups": [], "tls": {"version": "TLS1.3"}},
		"command": {"name": "DELETE", "mailbox": "Sent",
			"effects": [{"kind": "delete-mailbox", "target": "mailbox", "mailbox": "Sent"}]}
	}`), 0o644)
	code, out, errOut := runPolicyCLI("eval", "-input", input, "-policy", shippedPolicies)
	if code != 0 {
		t.Fatalf("code %d\n%s\n%s", code, out, errOut)
	}
	var res struct {
		Revision  string
		Inspected bool
		Decision  struct {
			Allow       bool
			Code        string
			Reason      string
			Annotations map[string]any
		}
	}
	if err := json.Unmarshal([]byte(out), &res); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	if res.Revision == "" || !res.Inspected || res.Decision.Allow || res.Decision.Code != "NOPERM" ||
		res.Decision.Annotations["policy"] != "protected_folders" {
		t.Errorf("result %+v", res)
	}

	// A command no policy inspects is allowed whatever the decision.
	os.WriteFile(input, []byte(`{"point": "command", "session": {"user": "alice"}, "command": {"name": "noop"}}`), 0o644)
	if code, out, _ = runPolicyCLI("eval", "--input", input, "--policy", shippedPolicies); code != 0 || !strings.Contains(out, `"inspected": false`) {
		t.Errorf("noop: code %d\n%s", code, out)
	}

	// A malformed decision: the engine would fail closed.
	os.WriteFile(filepath.Join(dir, "p.rego"), []byte("package imapwarden\ndecision := {\"allow\": \"yes\"}\n"), 0o644)
	if code, _, errOut = runPolicyCLI("eval", "-input", input, "-policy", dir); code != 1 || !strings.Contains(errOut, "would deny") {
		t.Errorf("malformed: code %d, stderr %q", code, errOut)
	}
	os.WriteFile(input, []byte(`[1]`), 0o644)
	if code, _, errOut = runPolicyCLI("eval", "-input", input, "-policy", dir); code != 1 || !strings.Contains(errOut, "not an object") {
		t.Errorf("array input: code %d, stderr %q", code, errOut)
	}
	if code, _, _ = runPolicyCLI("eval"); code != 2 {
		t.Errorf("no input: code %d", code)
	}
	if code, _, _ = runPolicyCLI("frobnicate"); code != 2 {
		t.Errorf("unknown subcommand: code %d", code)
	}
	if code, out, _ = runPolicyCLI("-h"); code != 0 || !strings.Contains(out, "imapwarden policy test") {
		t.Errorf("help: code %d", code)
	}
}
