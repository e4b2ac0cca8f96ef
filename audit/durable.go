package audit

import (
	"errors"
	"fmt"
	"math"
	"runtime"
	"sync"
	"sync/atomic"
	"time"
)

// ErrNotDurable is returned by LogWait when the record was not durable
// within its deadline: the sink is failing or too slow.
var ErrNotDurable = errors.New("audit: record not durable in time")

// DefaultDropHealthWindow is how long a record dropped in Drop mode keeps
// Health failing (unless Options.DropKeepsHealthy), by default.
const DefaultDropHealthWindow = 10 * time.Second

// ack is how LogWait learns its record's seq: the writer stores it when it
// encodes the record.
type ack struct{ seq atomic.Uint64 }

// lostSeq in an ack: the record was rolled back, never written (Block
// mode gives up on a failing sink only when closing, after CloseTimeout).
const lostSeq = math.MaxUint64

var ackPool = sync.Pool{New: func() any { return new(ack) }}

// timerPool keeps LogWait from allocating a timer per command.
var timerPool = sync.Pool{New: func() any {
	t := time.NewTimer(time.Hour)
	t.Stop()
	return t
}}

// durability is the writer's report to LogWait callers and to Health.
type durability struct {
	// seq is the last record that is durable: written to the sink (the
	// OS holds it: a killed process loses none of it), and with
	// SyncAlways fsynced as well.
	seq atomic.Uint64
	// advanced is closed and replaced each time seq moves or the trail
	// stops, waking the LogWait calls waiting on it.
	advanced atomic.Pointer[chan struct{}]
	// waiters counts LogWait calls waiting on advanced. With none, wake
	// keeps the channel: a direct write acknowledges its own record
	// without allocating one. A waiter counts itself before it reads seq
	// or its ack, the writer stores those before it reads waiters
	// (sequentially consistent atomics): either the writer sees the
	// waiter and wakes it, or the waiter sees what the writer stored.
	waiters atomic.Int32
	// failing is why the sink does not take records now, nil when it does.
	failing atomic.Pointer[healthError]
	// lastDrop is when Drop mode last lost a record (unix nanoseconds).
	lastDrop atomic.Int64
}

type healthError struct {
	since time.Time
	err   error
}

func (d *durability) init() {
	c := make(chan struct{})
	d.advanced.Store(&c)
}

// advance publishes seq as durable and wakes the waiters.
func (d *durability) advance(seq uint64) {
	if seq <= d.seq.Load() {
		return
	}
	d.seq.Store(seq)
	d.wake()
}

func (d *durability) wake() {
	if d.waiters.Load() == 0 {
		return
	}
	c := make(chan struct{})
	close(*d.advanced.Swap(&c))
}

func (d *durability) fail(err error) {
	if d.failing.Load() == nil {
		d.failing.Store(&healthError{since: time.Now(), err: err})
	}
}

func (d *durability) ok() {
	if d.failing.Load() != nil {
		d.failing.Store(nil)
	}
}

// LogWait queues r like Log and, in Block mode, returns only once r is
// durable, or ErrNotDurable after timeout, or ErrClosed. Durable means:
//   - SyncAlways: written and fsynced;
//   - an interval, or SyncNever: written to the sink, that is handed to
//     the kernel (a file) or to the syslog connection. A process killed
//     with SIGKILL loses none of it; a crash of the machine can lose what
//     was written since the last fsync, at most one SyncInterval.
//
// A caller that acknowledges an action only after LogWait returned nil
// never acknowledges one that a killed process's trail does not hold. In
// Drop mode (fail open) LogWait is Log: it does not wait.
//
// When the writer is idle LogWait writes r itself (logDirect), sparing
// the two goroutine hand-offs of the queue.
func (t *Trail) LogWait(r *Record, timeout time.Duration) error {
	if t.drop {
		return t.Log(r)
	}
	a := ackPool.Get().(*ack)
	a.seq.Store(0)
	r.ack = a
	if t.direct != nil {
		switch t.logDirect(r, true) {
		case directWritten:
			ackPool.Put(a)
			return nil
		case directClosed:
			ackPool.Put(a)
			return ErrClosed
		case directHandedOver:
			// r is in a batch a leader or the writer writes (or
			// retries): wait for it like a queued record.
			tm := timerPool.Get().(*time.Timer)
			tm.Reset(timeout)
			defer releaseTimer(tm)
			return t.waitDurable(a, tm, timeout)
		}
	}
	tm := timerPool.Get().(*time.Timer)
	tm.Reset(timeout)
	defer releaseTimer(tm)
	if err := t.enqueue(r, tm.C); err != nil {
		// Never queued: the writer cannot hold a.
		ackPool.Put(a)
		return err
	}
	return t.waitDurable(a, tm, timeout)
}

