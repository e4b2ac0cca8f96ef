package audit

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/imapwarden/imapwarden/internal/testenv"
)

// has reports whether the sink holds the command record with tag.
func (s *memSink) has(tag string) bool {
	for _, l := range s.lines() {
		if strings.Contains(l, `"tag":"`+tag+`"`) {
			return true
		}
	}
	return false
}

// From the first failed write on, LogWait acknowledges nothing: it returns
// ErrNotDurable at its deadline, and Health says why; what it did
// acknowledge is in the sink when it returns.
func TestLogWaitFailsClosedFromTheFirstFailedWrite(t *testing.T) {
	sink := &memSink{}
	tr, err := New(Options{Sink: sink, QueueSize: 16})
	if err != nil {
		t.Fatal(err)
	}
	defer tr.Close()
	long := testenv.IOTimeout()
	if err := tr.LogWait(cmdRecord(1), long); err != nil {
		t.Fatal(err)
	}
	if !sink.has("a1") {
		t.Fatal("LogWait returned before its record reached the sink")
	}
	if err := tr.Health(); err != nil {
		t.Fatalf("healthy trail: %v", err)
	}

	sink.setFail(true)
	err = tr.LogWait(cmdRecord(2), 300*time.Millisecond)
	if !errors.Is(err, ErrNotDurable) || !strings.Contains(err.Error(), "sink down") {
		t.Fatalf("LogWait with a failing sink: %v, want ErrNotDurable naming the sink's error", err)
	}
	if h := tr.Health(); h == nil || !strings.Contains(h.Error(), "sink down") {
		t.Errorf("Health with a failing sink: %v", h)
	}
	if sink.has("a2") {
		t.Fatal("the failing sink holds a2")
	}

	// Recovery: the retried batch (a2) goes first, then a3.
	sink.setFail(false)
	if err := tr.LogWait(cmdRecord(3), long); err != nil {
		t.Fatal(err)
	}
	if err := tr.Health(); err != nil {
		t.Errorf("Health after recovery: %v", err)
	}
	if err := tr.Close(); err != nil {
		t.Fatal(err)
	}
	recs := parseLines(t, sink.lines())
	var tags []string
	for _, r := range recs {
		if r.Kind == KindCommand {
			tags = append(tags, r.Tag)
		}
	}
	if strings.Join(tags, " ") != "a1 a2 a3" {
		t.Errorf("records %q, want a1 a2 a3", tags)
	}
	mustVerify(t, []string{sink.save(t)}, VerifyOptions{})
}

// With fsync always, written is not enough: a record whose fsync failed
// is not acknowledged.
func TestLogWaitSyncAlwaysWaitsForFsync(t *testing.T) {
	sink := &memSink{}
	tr, err := New(Options{Sink: sink, SyncInterval: SyncAlways})
	if err != nil {
		t.Fatal(err)
	}
	defer tr.Close()
	if err := tr.LogWait(cmdRecord(1), testenv.IOTimeout()); err != nil {
		t.Fatal(err)
	}
	sink.mu.Lock()
	sink.syncFail = true
	sink.mu.Unlock()
	if err := tr.LogWait(cmdRecord(2), 300*time.Millisecond); !errors.Is(err, ErrNotDurable) {
		t.Fatalf("LogWait after a failed fsync: %v, want ErrNotDurable", err)
	}
	if !sink.has("a2") {
		t.Fatal("a2 was not even written")
	}
	if h := tr.Health(); h == nil || !strings.Contains(h.Error(), "fsync") {
		t.Errorf("Health after a failed fsync: %v", h)
	}
	sink.mu.Lock()
	sink.syncFail = false
	sink.mu.Unlock()
	if err := tr.LogWait(cmdRecord(3), testenv.IOTimeout()); err != nil {
		t.Fatal(err)
	}
	if err := tr.Health(); err != nil {
		t.Errorf("Health after a good fsync: %v", err)
	}
}

// Drop mode does not wait, but a drop fails Health for DropHealthWindow
// unless told otherwise.
func TestDropFailsHealth(t *testing.T) {
	for _, c := range []struct {
		keep   bool
		window time.Duration
	}{{false, 0}, {true, 0}, {false, time.Hour}, {false, time.Nanosecond}} {
		keep := c.keep || c.window == time.Nanosecond // a window long past
		sink := &memSink{}
		tr, err := New(Options{Sink: sink, Overflow: Drop, QueueSize: 1, DropKeepsHealthy: c.keep, DropHealthWindow: c.window})
		if err != nil {
			t.Fatal(err)
		}
		gate := sink.stall(t, tr)
		var dropped bool
		for i := 0; i < 10 && !dropped; i++ {
			dropped = errors.Is(tr.LogWait(cmdRecord(i), time.Hour), ErrDropped)
		}
		if !dropped {
			t.Fatal("nothing dropped with the writer stalled and a queue of 1")
		}
		if h := tr.Health(); (h == nil) != keep {
			t.Errorf("DropKeepsHealthy %v, window %v: Health %v", c.keep, c.window, h)
		}
		close(gate)
		tr.Close()
	}
}

