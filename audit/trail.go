package audit

import (
	"crypto/hmac"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"
)

// Overflow says what Log does when the queue is full or the sink fails.
type Overflow int

const (
	// Block makes Log wait until the record is queued (fail closed): a
	// session that cannot be audited does not go on. The default.
	Block Overflow = iota
	// Drop makes Log drop the record and count it (fail open); the
	// writer writes an audit.dropped record with the count as soon as it
	// can, so the gap is visible in the chain.
	Drop
)

// Special values of Options.SyncInterval.
const (
	// SyncAlways fsyncs after every write of a batch of records.
	SyncAlways time.Duration = -1
	// SyncNever leaves durability to the OS (records still reach the OS
	// as soon as the queue is empty, so a killed process loses nothing
	// written; a crashed machine may).
	SyncNever time.Duration = -2
)

// Defaults of Options.
const (
	DefaultQueueSize    = 8192
	DefaultSyncInterval = time.Second
	DefaultCloseTimeout = 5 * time.Second
)

// maxBatch is how many bytes of records the writer gathers before it
// writes them, when the queue does not run empty first.
const maxBatch = 256 << 10

// Retry delays for a failing sink.
const (
	minBackoff = 50 * time.Millisecond
	maxBackoff = 5 * time.Second
)

// Errors returned by Log.
var (
	ErrClosed  = errors.New("audit: trail closed")
	ErrDropped = errors.New("audit: record dropped: queue full or sink failing")
)

// Options configure a Trail.
type Options struct {
	// Sink stores the records: a FileSink (OpenFile), a SyslogSink
	// (DialSyslog) or a WriterSink. Required.
	Sink Sink
	// QueueSize bounds the records waiting for the writer; default
	// DefaultQueueSize.
	QueueSize int
	// Overflow: Block (fail closed, the default) or Drop (fail open).
	Overflow Overflow
	// SyncInterval is how often written records are fsynced: at most
	// this much is lost when the machine crashes. 0 means
	// DefaultSyncInterval; see also SyncAlways and SyncNever.
	SyncInterval time.Duration
	// Key, when set, signs every record with HMAC-SHA256 (its sig, the
	// next record's link) instead of chaining plain SHA-256, so that only
	// key holders can write or rewrite the trail (LoadKey).
	Key []byte
	// CloseTimeout bounds how long Close keeps retrying a failing sink
	// in Block mode; default DefaultCloseTimeout.
	CloseTimeout time.Duration
	// Logger receives the trail's own problems (sink errors, drops),
	// never records. Nil logs nothing.
	Logger *zap.Logger
	// Software and Host are written in audit.start records; Host
	// defaults to os.Hostname.
	Software string
	Host     string
	// DropKeepsHealthy keeps Health nil when Drop mode drops a record
	// because the queue is full; by default Health fails for
	// DropHealthWindow after each drop. A failing sink fails Health in
	// either mode.
	DropKeepsHealthy bool
	// DropHealthWindow is how long Health fails after a drop; default
	// DefaultDropHealthWindow.
	DropHealthWindow time.Duration
	// MaxFieldBytes caps each string from outside the proxy a record
	// carries (a user name, an ID value, a mailbox name, a flag, ...), as
	// encoded; MaxListItems caps the entries of such a list or map. A
	// record over MaxRecordBytes (without its "\n") is encoded again with
	// tighter caps until it fits; what was shortened is named in its cut
	// field. Defaults DefaultMaxFieldBytes, DefaultMaxListItems and
	// DefaultMaxRecordBytes, and MaxRecordBytes is lowered to what the
	// sink carries (SyslogSink.MaxRecordBytes).
	MaxFieldBytes, MaxListItems, MaxRecordBytes int
	// MaxMailboxNames caps the distinct mailboxes a record's sources or
	// mailboxes names, whole (max_list_items does not apply to them); 0:
	// DefaultMaxMailboxNames, lowered to what MaxRecordBytes holds. A
	// setting the worst-case record under MaxRecordBytes cannot hold is
	// refused (worstCase).
	MaxMailboxNames int
	// MaxNameBytes caps what the fields that say who did what to what
	// (user, command, mailbox, destination, selected, identifier, rights,
	// each of sources and mailboxes) may total, encoded, in a record
	// still written whole; 0: what MaxRecordBytes holds beside the rest
	// of the worst-case record. A larger setting is refused. The proxy
	// refuses a command whose names total more (Trail.MaxNameBytes).
	MaxNameBytes int
	// Checkpoint, when set, receives a signed checkpoint (seq and link of
	// the last record written) after every fsync, kept apart from the
	// trail so that verify can tell a trail cut short (checkpoint.go).
	// It needs Key. With SyncNever, checkpoints follow writes once every
	// DefaultSyncInterval.
	Checkpoint Checkpointer
}

