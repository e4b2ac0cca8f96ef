package audit

import (
	"bytes"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/zap/zaptest"

	"github.com/imapwarden/imapwarden/internal/testenv"
)

// memSink keeps records in memory. fail makes writes fail; gate, when
// set, makes them wait until it is closed.
type memSink struct {
	mu     sync.Mutex
	buf    bytes.Buffer
	fail   bool
	writes int
	gate   chan struct{}
	// entered, when set, gets a value when a write waits at the gate.
	entered chan struct{}
	syncs   int
	// syncFail makes Sync fail.
	syncFail bool
	// indirect keeps LogWait callers from writing themselves
	// (directSink): every record goes through the writer goroutine.
	indirect bool
	// direct has, for each write, whether a LogWait caller made it
	// (logDirect) rather than the writer goroutine.
	direct []bool
}

// byCaller says whether the calling goroutine is in Trail.logDirect.
func byCaller() bool {
	pc := make([]uintptr, 32)
	frames := runtime.CallersFrames(pc[:runtime.Callers(2, pc)])
	for {
		f, more := frames.Next()
		if strings.HasSuffix(f.Function, ".(*Trail).logDirect") {
			return true
		}
		if !more {
			return false
		}
	}
}

// writers returns how many writes LogWait callers made and how many the
// writer goroutine made.
func (s *memSink) writers() (direct, writer int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, d := range s.direct {
		if d {
			direct++
		} else {
			writer++
		}
	}
	return direct, writer
}

// writeDirect implements directSink: a memSink waits only at its gate,
// which tests close.
func (s *memSink) writeDirect(p []byte) (bool, error) {
	if !s.takesDirect() {
		return false, nil
	}
	return true, s.Write(p)
}

// takesDirect says whether the direct path may write (not indirect).
func (s *memSink) takesDirect() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return !s.indirect
}

func (s *memSink) Write(p []byte) error {
	caller := byCaller()
	s.mu.Lock()
	s.direct = append(s.direct, caller)
	gate, entered := s.gate, s.entered
	s.entered = nil // signalled once
	s.mu.Unlock()
	if gate != nil {
		if entered != nil {
			entered <- struct{}{}
		}
		<-gate
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.writes++
	if s.fail {
		return errors.New("sink down")
	}
	s.buf.Write(p)
	return nil
}

func (s *memSink) Sync() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.syncs++
	if s.syncFail {
		return errors.New("fsync failed")
	}
	return nil
}

func (s *memSink) Close() error { return nil }

func (s *memSink) setFail(v bool) {
	s.mu.Lock()
	s.fail = v
	s.mu.Unlock()
}

// stall makes the writer wait in the sink with one record and returns
// the gate that releases it.
func (s *memSink) stall(t *testing.T, tr *Trail) chan struct{} {
	t.Helper()
	gate := make(chan struct{})
	s.mu.Lock()
	s.gate, s.entered = gate, make(chan struct{}, 1)
	entered := s.entered
	s.mu.Unlock()
	// Queued, not Log: Log would write it itself (logDirect) and stall
	// here instead of the writer.
	if err := tr.enqueue(cmdRecord(-1), nil); err != nil {
		t.Fatal(err)
	}
	select {
	case <-entered:
	case <-time.After(testenv.IOTimeout()):
		t.Fatal("the writer did not reach the sink")
	}
	return gate
}

func (s *memSink) lines() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return strings.Split(strings.TrimSuffix(s.buf.String(), "\n"), "\n")
}