func testKey() []byte { return []byte("0123456789abcdef-checkpoint-key") }

// writeCheckpointed writes a trail of n command records with checkpoints
// and returns its file and the checkpoint's.
func writeCheckpointed(t *testing.T, n int) (trail, cp string) {
	t.Helper()
	cp = filepath.Join(t.TempDir(), "audit.checkpoint")
	return writeKeyed(t, n, cp), cp
}

// writeKeyed writes a keyed trail of n command records, with checkpoints
// in cp unless it is "", and returns its file.
func writeKeyed(t *testing.T, n int, cp string) string {
	t.Helper()
	trail := filepath.Join(t.TempDir(), "audit.jsonl")
	fs, err := OpenFile(FileOptions{Path: trail})
	if err != nil {
		t.Fatal(err)
	}
	runKeyed(t, fs, n, cp)
	return trail
}

// runKeyed runs a keyed trail on sink that writes n command records,
// with checkpoints in cp unless it is "".
func runKeyed(t *testing.T, sink Sink, n int, cp string) {
	t.Helper()
	o := Options{Sink: sink, Key: testKey(), SyncInterval: SyncAlways}
	if cp != "" {
		o.Checkpoint = NewCheckpointFile(cp)
	}
	tr, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	for i := range n {
		if err := tr.LogWait(cmdRecord(i), testenv.IOTimeout()); err != nil {
			t.Fatal(err)
		}
	}
	if err := tr.Close(); err != nil {
		t.Fatal(err)
	}
}

func TestCheckpointProvesCompleteness(t *testing.T) {
	trail, cpFile := writeCheckpointed(t, 10)
	keys := [][]byte{testKey()}
	cp, err := ReadCheckpoint(cpFile, keys)
	if err != nil {
		t.Fatal(err)
	}
	if cp.Seq != 12 { // start, 10 commands, stop
		t.Errorf("checkpoint at seq %d, want 12 (the audit.stop)", cp.Seq)
	}
	mustVerify(t, []string{trail}, VerifyOptions{Keys: keys, Checkpoint: cp})
	if _, err := ReadCheckpoint(cpFile, [][]byte{[]byte("another-key-of-16-bytes")}); err == nil {
		t.Error("a checkpoint checked with the wrong key")
	}

	lines, err := os.ReadFile(trail)
	if err != nil {
		t.Fatal(err)
	}
	all := strings.SplitAfter(string(lines), "\n")
	all = all[:len(all)-1] // the empty string after the last "\n"

	// Cut short: the chain alone is intact, the checkpoint is not met.
	cut := filepath.Join(t.TempDir(), "cut.jsonl")
	os.WriteFile(cut, []byte(strings.Join(all[:len(all)-3], "")), 0o600)
	mustVerify(t, []string{cut}, VerifyOptions{Keys: keys})
	rep, err := Verify([]string{cut}, VerifyOptions{Keys: keys, Checkpoint: cp})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Break == nil || rep.Break.Kind != BreakShort || !strings.Contains(rep.Break.Msg, "3 records at the end are missing") {
		t.Errorf("cut by 3 records: %+v", rep.Break)
	}
	// Cut short with a torn line after: still short, not merely torn.
	os.WriteFile(cut, []byte(strings.Join(all[:len(all)-3], "")+`{"ts":"2026`), 0o600)
	if rep, _ := Verify([]string{cut}, VerifyOptions{Keys: keys, Checkpoint: cp}); rep.Break == nil || rep.Break.Kind != BreakShort {
		t.Errorf("cut and torn: %+v", rep.Break)
	}
	// The last record replaced: no record after it notices, but its own
	// signature does, and so does the checkpoint.
	last := strings.Replace(all[len(all)-1], `"kind":"audit.stop"`, `"kind":"audit.stop","note":"x"`, 1)
	os.WriteFile(cut, []byte(strings.Join(all[:len(all)-1], "")+last), 0o600)
	for _, o := range []VerifyOptions{{Keys: keys}, {Keys: keys, Checkpoint: cp}} {
		if rep, _ := Verify([]string{cut}, o); rep.Break == nil || rep.Break.Kind != BreakEdited || rep.Break.Line != len(all) {
			t.Errorf("last record edited (checkpoint %v): %+v", o.Checkpoint != nil, rep.Break)
		}
	}

	// A writer does not resume a trail shorter than its checkpoint.
	os.WriteFile(trail, []byte(strings.Join(all[:len(all)-3], "")), 0o600)
	fs, err := OpenFile(FileOptions{Path: trail})
	if err != nil {
		t.Fatal(err)
	}
	defer fs.Close()
	if _, err := New(Options{Sink: fs, Key: testKey(), Checkpoint: NewCheckpointFile(cpFile)}); err == nil || !strings.Contains(err.Error(), "cut short") {
		t.Errorf("resuming a cut trail: %v", err)
	}
}

