package audit

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/imapwarden/imapwarden/internal/testenv"
)

// An idle trail's LogWait writes its record itself (logDirect): each call
// is one write made by the caller, and the record is in the sink when it
// returns. Log takes the same path rather than wake the writer goroutine
// for each record (a session's open, TLS, login and close records).
func TestLogWritesDirectly(t *testing.T) {
	for name, log := range map[string]func(*Trail, *Record) error{
		"LogWait": func(tr *Trail, r *Record) error { return tr.LogWait(r, testenv.IOTimeout()) },
		"Log":     (*Trail).Log,
	} {
		t.Run(name, func(t *testing.T) {
			sink := &memSink{}
			tr, err := New(Options{Sink: sink})
			if err != nil {
				t.Fatal(err)
			}
			defer tr.Close()
			for i := range 20 {
				if err := log(tr, cmdRecord(i)); err != nil {
					t.Fatal(err)
				}
				if !sink.has(fmt.Sprintf("a%d", i)) {
					t.Fatalf("%s returned before a%d reached the sink", name, i)
				}
			}
			// audit.start is New's own write.
			if direct, writer := sink.writers(); direct != 20 || writer != 1 {
				t.Errorf("%d direct writes and %d by the writer, want 20 and 1 (New's audit.start)", direct, writer)
			}
			if s := tr.Stats(); s.Written != 21 || s.LastSeq != 21 || s.Queued != 0 {
				t.Errorf("stats %+v", s)
			}
		})
	}
}

// Records queued before a LogWait (Log of the same session) are written
// ahead of it by the caller that takes the write side: seq follows queue
// order, and the acknowledged record's predecessors are in the sink too.
func TestLogWaitDirectTakesQueuedRecordsFirst(t *testing.T) {
	sink := &memSink{}
	tr, err := New(Options{Sink: sink})
	if err != nil {
		t.Fatal(err)
	}
	// Hold the writer in the sink so that Log's records stay queued.
	gate := sink.stall(t, tr)
	for i := range 3 {
		if err := tr.Log(cmdRecord(i)); err != nil {
			t.Fatal(err)
		}
	}
	// With the writer holding the write side, LogWait queues: it cannot
	// be acknowledged before the gate opens.
	res := make(chan error, 1)
	go func() { res <- tr.LogWait(cmdRecord(3), testenv.IOTimeout()) }()
	waitUntil(t, "LogWait did not queue its record", func() bool { return tr.Stats().Queued == 4 })
	close(gate)
	if err := <-res; err != nil {
		t.Fatal(err)
	}
	// Records queued that the writer has not been woken for yet (as if
	// it were about to take them): a direct LogWait writes them first.
	// The writer may still be busy with the records above (then LogWait
	// queues): go on until four went direct.
	want := []string{"a-1", "a0", "a1", "a2", "a3"}
	deadline := time.Now().Add(testenv.IOTimeout())
	for i, direct := 4, 0; direct < 4; i++ {
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d LogWait calls wrote directly", direct, i-4)
		}
		r := cmdRecord(i)
		r.Time = time.Now()
		tr.q <- r
		before, _ := sink.writers()
		if err := tr.LogWait(cmdRecord(1000+i), testenv.IOTimeout()); err != nil {
			t.Fatal(err)
		}
		if after, _ := sink.writers(); after == before+1 {
			direct++
		}
		if !sink.has(fmt.Sprintf("a%d", i)) {
			t.Fatalf("a%d, queued before the acknowledged a%d, is not in the sink", i, 1000+i)
		}
		want = append(want, fmt.Sprintf("a%d", i), fmt.Sprintf("a%d", 1000+i))
	}
	if err := tr.Close(); err != nil {
		t.Fatal(err)
	}
	if got := commandTags(t, sink); got != strings.Join(want, " ") {
		t.Errorf("records %s, want %s", got, strings.Join(want, " "))
	}
	mustVerify(t, []string{sink.save(t)}, VerifyOptions{})
}

// waitUntil polls cond until it holds, failing with what after
// testenv.IOTimeout.
func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(testenv.IOTimeout())
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal(what)
		}
		time.Sleep(time.Millisecond)
	}
}

// commandTags lists the tags of the command records in the sink.
func commandTags(t *testing.T, sink *memSink) string {
	t.Helper()
	var tags []string
	for _, r := range parseLines(t, sink.lines()) {
		if r.Kind == KindCommand {
			tags = append(tags, r.Tag)
		}
	}
	return strings.Join(tags, " ")
}

