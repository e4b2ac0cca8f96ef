package loadtest

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/imapwarden/imapwarden/internal/dovecottest"
	"github.com/imapwarden/imapwarden/internal/testenv"
)

// BenchmarkInstructions counts the user-space instructions each server
// runs per command under callgrind: a NOOP at 1 and 16 sessions and a UID
// FETCH 1:* (FLAGS) over 1,000 messages at 8 sessions, imapwarden next to
// haproxy in the deployment of BenchmarkVsHAProxy. Unlike CPU time, the
// counts hardly depend on the machine's load, so they show what a change
// to the relay saves; the kernel's share is what BenchmarkNoopSyscalls
// and BenchmarkFlagsSyscalls count. Not exact: under callgrind the proxy
// runs some 50 times slower, so its pumps park more often than they
// would (ARCHITECTURE.md §5), and how often varies: imapwarden's totals
// differ by up to 15% between runs of one build (haproxy's by 1%); a
// function's own count and its calls per command vary less. Valgrind
// offers no SHA-NI, so the audit chain's HMAC counts several times what
// it runs natively. Instrumentation is on only while the
// counted commands run (after each session's warm-up), background
// (timers, the audit trail's fsync tick) included. Go runs with
// asyncpreemptoff=1 (callgrind does not follow its preemption signals).
// LOADTEST_PROFILE=DIR keeps each callgrind output there
// (callgrind.NAME-WORKLOAD, for callgrind_annotate --inclusive=yes).
//
//	go test -run '^$' -bench Instructions -benchtime 1x -timeout 60m -v ./internal/loadtest/
func BenchmarkInstructions(b *testing.B) {
	testenv.NeedTool(b, "haproxy")
	valgrind := testenv.NeedTool(b, "valgrind")
	control := testenv.NeedTool(b, "callgrind_control")
	dovecottest.Require(b)
	dc := dovecottest.Start(b, dovecottest.Options{HighPerformance: true})
	populate(b, dc)
	d := newDeployment(b, dc.Addr)
	out := b.TempDir()
	d.wrap = []string{valgrind, "--tool=callgrind", "--instr-atstart=no",
		"--callgrind-out-file=" + filepath.Join(out, "callgrind.%p")}
	d.env = append(d.env, "GODEBUG="+godebug(d.env, "asyncpreemptoff=1"))
	imapwardenBinary(b)
	noop := func(cn *conn) error {
		_, _, err := cn.do("NOOP")
		return err
	}
	fetch := func(cn *conn) error {
		k, _, err := cn.do("UID FETCH 1:* (FLAGS)")
		if err == nil && k != smallMessages {
			err = fmt.Errorf("UID FETCH: %d responses, want %d", k, smallMessages)
		}
		return err
	}
	workloads := []struct {
		name     string
		sessions int
		mailbox  string
		ops      int // per session
		op       func(*conn) error
	}{
		{"noop1", 1, "INBOX", 2000, noop},
		{"noop16", noopSessions, "INBOX", 200, noop},
		{"flags", flagsSessions, "Small", 20, fetch},
	}
	for _, s := range d.both(b) {
		for _, wl := range workloads {
			c := sessions(b, s, wl.sessions, wl.mailbox, nil)
			for _, cn := range c {
				cn.deadline(testenv.IOTimeout() * 10)
				for range 20 { // warm: pools, first allocations
					if err := wl.op(cn); err != nil {
						b.Fatal(err)
					}
				}
			}
			// A dump zeroes the counters; one after "-i off" counts
			// nonsense.
			callgrind(b, control, s, "-z")
			callgrind(b, control, s, "-i", "on")
			fanOut(b, c, wl.ops, wl.op)
			callgrind(b, control, s, "-d")
			callgrind(b, control, s, "-i", "off")
			closeAll(c)
			file := lastDump(b, out, s.pid())
			ir := callgrindTotal(b, file)
			perOp := float64(ir) / float64(wl.sessions*wl.ops)
			b.Logf("%s, %s: %.0f instructions per command (%d commands)", s.name, wl.name, perOp, wl.sessions*wl.ops)
			b.ReportMetric(perOp, fmt.Sprintf("instr/op-%s-%s", wl.name, s.name))
			if dir := os.Getenv("LOADTEST_PROFILE"); dir != "" {
				data, err := os.ReadFile(file)
				if err == nil {
					err = os.WriteFile(filepath.Join(dir, fmt.Sprintf("callgrind.%s-%s", s.name, wl.name)), data, 0o644)
				}
				if err != nil {
					b.Fatal(err)
				}
			}
			os.Remove(file)
		}
		s.stop()
	}
}

// godebug is the GODEBUG of env with add appended.
func godebug(env []string, add string) string {
	v := ""
	for _, e := range env {
		if s, ok := strings.CutPrefix(e, "GODEBUG="); ok {
			v = s
		}
	}
	if v == "" {
		return add
	}
	return v + "," + add
}

// callgrind runs callgrind_control with args, one command, on s (it
// sends only the last of several).
func callgrind(b *testing.B, control string, s *server, args ...string) {
	out, err := exec.Command(control, append(args, strconv.Itoa(s.pid()))...).CombinedOutput()
	if err != nil {
		b.Fatalf("callgrind_control %v: %v\n%s", args, err, out)
	}
}

// lastDump is the newest dump callgrind wrote for pid in dir
// (callgrind.PID.N).
func lastDump(b *testing.B, dir string, pid int) string {
	files, err := filepath.Glob(filepath.Join(dir, fmt.Sprintf("callgrind.%d.*", pid)))
	if err != nil || len(files) == 0 {
		b.Fatalf("no callgrind dump for %d in %s (%v)", pid, dir, err)
	}
	best, bestN := "", -1
	for _, f := range files {
		n, err := strconv.Atoi(f[strings.LastIndexByte(f, '.')+1:])
		if err == nil && n > bestN {
			best, bestN = f, n
		}
	}
	return best
}

// callgrindTotal reads a dump's "summary:" (or "totals:") line: the
// instructions it counted.
func callgrindTotal(b *testing.B, file string) int64 {
	data, err := os.ReadFile(file)
	if err != nil {
		b.Fatal(err)
	}
	for line := range bytes.Lines(data) {
		for _, p := range []string{"summary:", "totals:"} {
			if v, ok := bytes.CutPrefix(line, []byte(p)); ok {
				n, err := strconv.ParseInt(string(bytes.Fields(v)[0]), 10, 64)
				if err != nil {
					b.Fatalf("%s: %q: %v", file, line, err)
				}
				return n
			}
		}
	}
	b.Fatalf("%s: no summary", file)
	return 0
}
