package audit

import (
	"fmt"
	"os"
	"strings"
	"testing"
)

// An HMAC-chained trail cannot be extended without the key: a record
// that links to nothing the key signed is a forgery, even when it calls
// itself the start of a new chain (seq 1, hmac of zeros). A file trail
// with a key and a checkpoint resumes its chain (TestChainResumesAcrossRestarts),
// so a "new chain" in the middle or at the end of it is written by
// someone else. Verify must not report such a trail as intact.
func TestVerifyRefusesUnsignedRecordsInHMACTrail(t *testing.T) {
	trail, cpFile := writeCheckpointed(t, 3)
	keys := [][]byte{testKey()}
	cp, err := ReadCheckpoint(cpFile, keys)
	if err != nil {
		t.Fatal(err)
	}
	mustVerify(t, []string{trail}, VerifyOptions{Keys: keys, Checkpoint: cp})

	// Written by someone without the key: seq 1, a zero link, kind
	// audit.start for the verifier's fast head; a second "kind" (the
	// last one wins in encoding/json) makes it a command record for
	// audit query.
	forged := `{"ts":"2026-12-07T07:00:00Z","kind":"audit.start","v":1,"seq":1,"hmac":"` + string(genesis) +
		`","kind":"command","session":"s9","ip":"192.0.2.66","user":"mallory","tag":"x","command":"DELETE","mailbox":"INBOX","result":"OK"}` + "\n"
	f, err := os.OpenFile(trail, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.WriteString(forged)
	f.Close()

	var got []*Record
	if _, err := Query([]string{trail}, &Filter{User: "mallory"}, func(r *Record, _ []byte) error {
		got = append(got, r)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if len(got) == 1 {
		t.Logf("audit query reads the forged line as a %s record: user %s, command %s", got[0].Kind, got[0].User, got[0].Command)
	}

	rep, err := Verify([]string{trail}, VerifyOptions{Keys: keys, Checkpoint: cp})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Break == nil {
		var b strings.Builder
		rep.WriteText(&b)
		t.Fatalf("a record no key signed, appended to an HMAC trail, verifies (exit 0):\n%s", b.String())
	}
}

// A trail that resumes its chain links its next record to the last one
// stored: that record must be one the key signed (its successor in a
// chain it verifies), or the restart buries a forgery under records the
// key did sign. Here, without a checkpoint, a line appended while the
// proxy was stopped becomes part of a chain that verifies.
func TestResumeDoesNotSignAForgedLastRecord(t *testing.T) {
	dir := t.TempDir()
	path := dir + "/audit.jsonl"
	open := func() *Trail {
		fs, err := OpenFile(FileOptions{Path: path})
		if err != nil {
			t.Fatal(err)
		}
		tr, err := New(Options{Sink: fs, Key: testKey()})
		if err != nil {
			t.Logf("resume refused: %v", err)
			return nil
		}
		return tr
	}
	tr := open()
	for i := range 3 {
		if err := tr.Log(cmdRecord(i)); err != nil {
			t.Fatal(err)
		}
	}
	tr.Close()

	forged := `{"ts":"2026-12-07T07:00:00Z","kind":"audit.start","v":1,"seq":1,"hmac":"` + string(genesis) +
		`","kind":"command","session":"s9","ip":"192.0.2.66","user":"mallory","tag":"x","command":"DELETE","mailbox":"INBOX","result":"OK"}` + "\n"
	f, err := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.WriteString(forged)
	f.Close()

	if tr = open(); tr == nil {
		return // the writer would not sign it
	}
	for i := range 3 {
		tr.Log(cmdRecord(10 + i))
	}
	tr.Close()
	keys := [][]byte{testKey()}
	rep, err := Verify([]string{path}, VerifyOptions{Keys: keys})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Break == nil {
		var b strings.Builder
		rep.WriteText(&b)
		t.Fatalf("the writer resumed from a line no key signed and the forgery now sits inside a chain that verifies:\n%s", b.String())
	}
}

// A checkpoint proves that the records up to its seq were written: a
// trail that does not hold its record (and does not link to it) proves
// nothing, whatever seq its lines claim. Someone without the key replaces
// the whole HMAC trail by one line of theirs, with a seq past the
// checkpoint's; the first record's link is checked against nothing.
func TestCheckpointNotMetByAReplacedTrail(t *testing.T) {
	trail, cpFile := writeCheckpointed(t, 10)
	keys := [][]byte{testKey()}
	cp, err := ReadCheckpoint(cpFile, keys)
	if err != nil {
		t.Fatal(err)
	}
	forged := `{"ts":"2026-12-07T07:00:00Z","kind":"audit.stop","v":1,"seq":` + fmt.Sprint(cp.Seq+1) + `,"hmac":"` +
		strings.Repeat("ab", 32) + `"}` + "\n"
	if err := os.WriteFile(trail, []byte(forged), 0o600); err != nil {
		t.Fatal(err)
	}
	rep, err := Verify([]string{trail}, VerifyOptions{Keys: keys, Checkpoint: cp})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Break == nil {
		var b strings.Builder
		rep.WriteText(&b)
		t.Fatalf("every record the checkpoint (seq %d) vouches for is gone, replaced by one unsigned line, and verify with key and checkpoint exits 0:\n%s", cp.Seq, b.String())
	}
}
