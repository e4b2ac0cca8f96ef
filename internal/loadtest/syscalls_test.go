package loadtest

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/imapwarden/imapwarden/internal/dovecottest"
	"github.com/imapwarden/imapwarden/internal/testenv"
)

// BenchmarkNoopSyscalls measures each server's CPU and context switches
// (threads blocking and woken) per NOOP (3 s, untraced) and counts the system calls each server makes per NOOP
// (strace -f -c on the server process while one session, then 16, send
// NOOPs), imapwarden next to haproxy in the same deployment as
// BenchmarkVsHAProxy. Counts do not depend on the machine's load, unlike
// times: they say where the proxy does more work per command. The
// background (timers, the audit trail's fsync tick) is included; with
// LOADTEST_NOOPS (default 3000) NOOPs per session it stays small.
// LOADTEST_PROFILE=DIR keeps a CPU profile of imapwarden's untraced
// windows there (cpu-noop1.pprof, cpu-noop16.pprof).
//
//	go test -run '^$' -bench NoopSyscalls -benchtime 1x -v ./internal/loadtest/
func BenchmarkNoopSyscalls(b *testing.B) {
	d, strace, n := syscallsSetup(b, "LOADTEST_NOOPS", 3000)
	for _, s := range d.both(b) {
		for _, sessionsN := range []int{1, noopSessions} {
			// CPU first, untraced (strace multiplies it); profiled with
			// LOADTEST_PROFILE=DIR (imapwarden only).
			got := make(chan struct{})
			if dir := os.Getenv("LOADTEST_PROFILE"); dir != "" && s.admin != "" {
				go func() {
					defer close(got)
					save(b, s, "/debug/pprof/profile?seconds=2", filepath.Join(dir, fmt.Sprintf("cpu-noop%d.pprof", sessionsN)))
				}()
			} else {
				close(got)
			}
			cs0 := contextSwitches(b, s.pid())
			w := noops(b, s, 3*time.Second, sessionsN, false)
			cs := contextSwitches(b, s.pid()) - cs0
			<-got
			b.Logf("%s, %d session(s): CPU per NOOP %.1f us, %.0f NOOP/s, %.2f context switches per NOOP (load average %s)",
				s.name, sessionsN, w.cpuPerOp(), w.rate(), float64(cs)/float64(w.ops), loadAverage())
			b.ReportMetric(w.cpuPerOp(), fmt.Sprintf("cpu-us/op-%s-%d", s.name, sessionsN))
			counts := straceNoops(b, strace, s, sessionsN, n)
			ops := float64(sessionsN * n)
			total, line := perOp(counts, ops)
			b.Logf("%s, %d session(s), %d NOOPs: %.2f syscalls per NOOP:%s", s.name, sessionsN, int(ops), total, line)
			b.ReportMetric(total, fmt.Sprintf("syscalls/op-%s-%d", s.name, sessionsN))
		}
		s.stop()
	}
}

// syscallsSetup is what the syscall benchmarks share: haproxy, strace and
// Dovecot (populated) at hand, the deployment, and the operations to
// trace per session (the positive number in env, else def).
func syscallsSetup(b *testing.B, env string, def int) (d *deployment, strace string, n int) {
	testenv.NeedTool(b, "haproxy")
	strace = testenv.NeedTool(b, "strace")
	dovecottest.Require(b)
	n = def
	if v := os.Getenv(env); v != "" {
		var err error
		if n, err = strconv.Atoi(v); err != nil || n <= 0 {
			b.Fatalf("%s=%q: want a positive number", env, v)
		}
	}
	// An imap process per session, as BenchmarkVsHAProxy's command
	// workloads run (workload.perSession).
	dc := dovecottest.Start(b, dovecottest.Options{HighPerformance: true})
	populate(b, dc)
	d = newDeployment(b, dc.Addr)
	imapwardenBinary(b)
	b.Logf("load average before: %s", loadAverage())
	return d, strace, n
}

