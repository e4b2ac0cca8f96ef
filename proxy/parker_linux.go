package proxy

import (
	"container/heap"
	"errors"
	"fmt"
	"os"
	"sync"
	"syscall"
	"time"
)

// parker watches the connections of parked pumps (ARCHITECTURE.md §5):
// one epoll set per Server, itself waited on through the runtime's
// poller, so that a session idle between commands or in IDLE keeps no
// goroutine. A parked pump is started again on a runner (start) when its
// connection becomes readable (or closes), when its deadline passes, or
// when something else needs it (wake).
type parker struct {
	ep   *os.File        // the epoll set, non-blocking
	epfd int             // ep's descriptor (ep.Fd would make it blocking)
	rc   syscall.RawConn // ep's, for waiting in the runtime's poller
	wg   sync.WaitGroup

	mu sync.Mutex
	// slots holds the pumps parked or about to be, free the slots
	// vacated: 8 bytes a pump rather than a map's 20-40 (ARCHITECTURE.md
	// §16). A pump's id is its slot (low 32 bits) and a count (high), so
	// that an event for a slot since reused finds another id and is
	// dropped.
	slots  []*parkedPump
	free   []uint32
	next   uint32
	closed bool
	parks  [2]int64 // pumps parked so far, by kind (tests)
	// deadlines holds the armed pumps that have one, soonest first;
	// timer fires at the soonest. One timer per parker rather than one
	// per parked pump: a timer and its function were 125 bytes of each
	// idle session's heap (ARCHITECTURE.md §16).
	deadlines deadlineHeap
	timer     *time.Timer
	// start runs a resumed pump: the server's runners, whose stacks
	// grew already (runners.go), nil for a new goroutine each.
	start func(func())
}

// resumer is a parked pump: resume runs it again, on a new goroutine.
// An interface rather than a func: the pump itself, no method value made
// at each parking.
type resumer interface{ resume() }

// parkKind tells a backend pump's parking from a client pump's.
type parkKind uint8

const (
	parkBackend parkKind = iota
	parkClient
)

// parkedPump is one parked pump.
type parkedPump struct {
	pk   *parker
	id   uint64
	conn syscall.RawConn
	// due is when to resume the pump at the latest, in nanoseconds of
	// the monotonic clock since parkEpoch (8 bytes, not a time.Time's
	// 24: a parked pump's record fits 80); 0: no deadline.
	due  int64
	pump resumer
	// at is the pump's index in pk.deadlines, -1 when not there (pk.mu).
	at int

	mu sync.Mutex
	// armed: conn is in the set; done: the pump was resumed (or parking
	// failed). A pump is resumed exactly once.
	armed, done bool
	kind        parkKind
	// counted: the parking is in pk.parks (pk.mu), which parked counts
	// by, so that a test seeing a pump parked has its parking counted.
	counted bool
}

func newParker() (*parker, error) {
	fd, err := syscall.EpollCreate1(syscall.EPOLL_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("proxy: epoll_create1: %w", err)
	}
	if err := syscall.SetNonblock(fd, true); err != nil {
		syscall.Close(fd)
		return nil, fmt.Errorf("proxy: epoll set non-blocking: %w", err)
	}
	// A non-blocking descriptor given to os.NewFile joins the runtime's
	// poller, so waiting on the set blocks no thread.
	f := os.NewFile(uintptr(fd), "epoll")
	rc, err := f.SyscallConn()
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("proxy: epoll raw conn: %w", err)
	}
	pk := &parker{ep: f, epfd: fd, rc: rc}
	pk.timer = time.AfterFunc(time.Hour, pk.due)
	pk.timer.Stop()
	pk.wg.Add(1)
	go pk.run()
	return pk, nil
}

// prepare makes the parking of a pump: resume will run on a new
// goroutine once conn is readable (data, end of stream or error), until
// passes (unless zero), or wake is called. Nothing is watched before arm;
// wake may come first.
func (pk *parker) prepare(conn syscall.RawConn, kind parkKind, until time.Time, resume resumer) *parkedPump {
	pk.mu.Lock()
	defer pk.mu.Unlock()
	pk.next++
	var slot uint32
	if n := len(pk.free); n > 0 {
		slot, pk.free = pk.free[n-1], pk.free[:n-1]
	} else {
		slot = uint32(len(pk.slots))
		pk.slots = append(pk.slots, nil)
	}
	pp := &parkedPump{pk: pk, id: uint64(slot) | uint64(pk.next)<<32, kind: kind, conn: conn, pump: resume, at: -1}
	if !until.IsZero() {
		pp.due = max(int64(until.Sub(parkEpoch)), 1)
	}
	pk.slots[slot] = pp
	return pp
}

// arm starts watching. It returns false when conn cannot be watched
// (the parker is closed, or the descriptor refused): the pump goes on
// waiting itself and pp is spent. True means the pump belongs to the
// parker, already resumed elsewhere if wake came first.
func (pp *parkedPump) arm() bool {
	pk := pp.pk
	pp.mu.Lock()
	defer pp.mu.Unlock()
	if pp.done {
		return true
	}
	pk.mu.Lock()
	closed := pk.closed
	pk.mu.Unlock()
	var cerr error
	err := errParkerClosed
	if !closed {
		err = pp.conn.Control(func(fd uintptr) {
			// One-shot: one readiness resumes the pump once; it reads
			// through the runtime's poller from then on.
			ev := syscall.EpollEvent{
				Events: syscall.EPOLLIN | syscall.EPOLLRDHUP | syscall.EPOLLONESHOT,
				Fd:     int32(uint32(pp.id)),
				Pad:    int32(uint32(pp.id >> 32)),
			}
			cerr = syscall.EpollCtl(pk.epfd, syscall.EPOLL_CTL_ADD, int(fd), &ev)
		})
	}
	if err == nil {
		err = cerr
	}
	if err != nil {
		pp.done = true
		pk.forget(pp)
		return false
	}
	pp.armed = true
	pk.mu.Lock()
	pk.parks[pp.kind]++
	pp.counted = true
	if pp.due != 0 {
		// A deadline (the client's idle limit) passes while nothing runs
		// to see it: the parker's timer resumes the pump, whose read then
		// fails.
		heap.Push(&pk.deadlines, pp)
		if pp.at == 0 {
			pk.timer.Reset(time.Duration(pp.due) - time.Since(parkEpoch))
		}
	}
	pk.mu.Unlock()
	return true
}