func releaseTimer(tm *time.Timer) {
	// Since Go 1.23 a stopped timer's channel holds no stale value: the
	// timer is reusable as it is.
	tm.Stop()
	timerPool.Put(tm)
}

// waitDurable waits until the record holding a is durable, tm fires or
// the trail stops.
func (t *Trail) waitDurable(a *ack, tm *time.Timer, timeout time.Duration) error {
	d := &t.dur
	d.waiters.Add(1)
	defer d.waiters.Add(-1)
	for {
		c := *d.advanced.Load()
		s := a.seq.Load()
		if s == lostSeq {
			// The writer let go of a.
			ackPool.Put(a)
			return fmt.Errorf("%w: the trail closed with the sink failing; the record was not written", ErrNotDurable)
		}
		if s != 0 && s <= d.seq.Load() {
			ackPool.Put(a)
			return nil
		}
		select {
		case <-c:
		case <-tm.C:
			// a stays with the writer, which may still store into it.
			if h := d.failing.Load(); h != nil {
				return fmt.Errorf("%w: sink failing since %s: %w", ErrNotDurable, h.since.UTC().Format(time.RFC3339), h.err)
			}
			return fmt.Errorf("%w (%s)", ErrNotDurable, timeout)
		case <-t.stopped:
			if s := a.seq.Load(); s != 0 && s != lostSeq && s <= d.seq.Load() {
				return nil
			}
			return ErrClosed
		}
	}
}

// Outcomes of logDirect.
type directResult int

const (
	directNot        directResult = iota // r untouched: queue it
	directWritten                        // r is written: durable
	directHandedOver                     // r is in a batch someone else writes: wait for its ack
	directClosed                         // r untouched: the trail is closed
)

