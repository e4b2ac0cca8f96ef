package loadtest

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/imapwarden/imapwarden/internal/testenv"
)

// BenchmarkFlagsSyscalls is BenchmarkNoopSyscalls for the small-response
// budget: each server's CPU and context switches per UID FETCH 1:* (FLAGS)
// over 1,000 messages at 8 sessions (3 s, untraced), then the system calls
// per fetch (strace -f -c on the server process while each session makes
// LOADTEST_FETCHES, default 50, more), imapwarden next to haproxy in the
// deployment of BenchmarkVsHAProxy. LOADTEST_PROFILE=DIR keeps a CPU
// profile of imapwarden's untraced window there (cpu-flags.pprof).
//
//	go test -run '^$' -bench FlagsSyscalls -benchtime 1x -v ./internal/loadtest/
func BenchmarkFlagsSyscalls(b *testing.B) {
	d, strace, n := syscallsSetup(b, "LOADTEST_FETCHES", 50)
	for _, s := range d.both(b) {
		c := sessions(b, s, flagsSessions, "Small", nil)
		fetch := func(cn *conn) error {
			k, _, err := cn.do("UID FETCH 1:* (FLAGS)")
			if err == nil && k != smallMessages {
				err = fmt.Errorf("UID FETCH: %d responses, want %d", k, smallMessages)
			}
			return err
		}
		for _, cn := range c {
			cn.deadline(testenv.IOTimeout() * 10)
			if err := fetch(cn); err != nil { // warm: pools, first allocations
				b.Fatal(err)
			}
		}
		got := make(chan struct{})
		if dir := os.Getenv("LOADTEST_PROFILE"); dir != "" && s.admin != "" {
			go func() {
				defer close(got)
				save(b, s, "/debug/pprof/profile?seconds=2", filepath.Join(dir, "cpu-flags.pprof"))
			}()
		} else {
			close(got)
		}
		cs0 := contextSwitches(b, s.pid())
		w := measure(b, s, 3*time.Second, len(c), false, func(i int) (int64, error) { return 0, fetch(c[i]) })
		cs := contextSwitches(b, s.pid()) - cs0
		<-got
		b.Logf("%s: CPU per FLAGS fetch %.1f us, %.0f fetches/s, %.2f context switches per fetch (load average %s)",
			s.name, w.cpuPerOp(), w.rate(), float64(cs)/float64(w.ops), loadAverage())
		b.ReportMetric(w.cpuPerOp(), "cpu-us/op-"+s.name)
		counts := straced(b, strace, s, func() { fanOut(b, c, n, fetch) })
		total, line := perOp(counts, float64(len(c)*n))
		b.Logf("%s, %d sessions, %d fetches: %.2f syscalls per fetch:%s", s.name, len(c), len(c)*n, total, line)
		b.ReportMetric(total, "syscalls/op-"+s.name)
		closeAll(c)
		s.stop()
	}
}

// fanOut runs op perSession times on each of c, the sessions at once.
func fanOut(b *testing.B, c []*conn, perSession int, op func(*conn) error) {
	errs := make(chan error, len(c))
	for _, cn := range c {
		go func() {
			for range perSession {
				if err := op(cn); err != nil {
					errs <- err
					return
				}
			}
			errs <- nil
		}()
	}
	for range c {
		if err := <-errs; err != nil {
			b.Fatal(err)
		}
	}
}