// Many goroutines mixing Log and LogWait, direct and queued: the chain
// verifies, seq has no gap, each goroutine's records are in the order it
// logged them, and every acknowledged record is in the file.
func TestLogWaitDirectConcurrentOrder(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit.jsonl")
	fs, err := OpenFile(FileOptions{Path: path, MaxSize: 64 << 10})
	if err != nil {
		t.Fatal(err)
	}
	tr, err := New(Options{Sink: fs, QueueSize: 64, Key: testKey()})
	if err != nil {
		t.Fatal(err)
	}
	const workers, each = 32, 200
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	for w := range workers {
		wg.Go(func() {
			for i := range each {
				r := cmdRecord(i)
				r.Session = fmt.Sprintf("s%d", w)
				var err error
				if i%3 == 0 {
					err = tr.Log(r)
				} else {
					err = tr.LogWait(r, testenv.IOTimeout())
				}
				if err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if err := tr.Close(); err != nil {
		t.Fatal(err)
	}
	files, err := Files(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(files) < 2 {
		t.Errorf("%d files: the trail never rotated, so no rotation was left to the writer", len(files))
	}
	rep := mustVerify(t, files, VerifyOptions{Keys: [][]byte{testKey()}})
	if rep.Records != workers*each+2 {
		t.Errorf("verify counted %d records, want %d", rep.Records, workers*each+2)
	}
	next := map[string]int{}
	var seq uint64
	_, err = Scan(files, func(r *Record, _ []byte) error {
		if r.Seq != seq+1 {
			return fmt.Errorf("seq %d after %d", r.Seq, seq)
		}
		seq = r.Seq
		if r.Kind != KindCommand {
			return nil
		}
		if r.Attempt != next[r.Session] {
			return fmt.Errorf("session %s: record %d where %d was due", r.Session, r.Attempt, next[r.Session])
		}
		next[r.Session]++
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for w := range workers {
		if n := next[fmt.Sprintf("s%d", w)]; n != each {
			t.Errorf("session s%d: %d records, want %d", w, n, each)
		}
	}
}

// A direct write that fails hands its batch to the writer goroutine: the
// caller is not acknowledged, waits no longer than its timeout, and the
// writer retries (its first retry waits a backoff) until the sink works;
// the record is then written once, in its place.
func TestLogWaitDirectFailureHandsOver(t *testing.T) {
	sink := &memSink{fail: false}
	tr, err := New(Options{Sink: sink})
	if err != nil {
		t.Fatal(err)
	}
	defer tr.Close()
	sink.setFail(true)
	start := time.Now()
	err = tr.LogWait(cmdRecord(1), 200*time.Millisecond)
	if !errors.Is(err, ErrNotDurable) || !strings.Contains(err.Error(), "sink down") {
		t.Fatalf("LogWait on a failing sink: %v, want ErrNotDurable naming the sink's error", err)
	}
	if waited := time.Since(start); waited > 200*time.Millisecond+testenv.IOTimeout() {
		t.Errorf("LogWait waited %v past its 200ms timeout", waited)
	}
	sink.mu.Lock()
	first := sink.direct[1] // [0] is audit.start
	sink.mu.Unlock()
	if !first {
		t.Fatal("the first attempt was not LogWait's own: the direct path was not taken")
	}
	if h := tr.Health(); h == nil {
		t.Error("Health is nil with the sink failing")
	}
	// The writer retries the handed-over batch: its attempts are its own.
	waitUntil(t, "the writer never retried the batch LogWait handed over", func() bool {
		_, writer := sink.writers()
		return writer > 1
	})
	// Failing: LogWait queues rather than writing, and is acknowledged
	// once the writer's retry gets a1 and then a2 through.
	sink.setFail(false)
	if err := tr.LogWait(cmdRecord(2), testenv.IOTimeout()); err != nil {
		t.Fatal(err)
	}
	if err := tr.Health(); err != nil {
		t.Errorf("Health after recovery: %v", err)
	}
	if err := tr.Close(); err != nil {
		t.Fatal(err)
	}
	if got := commandTags(t, sink); got != "a1 a2" {
		t.Errorf("records %s, want a1 a2", got)
	}
	if s := tr.Stats(); s.SinkErrors == 0 {
		t.Errorf("stats %+v: the failed direct write was not counted", s)
	}
	mustVerify(t, []string{sink.save(t)}, VerifyOptions{})
}

// A record handed over by a failing direct write and given up by Close is
// never acknowledged (the rollback reaches its ack).
func TestLogWaitDirectRolledBack(t *testing.T) {
	sink := &memSink{}
	tr, err := New(Options{Sink: sink, CloseTimeout: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	sink.setFail(true)
	res := make(chan error, 1)
	go func() { res <- tr.LogWait(cmdRecord(7), time.Hour) }()
	waitUntil(t, "nobody tried the sink", func() bool { return tr.Stats().SinkErrors > 0 })
	if direct, _ := sink.writers(); direct == 0 {
		t.Fatal("LogWait did not try the sink itself")
	}
	if err := tr.Close(); err == nil || !strings.Contains(err.Error(), "not written") {
		t.Errorf("Close: %v, want records not written", err)
	}
	if err := <-res; err == nil {
		t.Fatal("LogWait acknowledged a record the trail does not hold")
	}
}

// A sink that is not a directSink (a pipe nobody reads) is written only by
// the writer goroutine, so that a blocked write cannot hold a LogWait past
// its timeout.
func TestLogWaitBlockedSinkTimesOut(t *testing.T) {
	pr, pw, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer pr.Close()
	defer pw.Close()
	tr, err := New(Options{Sink: NewWriterSink(pw), CloseTimeout: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	// Fill the pipe: the writer's next write(2) blocks.
	if err := pw.SetWriteDeadline(time.Now().Add(100 * time.Millisecond)); err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := pw.Write(make([]byte, 4096)); err != nil {
			if !errors.Is(err, os.ErrDeadlineExceeded) {
				t.Fatal(err)
			}
			break
		}
	}
	if err := pw.SetWriteDeadline(time.Time{}); err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		start := time.Now()
		if err := tr.LogWait(cmdRecord(i), 100*time.Millisecond); !errors.Is(err, ErrNotDurable) {
			t.Fatalf("LogWait with the sink blocked: %v, want ErrNotDurable", err)
		}
		if waited := time.Since(start); waited > 100*time.Millisecond+testenv.IOTimeout() {
			t.Errorf("LogWait waited %v past its 100ms timeout", waited)
		}
	}
	go io.Copy(io.Discard, pr)
	if err := tr.Close(); err != nil {
		t.Fatal(err)
	}
}

// FileSink writes directly only to a regular file with no rotation due: a
// write that would rotate (fsync, rename) is left to the writer.
func TestFileSinkWritesDirect(t *testing.T) {
	fs, err := OpenFile(FileOptions{Path: filepath.Join(t.TempDir(), "audit.jsonl"), MaxSize: 1000})
	if err != nil {
		t.Fatal(err)
	}
	defer fs.Close()
	if !localFS(fs.f) {
		t.Skip("the test directory is not on a local filesystem")
	}
	line := func(n int) []byte { return []byte(strings.Repeat("x", n-1) + "\n") }
	if wrote, err := fs.writeDirect(line(900)); !wrote || err != nil {
		t.Errorf("an empty local file is not written directly (%v, %v)", wrote, err)
	}
	// 900 of MaxSize's 1000 bytes: 101 more would rotate, 100 fit.
	if wrote, _ := fs.writeDirect(line(101)); wrote {
		t.Error("a write that rotates was written directly")
	}
	if wrote, err := fs.writeDirect(line(100)); !wrote || err != nil {
		t.Errorf("a write that fits was not written directly (%v, %v)", wrote, err)
	}
	if fs.size != 1000 {
		t.Errorf("file size %d, want 1000", fs.size)
	}
	fifo := filepath.Join(t.TempDir(), "fifo")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	r, err := os.OpenFile(fifo, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	f, err := os.OpenFile(fifo, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	s := &FileSink{f: f}
	fi, err := f.Stat()
	if err != nil {
		t.Fatal(err)
	}
	s.local = fi.Mode().IsRegular() && localFS(f)
	if wrote, _ := s.writeDirect([]byte("x\n")); wrote {
		t.Error("a FIFO is written directly")
	}
}

// Whether a direct write rotates is decided once: a RotateEvery period
// ending between a look at the clock and the write does not make the
// LogWait caller rotate the file itself (fsync, rename), which stays with
// the writer goroutine.
func TestDirectWriteNeverRotates(t *testing.T) {
	base := time.Date(2026, 12, 7, 10, 59, 59, 0, time.UTC)
	var armed, calls atomic.Int32
	var rotatedBy atomic.Value
	clock := func() time.Time {
		if armed.Load() == 0 {
			return base
		}
		if calls.Add(1) == 1 {
			return base // the direct path's look
		}
		buf := make([]byte, 8192)
		rotatedBy.Store(string(buf[:runtime.Stack(buf, false)]))
		return base.Add(2 * time.Hour) // any later look, a moment later
	}
	fs, err := OpenFile(FileOptions{Path: filepath.Join(t.TempDir(), "audit.jsonl"), RotateEvery: time.Hour, now: clock})
	if err != nil {
		t.Fatal(err)
	}
	if !localFS(fs.f) {
		t.Skip("the test directory is not on a local filesystem")
	}
	tr, err := New(Options{Sink: fs, SyncInterval: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	defer tr.Close()
	armed.Store(1)
	if err := tr.LogWait(cmdRecord(0), testenv.IOTimeout()); err != nil {
		t.Fatal(err)
	}
	if s, _ := rotatedBy.Load().(string); strings.Contains(s, "logDirect") {
		t.Errorf("a LogWait caller rotated the file itself:\n%s", s)
	}
}

// The direct path writes the same records as the writer goroutine: one
// sequence of Log and LogWait calls through a trail with and without it
// gives the same command lines (the chain field aside, which starts from
// a different audit.start).
func TestLogWaitDirectAgreesWithQueued(t *testing.T) {
	run := func(indirect bool) []string {
		sink := &memSink{indirect: indirect}
		tr, err := New(Options{Sink: sink, Host: "h"})
		if err != nil {
			t.Fatal(err)
		}
		ts := time.Date(2026, 12, 6, 17, 0, 0, 0, time.UTC)
		for i := range 50 {
			r := cmdRecord(i)
			r.Time = ts.Add(time.Duration(i) * time.Millisecond)
			if i%4 == 1 {
				err = tr.Log(r)
			} else {
				err = tr.LogWait(r, testenv.IOTimeout())
			}
			if err != nil {
				t.Fatal(err)
			}
		}
		if err := tr.Close(); err != nil {
			t.Fatal(err)
		}
		direct, _ := sink.writers()
		if indirect != (direct == 0) {
			t.Fatalf("indirect %v: %d direct writes", indirect, direct)
		}
		mustVerify(t, []string{sink.save(t)}, VerifyOptions{})
		link := regexp.MustCompile(`"(prev|hmac)":"[0-9a-f]+",?`)
		var out []string
		for _, l := range sink.lines() {
			if strings.Contains(l, `"kind":"command"`) {
				out = append(out, link.ReplaceAllString(l, ""))
			}
		}
		return out
	}
	queued, direct := run(true), run(false)
	if len(queued) != 50 || strings.Join(queued, "\n") != strings.Join(direct, "\n") {
		t.Errorf("the direct path wrote\n%s\nthe writer\n%s", strings.Join(direct, "\n"), strings.Join(queued, "\n"))
	}
}

// Group commit: once callers meet at the write side, a LogWait caller
// leaves its record in the batch and yields before it writes, and the
// records of the callers ready to run meanwhile join it: one write for
// all, each caller acknowledged only once that write returned nil. A
// failing write acknowledges none of them: the writer takes the batch
// over, and they are acknowledged once it is written.
func TestLogWaitGroupCommit(t *testing.T) {
	for _, fail := range []bool{false, true} {
		t.Run(fmt.Sprintf("fail=%v", fail), func(t *testing.T) {
			// One thread: the callers started below run in turn, so
			// that all are ready while the first one yields.
			defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(1))
			sink := &memSink{}
			tr, err := New(Options{Sink: sink})
			if err != nil {
				t.Fatal(err)
			}
			defer tr.Close()
			tr.contended.Store(true) // as if callers had met
			sink.setFail(fail)
			const n = 8
			errs := make(chan error, n)
			var acked atomic.Int32
			for i := range n {
				go func() {
					err := tr.LogWait(cmdRecord(i), testenv.IOTimeout())
					if err == nil {
						acked.Add(1)
					}
					errs <- err
				}()
			}
			if fail {
				// Every caller's record is in the failed batch: none is
				// acknowledged while the sink fails.
				waitUntil(t, "the writer never retried the batch", func() bool {
					_, writer := sink.writers()
					return writer > 1
				})
				if k := acked.Load(); k != 0 {
					t.Fatalf("%d callers acknowledged while their write failed", k)
				}
				sink.setFail(false)
			}
			for range n {
				if err := <-errs; err != nil {
					t.Fatal(err)
				}
			}
			direct, _ := sink.writers()
			if direct != 1 {
				t.Errorf("%d direct writes for %d records, want 1", direct, n)
			}
			if err := tr.Close(); err != nil {
				t.Fatal(err)
			}
			if got := len(strings.Fields(commandTags(t, sink))); got != n {
				t.Errorf("%d command records, want %d", got, n)
			}
			mustVerify(t, []string{sink.save(t)}, VerifyOptions{})
		})
	}
}
