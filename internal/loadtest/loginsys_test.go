package loadtest

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// BenchmarkLoginSyscalls is BenchmarkNoopSyscalls for the "logins"
// workload of BenchmarkVsHAProxy (TLS handshake, LOGIN, LOGOUT on a new
// connection): each server's CPU per login (3 s, loginClients clients,
// untraced), then the system calls it makes per login under strace -f -c
// while one client logs in LOADTEST_LOGINS times (default 300), one after
// the other. The count includes the background (the audit trail's fsync
// tick, timers). LOADTEST_PROFILE=DIR keeps a CPU profile of imapwarden's
// untraced window there (cpu-login.pprof).
//
//	go test -run '^$' -bench LoginSyscalls -benchtime 1x -v ./internal/loadtest/
func BenchmarkLoginSyscalls(b *testing.B) {
	d, strace, n := syscallsSetup(b, "LOADTEST_LOGINS", 300)
	for _, s := range d.both(b) {
		for range 20 { // warm: pools, first allocations
			if err := login(s.addr); err != nil {
				b.Fatal(err)
			}
		}
		got := make(chan struct{})
		if dir := os.Getenv("LOADTEST_PROFILE"); dir != "" && s.admin != "" {
			go func() {
				defer close(got)
				save(b, s, "/debug/pprof/profile?seconds=2", filepath.Join(dir, "cpu-login.pprof"))
			}()
		} else {
			close(got)
		}
		cs0, mf0 := contextSwitches(b, s.pid()), minorFaults(b, s.pid())
		w := measure(b, s, 3*time.Second, loginClients, false, func(int) (int64, error) { return 0, login(s.addr) })
		cs, mf := contextSwitches(b, s.pid())-cs0, minorFaults(b, s.pid())-mf0
		<-got
		b.Logf("%s: CPU per login %.1f us, %.0f logins/s, %.2f context switches and %.2f page faults per login (load average %s)",
			s.name, w.cpuPerOp(), w.rate(), float64(cs)/float64(w.ops), float64(mf)/float64(w.ops), loadAverage())
		b.ReportMetric(w.cpuPerOp(), fmt.Sprintf("cpu-us/login-%s", s.name))
		counts := straced(b, strace, s, func() {
			for range n {
				if err := login(s.addr); err != nil {
					b.Fatal(err)
				}
			}
		})
		total, line := perOp(counts, float64(n))
		b.Logf("%s, %d logins: %.2f syscalls per login:%s", s.name, n, total, line)
		b.ReportMetric(total, fmt.Sprintf("syscalls/login-%s", s.name))
		s.stop()
	}
}

// login is one operation of the "logins" workload.
func login(addr string) error {
	c, err := dial(addr)
	if err != nil {
		return err
	}
	defer c.close()
	if _, _, err := c.do("LOGIN alice alice-pw"); err != nil {
		return err
	}
	_, _, err = c.do("LOGOUT")
	return err
}

// minorFaults is the process's minor page faults (proc(5) stat field 10):
// memory the runtime gave back to the kernel and touched again.
func minorFaults(b *testing.B, pid int) int64 {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		b.Fatal(err)
	}
	i := bytes.LastIndexByte(data, ')')
	f := strings.Fields(string(data[i+1:]))
	if i < 0 || len(f) < 8 {
		b.Fatalf("stat: %q", data)
	}
	n, err := strconv.ParseInt(f[7], 10, 64)
	if err != nil {
		b.Fatal(err)
	}
	return n
}
