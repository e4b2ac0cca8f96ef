package loadtest

import (
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/imapwarden/imapwarden/internal/dovecottest"
	"github.com/imapwarden/imapwarden/internal/testenv"
)

// BenchmarkSpacedNoops reports imapwarden's CPU per NOOP when each of 100
// sessions sends one every 50 ms: longer than the 10 ms a pump lingers
// after work, so both of a session's pumps park and resume for every
// command (limits.park_after, ARCHITECTURE.md §5), the price of holding
// no goroutine between them. With park_after: 500ms they lingered on
// instead:
//
//	go test -run '^$' -bench SpacedNoops -benchtime 1x -v ./internal/loadtest/
//
// LOADTEST_BINARY compares another build.
func BenchmarkSpacedNoops(b *testing.B) {
	dovecottest.Require(b)
	dc := dovecottest.Start(b, dovecottest.Options{MaxSessions: 300})
	populate(b, dc)
	d := newDeployment(b, dc.Addr)
	s := d.startImapwarden(b)
	defer s.stop()
	const window = 8 * time.Second
	ops, perOp := spacedNoops(b, s, window)
	b.Logf("%d NOOPs, %v apart in each of %d sessions: %.1f us of CPU per NOOP; load average %s", ops, spacedGap, spacedSessions, perOp, loadAverage())
	b.ReportMetric(perOp, "cpu-us/op")
}

// spacedSessions sessions send a NOOP each spacedGap (staggered).
const (
	spacedSessions = 100
	spacedGap      = 50 * time.Millisecond
)

// spacedNoops runs spacedSessions sessions on s, each sending a NOOP every
// spacedGap, for window, and returns the NOOPs answered and s's CPU per
// NOOP in µs.
func spacedNoops(b *testing.B, s *server, window time.Duration) (int64, float64) {
	c := sessions(b, s, spacedSessions, "INBOX", nil)
	defer closeAll(c)
	var (
		group sync.WaitGroup
		ops   atomic.Int64
	)
	cpu0 := cpuTime(b, s.pid())
	end := time.Now().Add(window)
	for i := range c {
		group.Go(func() {
			next := time.Now().Add(spacedGap * time.Duration(i) / spacedSessions)
			for {
				time.Sleep(time.Until(next))
				if time.Now().After(end) {
					return
				}
				c[i].deadline(testenv.IOTimeout())
				if _, _, err := c[i].do("NOOP"); err != nil {
					b.Error(err)
					return
				}
				ops.Add(1)
				next = time.Now().Add(spacedGap)
			}
		})
	}
	group.Wait()
	cpu := cpuTime(b, s.pid()) - cpu0
	return ops.Load(), float64(cpu.Microseconds()) / float64(max(ops.Load(), 1))
}
