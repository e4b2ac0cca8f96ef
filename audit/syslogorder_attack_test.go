package audit

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// A syslog trail shares its files with other programs (facility authpriv:
// sshd, sudo, PAM): verify reads "lines that are not records (other
// programs' lines in a syslog file)" and takes the files "in any order,
// put in order by their first seq". A rotated syslog file whose first
// thousand-odd lines are other programs' (a busy host, a quiet proxy)
// is an intact part of the trail all the same: verify (with the key
// and the checkpoint) must not report
// the good trail broken because it looked for the first record in only
// the first 1000 lines, ordered that file last, and so read seq 1 after
// the newest records.
func TestAttackSyslogFileWithManyForeignLinesOrdered(t *testing.T) {
	trail, cpFile := writeCheckpointed(t, 6) // keyed: audit.start, 6 commands, audit.stop
	lines := readLines(t, trail)
	keys := [][]byte{testKey()}
	cp, err := ReadCheckpoint(cpFile, keys)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	var older, newer []string
	for i := range 1500 {
		older = append(older, fmt.Sprintf("Dec  7 03:04:%02d host sshd[%d]: Accepted publickey for deploy from 192.0.2.9", i%60, 1000+i))
	}
	for i, l := range lines {
		l = "<86>1 2026-12-07T03:05:00.000001Z host imapwarden 77 command - " + l
		if i < 4 {
			older = append(older, l)
		} else {
			newer = append(newer, l)
		}
	}
	files := []string{filepath.Join(dir, "auth.log.1"), filepath.Join(dir, "auth.log")}
	for i, ls := range [][]string{older, newer} {
		if err := os.WriteFile(files[i], []byte(strings.Join(ls, "\n")+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	rep, err := Verify(files, VerifyOptions{Keys: keys, Checkpoint: cp})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Break != nil {
		var b strings.Builder
		rep.WriteText(&b)
		t.Errorf("an intact syslog trail, its older file starting with 1500 lines of sshd, reported broken (checkpoint seq %d):\n%s", cp.Seq, b.String())
	}
	n := 0
	var seqs []uint64
	if _, err := Scan(files, func(r *Record, _ []byte) error {
		n++
		seqs = append(seqs, r.Seq)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	for i := 1; i < len(seqs); i++ {
		if seqs[i] < seqs[i-1] {
			t.Errorf("audit query reads the records out of chain order: seq %v", seqs)
			break
		}
	}
}