// Stats are a trail's counters, for metrics.
type Stats struct {
	Written    uint64 // records written, the writer's own included
	Dropped    uint64 // records lost (Drop mode, or a sink still failing at Close)
	SinkErrors uint64 // failed writes and syncs
	Queued     int    // records waiting now
	LastSeq    uint64 // seq of the last record written
	// Shrunk counts records over MaxRecordBytes, written with tighter
	// caps.
	Shrunk uint64
}

// Trail is the audit writer: Log queues a record, one goroutine numbers,
// chains, encodes and writes it; LogWait may do that itself when the
// writer is idle (logDirect). Safe for concurrent use.
type Trail struct {
	opts Options
	sink Sink
	log  *zap.Logger
	q    chan *Record
	// kick wakes the writer goroutine: a record was queued, or a
	// LogWait caller handed it a batch (logDirect). It holds one value,
	// so that wake-ups coalesce and none is lost.
	kick chan struct{}
	// direct is the sink when LogWait callers may write to it themselves
	// (directSink), nil otherwise.
	direct  directSink
	drop    bool
	done    chan struct{} // closed by Close
	stopped chan struct{} // closed when the writer has finished
	closed  atomic.Bool
	// senders counts Log calls in progress, so that the writer's final
	// drain waits for a record that was about to be queued (see Close).
	senders atomic.Int64

	written, dropped, sinkErrors, lastSeq atomic.Uint64
	droppedQueue                          atomic.Uint64 // part of dropped: Log found the queue full
	shrunk                                atomic.Uint64 // records over maxRecord, encoded again
	// contended: a logDirect caller found the write side held since a
	// leader last looked (gather).
	contended atomic.Bool
	// dur tells LogWait and Health what is durable and what fails.
	dur durability

	// wmu is the write side: everything below belongs to whoever holds
	// it, the writer goroutine or a LogWait caller on the direct path
	// (and New before the writer starts). Records leave the queue only
	// under wmu, so that whoever holds it has every record queued before
	// it in hand or already written: seq order is queue order.
	wmu     sync.Mutex
	link    *linker
	seq     uint64
	prevHex [64]byte
	enc     encoding // marshal's caps and formatting space
	caps    caps     // the configured caps
	shrink  [4]caps  // shrinkCaps(caps)
	// maxRecord bounds an encoded record (MaxRecordBytes).
	maxRecord int
	reported  uint64 // drops already written in an audit.dropped record
	batch     []byte
	pending   uint64 // records in batch, audit.dropped ones excepted
	// acks are the LogWait callers' acks of the records in batch: a
	// rolled-back batch tells them their record is lost, since the next
	// records take the same sequence numbers.
	acks []*ack
	// committed is the chain state after the last successful write; a
	// batch that cannot be written in Drop mode rolls back to it.
	committed struct {
		seq      uint64
		prevHex  [64]byte
		reported uint64
	}
	failing bool
	// gathering: a leader left the batch open while it yields
	// (logDirect): records join it, and whoever writes or takes over the
	// batch clears it. joined counts the records that joined; company
	// says the last gather had some.
	gathering bool
	company   bool
	joined    int
	// pendingErr is a direct write's failure of the batch, handed to
	// the writer with the batch: flush takes it as its first attempt.
	pendingErr error
	backoff    time.Duration
	retryAt    time.Time
	unsynced   bool
	syncEvery  time.Duration
	// checkpointed is the seq of the last checkpoint written.
	checkpointed uint64
	closeErr     error
}

