package proxy

import (
	"runtime"
	"sync"
	"sync/atomic"
)

// runners keeps a few goroutines that ran a session's front end or a
// pump and wait for the next one (a session, a backend pump, a parked
// pump resumed). A new goroutine's stack starts
// small and is copied each time it doubles, several times in a TLS
// handshake and the login after it (runtime.newstack: about 6% of the
// CPU per login); a reused goroutine's stack has grown already. At most
// max wait at once, so they hold a bounded amount of memory, which the
// GC shrinks as it does any idle goroutine's stack. They end once the
// server has no session left (Server.release): a session never waits
// for one, nor outlives the server's accounting because of one.
type runners struct {
	work     chan func()
	stop     chan struct{}
	stopOnce sync.Once
	idle     atomic.Int32
	max      int32
	started  atomic.Int64 // goroutines started (tests)
	reused   atomic.Int64 // functions a waiting runner took (tests)
}

func newRunners() *runners {
	return &runners{
		work: make(chan func()),
		stop: make(chan struct{}),
		max:  int32(max(8, 4*runtime.GOMAXPROCS(0))),
	}
}

// run runs f on a waiting runner, or on a new goroutine when none waits.
func (r *runners) run(f func()) {
	select {
	case r.work <- f:
		return
	default:
	}
	r.started.Add(1)
	go r.loop(f)
}

func (r *runners) loop(f func()) {
	for {
		f() // dead once it returns: a waiting runner keeps no session alive
		if r.idle.Add(1) > r.max {
			r.idle.Add(-1)
			return
		}
		select {
		case f = <-r.work:
			r.idle.Add(-1)
			// Counted here, before f runs, so that whatever f does is
			// seen after the count (counted by run, a test could see
			// f's reply first).
			r.reused.Add(1)
		case <-r.stop:
			r.idle.Add(-1)
			return
		}
	}
}

// close ends the waiting runners; run must not be called after it.
func (r *runners) close() { r.stopOnce.Do(func() { close(r.stop) }) }
