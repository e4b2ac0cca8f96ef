package audit

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/imapwarden/imapwarden/internal/testenv"
)

// forgedStart is a record written by someone without the key: seq 1, a
// zero link, kind audit.start for the verifier's fast head; a second
// "kind" (the last one wins in encoding/json) makes it a command record
// for audit query.
const forgedStart = `{"ts":"2026-12-07T07:00:00Z","kind":"audit.start","v":1,"seq":1,"hmac":"` +
	"0000000000000000000000000000000000000000000000000000000000000000" +
	`","kind":"command","session":"s9","ip":"192.0.2.66","user":"mallory","tag":"x","command":"DELETE","mailbox":"INBOX","result":"OK"}`

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

	appendLine(t, trail, forgedStart)

	var got []*Record
	if _, err := Query([]string{trail}, &Filter{User: "mallory"}, func(r *Record, _ []byte) error {
		got = append(got, r)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if len(got) == 1 { // one reading: query skips what verify refuses
		t.Errorf("audit query reads the forged line as a %s record: user %s, command %s", got[0].Kind, got[0].User, got[0].Command)
	}

	mustBreak(t, []string{trail}, VerifyOptions{Keys: keys, Checkpoint: cp}, "a record no key signed, appended to an HMAC trail, verifies (exit 0)")
}

// A trail that resumes its chain links its next record to the last one
// stored: that record must be one the key signed (its successor in a
// chain it verifies), or the restart buries a forgery under records the
// key did sign. Here, without a checkpoint, a line appended while the
// proxy was stopped becomes part of a chain that verifies.
func TestResumeDoesNotSignAForgedLastRecord(t *testing.T) {
	dir := t.TempDir()
	path := dir + "/audit.jsonl"
	open := func() *Trail { return openKeyed(t, path) }
	tr := open()
	for i := range 3 {
		if err := tr.Log(cmdRecord(i)); err != nil {
			t.Fatal(err)
		}
	}
	tr.Close()

	appendLine(t, path, forgedStart)

	if tr = open(); tr == nil {
		return // the writer would not sign it
	}
	for i := range 3 {
		tr.Log(cmdRecord(10 + i))
	}
	tr.Close()
	keys := [][]byte{testKey()}
	mustBreak(t, []string{path}, VerifyOptions{Keys: keys}, "the writer resumed from a line no key signed and the forgery now sits inside a chain that verifies")
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
	mustBreak(t, []string{trail}, VerifyOptions{Keys: keys, Checkpoint: cp}, "every record the checkpoint (seq %d) vouches for is gone, replaced by one unsigned line, and verify with key and checkpoint exits 0", cp.Seq)
}

// keyedTrail writes n command records into a keyed file trail and
// returns its file and lines.
func keyedTrail(t *testing.T, n int) (string, []string) {
	t.Helper()
	path := writeKeyed(t, n, "")
	return path, readLines(t, path)
}

// readLines returns a file's lines, without "\n".
func readLines(t *testing.T, path string) []string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return strings.Split(strings.TrimSuffix(string(b), "\n"), "\n")
}

// appendLine appends line and "\n" to the file at path.
func appendLine(t *testing.T, path, line string) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteString(line + "\n"); err != nil {
		t.Fatal(err)
	}
}

// unsign strips a keyed record's signature.
func unsign(line string) string {
	body, sig := splitSig([]byte(line))
	if sig == nil {
		panic("not a signed record: " + line)
	}
	return string(body) + "}"
}