// New starts a trail. When the sink can read back its last record
// (Resumer), the chain continues after it. The first record written is an
// audit.start; in Block mode New fails when it cannot be written.
func New(o Options) (*Trail, error) {
	if o.Sink == nil {
		return nil, errors.New("audit: no sink")
	}
	if o.QueueSize <= 0 {
		o.QueueSize = DefaultQueueSize
	}
	if o.SyncInterval == 0 {
		o.SyncInterval = DefaultSyncInterval
	}
	if o.CloseTimeout <= 0 {
		o.CloseTimeout = DefaultCloseTimeout
	}
	if o.Logger == nil {
		o.Logger = zap.NewNop()
	}
	if o.Host == "" {
		o.Host, _ = os.Hostname()
	}
	if o.Key != nil && len(o.Key) < MinKeyLen {
		return nil, fmt.Errorf("audit: key of %d bytes, want at least %d", len(o.Key), MinKeyLen)
	}
	if o.MaxFieldBytes == 0 {
		o.MaxFieldBytes = DefaultMaxFieldBytes
	}
	if o.MaxListItems == 0 {
		o.MaxListItems = DefaultMaxListItems
	}
	if o.MaxRecordBytes == 0 {
		o.MaxRecordBytes = DefaultMaxRecordBytes
	}
	if m, ok := o.Sink.(interface{ MaxRecordBytes() int }); ok && m.MaxRecordBytes() > 0 {
		o.MaxRecordBytes = min(o.MaxRecordBytes, m.MaxRecordBytes())
	}
	if o.MaxFieldBytes < 0 || o.MaxListItems < 0 || o.MaxMailboxNames < 0 || o.MaxNameBytes < 0 || o.MaxRecordBytes < MinRecordBytes {
		return nil, fmt.Errorf("audit: max field bytes %d, max list items %d, max record bytes %d (at least %d, and what the sink carries)",
			o.MaxFieldBytes, o.MaxListItems, o.MaxRecordBytes, MinRecordBytes)
	}
	if o.Checkpoint != nil && o.Key == nil {
		return nil, errors.New("audit: checkpoints are signed with the trail's key: set Key")
	}
	t := &Trail{
		opts:      o,
		sink:      o.Sink,
		log:       o.Logger.Named("audit"),
		q:         make(chan *Record, o.QueueSize),
		kick:      make(chan struct{}, 1),
		drop:      o.Overflow == Drop,
		done:      make(chan struct{}),
		stopped:   make(chan struct{}),
		link:      newLinker(o.Key),
		batch:     make([]byte, 0, 64<<10),
		backoff:   minBackoff,
		syncEvery: o.SyncInterval,
		maxRecord: o.MaxRecordBytes,
	}
	t.dur.init()
	copy(t.prevHex[:], genesis)
	if err := t.setCaps(o); err != nil {
		return nil, err
	}

	start := &Record{Time: time.Now(), Kind: KindAuditStart, Host: o.Host, PID: os.Getpid(),
		Software: o.Software, Chain: t.link.name()}
	if o.Key != nil {
		start.KeyID = KeyID(o.Key)
	}
	rs, resumed := o.Sink.(Resumer)
	if resumed {
		last, torn, err := rs.LastRecord()
		if err != nil {
			return nil, err
		}
		if last != nil {
			r, err := ParseRecord(last)
			if err != nil || last[0] != '{' {
				return nil, fmt.Errorf("audit: cannot continue the chain: the last stored record is damaged (%v); move the file aside to start a new chain", err)
			}
			t.seq = r.Seq
			if err := t.resumeLink(last); err != nil {
				return nil, err
			}
		}
		start.Torn = torn
	}
	if err := t.checkResume(resumed); err != nil {
		return nil, err
	}
	if !resumed && t.seq > 0 {
		start.ResumedAt = t.seq // from the checkpoint
	}
	t.commit()
	t.lastSeq.Store(t.seq)
	t.encode(start)
	t.pending++
	if err := t.sink.Write(t.batch); err != nil {
		if !t.drop {
			return nil, fmt.Errorf("audit: sink does not take records: %w", err)
		}
		t.writeFailed(err)
	} else {
		t.wrote()
	}
	t.sync()
	if d, ok := o.Sink.(directSink); ok && !t.drop && t.syncEvery != SyncAlways {
		// SyncAlways acknowledges only after fsync: LogWait keeps
		// waiting for the writer, which fsyncs a batch at a time.
		t.direct = d
	}
	go t.run()
	return t, nil
}