// save writes the sink's records to a file for Verify.
func (s *memSink) save(t *testing.T) string {
	t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	p := filepath.Join(t.TempDir(), "mem.jsonl")
	if err := os.WriteFile(p, s.buf.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func cmdRecord(i int) *Record {
	return &Record{Kind: KindCommand, Session: "s1", IP: netip.MustParseAddr("192.0.2.7"), Port: 50123,
		Listener: "imaps", User: "alice", Tag: fmt.Sprintf("a%d", i), Command: "FETCH", UID: true,
		Selected: "INBOX", Set: "1:*", SetCount: -1, Fetch: FetchBody, Items: []string{"UID", "BODY.PEEK[]"},
		Result: "OK", Duration: 1500 * time.Microsecond, BytesIn: 40, Attempt: i}
}

func mustVerify(t *testing.T, files []string, o VerifyOptions) *Report {
	t.Helper()
	rep, err := Verify(files, o)
	if err != nil {
		t.Fatal(err)
	}
	if rep.Break != nil {
		var b strings.Builder
		rep.WriteText(&b)
		t.Fatalf("chain broken:\n%s", b.String())
	}
	return rep
}

func parseLines(t *testing.T, lines []string) []*Record {
	t.Helper()
	var out []*Record
	for _, l := range lines {
		r, err := ParseRecord([]byte(l))
		if err != nil {
			t.Fatalf("%v: %s", err, l)
		}
		out = append(out, r)
	}
	return out
}

func TestChainResumesAcrossRestarts(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit.jsonl")
	for run := 0; run < 3; run++ {
		fs, err := OpenFile(FileOptions{Path: path})
		if err != nil {
			t.Fatal(err)
		}
		tr, err := New(Options{Sink: fs, Logger: zaptest.NewLogger(t), Software: "test"})
		if err != nil {
			t.Fatal(err)
		}
		for i := range 10 {
			if err := tr.Log(cmdRecord(i)); err != nil {
				t.Fatal(err)
			}
		}
		if err := tr.Close(); err != nil {
			t.Fatal(err)
		}
		if err := tr.Log(cmdRecord(99)); !errors.Is(err, ErrClosed) {
			t.Fatalf("Log after Close: %v", err)
		}
	}
	rep := mustVerify(t, []string{path}, VerifyOptions{})
	if rep.Records != 36 || rep.FirstSeq != 1 || rep.LastSeq != 36 || len(rep.Notes) != 0 {
		t.Errorf("report %+v", rep)
	}
	b, _ := os.ReadFile(path)
	recs := parseLines(t, strings.Split(strings.TrimSpace(string(b)), "\n"))
	if recs[0].Kind != KindAuditStart || recs[11].Kind != KindAuditStop || recs[12].Kind != KindAuditStart || recs[12].Seq != 13 {
		t.Errorf("unexpected kinds/seq: %v %v %v %d", recs[0].Kind, recs[11].Kind, recs[12].Kind, recs[12].Seq)
	}
	r := recs[1]
	if r.User != "alice" || r.IP.String() != "192.0.2.7" || r.Port != 50123 || r.Duration != 1500*time.Microsecond || !r.UID || r.SetCount != -1 {
		t.Errorf("decoded %+v", r)
	}
}

func TestHMACChain(t *testing.T) {
	dir := t.TempDir()
	keyFile := filepath.Join(dir, "key")
	os.WriteFile(keyFile, []byte("0123456789abcdef0123456789abcdef\n"), 0o600)
	key, err := LoadKey(keyFile)
	if err != nil {
		t.Fatal(err)
	}
	if len(key) != 32 {
		t.Fatalf("key of %d bytes: the line end must not count", len(key))
	}
	os.WriteFile(filepath.Join(dir, "short"), []byte("short"), 0o600)
	if _, err := LoadKey(filepath.Join(dir, "short")); err == nil {
		t.Error("short key accepted")
	}
	sink := &memSink{}
	tr, err := New(Options{Sink: sink, Key: key})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 5 {
		tr.Log(cmdRecord(i))
	}
	tr.Close()
	lines := sink.lines()
	if !strings.Contains(lines[0], `"hmac":"000`) || strings.Contains(lines[1], `"prev"`) || !strings.Contains(lines[0], `"key_id":"`+KeyID(key)+`"`) {
		t.Fatalf("not HMAC-chained:\n%s", strings.Join(lines, "\n"))
	}
	file := sink.save(t)
	mustVerify(t, []string{file}, VerifyOptions{Keys: [][]byte{[]byte("another key of 16+ bytes"), key}})
	if _, err := Verify([]string{file}, VerifyOptions{}); !errors.Is(err, ErrKeyRequired) {
		t.Errorf("without key: %v", err)
	}
	rep, _ := Verify([]string{file}, VerifyOptions{Keys: [][]byte{[]byte("wrong key wrong key")}})
	if rep == nil || rep.Break == nil || rep.Break.Kind != BreakKey || rep.Break.Line != 1 { // audit.start signs itself
		t.Errorf("wrong key: %+v", rep.Break)
	}
	// Someone without the key re-chains an edited trail with SHA-256.
	plain := &memSink{}
	tr, _ = New(Options{Sink: plain})
	tr.Close()
	rep, _ = Verify([]string{plain.save(t)}, VerifyOptions{Keys: [][]byte{key}})
	if rep.Break == nil || rep.Break.Kind != BreakKey {
		t.Errorf("SHA-256 chain accepted with a key given: %+v", rep.Break)
	}
}

// logAsync calls Log in a goroutine and returns its result channel.
func logAsync(tr *Trail, r *Record) chan error {
	c := make(chan error, 1)
	go func() { c <- tr.Log(r) }()
	return c
}

// waitBlocked waits until the Log call behind c blocks: the queue is full
// while a Log is in progress, which then can only wait (the writer is held
// by the test). It fails if that call returns instead.
func waitBlocked(t *testing.T, tr *Trail, c chan error) {
	t.Helper()
	deadline := time.Now().Add(testenv.IOTimeout())
	for len(tr.q) < cap(tr.q) || tr.senders.Load() == 0 {
		select {
		case err := <-c:
			t.Fatalf("Log returned %v, want it to block", err)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("Log neither blocked nor returned: %+v", tr.Stats())
		}
		time.Sleep(time.Millisecond)
	}
}

// expectBlocked checks that the Log call behind c is still blocked.
func expectBlocked(t *testing.T, tr *Trail, c chan error) {
	t.Helper()
	waitBlocked(t, tr, c)
	select {
	case err := <-c:
		t.Fatalf("Log returned %v, want it to block", err)
	default:
	}
}

// fillUntilBlocked logs records until a Log call blocks (the writer
// waits at the sink's gate, or retries a failing sink, and the queue is
// full) and returns that call's result channel and how many records were
// accepted before it.
func fillUntilBlocked(t *testing.T, tr *Trail) (chan error, int) {
	t.Helper()
	for i := 0; i <= cap(tr.q); i++ {
		if len(tr.q) == cap(tr.q) {
			c := logAsync(tr, cmdRecord(i))
			waitBlocked(t, tr, c)
			return c, i
		}
		if err := tr.Log(cmdRecord(i)); err != nil {
			t.Fatal(err)
		}
	}
	t.Fatalf("Log never blocked: %+v", tr.Stats())
	return nil, 0
}

// breakSink makes the sink fail and waits until the writer retries a
// failed write (Block mode), so that it reads no more of the queue.
func breakSink(t *testing.T, sink *memSink, tr *Trail) {
	t.Helper()
	sink.setFail(true)
	if err := tr.Log(cmdRecord(-1)); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(testenv.IOTimeout())
	for tr.Stats().SinkErrors == 0 {
		if time.Now().After(deadline) {
			t.Fatal("the writer did not try the sink")
		}
		time.Sleep(time.Millisecond)
	}
}

func TestFullQueueBlocks(t *testing.T) {
	sink := &memSink{}
	tr, err := New(Options{Sink: sink, QueueSize: 2})
	if err != nil {
		t.Fatal(err)
	}
	gate := sink.stall(t, tr)
	blocked, accepted := fillUntilBlocked(t, tr)
	if accepted != 2 {
		t.Errorf("%d records accepted before Log blocked, want the queue's 2", accepted)
	}
	expectBlocked(t, tr, blocked)
	close(gate)
	if err := <-blocked; err != nil {
		t.Fatal(err)
	}
	tr.Close()
	if s := tr.Stats(); s.Dropped != 0 || s.Written != uint64(accepted)+4 {
		t.Errorf("stats %+v, accepted %d", s, accepted)
	}
	mustVerify(t, []string{sink.save(t)}, VerifyOptions{})
}

func TestFullQueueDrops(t *testing.T) {
	sink := &memSink{}
	tr, err := New(Options{Sink: sink, QueueSize: 2, Overflow: Drop})
	if err != nil {
		t.Fatal(err)
	}
	gate := sink.stall(t, tr)
	accepted, dropped := 0, 0
	start := time.Now()
	for i := range 20 {
		switch err := tr.Log(cmdRecord(i)); {
		case err == nil && dropped == 0:
			accepted++
		case errors.Is(err, ErrDropped):
			dropped++
		default:
			t.Fatalf("record %d: %v after %d dropped", i, err, dropped)
		}
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("logging on a full queue took %v", d)
	}
	if accepted != 2 || dropped != 18 {
		t.Errorf("%d accepted, %d dropped", accepted, dropped)
	}
	close(gate)
	tr.Close()
	if s := tr.Stats(); s.Dropped != uint64(dropped) {
		t.Errorf("stats dropped %d, want %d", s.Dropped, dropped)
	}
	recs := parseLines(t, sink.lines())
	var lost uint64
	for _, r := range recs {
		if r.Kind == KindAuditDropped {
			lost += r.Count
		}
	}
	if lost != uint64(dropped) {
		t.Errorf("audit.dropped records count %d, want %d", lost, dropped)
	}
	mustVerify(t, []string{sink.save(t)}, VerifyOptions{})
}

func TestFailingSinkBlocks(t *testing.T) {
	sink := &memSink{}
	tr, err := New(Options{Sink: sink, QueueSize: 4})
	if err != nil {
		t.Fatal(err)
	}
	breakSink(t, sink, tr)
	blocked, accepted := fillUntilBlocked(t, tr)
	if accepted != 4 {
		t.Errorf("%d records accepted before Log blocked, want the queue's 4", accepted)
	}
	expectBlocked(t, tr, blocked)
	if s := tr.Stats(); s.SinkErrors == 0 || s.Dropped != 0 {
		t.Errorf("stats while failing: %+v", s)
	}
	sink.setFail(false)
	select {
	case err := <-blocked:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(testenv.IOTimeout()):
		t.Fatal("Log still blocked after the sink recovered")
	}
	if err := tr.Close(); err != nil {
		t.Fatal(err)
	}
	if s := tr.Stats(); s.Dropped != 0 || s.Written != uint64(accepted)+4 {
		t.Errorf("stats %+v, accepted %d", s, accepted)
	}
	recs := parseLines(t, sink.lines())
	for i, r := range recs[2 : len(recs)-1] {
		if r.Attempt != i {
			t.Fatalf("record %d is #%d: order lost in the retries", i, r.Attempt)
		}
	}
	mustVerify(t, []string{sink.save(t)}, VerifyOptions{})
}

func TestFailingSinkDrops(t *testing.T) {
	sink := &memSink{}
	tr, err := New(Options{Sink: sink, Overflow: Drop})
	if err != nil {
		t.Fatal(err)
	}
	tr.Log(cmdRecord(0))
	sink.setFail(true)
	for i := 1; i <= 50; i++ {
		if err := tr.Log(cmdRecord(i)); err != nil && !errors.Is(err, ErrDropped) {
			t.Fatal(err)
		}
	}
	deadline := time.Now().Add(testenv.IOTimeout())
	for tr.Stats().Dropped == 0 || tr.Stats().Queued > 0 {
		if time.Now().After(deadline) {
			t.Fatalf("stats %+v", tr.Stats())
		}
		time.Sleep(time.Millisecond)
	}
	sink.setFail(false)
	time.Sleep(maxBackoff / 50) // past the first retry delay
	tr.Log(cmdRecord(51))
	if err := tr.Close(); err != nil {
		t.Fatal(err)
	}
	s := tr.Stats()
	recs := parseLines(t, sink.lines())
	var lost uint64
	for _, r := range recs {
		if r.Kind == KindAuditDropped {
			lost += r.Count
		}
	}
	if lost == 0 || lost != s.Dropped {
		t.Errorf("audit.dropped records count %d, stats %+v", lost, s)
	}
	if got := uint64(len(recs)) - 3; got+lost != 52 { // start, stop, dropped
		t.Errorf("%d written + %d lost, want 52", got, lost)
	}
	mustVerify(t, []string{sink.save(t)}, VerifyOptions{})
}

func TestCloseReleasesBlockedLog(t *testing.T) {
	sink := &memSink{}
	tr, err := New(Options{Sink: sink, QueueSize: 1, CloseTimeout: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	breakSink(t, sink, tr)
	blocked, _ := fillUntilBlocked(t, tr)
	done := make(chan error)
	go func() { done <- tr.Close() }()
	select {
	case err := <-blocked:
		if !errors.Is(err, ErrClosed) && err != nil {
			t.Errorf("blocked Log: %v", err)
		}
	case <-time.After(testenv.IOTimeout()):
		t.Fatal("Close did not release a blocked Log")
	}
	select {
	case err := <-done:
		if err == nil || !strings.Contains(err.Error(), "not written") {
			t.Errorf("Close with a dead sink: %v", err)
		}
	case <-time.After(testenv.IOTimeout()):
		t.Fatal("Close hangs on a dead sink")
	}
}

func TestNewFailsClosedOnDeadSink(t *testing.T) {
	sink := &memSink{fail: true}
	if _, err := New(Options{Sink: sink}); err == nil {
		t.Error("Block mode started without a working sink")
	}
	tr, err := New(Options{Sink: sink, Overflow: Drop})
	if err != nil {
		t.Fatalf("Drop mode: %v", err)
	}
	tr.Close()
}

func TestSyncInterval(t *testing.T) {
	sink := &memSink{}
	tr, _ := New(Options{Sink: sink, SyncInterval: SyncAlways})
	for i := range 3 {
		tr.Log(cmdRecord(i))
		time.Sleep(5 * time.Millisecond)
	}
	tr.Close()
	if sink.syncs < 4 {
		t.Errorf("SyncAlways: %d syncs", sink.syncs)
	}
	sink = &memSink{}
	const interval = 20 * time.Millisecond
	start := time.Now()
	tr, _ = New(Options{Sink: sink, SyncInterval: interval})
	for i := range 10 {
		tr.Log(cmdRecord(i))
		time.Sleep(5 * time.Millisecond)
	}
	tr.Close()
	// At most one sync per interval that passed (a busy machine stretches
	// the sleeps), and the one at Close.
	most := int(time.Since(start)/interval) + 2
	if sink.syncs < 2 || sink.syncs > most {
		t.Errorf("20ms interval over %v: %d syncs, want 2 to %d", time.Since(start).Round(time.Millisecond), sink.syncs, most)
	}
}

// Close while loggers are still logging: every record Log accepted is
// written, those refused got ErrClosed, and the chain is intact.
func TestConcurrentLoggers(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit.jsonl")
	fs, err := OpenFile(FileOptions{Path: path})
	if err != nil {
		t.Fatal(err)
	}
	tr, err := New(Options{Sink: fs, QueueSize: 64})
	if err != nil {
		t.Fatal(err)
	}
	var accepted, refused atomic.Int64
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := 0; ; i++ {
				err := tr.Log(cmdRecord(g*1000000 + i))
				if errors.Is(err, ErrClosed) {
					refused.Add(1)
					return
				}
				if err != nil {
					t.Error(err)
					return
				}
				accepted.Add(1)
			}
		})
	}
	// Close once the loggers are well under way, while they still log.
	deadline := time.Now().Add(testenv.IOTimeout())
	for tr.Stats().Written < 2000 {
		if time.Now().After(deadline) {
			t.Fatalf("loggers stalled: %+v", tr.Stats())
		}
		time.Sleep(time.Millisecond)
	}
	if err := tr.Close(); err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	if refused.Load() != 8 {
		t.Errorf("%d loggers saw ErrClosed, want all 8", refused.Load())
	}
	rep := mustVerify(t, []string{path}, VerifyOptions{})
	if want := accepted.Load() + 2; int64(rep.Records) != want { // audit.start, audit.stop
		t.Errorf("%d records, want %d accepted + 2", rep.Records, accepted.Load())
	}
}

// slowSyncSink is a memSink whose fsync waits at a gate once armed, as a
// busy disk's does, whether the trail syncs it apart (fileSyncer) or
// through Sink.Sync.
type slowSyncSink struct {
	*memSink
	armed   atomic.Bool
	entered chan struct{}
	gate    chan struct{}
}

func (s *slowSyncSink) Sync() error {
	if s.armed.Load() {
		select {
		case s.entered <- struct{}{}:
		default:
		}
		<-s.gate
	}
	return s.memSink.Sync()
}

func (s *slowSyncSink) syncFile() interface{ Sync() error } { return s }

// The periodic fsync does not hold the write side: while it waits on the
// disk, commands' records are written and acknowledged (Trail.tickSync).
func TestSlowFsyncDoesNotHoldCommands(t *testing.T) {
	sink := &slowSyncSink{memSink: &memSink{}, entered: make(chan struct{}, 1), gate: make(chan struct{})}
	tr, err := New(Options{Sink: sink, SyncInterval: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer tr.Close()
	opened := false
	defer func() {
		if !opened {
			close(sink.gate)
		}
	}()
	sink.armed.Store(true)
	if err := tr.LogWait(cmdRecord(0), testenv.IOTimeout()); err != nil {
		t.Fatal(err)
	}
	select {
	case <-sink.entered:
	case <-time.After(testenv.IOTimeout()):
		t.Fatal("the trail did not sync")
	}
	for i := 1; i <= 5; i++ {
		if err := tr.LogWait(cmdRecord(i), testenv.IOTimeout()); err != nil {
			t.Fatalf("record %d while an fsync waits: %v", i, err)
		}
	}
	close(sink.gate)
	opened = true
	if got := commandTags(t, sink.memSink); got != "a0 a1 a2 a3 a4 a5" {
		t.Errorf("records %s", got)
	}
}
