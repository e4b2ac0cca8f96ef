package proxy

import (
	"fmt"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/imapwarden/imapwarden/internal/testenv"
)

// Sessions one after the other run on the same few goroutines: a
// session's front end and its backend pump take runners that earlier
// sessions left, instead of a new goroutine each (whose stack would grow
// again through the TLS handshake).
func TestRunnersReused(t *testing.T) {
	h := newHarness(t)
	const n = 20
	for range n {
		c := h.login()
		c.transact("a LOGOUT", "a OK")
		c.c.Close()
		waitFor(t, func() bool { return len(h.srv.Sessions()) == 0 })
	}
	// The first session's two, and one more when a runner was still
	// finishing its last session as the next one came.
	if got := h.srv.runners.started.Load(); got > 4 {
		t.Errorf("%d goroutines started for %d sessions, want at most 4", got, n)
	}
}

// At most max runners wait; the others end as they finish. close ends
// those waiting.
func TestRunnersBounded(t *testing.T) {
	r := newRunners()
	r.max = 2
	const n = 5
	var ran sync.WaitGroup
	gate := make(chan struct{})
	ran.Add(n)
	for range n {
		r.run(func() { <-gate; ran.Done() })
	}
	if got := r.started.Load(); got != n {
		t.Fatalf("%d goroutines started for %d functions running at once", got, n)
	}
	close(gate)
	ran.Wait()
	waitFor(t, func() bool { return countRunners(r) == 2 }) // those over max ended
	// A waiting runner takes the next function.
	done := make(chan struct{})
	r.run(func() { close(done) })
	<-done
	if got := r.started.Load(); got != n {
		t.Errorf("%d goroutines started, want %d: a waiting runner was not used", got, n)
	}
	r.close()
	waitFor(t, func() bool { return countRunners(r) == 0 }) // those waiting ended
}

// countRunners counts r's goroutines (other tests may run their own).
func countRunners(r *runners) int {
	n := 0
	for _, g := range ourGoroutines() {
		if strings.Contains(g, fmt.Sprintf("(*runners).loop(%p", r)) {
			n++
		}
	}
	return n
}

// A waiting runner keeps nothing of what it ran: the last session it ran
// (its TLS connection's buffers with it) can be collected.
func TestRunnerLetsGoOfItsLastRun(t *testing.T) {
	r := newRunners()
	defer r.close()
	collected := make(chan struct{})
	done := make(chan struct{})
	func() {
		obj := new([1024]byte)
		runtime.AddCleanup(obj, func(c chan struct{}) { close(c) }, collected)
		r.run(func() { obj[0] = 1; close(done) })
	}()
	<-done
	waitFor(t, func() bool { return r.idle.Load() == 1 })
	deadline := time.Now().Add(testenv.IOTimeout())
	for {
		runtime.GC()
		select {
		case <-collected:
			return
		case <-time.After(10 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatal("what the waiting runner ran last is still reachable")
		}
	}
}
