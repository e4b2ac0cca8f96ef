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
