package filemode

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestTrustedAndSecret(t *testing.T) {
	dir := t.TempDir()
	file := func(dirMode, mode os.FileMode) string {
		t.Helper()
		d, err := os.MkdirTemp(dir, "d")
		if err != nil {
			t.Fatal(err)
		}
		p := filepath.Join(d, "f")
		if err := os.WriteFile(p, nil, 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(p, mode); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(d, dirMode); err != nil {
			t.Fatal(err)
		}
		return p
	}
	for _, c := range []struct {
		dir, file       os.FileMode
		trusted, secret string // "" or a word the refusal says
	}{
		{0o755, 0o644, "", "read"},
		{0o755, 0o640, "", ""},
		{0o750, 0o600, "", ""},
		{0o775, 0o664, "", "read"}, // group write stays the operator's choice
		{0o755, 0o666, "change", "read"},
		{0o757, 0o600, "replace", "replace"},
		{os.ModeSticky | 0o777, 0o600, "", ""}, // sticky: only the owner (this user) renames it
	} {
		p := file(c.dir, c.file)
		for _, k := range []struct {
			name, want string
			err        error
		}{{"Trusted", c.trusted, Trusted(p)}, {"Secret", c.secret, Secret(p)}} {
			switch {
			case k.want == "" && k.err != nil:
				t.Errorf("%s(file %04o in dir %04o): %v", k.name, c.file, c.dir, k.err)
			case k.want != "" && (k.err == nil || !strings.Contains(k.err.Error(), k.want) || !strings.Contains(k.err.Error(), p)):
				t.Errorf("%s(file %04o in dir %04o): %v, want a refusal naming it: %q", k.name, c.file, c.dir, k.err, k.want)
			}
		}
	}
	d := filepath.Join(dir, "policies")
	if err := os.Mkdir(d, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(d, 0o777); err != nil {
		t.Fatal(err)
	}
	if err := Trusted(d); err == nil || !strings.Contains(err.Error(), "directory") {
		t.Errorf("a directory of mode 0777: %v", err)
	}
	if err := Trusted(filepath.Join(dir, "missing")); err != nil {
		t.Errorf("a missing file is its reader's to report: %v", err)
	}
}

// Every directory met while resolving the path counts, links' included: a
// Kubernetes volume's "..data" chain in safe directories passes; a link
// on the way whose directory others may write, or a directory of another
// user, does not.
func TestTrustedFollowsEveryDirectory(t *testing.T) {
	root := t.TempDir() // under /tmp: sticky 1777 and root's, allowed
	mk := func(p string, mode os.FileMode) string {
		t.Helper()
		if err := os.MkdirAll(p, 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(p, mode); err != nil {
			t.Fatal(err)
		}
		return p
	}
	link := func(target, p string) string {
		t.Helper()
		if err := os.Symlink(target, p); err != nil {
			t.Fatal(err)
		}
		return p
	}
	// vol/config.yaml -> ..data/config.yaml, ..data -> ..2026_12_07/
	vol := mk(filepath.Join(root, "vol"), 0o755)
	stamp := mk(filepath.Join(vol, "..2026_12_07"), 0o755)
	if err := os.WriteFile(filepath.Join(stamp, "config.yaml"), nil, 0o440); err != nil {
		t.Fatal(err)
	}
	link("..2026_12_07", filepath.Join(vol, "..data"))
	kube := link("..data/config.yaml", filepath.Join(vol, "config.yaml"))
	// safe/key -> open/hop (in a 0777 directory) -> vol/..data/config.yaml
	open := mk(filepath.Join(root, "open"), 0o777)
	link(filepath.Join(vol, "..data", "config.yaml"), filepath.Join(open, "hop"))
	hop := link(filepath.Join(open, "hop"), filepath.Join(mk(filepath.Join(root, "safe"), 0o755), "key"))
	// theirs/ (another user's, 0755)/f
	theirs := mk(filepath.Join(root, "theirs"), 0o755)
	other := filepath.Join(theirs, "f")
	if err := os.WriteFile(other, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	chownErr := os.Chown(theirs, 54321, 54321)

	for _, c := range []struct {
		what, path, want string
	}{
		{"a Kubernetes volume's ..data chain", kube, ""},
		{"the same through a relative path", mustRel(t, kube), ""},
		{"a link through a link in a 0777 directory", hop, "replace"},
		{"a file in another user's directory", other, "another user"},
	} {
		if c.path == other && chownErr != nil {
			continue // not root: cannot make another user's directory
		}
		for _, k := range []struct {
			name string
			err  error
		}{{"Trusted", Trusted(c.path)}, {"Secret", Secret(c.path)}} {
			switch {
			case c.want == "" && k.err != nil:
				t.Errorf("%s(%s): %v", k.name, c.what, k.err)
			case c.want != "" && (k.err == nil || !strings.Contains(k.err.Error(), c.want)):
				t.Errorf("%s(%s) = %v, want a refusal: %q", k.name, c.what, k.err, c.want)
			}
		}
	}
}

func mustRel(t *testing.T, p string) string {
	t.Helper()
	wd, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	r, err := filepath.Rel(wd, p)
	if err != nil {
		t.Fatal(err)
	}
	return r
}
