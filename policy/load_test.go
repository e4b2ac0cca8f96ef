package policy

import (
	"context"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/imapwarden/imapwarden/proxy"
)

// shippedPolicies lists the policy directories of policies/.
func shippedPolicies(t *testing.T) []string {
	t.Helper()
	entries, err := os.ReadDir(shippedDir(t))
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		if e.IsDir() {
			names = append(names, e.Name())
		}
	}
	if len(names) < 9 {
		t.Fatalf("only %d policies in %s", len(names), shippedDir(t))
	}
	return names
}

// TestPolicyDirAlone: every subdirectory of policies/ loads, tests and
// decides alone, with the framework from its parent and its data where the
// whole tree puts it (README: "policy.dirs: [{path: .../baseline}, ...]").
func TestPolicyDirAlone(t *testing.T) {
	ctx := context.Background()
	for _, name := range shippedPolicies(t) {
		t.Run(name, func(t *testing.T) {
			dir := filepath.Join(shippedDir(t), name)
			rep, err := RunTests(ctx, dir)
			if err != nil {
				t.Fatal(err)
			}
			if !rep.OK() {
				var out strings.Builder
				rep.Write(&out, false)
				t.Fatalf("policy test %s:\n%s", dir, out.String())
			}
			e, _ := newTestEngine(t, Options{Dirs: []Dir{{Path: dir}}})
			if e.Revision() == "" {
				t.Fatal("no revision")
			}
		})
	}
	// Data placement: protected_folders reads data.protected_folders.
	e, _ := newTestEngine(t, Options{Dirs: []Dir{{Path: filepath.Join(shippedDir(t), "protected_folders")}, {Path: filepath.Join(shippedDir(t), "readonly"), Shadow: true}}})
	if d := e.Decide(ctx, command(t, "alice", "a DELETE INBOX")); d.Allow || d.Annotations["policy"] != "protected_folders" {
		t.Fatalf("DELETE INBOX: %+v", d)
	}
	if d := e.Decide(ctx, command(t, "alice", "a DELETE Archive")); !d.Allow {
		t.Fatalf("DELETE Archive: %+v", d)
	}
}

// TestPolicyDirBuiltinFramework: a policy copied away from its tree gets
// the framework built into the binary.
func TestPolicyDirBuiltinFramework(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "legal_hold")
	for _, f := range []string{"legal_hold.rego", "legal_hold_test.rego"} {
		copyFile(t, filepath.Join(shippedDir(t), "legal_hold", f), filepath.Join(dir, f))
	}
	writeFile(t, filepath.Join(dir, "data.yaml"), "users: [erin]\nmailboxes: {}\n")
	rep, err := RunTests(context.Background(), dir)
	if err != nil || !rep.OK() {
		t.Fatalf("tests: %v %+v", err, rep)
	}
	res, err := loadPath(dir, false)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := res.Modules[BuiltinFramework]; !ok {
		t.Fatalf("modules %v lack the built-in framework", keys(res.Modules))
	}
	e, _ := newTestEngine(t, Options{Dirs: []Dir{{Path: dir}}})
	if d := e.Decide(context.Background(), command(t, "erin", "a EXPUNGE")); d.Allow || d.Annotations["policy"] != "legal_hold" {
		t.Fatalf("EXPUNGE by a held user: %+v", d)
	}
}

// TestPolicyDirParentFramework: the parent's imapwarden.rego, which an
// operator may have edited, wins over the built-in one, and a change to it
// is a change of the policy (the poller watches it).
func TestPolicyDirParentFramework(t *testing.T) {
	tree := policySubset(t, nil, "protected_folders")
	dir := filepath.Join(tree, "protected_folders")
	fw, err := os.ReadFile(filepath.Join(tree, "imapwarden.rego"))
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(tree, "imapwarden.rego"), string(fw)+`
deny contains {"policy": "edited_framework", "reason": "closed for maintenance", "disconnect": true} if input.point == "connect"
`)
	e, _ := newTestEngine(t, Options{Dirs: []Dir{{Path: dir}}})
	connect := &proxy.DecisionInput{Point: proxy.PointConnect, Session: testSession("")}
	if d := e.Decide(context.Background(), connect); d.Allow || d.Annotations["policy"] != "edited_framework" {
		t.Fatalf("connect with the edited framework: %+v", d)
	}
	print := e.filesFingerprint()
	writeFile(t, filepath.Join(tree, "imapwarden.rego"), string(fw))
	if e.filesFingerprint() == print {
		t.Fatal("the parent's framework is not watched")
	}
	if err := e.Reload(); err != nil {
		t.Fatal(err)
	}
	if d := e.Decide(context.Background(), connect); !d.Allow {
		t.Fatalf("connect after the framework was restored: %+v", d)
	}
}

// TestReadmePolicyExample loads the "Writing a policy" example of
// policies/README.md as it is written there: a directory of its own.
func TestReadmePolicyExample(t *testing.T) {
	readme, err := os.ReadFile(filepath.Join(shippedDir(t), "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	blocks := regexp.MustCompile("(?s)```rego\n# policies/(no_junk/[a-z_]+\\.rego)\n(.*?)```").FindAllSubmatch(readme, -1)
	if len(blocks) != 2 {
		t.Fatalf("found %d no_junk blocks in policies/README.md, want the policy and its test", len(blocks))
	}
	root := t.TempDir()
	for _, b := range blocks {
		writeFile(t, filepath.Join(root, string(b[1])), string(b[2]))
	}
	dir := filepath.Join(root, "no_junk")
	rep, err := RunTests(context.Background(), dir)
	if err != nil || !rep.OK() {
		var out strings.Builder
		if rep != nil {
			rep.Write(&out, true)
		}
		t.Fatalf("policy test: %v\n%s", err, out.String())
	}
	e, _ := newTestEngine(t, Options{Dirs: []Dir{{Path: dir}}})
	if d := e.Decide(context.Background(), command(t, "alice", "a STORE 1 +FLAGS ($Junk)")); d.Allow || d.Annotations["policy"] != "no_junk" {
		t.Fatalf("STORE $Junk: %+v", d)
	}
}

func keys[V any](m map[string]V) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}