// due resumes the pumps whose deadline passed, and sets the timer for
// the next one.
func (pk *parker) due() {
	var due []*parkedPump
	pk.mu.Lock()
	now := int64(time.Since(parkEpoch))
	for len(pk.deadlines) > 0 && pk.deadlines[0].due <= now {
		due = append(due, heap.Pop(&pk.deadlines).(*parkedPump))
	}
	if len(pk.deadlines) > 0 && !pk.closed {
		pk.timer.Reset(time.Duration(pk.deadlines[0].due - now))
	}
	pk.mu.Unlock()
	for _, pp := range due {
		pp.wake()
	}
}

// deadlineHeap orders parked pumps by deadline (container/heap), keeping
// each one's index (parkedPump.at) for its removal when woken first.
type deadlineHeap []*parkedPump

func (h deadlineHeap) Len() int           { return len(h) }
func (h deadlineHeap) Less(i, j int) bool { return h[i].due < h[j].due }
func (h deadlineHeap) Swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].at, h[j].at = i, j
}
func (h *deadlineHeap) Push(x any) {
	pp := x.(*parkedPump)
	pp.at = len(*h)
	*h = append(*h, pp)
}
func (h *deadlineHeap) Pop() any {
	old := *h
	pp := old[len(old)-1]
	old[len(old)-1] = nil
	*h, pp.at = old[:len(old)-1], -1
	return pp
}

var errParkerClosed = errors.New("parker closed")

// parkEpoch is the origin of parkedPump.due.
var parkEpoch = time.Now()

func (pk *parker) forget(pp *parkedPump) {
	pk.mu.Lock()
	if slot := uint32(pp.id); pk.slots[slot] == pp {
		pk.slots[slot] = nil
		pk.free = append(pk.free, slot)
	}
	if pp.at >= 0 {
		heap.Remove(&pk.deadlines, pp.at)
	}
	pk.mu.Unlock()
}

// wake resumes the pump unless it was already.
func (pp *parkedPump) wake() {
	pp.mu.Lock()
	if pp.done {
		pp.mu.Unlock()
		return
	}
	pp.done = true
	if pp.armed {
		// A closed connection left the set when it closed.
		_ = pp.conn.Control(func(fd uintptr) {
			_ = syscall.EpollCtl(pp.pk.epfd, syscall.EPOLL_CTL_DEL, int(fd), nil)
		})
	}
	pp.mu.Unlock()
	pp.pk.forget(pp)
	if start := pp.pk.start; start != nil {
		// A waiting runner's stack has grown already: a pump resumed on
		// a new goroutine grew its stack again for each command after a
		// parking (ARCHITECTURE.md §5).
		start(pp.pump.resume)
		return
	}
	go pp.pump.resume()
}

// byIDLocked is the pump with id, nil if none (an event for a pump
// resumed since). Called with mu held.
func (pk *parker) byIDLocked(id uint64) *parkedPump {
	if slot := uint32(id); int(slot) < len(pk.slots) {
		if pp := pk.slots[slot]; pp != nil && pp.id == id {
			return pp
		}
	}
	return nil
}

// parked reports how many pumps of a kind are parked: armed, their
// parking counted in parksSoFar.
func (pk *parker) parked(kind parkKind) int {
	pk.mu.Lock()
	defer pk.mu.Unlock()
	n := 0
	for _, pp := range pk.slots {
		if pp != nil && pp.kind == kind && pp.counted {
			n++
		}
	}
	return n
}

// parksSoFar reports how many pumps of a kind were parked so far.
func (pk *parker) parksSoFar(kind parkKind) int64 {
	pk.mu.Lock()
	defer pk.mu.Unlock()
	return pk.parks[kind]
}

// run resumes the pumps whose connections become readable.
func (pk *parker) run() {
	defer pk.wg.Done()
	var evs [64]syscall.EpollEvent
	for {
		var n int
		var werr error
		err := pk.rc.Read(func(fd uintptr) bool {
			n, werr = syscall.EpollWait(int(fd), evs[:], 0)
			if werr == syscall.EINTR {
				n, werr = 0, nil
			}
			return werr != nil || n > 0
		})
		if err != nil || werr != nil {
			return // closed
		}
		for i := range evs[:n] {
			id := uint64(uint32(evs[i].Fd)) | uint64(uint32(evs[i].Pad))<<32
			pk.mu.Lock()
			pp := pk.byIDLocked(id)
			pk.mu.Unlock()
			if pp != nil {
				pp.wake()
			}
		}
	}
}

// close resumes every pump still parked (their sessions end: each finds
// its connection closed) and stops watching.
func (pk *parker) close() {
	pk.mu.Lock()
	if pk.closed {
		pk.mu.Unlock()
		return
	}
	pk.closed = true
	pk.timer.Stop()
	left := make([]*parkedPump, 0, len(pk.slots)-len(pk.free))
	for _, pp := range pk.slots {
		if pp != nil {
			left = append(left, pp)
		}
	}
	pk.mu.Unlock()
	for _, pp := range left {
		pp.wake()
	}
	pk.ep.Close()
	pk.wg.Wait()
}