// With a key, verify's OK means that the key signed every record: a
// record without a valid sig is refused wherever it stands (the end of
// the trail, which no later record covers, included), as is a restart
// (seq 1, zero link) nobody signed, or one put after a checkpoint's
// record. A restart a key holder signed is noted.
func TestEveryRecordOfAKeyedTrailIsSigned(t *testing.T) {
	_, lines := keyedTrail(t, 4) // audit.start, 4 commands, audit.stop
	keys := [][]byte{testKey()}
	n := len(lines)
	mustVerify(t, []string{writeTemp(t, lines)}, VerifyOptions{Keys: keys})
	if !strings.HasSuffix(lines[n-1], `"}`) || !strings.Contains(lines[n-1], `,"sig":"`) {
		t.Fatalf("the last record is not signed: %s", lines[n-1])
	}

	next := func(line string, seq int) string { // the same record, one seq on
		return strings.Replace(line, fmt.Sprintf(`"seq":%d,`, seq-1), fmt.Sprintf(`"seq":%d,`, seq), 1)
	}
	restart := `{"ts":"2026-12-07T07:00:00Z","kind":"audit.start","v":1,"seq":1,"hmac":"` + string(genesis) + `","host":"mx1","chain":"hmac-sha256"}`
	edited := slices.Clone(lines)
	edited[2] = strings.Replace(edited[2], `"user":"alice"`, `"user":"bob"`, 1)
	lastEdited := slices.Clone(lines)
	lastEdited[n-1] = strings.Replace(lastEdited[n-1], `"count":`, `"count":1`, 1)
	for _, c := range []struct {
		name  string
		lines []string
		kind  BreakKind
		line  int
	}{
		{"unsigned record appended", append(slices.Clone(lines), unsign(next(lines[n-1], n+1))), BreakKey, n + 1},
		{"signature stripped in the middle", slices.Concat(lines[:2], []string{unsign(lines[2])}, lines[3:]), BreakKey, 3},
		{"signature stripped from the last", slices.Concat(lines[:n-1], []string{unsign(lines[n-1])}), BreakKey, n},
		{"edited in the middle", edited, BreakEdited, 3},
		{"last record edited", lastEdited, BreakEdited, n},
		{"unsigned restart appended", append(slices.Clone(lines), restart), BreakKey, n + 1},
		{"unsigned restart in the middle", slices.Concat(lines[:3], []string{restart}, lines[3:]), BreakKey, 4},
		{"unsigned record in a syslog line", append(slices.Clone(lines), "<13>1 2026-12-07T07:00:00.000000Z mx1 imapwarden 4242 command - "+unsign(next(lines[n-1], n+1))), BreakKey, n + 1},
	} {
		rep, err := Verify([]string{writeTemp(t, c.lines)}, VerifyOptions{Keys: keys})
		if err != nil {
			t.Fatal(err)
		}
		if b := rep.Break; b == nil || b.Kind != c.kind || b.Line != c.line {
			var w strings.Builder
			rep.WriteText(&w)
			t.Errorf("%s: want %s at line %d:\n%s", c.name, c.kind, c.line, w.String())
		}
	}

	// A key holder's writer that cannot resume (stdout) signs its new
	// chain: noted, not refused.
	mem := &memSink{}
	tr, err := New(Options{Sink: mem, Key: testKey()})
	if err != nil {
		t.Fatal(err)
	}
	tr.Log(cmdRecord(9))
	tr.Close()
	rep := mustVerify(t, []string{writeTemp(t, append(slices.Clone(lines), mem.lines()...))}, VerifyOptions{Keys: keys})
	if !strings.Contains(strings.Join(rep.Notes, "\n"), "a new chain starts") {
		t.Errorf("notes %q", rep.Notes)
	}
}

// A checkpoint proves completeness only through its record: files that
// start after it are not linked to it, and a writer keeping checkpoints
// never starts a new chain after it, even one the key signed.
func TestCheckpointMustBeMetInsideTheTrail(t *testing.T) {
	trail, cpFile := writeCheckpointed(t, 3)
	keys := [][]byte{testKey()}
	old, err := ReadCheckpoint(cpFile, keys)
	if err != nil {
		t.Fatal(err)
	}
	// The trail goes on; only its records after the old checkpoint's are
	// given: each is signed, but nothing links them to it.
	fs, err := OpenFile(FileOptions{Path: trail})
	if err != nil {
		t.Fatal(err)
	}
	tr, err := New(Options{Sink: fs, Key: testKey(), Checkpoint: NewCheckpointFile(cpFile)})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		if err := tr.LogWait(cmdRecord(i), testenv.IOTimeout()); err != nil {
			t.Fatal(err)
		}
	}
	tr.Close()
	lines := readLines(t, trail)
	after := writeTemp(t, lines[old.Seq:])
	mustVerify(t, []string{after}, VerifyOptions{Keys: keys})
	rep, err := Verify([]string{after}, VerifyOptions{Keys: keys, Checkpoint: old})
	if err != nil {
		t.Fatal(err)
	}
	var w strings.Builder
	rep.WriteText(&w)
	if rep.Break == nil || rep.Break.Kind != BreakUnlinked || !strings.HasPrefix(w.String(), "BROKEN: "+after+" (seq ") {
		t.Errorf("records after the checkpoint's, alone:\n%s", w.String())
	}
	mustVerify(t, []string{trail}, VerifyOptions{Keys: keys, Checkpoint: old})

	// A signed restart copied after the checkpoint's record.
	cp, err := ReadCheckpoint(cpFile, keys)
	if err != nil {
		t.Fatal(err)
	}
	rep, err = Verify([]string{writeTemp(t, append(slices.Clone(lines), lines[0]))}, VerifyOptions{Keys: keys, Checkpoint: cp})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Break == nil || rep.Break.Kind != BreakUnlinked || rep.Break.Line != len(lines)+1 {
		t.Errorf("a restart after the checkpoint's record: %+v", rep.Break)
	}
}

