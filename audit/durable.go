package audit

import (
	"errors"
	"fmt"
	"math"
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
func (t *Trail) LogWait(r *Record, timeout time.Duration) error {
	if t.drop {
		return t.Log(r)
	}
	a := ackPool.Get().(*ack)
	a.seq.Store(0)
	r.ack = a
	tm := timerPool.Get().(*time.Timer)
	tm.Reset(timeout)
	defer func() {
		// Since Go 1.23 a stopped timer's channel holds no stale value:
		// the timer is reusable as it is.
		tm.Stop()
		timerPool.Put(tm)
	}()
	if err := t.enqueue(r, tm.C); err != nil {
		// Never queued: the writer cannot hold a.
		ackPool.Put(a)
		return err
	}
	d := &t.dur
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
