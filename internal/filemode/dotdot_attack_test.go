package filemode

import (
	"os"
	"path/filepath"
	"testing"
)

// TestAttackDotDotAfterLinkJudgedLexically: pathTrusted starts from
// filepath.Abs, which cleans "link/.." away lexically, while the kernel
// resolves the link first and then takes ".." in the link's target
// (path_resolution(7)). A configured path "safe/link/../policy.rego" with
// link -> drop/sub opens drop/policy.rego, in a 0777 directory any local
// user may replace it in; Trusted and Secret judge safe/policy.rego
// instead (absent: passed; present: a file the proxy never reads).
func TestAttackDotDotAfterLinkJudgedLexically(t *testing.T) {
	root := t.TempDir()
	mkdir := func(p string, mode os.FileMode) string { return mkdirMode(t, p, mode) }
	safe := mkdir(filepath.Join(root, "safe"), 0o755)
	drop := mkdir(filepath.Join(root, "drop"), 0o777)
	sub := mkdir(filepath.Join(drop, "sub"), 0o755)
	target := filepath.Join(drop, "policy.rego")
	if err := os.WriteFile(target, []byte("policy\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(sub, filepath.Join(safe, "link")); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(safe, "link") + "/../policy.rego"
	// The path the kernel opens is the one in the 0777 directory.
	got, err := os.ReadFile(path)
	if err != nil || string(got) != "policy\n" {
		t.Fatalf("%s does not open %s: %v", path, target, err)
	}
	if Trusted(target) == nil || Secret(target) == nil {
		t.Fatalf("a file in a 0777 directory is trusted: the base contract changed")
	}
	check := func(what string) {
		t.Helper()
		if err := Trusted(path); err == nil {
			t.Errorf("%s: Trusted(%s) = nil; it opens %s in a 0777 directory", what, path, target)
		}
		if err := Secret(path); err == nil {
			t.Errorf("%s: Secret(%s) = nil; it opens %s in a 0777 directory", what, path, target)
		}
	}
	check("lexical safe/policy.rego absent")
	// With a trusted file at the lexical path, that one is judged instead.
	if err := os.WriteFile(filepath.Join(safe, "policy.rego"), []byte("decoy\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	check("lexical safe/policy.rego present")
}