// mustBreak fails unless verify finds a break, with the message of
// format, args.
func mustBreak(t *testing.T, files []string, o VerifyOptions, format string, args ...any) *Report {
	t.Helper()
	rep, err := Verify(files, o)
	if err != nil {
		t.Fatal(err)
	}
	if rep.Break == nil {
		var b strings.Builder
		rep.WriteText(&b)
		t.Fatalf(format+":\n%s", append(args, b.String())...)
	}
	return rep
}

// writeTemp writes lines to a new file.
func writeTemp(t *testing.T, lines []string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "t.jsonl")
	if err := os.WriteFile(p, []byte(strings.Join(lines, "\n")+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// A writer resumes only from a last record its key signed, and that is
// the one its checkpoint signed when the checkpoint names its seq.
func TestResumeRefusesATailTheKeyDidNotSign(t *testing.T) {
	path, lines := keyedTrail(t, 2)
	n := len(lines)
	other, otherLines := keyedTrail(t, 2)
	_ = other
	if otherLines[n-1] == lines[n-1] {
		t.Fatal("two trails wrote the same last record")
	}
	sha := &memSink{}
	tr, _ := New(Options{Sink: sha})
	tr.Log(cmdRecord(1))
	tr.Close()
	for _, c := range []struct {
		name  string
		lines []string
		cp    bool
	}{
		{"signature stripped", slices.Concat(lines[:n-1], []string{unsign(lines[n-1])}), false},
		{"edited", slices.Concat(lines[:n-1], []string{strings.Replace(lines[n-1], `"count":`, `"count":1`, 1)}), false},
		{"written without a key", sha.lines(), false},
		// Signed by the key, of the same seq, but not the record the
		// checkpoint signed: another trail's.
		{"replaced by another signed record", slices.Concat(lines[:n-1], []string{otherLines[n-1]}), true},
	} {
		dir := t.TempDir()
		p := filepath.Join(dir, "audit.jsonl")
		os.WriteFile(p, []byte(strings.Join(c.lines, "\n")+"\n"), 0o600)
		o := Options{Key: testKey()}
		if c.cp {
			// The checkpoint of the original trail at its last record.
			cpFile := filepath.Join(dir, "cp")
			cpw := NewCheckpointFile(cpFile)
			body, sig := splitSig([]byte(lines[n-1]))
			if body == nil {
				t.Fatal("unsigned")
			}
			c := &Checkpoint{Time: time.Now(), Kind: KindAuditCheckpoint, V: SchemaVersion, Seq: uint64(n), Link: string(sig), Chain: ChainHMACSHA256, KeyID: KeyID(testKey())}
			c.MAC = c.mac(testKey())
			if err := cpw.WriteCheckpoint(c); err != nil {
				t.Fatal(err)
			}
			o.Checkpoint = cpw
		}
		fs, err := OpenFile(FileOptions{Path: p})
		if err != nil {
			t.Fatal(err)
		}
		o.Sink = fs
		if tr, err := New(o); err == nil {
			tr.Close()
			t.Errorf("%s: the writer resumed", c.name)
		} else {
			fs.Close()
			t.Logf("%s: %v", c.name, err)
		}
	}
	// The intact trail resumes, and the chain goes on.
	fs, err := OpenFile(FileOptions{Path: path})
	if err != nil {
		t.Fatal(err)
	}
	tr, err = New(Options{Sink: fs, Key: testKey()})
	if err != nil {
		t.Fatal(err)
	}
	tr.Close()
	if rep := mustVerify(t, []string{path}, VerifyOptions{Keys: [][]byte{testKey()}}); rep.Records != n+2 {
		t.Errorf("%d records after a restart, want %d", rep.Records, n+2)
	}
}

// A writer whose sink cannot read its records back (stdout, syslog)
// continues the chain from its checkpoint: its audit.start is signed and
// linked to the checkpoint's record, so the restart is proven, not a new
// chain linked to nothing. After a run that wrote records past its last
// checkpoint (killed), the next run forks from that checkpoint; verify
// takes the fork, signed and linked, and the newest run's checkpoint.
func TestRestartWithoutReadBackContinuesFromTheCheckpoint(t *testing.T) {
	dir := t.TempDir()
	cpFile := filepath.Join(dir, "cp")
	keys := [][]byte{testKey()}
	sink := &memSink{}
	run := func(n int) { runKeyed(t, sink, n, cpFile) }
	readCP := func() *Checkpoint {
		t.Helper()
		cp, err := ReadCheckpoint(cpFile, keys)
		if err != nil {
			t.Fatal(err)
		}
		return cp
	}
	run(2) // seq 1 to 4
	first, _ := os.ReadFile(cpFile)
	run(1) // seq 5 to 7, linked to 4
	rep := mustVerify(t, []string{sink.save(t)}, VerifyOptions{Keys: keys, Checkpoint: readCP()})
	if rep.Records != 7 || rep.LastSeq != 7 || len(rep.Notes) != 0 {
		t.Fatalf("two runs: %d records to seq %d, notes %q", rep.Records, rep.LastSeq, rep.Notes)
	}

	// The second run as if killed after its checkpoint of seq 4: the
	// next run resumes from seq 4 again, forking seq 5 to 7 off.
	os.WriteFile(cpFile, first, 0o600)
	run(0) // seq 5 (audit.start) and 6 (audit.stop)
	cp := readCP()
	if cp.Seq != 6 {
		t.Fatalf("checkpoint at seq %d", cp.Seq)
	}
	rep = mustVerify(t, []string{sink.save(t)}, VerifyOptions{Keys: keys, Checkpoint: cp})
	if rep.LastSeq != 6 || !strings.Contains(strings.Join(rep.Notes, "\n"), "restarted from its checkpoint at seq 4") {
		t.Errorf("fork: last seq %d, notes %q", rep.LastSeq, rep.Notes)
	}
	// The fork's start, moved anywhere else, links to nothing there.
	lines := sink.lines()
	moved := slices.Concat(lines[:3], lines[7:8], lines[3:7], lines[8:])
	rep, err := Verify([]string{writeTemp(t, moved)}, VerifyOptions{Keys: keys})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Break == nil {
		t.Errorf("a restart's start moved before the record it links to verifies: notes %q", rep.Notes)
	}
}

// A file trail's writer never forks: a signed record copied to the end of
// the file (a replay) makes the next writer resume from its seq, and the
// fork that follows is not one verify takes: only a writer resumed from a
// checkpoint says so in its audit.start (resumed_at).
func TestAReplayedTailIsNotARestart(t *testing.T) {
	path, lines := keyedTrail(t, 3)
	appendLine(t, path, lines[2]) // seq 3, signed, again
	tr := openKeyed(t, path)
	if tr == nil {
		return // the writer would not resume from it
	}
	tr.Close()
	rep := mustBreak(t, []string{path}, VerifyOptions{Keys: [][]byte{testKey()}}, "a writer resumed from a replayed record and its fork verifies")
	if rep.Break.Kind != BreakReordered {
		t.Errorf("break %+v", rep.Break)
	}
}

// openKeyed opens a keyed file trail at path; nil when New refuses.
func openKeyed(t *testing.T, path string) *Trail {
	t.Helper()
	fs, err := OpenFile(FileOptions{Path: path})
	if err != nil {
		t.Fatal(err)
	}
	tr, err := New(Options{Sink: fs, Key: testKey()})
	if err != nil {
		fs.Close()
		t.Logf("resume refused: %v", err)
		return nil
	}
	return tr
}