// resumeLink links the chain to the last stored record. With a key,
// that record must carry a sig the key made: linking to a line nobody
// signed would sign it, and bury a forgery inside a chain that verifies.
// Such a trail is refused, not restarted: an operator must look at it
// (ARCHITECTURE.md §11).
func (t *Trail) resumeLink(last []byte) error {
	if t.link.mac == nil {
		t.link.link(t.prevHex[:], last)
		return nil
	}
	body, sig := splitSig(last)
	if body != nil {
		t.link.link(t.prevHex[:], body)
	}
	if body == nil || !hmac.Equal(t.prevHex[:], sig) {
		return fmt.Errorf("audit: cannot continue the chain: the last stored record (seq %d) is not signed with this key: it was forged or edited, or written without the key or with another one; run imapwarden audit verify on the trail and move its files aside to start a new chain", t.seq)
	}
	return nil
}

// Log queues r; the trail owns it from now on (and reuses it once
// written: see NewRecord). A zero Time is set to now. In Block mode Log waits while the queue is full; in Drop mode it
// returns ErrDropped at once. After Close it returns ErrClosed.
//
// Like LogWait, when the writer is idle Log writes r itself (logDirect):
// a record per session event would otherwise wake the writer goroutine
// once each, which costs more than the write. It does not wait for r to
// be durable either way.
func (t *Trail) Log(r *Record) error {
	if t.direct != nil {
		switch t.logDirect(r, false) {
		case directWritten, directHandedOver:
			return nil
		case directClosed:
			return ErrClosed
		}
	}
	return t.enqueue(r, nil)
}

// enqueue queues r. In Block mode it waits for room until timeout fires
// (nil: for ever) or the trail closes.
func (t *Trail) enqueue(r *Record, timeout <-chan time.Time) error {
	t.senders.Add(1)
	defer t.senders.Add(-1)
	if t.closed.Load() {
		return ErrClosed
	}
	if r.Time.IsZero() {
		r.Time = time.Now()
	}
	select {
	case t.q <- r:
		t.wake()
		return nil
	default:
	}
	if t.drop {
		t.countDropped(1)
		t.droppedQueue.Add(1)
		return ErrDropped
	}
	select {
	case t.q <- r:
		t.wake()
		return nil
	case <-t.done:
		return ErrClosed
	case <-timeout:
		return fmt.Errorf("%w: the queue stayed full", ErrNotDurable)
	}
}

// wake wakes the writer goroutine, unless a wake-up is pending already.
func (t *Trail) wake() {
	select {
	case t.kick <- struct{}{}:
	default:
	}
}

// Close writes what is queued and an audit.stop record, syncs and closes
// the sink. Log calls waiting in Block mode return ErrClosed. In Block
// mode a failing sink is retried for up to CloseTimeout; the error then
// says how many records were lost.
func (t *Trail) Close() error {
	if !t.closed.CompareAndSwap(false, true) {
		<-t.stopped
		return nil
	}
	close(t.done)
	<-t.stopped
	return t.closeErr
}

// Stats returns the trail's counters.
func (t *Trail) Stats() Stats {
	return Stats{
		Written:    t.written.Load(),
		Dropped:    t.dropped.Load(),
		SinkErrors: t.sinkErrors.Load(),
		Queued:     len(t.q),
		LastSeq:    t.lastSeq.Load(),
		Shrunk:     t.shrunk.Load(),
	}
}

// run is the writer goroutine.
func (t *Trail) run() {
	defer close(t.stopped)
	var tick <-chan time.Time
	every := t.syncEvery
	if every == SyncNever && t.opts.Checkpoint != nil {
		every = DefaultSyncInterval // checkpoints only
	}
	if every > 0 {
		tk := time.NewTicker(every)
		defer tk.Stop()
		tick = tk.C
	}
	for {
		select {
		case <-t.kick:
			if t.step() {
				t.wake() // a batch's worth more: after a tick or Close, if due
			}
		case <-tick:
			t.tickSync()
		case <-t.done:
			t.finish()
			return
		}
	}
}

// step writes what is queued, up to a batch, and a batch a LogWait
// caller handed over (logDirect). It reports whether records remain
// queued.
func (t *Trail) step() bool {
	t.wmu.Lock()
	defer t.wmu.Unlock()
	t.gathering = false // a leader's open batch is the writer's now
	// Take what is queued, so that a burst leaves in one write; write as
	// soon as the queue is empty, so that a killed process loses at most
	// what was still queued.
	for len(t.batch) < maxBatch {
		select {
		case r := <-t.q:
			t.add(r)
			continue
		default:
		}
		break
	}
	t.flush()
	if t.syncEvery == SyncAlways {
		t.sync()
	}
	return len(t.q) > 0
}

