package audit

import (
	"os"
	"path/filepath"
	"testing"
	"time"
)

// TestOpenNarrowsRotatedFiles: rotated files of the trail left readable by
// others (an older version, a restore under umask 022) are narrowed at
// open as the active one is, and each is reported.
func TestOpenNarrowsRotatedFiles(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "audit.jsonl")
	rotated := rotatedName(path, time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC))
	for _, f := range []string{rotated, path} {
		if err := os.WriteFile(f, nil, 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(f, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	fixed := map[string]os.FileMode{}
	fs, err := OpenFile(FileOptions{Path: path, OnModeFixed: func(p string, from, to os.FileMode) {
		if from != 0o644 || to != 0o600 {
			t.Errorf("%s: %04o to %04o", p, from, to)
		}
		fixed[p] = to
	}})
	if err != nil {
		t.Fatal(err)
	}
	defer fs.Close()
	for _, f := range []string{rotated, path} {
		fi, err := os.Stat(f)
		if err != nil {
			t.Fatal(err)
		}
		if m := fi.Mode().Perm(); m != 0o600 {
			t.Errorf("%s: mode %04o", filepath.Base(f), m)
		}
		if _, ok := fixed[f]; !ok {
			t.Errorf("%s: narrowed without a word", filepath.Base(f))
		}
	}
}
