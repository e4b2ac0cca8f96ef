package filemode

import (
	"os"
	"path/filepath"
	"testing"
)

// Trusted looks at the file's own directory only. Whoever may write any
// directory above it may rename the file's directory away and put one of
// their own, with their own file, in its place (sshd's StrictModes checks
// every directory up to the root for this reason); and a symbolic link
// is judged by the link's directory, while whoever may write the
// target's directory replaces the file it reads.
func TestAttackTrustedIgnoresWritableAncestorsAndLinkTargets(t *testing.T) {
	root := t.TempDir()
	mkdir := func(p string, mode os.FileMode) string { return mkdirMode(t, p, mode) }
	write := func(p string) string {
		t.Helper()
		if err := os.WriteFile(p, []byte("policy\n"), 0o640); err != nil {
			t.Fatal(err)
		}
		return p
	}

	// /root/open (0777, not sticky)/etc (0755)/config.yaml (0640)
	open := mkdir(filepath.Join(root, "open"), 0o777)
	etc := mkdir(filepath.Join(open, "etc"), 0o755)
	conf := write(filepath.Join(etc, "config.yaml"))

	// /root/safe (0755)/policy.rego -> /root/drop (0777)/policy.rego
	safe := mkdir(filepath.Join(root, "safe"), 0o755)
	drop := mkdir(filepath.Join(root, "drop"), 0o777)
	target := write(filepath.Join(drop, "policy.rego"))
	link := filepath.Join(safe, "policy.rego")
	if err := os.Symlink(target, link); err != nil {
		t.Fatal(err)
	}
	// The direct forms are refused today, which is the contract.
	if Trusted(target) == nil {
		t.Fatalf("a file in a 0777 directory is trusted: the base contract changed")
	}

	for _, c := range []struct{ what, path string }{
		{"a file whose grandparent directory is 0777 (others rename its directory away)", conf},
		{"a symbolic link in a 0755 directory to a file in a 0777 directory", link},
	} {
		if err := Trusted(c.path); err == nil {
			t.Errorf("Trusted(%s) = nil for %s: any local user may replace what the proxy reads", c.path, c.what)
		}
		if err := Secret(c.path); err == nil {
			t.Errorf("Secret(%s) = nil for %s: any local user may replace the secret", c.path, c.what)
		}
	}
}

// mkdirMode makes directory p with exactly mode (past the umask).
func mkdirMode(t *testing.T, p string, mode os.FileMode) string {
	t.Helper()
	if err := os.Mkdir(p, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(p, mode); err != nil {
		t.Fatal(err)
	}
	return p
}