// add encodes one record into the batch, unless the sink is failing in
// Drop mode, when it is counted and dropped right away.
func (t *Trail) add(r *Record) {
	if t.failing && t.drop && time.Now().Before(t.retryAt) {
		t.countDropped(1)
		recycle(r)
		return
	}
	if len(t.batch) == 0 {
		t.noteDrops()
	}
	t.encode(r)
	t.pending++
	// Encoded: nothing refers to the record any more, whatever becomes
	// of the batch.
	recycle(r)
}

// noteDrops writes an audit.dropped record when records were lost since
// the last one.
func (t *Trail) noteDrops() {
	d := t.dropped.Load()
	if d <= t.reported {
		return
	}
	t.encode(&Record{Time: time.Now(), Kind: KindAuditDropped, Count: d - t.reported,
		Reason: "fail-open: queue full or sink failing"})
	t.reported = d
}

func (t *Trail) encode(r *Record) {
	t.seq++
	if r.ack != nil {
		r.ack.seq.Store(t.seq)
		t.acks = append(t.acks, r.ack)
	}
	start, prev := len(t.batch), t.prevHex
	t.enc.caps, t.enc.whole = t.caps, 0
	t.write(r)
	// A record over the bound every sink carries is encoded again, the
	// same seq and prev, with tighter caps: before it is linked or sent,
	// so the chain covers what is written (ARCHITECTURE.md §11).
	if n := len(t.batch) - start - 1; n > t.maxRecord {
		for _, c := range t.shrink {
			t.batch, t.prevHex = t.batch[:start], prev
			t.enc.caps, t.enc.whole = c, n
			t.write(r)
			if len(t.batch)-start-1 <= t.maxRecord {
				break
			}
		}
		if k := t.shrunk.Add(1); k&(k-1) == 0 { // 1, 2, 4, ...: a client can cause it at will
			t.log.Info("audit record over max_record_bytes written with tighter caps",
				zap.String("kind", string(r.Kind)), zap.Int("bytes", n), zap.Int("written", len(t.batch)-start-1), zap.Uint64("shrunk_total", k))
		}
	}
}

// write appends r to the batch as one line, with the chain's fields
// (v, seq, and prev or hmac), and links the next record to it: the
// line's SHA-256, or, with a key, its sig, which ends it (ARCHITECTURE.md
// §11). The time and kind come first; the line is the one zapcore's JSON
// encoder wrote (jsonLine).
func (t *Trail) write(r *Record) {
	start := len(t.batch)
	l := jsonLine{b: append(t.batch, '{')}
	if !r.Time.IsZero() {
		l.Time("ts", r.Time.UTC(), time.RFC3339Nano)
	}
	l.String("kind", string(r.Kind))
	l.Int("v", SchemaVersion)
	l.Uint("seq", t.seq)
	l.Plain(t.link.field(), t.prevHex[:])
	r.marshal(&l, &t.enc)
	if t.link.mac == nil {
		l.b = append(l.b, '}')
		t.link.link(t.prevHex[:], l.b[start:])
		l.b = append(l.b, '\n')
	} else {
		// The record signs itself: its sig, over the line before it,
		// ends it and is the next record's link.
		t.link.link(t.prevHex[:], l.b[start:])
		l.b = append(l.b, sigField...)
		l.b = append(l.b, t.prevHex[:]...)
		l.b = append(l.b, "\"}\n"...)
	}
	t.batch = l.b
}

func (t *Trail) commit() {
	t.committed.seq, t.committed.prevHex, t.committed.reported = t.seq, t.prevHex, t.reported
}

func (t *Trail) rollback() {
	t.seq, t.prevHex, t.reported = t.committed.seq, t.committed.prevHex, t.committed.reported
	t.batch = t.batch[:0]
	t.pending = 0
	t.gathering = false
	if len(t.acks) > 0 {
		for _, a := range t.acks {
			a.seq.Store(lostSeq)
		}
		clear(t.acks)
		t.acks = t.acks[:0]
		t.dur.wake()
	}
}

// wrote records a successful write of the batch.
func (t *Trail) wrote() {
	t.written.Add(t.seq - t.committed.seq)
	t.lastSeq.Store(t.seq)
	t.commit()
	t.batch = t.batch[:0]
	t.pending = 0
	t.gathering = false
	clear(t.acks)
	t.acks = t.acks[:0]
	t.unsynced = true
	if t.failing {
		t.log.Info("audit sink works again", zap.Uint64("dropped_total", t.dropped.Load()))
		t.failing = false
	}
	t.backoff = minBackoff
	if t.syncEvery != SyncAlways {
		// Handed to the OS: durable against a killed process (LogWait).
		t.dur.ok()
		t.dur.advance(t.seq)
	}
}