// both starts imapwarden and haproxy, in that order.
func (d *deployment) both(b *testing.B) []*server {
	return []*server{d.startImapwarden(b), d.startHAProxy(b, testenv.NeedTool(b, "haproxy"))}
}

// straceNoops runs perSession NOOPs on each of n sessions under strace -f
// -c attached to s and returns the calls counted, by name.
func straceNoops(b *testing.B, strace string, s *server, n, perSession int) map[string]int {
	c := sessions(b, s, n, "INBOX", nil)
	defer closeAll(c)
	for _, cn := range c {
		cn.deadline(testenv.IOTimeout() * 10)
		for range 50 { // warm: pools, first allocations
			if _, _, err := cn.do("NOOP"); err != nil {
				b.Fatal(err)
			}
		}
	}
	return straced(b, strace, s, func() {
		fanOut(b, c, perSession, func(cn *conn) error {
			_, _, err := cn.do("NOOP")
			return err
		})
	})
}

// straced runs load with strace -f -c attached to s and returns the calls
// counted, by name.
func straced(b *testing.B, strace string, s *server, load func()) map[string]int {
	out := filepath.Join(b.TempDir(), "strace.txt")
	cmd := exec.Command(strace, "-f", "-c", "-o", out, "-p", strconv.Itoa(s.pid()))
	stderr, err := cmd.StderrPipe()
	if err != nil {
		b.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	// strace says "Process N attached" once it traces every thread.
	sc := bufio.NewScanner(stderr)
	for sc.Scan() {
		if strings.Contains(sc.Text(), "attached") {
			break
		}
	}
	go func() { // keep strace from blocking on its stderr
		for sc.Scan() {
		}
	}()
	load()
	cmd.Process.Signal(syscall.SIGINT)
	if err := cmd.Wait(); err != nil {
		b.Logf("strace: %v", err)
	}
	data, err := os.ReadFile(out)
	if err != nil {
		b.Fatal(err)
	}
	return parseStraceSummary(b, data)
}

// perOp formats counts divided by ops, most frequent first, and returns
// the total per op.
func perOp(counts map[string]int, ops float64) (float64, string) {
	total := 0
	names := make([]string, 0, len(counts))
	for name, c := range counts {
		total += c
		names = append(names, name)
	}
	slices.SortFunc(names, func(x, y string) int { return counts[y] - counts[x] })
	var line strings.Builder
	for _, name := range names {
		if per := float64(counts[name]) / ops; per >= 0.01 {
			fmt.Fprintf(&line, " %s %.2f", name, per)
		}
	}
	return float64(total) / ops, line.String()
}

// contextSwitches sums the voluntary and involuntary context switches of
// the process's threads (/proc/PID/task/*/status): a thread that blocks
// (epoll, futex) and is woken again counts one.
func contextSwitches(b *testing.B, pid int) int {
	tasks, err := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/status", pid))
	if err != nil {
		b.Fatal(err)
	}
	n := 0
	for _, t := range tasks {
		data, err := os.ReadFile(t)
		if err != nil {
			continue // a thread that ended
		}
		for line := range bytes.Lines(data) {
			if f := strings.Fields(string(line)); len(f) == 2 && strings.HasSuffix(f[0], "ctxt_switches:") {
				v, _ := strconv.Atoi(f[1])
				n += v
			}
		}
	}
	return n
}

// parseStraceSummary reads strace -c's table: "% time seconds usecs/call
// calls [errors] syscall".
func parseStraceSummary(b *testing.B, data []byte) map[string]int {
	counts := map[string]int{}
	for line := range bytes.Lines(data) {
		f := strings.Fields(string(line))
		if len(f) < 5 || f[len(f)-1] == "total" || f[len(f)-1] == "syscall" {
			continue
		}
		calls, err := strconv.Atoi(f[3])
		if err != nil {
			continue
		}
		counts[f[len(f)-1]] = calls
	}
	if len(counts) == 0 {
		b.Fatalf("no strace summary in:\n%s", data)
	}
	return counts
}