// mountTmpfs mounts a tmpfs of size bytes on a new directory.
func mountTmpfs(t *testing.T, size string) string {
	t.Helper()
	testenv.NeedRoot(t, "mount a tiny tmpfs")
	dir := t.TempDir()
	if err := syscall.Mount("tmpfs", dir, "tmpfs", 0, "size="+size+",mode=0700"); err != nil {
		testenv.Require(t, "tmpfs mount", err, "needs CAP_SYS_ADMIN")
	}
	t.Cleanup(func() { syscall.Unmount(dir, syscall.MNT_DETACH) })
	return dir
}

// A real full disk: the first ENOSPC stops acknowledgements, Health names
// it, and every record acknowledged before is in the file.
func TestDiskFullFailsClosed(t *testing.T) {
	dir := mountTmpfs(t, "64k")
	path := filepath.Join(dir, "audit.jsonl")
	fs, err := OpenFile(FileOptions{Path: path})
	if err != nil {
		t.Fatal(err)
	}
	tr, err := New(Options{Sink: fs, CloseTimeout: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	acked := 0
	var last error
	for i := 1; i < 10000; i++ {
		if last = tr.LogWait(cmdRecord(i), time.Second); last != nil {
			break
		}
		acked = i
	}
	if !errors.Is(last, ErrNotDurable) || !strings.Contains(last.Error(), "no space left") {
		t.Fatalf("after %d records: %v, want ErrNotDurable for ENOSPC", acked, last)
	}
	if h := tr.Health(); h == nil || !strings.Contains(h.Error(), "no space left") {
		t.Errorf("Health on a full disk: %v", h)
	}
	// What the file holds now is what a SIGKILL would leave.
	files, _ := Files(path)
	stored := 0
	if _, err := Scan(files, func(r *Record, _ []byte) error {
		if r.Kind == KindCommand {
			stored = max(stored, r.Attempt)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	t.Logf("disk full after %d acknowledged records; %d stored", acked, stored)
	if stored < acked {
		t.Errorf("acknowledged %d records, the file holds %d", acked, stored)
	}
	if rep, err := Verify(files, VerifyOptions{}); err != nil || rep.Break != nil {
		t.Errorf("verify: %v %+v", err, rep)
	}
	tr.Close()
}

// refusingSink refuses every write that holds the command record numbered
// refuse (as "attempt") and takes all others.
type refusingSink struct {
	memSink
	refuse  string
	refused chan struct{} // a value at each refusal, if room
}

// writeDirect: the direct path writes through the refusals too.
func (s *refusingSink) writeDirect(p []byte) (bool, error) {
	if !s.takesDirect() {
		return false, nil
	}
	return true, s.Write(p)
}

func (s *refusingSink) Write(p []byte) error {
	if bytes.Contains(p, []byte(s.refuse)) {
		select {
		case s.refused <- struct{}{}:
		default:
		}
		return errors.New("sink refuses this record")
	}
	return s.memSink.Write(p)
}

// A record that Close gives up on (Block mode, the sink failing past
// CloseTimeout) is rolled back and never acknowledged: not even when the
// record written after it (audit.stop) takes its sequence number and the
// sink takes that one.
func TestRolledBackRecordNotAcknowledged(t *testing.T) {
	sink := &refusingSink{refuse: `"attempt":7`, refused: make(chan struct{}, 1)}
	tr, err := New(Options{Sink: sink, CloseTimeout: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	res := make(chan error, 1)
	go func() { res <- tr.LogWait(cmdRecord(7), time.Hour) }()
	select {
	case <-sink.refused: // the writer holds record 7, retrying
	case <-time.After(testenv.IOTimeout()):
		t.Fatal("the writer never tried record 7")
	}
	if err := tr.Close(); err == nil || !strings.Contains(err.Error(), "not written") {
		t.Errorf("Close: %v, want records not written", err)
	}
	if err := <-res; err == nil {
		t.Fatal("LogWait acknowledged a record the trail does not hold")
	}
	if strings.Contains(sink.buf.String(), `"attempt":7`) {
		t.Fatal("record 7 is in the trail after all")
	}
	if !strings.Contains(sink.buf.String(), string(KindAuditStop)) {
		t.Fatal("audit.stop was not written: the test did not reach the reused sequence number")
	}
}