// writeFailed handles a failed write in Drop mode: the batch is
// forgotten and counted, and the chain continues from the last record
// written, so that it stays intact.
func (t *Trail) writeFailed(err error) {
	t.sinkErrors.Add(1)
	t.dur.fail(err)
	if !t.failing {
		t.log.Error("audit sink failing; dropping records (fail-open)", zap.Error(err))
	}
	t.countDropped(t.pending)
	t.rollback()
	t.failing = true
	t.retryAt = time.Now().Add(t.backoff)
	t.backoff = min(2*t.backoff, maxBackoff)
}

// flush writes the batch. In Drop mode a failure drops it; in Block mode
// the writer retries, not reading the queue meanwhile, so that Log
// blocks: commands wait rather than go unaudited.
func (t *Trail) flush() {
	if len(t.batch) == 0 {
		return
	}
	var deadline time.Time // set once closing
	// A direct write that failed (logDirect) is this batch's first
	// attempt: the backoff follows it as if the writer had made it.
	err := t.pendingErr
	t.pendingErr = nil
	for attempt := 0; ; attempt++ {
		if attempt > 0 || err == nil {
			err = t.sink.Write(t.batch)
		}
		if err == nil {
			t.wrote()
			return
		}
		if t.drop {
			t.writeFailed(err)
			return
		}
		t.sinkErrors.Add(1)
		// From the first failed write on, LogWait callers stop being
		// acknowledged and readiness fails (ARCHITECTURE.md §11).
		t.dur.fail(err)
		if attempt == 0 && !t.failing {
			t.log.Error("audit sink failing; blocking until it works (fail-closed)", zap.Error(err))
		}
		t.failing = true
		wait := t.backoff
		t.backoff = min(2*t.backoff, maxBackoff)
		if deadline.IsZero() && isClosed(t.done) {
			deadline = time.Now().Add(t.opts.CloseTimeout)
		}
		if !deadline.IsZero() {
			left := time.Until(deadline)
			if left <= 0 {
				lost := t.pending
				t.countDropped(lost)
				t.rollback()
				t.closeErr = errors.Join(t.closeErr, fmt.Errorf("audit: %d records not written: %w", lost, err))
				return
			}
			wait = min(wait, left)
		}
		tm := time.NewTimer(wait)
		select {
		case <-tm.C:
		case <-t.doneIfOpen(deadline):
			tm.Stop()
		}
	}
}

// doneIfOpen returns t.done until the deadline is set, so that a retry
// wait is cut short once by Close, then nil (never ready).
func (t *Trail) doneIfOpen(deadline time.Time) <-chan struct{} {
	if deadline.IsZero() {
		return t.done
	}
	return nil
}

func isClosed(c chan struct{}) bool {
	select {
	case <-c:
		return true
	default:
		return false
	}
}

func (t *Trail) sync() {
	if !t.unsynced {
		return
	}
	t.unsynced = false
	if t.syncEvery != SyncNever {
		if err := t.sink.Sync(); err != nil {
			t.syncFailed(err)
			return
		}
		if t.syncEvery == SyncAlways {
			t.dur.ok()
			t.dur.advance(t.committed.seq)
		}
	}
	t.checkpointAt(t.committed.seq, t.committed.prevHex)
}

// syncFailed reports a failed fsync. The kernel may have dropped the
// pages: there is nothing to retry, only to report; with SyncAlways
// nothing more is acknowledged until a sync succeeds.
func (t *Trail) syncFailed(err error) {
	t.sinkErrors.Add(1)
	t.dur.fail(err)
	t.log.Error("audit sync failed", zap.Error(err))
}

