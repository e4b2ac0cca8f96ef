package audit

import (
	"os"
	"path/filepath"
	"testing"
)

// TestAttackTrailWrittenToWorldReadableFile: the file sink makes new
// files 0600 ("records name users and mailboxes"), but opens an active
// file that exists already as it is: one an installer or logrotate
// created with a umask of 022 (0644) gets the trail, every user, address,
// mailbox and message UID, readable by every local user until it is
// rotated, and the rotated file keeps that mode for good. Nothing says
// so; secret files in the same state are refused at start.
func TestAttackTrailWrittenToWorldReadableFile(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "audit.jsonl")
	if err := os.WriteFile(path, nil, 0o644); err != nil { // touch, umask 022
		t.Fatal(err)
	}
	if err := os.Chmod(path, 0o644); err != nil {
		t.Fatal(err)
	}
	fs, err := OpenFile(FileOptions{Path: path, MaxSize: 4096})
	if err != nil {
		return // refused: a fix
	}
	tr, err := New(Options{Sink: fs})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 100 {
		logWritten(t, tr, cmdRecord(i))
	}
	if err := tr.Close(); err != nil {
		t.Fatal(err)
	}
	files, err := Files(path)
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range files {
		fi, err := os.Stat(f)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm()&0o007 != 0 {
			t.Errorf("%s: mode %04o: the trail is readable by every local user", filepath.Base(f), fi.Mode().Perm())
		}
	}
}