// logDirect is the fast path of LogWait and Log (flat combining): when nobody holds
// the write side, the caller takes it, encodes the records queued before
// r and r itself, in that order, writes them in one Sink.Write, and r is
// acknowledged as soon as the sink took them, as the writer would have
// done (wrote). Otherwise r goes the slow way: queued, written by the
// writer goroutine, acknowledged through the durability report. Every
// guarantee holds on either path:
//   - Order: records leave the queue only under wmu, so the records
//     queued before r (by this session among them) are in the same
//     batch ahead of r, or written already; seq and the chain follow.
//   - Only what the sink took is acknowledged: r returns directWritten
//     after Sink.Write returned nil, never before.
//   - A failing sink: a failed write leaves the batch, whole, to the
//     writer goroutine with its error (pendingErr), which counts it,
//     retries with backoff or, closing, rolls it back; the caller waits
//     on its ack with its timeout as a queued record does
//     (ErrNotDurable; a rollback stores lostSeq). While the writer holds
//     a batch (retrying, or handed over) or the sink is failing, callers
//     queue: nobody is acknowledged past a batch that is not written.
//   - A write that blocks cannot be timed out by the caller stuck in it;
//     that is why only a directSink that says so (writeDirect: a
//     regular file on a local filesystem, no rotation due) is written
//     here. A pipe, socket, network or FUSE filesystem, or a write that
//     would rotate (fsync, rename) stays with the writer goroutine,
//     where the caller's timeout keeps running.
//   - Its cost is the caller's: it encodes the records others queued
//     before its own (at most a queue's worth, written maxBatch at a
//     time) and makes the write, which the writer goroutine made before.
//     Under contention callers find the write side held and queue: the
//     writer batches as before.
//   - Never waits for the lock (TryLock): a caller that finds the write
//     side held queues, as before, so the writer's retry loop and
//     Close's drain are never raced.
//   - Close: the call counts as a sender, so finish waits for it and then
//     writes what it left; a closed trail returns directClosed.
//   - SyncAlways and Drop mode do not come here (New leaves direct nil;
//     LogWait in Drop mode is Log).
//
// Group commit: a LogWait caller (lead) may leave its encoded record in
// the batch and yield its thread once (gather) before it writes, so that
// the records of other sessions' commands ready to run on it join the
// batch (directHandedOver: they wait for their acks) and one write takes
// them all; a write costs microseconds in the kernel whatever it holds.
// It gathers only while there is company: the last gather's batch held
// another's record, or a caller found the write side held since the
// last look (gather). Each
// record is still acknowledged only once the write that holds it
// returned nil (ARCHITECTURE.md §11).
func (t *Trail) logDirect(r *Record, lead bool) directResult {
	t.senders.Add(1)
	defer t.senders.Add(-1)
	if t.closed.Load() {
		return directClosed
	}
	if !t.wmu.TryLock() {
		t.contended.Store(true)
		return directNot
	}
	if t.failing || (len(t.batch) > 0 && !t.gathering) {
		t.wmu.Unlock()
		return directNot
	}
	for {
		if len(t.batch) >= maxBatch && !t.writeDirect() {
			// The writer takes over that batch; r is queued after it.
			t.wmu.Unlock()
			t.wake()
			return directNot
		}
		select {
		case q := <-t.q:
			t.add(q)
			continue
		default:
		}
		break
	}
	if r.Time.IsZero() {
		r.Time = time.Now()
	}
	t.add(r)
	if t.gathering {
		// A leader yielded and writes this batch when it comes back.
		t.joined++
		t.wmu.Unlock()
		return directHandedOver
	}
	if lead && t.gather() {
		t.gathering = true
		t.wmu.Unlock()
		runtime.Gosched()
		if !t.wmu.TryLock() {
			// Held: by one joining, or by the writer goroutine (a tick,
			// a batch it took over). The writer writes what the batch
			// holds, unless it holds it already.
			t.wake()
			return directHandedOver
		}
		if !t.gathering {
			// Written, or taken over by the writer (step): r's ack says.
			t.wmu.Unlock()
			return directHandedOver
		}
		t.company = t.joined > 0
		t.gathering, t.joined = false, 0
	}
	if !t.writeDirect() {
		t.wmu.Unlock()
		t.wake()
		return directHandedOver
	}
	t.wmu.Unlock()
	return directWritten
}

// gather says whether a leader gathers before it writes (wmu held): the
// last gather found company, or a caller found the write side held since
// the last look. A lone session never yields: a yield wakes an idle
// thread to look for work (runtime.wakep), a futex call and a context
// switch.
func (t *Trail) gather() bool {
	return t.company || t.contended.Swap(false)
}

// writeDirect writes the batch for logDirect (wmu held). It returns false
// when it leaves the batch to the writer: the sink would not write it
// directly now, or the write failed.
func (t *Trail) writeDirect() bool {
	wrote, err := t.direct.writeDirect(t.batch)
	if !wrote {
		t.gathering = false // the batch is the writer's
		return false
	}
	if err != nil {
		// Failing from now on (ARCHITECTURE.md §11); the writer counts
		// and logs it with its first retry.
		t.dur.fail(err)
		t.pendingErr = err
		t.gathering = false // the batch is the writer's
		return false
	}
	t.wrote()
	return true
}

// Health says why the trail cannot be relied on now, nil when it can:
// the sink failed its last write, sync or checkpoint (either mode), or in
// Drop mode a record was dropped within Options.DropHealthWindow. Readiness
// probes report it.
func (t *Trail) Health() error {
	if h := t.dur.failing.Load(); h != nil {
		return fmt.Errorf("audit sink failing since %s: %w", h.since.UTC().Format(time.RFC3339), h.err)
	}
	if t.drop && !t.opts.DropKeepsHealthy {
		w := t.opts.DropHealthWindow
		if w <= 0 {
			w = DefaultDropHealthWindow
		}
		if last := t.dur.lastDrop.Load(); last != 0 && time.Since(time.Unix(0, last)) < w {
			return fmt.Errorf("audit records dropped within the last %s (fail-open): %d in all", w, t.dropped.Load())
		}
	}
	if t.closed.Load() {
		return ErrClosed
	}
	return nil
}

// countDropped counts n records lost.
func (t *Trail) countDropped(n uint64) {
	if n == 0 {
		return
	}
	t.dropped.Add(n)
	t.dur.lastDrop.Store(time.Now().UnixNano())
}