// tickSync is the periodic fsync and checkpoint. With a sink that can
// sync its file apart from writing (fileSyncer), the write side is held
// only to note what the fsync covers: an fsync takes milliseconds (tens
// on a busy disk), and every LogWait caller that finds the write side
// held queues behind it, so each command of every session would wait for
// the disk once a SyncInterval (ARCHITECTURE.md §11).
func (t *Trail) tickSync() {
	t.wmu.Lock()
	fs, ok := t.sink.(fileSyncer)
	if !ok || t.syncEvery == SyncNever || !t.unsynced {
		t.sync()
		t.wmu.Unlock()
		return
	}
	t.unsynced = false
	f := fs.syncFile()
	seq, prevHex := t.committed.seq, t.committed.prevHex
	t.wmu.Unlock()
	if f == nil {
		return
	}
	// Written concurrently or rotated away meanwhile: what was written
	// up to seq is in f, or in the file rotation synced before closing
	// it (FileSink.rotate).
	if err := f.Sync(); err != nil && !errors.Is(err, os.ErrClosed) {
		t.syncFailed(fmt.Errorf("audit: sync: %w", err))
		return
	}
	t.checkpointAt(seq, prevHex)
}

// finish drains the queue, writes audit.stop and closes the sink.
func (t *Trail) finish() {
	// A Log that passed its closed check may still be queueing.
	for t.senders.Load() > 0 {
		time.Sleep(100 * time.Microsecond)
	}
	t.wmu.Lock()
	defer t.wmu.Unlock()
	t.gathering = false
	// A batch a LogWait caller handed over goes first, whole or rolled
	// back, as any batch: audit.stop is not held hostage by it.
	t.flush()
	if t.failing && t.drop {
		t.retryAt = time.Time{} // one last try
	}
	for {
		select {
		case r := <-t.q:
			t.add(r)
			if len(t.batch) >= maxBatch {
				t.flush()
			}
			continue
		default:
		}
		break
	}
	if len(t.batch) == 0 {
		t.noteDrops()
	}
	// Count: the records this process wrote, this one included.
	t.encode(&Record{Time: time.Now(), Kind: KindAuditStop, Count: t.written.Load() + t.seq - t.committed.seq + 1})
	t.pending++
	t.flush()
	t.unsynced = true
	t.sync()
	if err := t.sink.Close(); err != nil {
		t.closeErr = errors.Join(t.closeErr, err)
	}
	if d := t.dropped.Load(); d > 0 {
		t.log.Warn("audit trail closed with records lost", zap.Uint64("dropped", d))
	}
}

// setCaps sets the trail's caps from o; MaxMailboxNames to what the
// worst-case record, shrunk, holds under MaxRecordBytes; and MaxNameBytes
// to what it holds of names beside the rest of that record, whole: a
// setting that cannot hold who did what to what is refused at the start,
// not found out on a hostile client's record (ARCHITECTURE.md §11).
func (t *Trail) setCaps(o Options) error {
	names := o.MaxMailboxNames
	if names == 0 {
		names = DefaultMaxMailboxNames
	}
	for ; ; names /= 2 {
		t.caps = confCaps(o.MaxFieldBytes, o.MaxListItems, names)
		t.shrink = shrinkCaps(t.caps)
		n := t.worstCase(t.shrink[len(t.shrink)-1], strings.Repeat("\x01", 2*max(t.caps.field, IdentFloor)))
		// What the names may total, whole: the rest of the worst-case
		// record, each name one byte, encoded with the caps of the step
		// that keeps them whole, less a margin for counts in cut longer
		// than the worst case's; in steps of 256 bytes, so that it
		// changes with the schema only now and then.
		const margin = 256
		idents := 7 + 2*names // the fields worstCase fills with ident
		nb := (t.maxRecord - t.worstCase(t.shrink[len(t.shrink)-2], "x") + idents - margin) &^ 255
		if n <= t.maxRecord && nb >= idents*IdentFloor {
			if o.MaxNameBytes > nb {
				return fmt.Errorf("audit: max record bytes %d holds %d bytes of names (user, mailboxes, ...) whole, not %d: raise max_record_bytes or lower limits.max_audit_name_bytes",
					t.maxRecord, nb, o.MaxNameBytes)
			}
			if o.MaxNameBytes > 0 {
				nb = o.MaxNameBytes
			}
			t.caps.identBytes = nb
			t.shrink = shrinkCaps(t.caps)
			return nil
		}
		if o.MaxMailboxNames != 0 || names == 1 {
			return fmt.Errorf("audit: max record bytes %d cannot hold the worst-case record shrunk (%d bytes with %d mailbox names, %d bytes of names whole): raise max_record_bytes or lower limits.max_audit_mailbox_names or max_field_bytes",
				t.maxRecord, n, names, nb)
		}
	}
}

// MaxNameBytes is the most the fields that say who did what to what
// (user, command, mailbox, destination, selected, identifier, rights,
// each of sources and mailboxes) total, encoded, in a record the trail
// still writes whole: the proxy refuses a command whose names total more
// (fail closed), rather than record them cut.
func (t *Trail) MaxNameBytes() int { return t.caps.identBytes }

// MaxMailboxNames is the most distinct mailboxes one record names in its
// sources or mailboxes: the proxy refuses a command that names more
// (fail closed), rather than record it without some of them.
func (t *Trail) MaxMailboxNames() int { return t.caps.names }

// worstCase is the size of the largest command record, encoded with c:
// every field from outside the proxy at its longest and all escapes, but
// those that say who did what to what, which are ident; the most mailbox
// names; the largest numbers; a key's sig.
func (t *Trail) worstCase(c caps, ident string) int {
	long := strings.Repeat("\x01", 2*max(t.caps.field, IdentFloor))
	l := []string{long}
	names := make([]string, t.caps.names)
	for i := range names {
		names[i] = ident
	}
	set := strings.Repeat("4294967295,1,", 1000) + "*:7,$"
	own := strings.Repeat("x", 16) // the proxy's own words, a session id, a listener's name
	r := &Record{Time: time.Date(2026, 12, 31, 23, 59, 59, 999999999, time.UTC), Kind: KindPolicyWouldDeny,
		Session: own, IP: netip.MustParseAddr("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"), Port: 65535,
		Listener: own, User: ident, Backend: own, Server: own, Event: own,
		Tag: long, Command: ident, UID: true, Mailbox: ident, MailboxRaw: long, Destination: ident,
		Sources: names, Mailboxes: names, Patterns: l, Effects: []string{own, own, own}, Selected: ident,
		UIDValidity: 1<<32 - 1, ReadOnly: true, Set: set, SetCount: 1<<63 - 1, Fetch: FetchMetadata, Items: l,
		SearchKeys: []string{"SUBJECT", "SUBJECT", "SUBJECT", "SUBJECT", "SUBJECT", "SUBJECT", "SUBJECT", "SUBJECT", "SUBJECT"}, StoreOp: long, Flags: l,
		LiteralBytes: 1<<63 - 1, UIDs: make([]uint32, MaxUIDs+1), ContentBytes: 1<<63 - 1,
		Expunged: 1<<31 - 1, ExpungedSeqs: make([]uint32, MaxUIDs+1), ExpungedUIDs: make([]uint32, MaxUIDs+1),
		Unnamed: 1<<31 - 1, UnnamedSeqs: make([]uint32, MaxUIDs+1),
		Identifier: ident, Rights: ident, QuotaRoot: long, Quota: map[string]int64{long: 1<<63 - 1}, Enable: l, Entries: l,
		SharedWith: l, SharedCount: 1<<31 - 1, CodeArgs: long, Result: own, Code: long, Reason: long,
		Revision: own, Limit: own, LimitKey: own, LimitOwn: true, Disconnect: true, Annot: map[string]any{"k": long}, Detail: long,
		Duration: 1<<63 - 1, Delay: 1<<63 - 1, BytesIn: 1<<63 - 1, BytesOut: 1<<63 - 1, Messages: 1<<31 - 1}
	seq, prev, start := t.seq, t.prevHex, len(t.batch)
	t.seq = 1<<64 - 1
	t.enc.caps, t.enc.whole = c, 1<<31-1
	t.write(r)
	n := len(t.batch) - start - 1
	if t.link.mac == nil {
		n += len(sigField) + 64 + 1 // the record a key would sign
	}
	t.batch, t.seq, t.prevHex = t.batch[:start], seq, prev
	return n
}

// CheckCaps reports the MaxMailboxNames and MaxNameBytes of a trail with
// o's caps (o's sink aside), or why they cannot hold the worst-case
// record: config validation without opening the sink.
func CheckCaps(o Options) (names, nameBytes int, err error) {
	t, err := New(Options{Sink: NewWriterSink(io.Discard), MaxFieldBytes: o.MaxFieldBytes, MaxListItems: o.MaxListItems,
		MaxRecordBytes: o.MaxRecordBytes, MaxMailboxNames: o.MaxMailboxNames, MaxNameBytes: o.MaxNameBytes, Logger: o.Logger})
	if err != nil {
		return 0, 0, err
	}
	return t.MaxMailboxNames(), t.MaxNameBytes(), t.Close()
}
