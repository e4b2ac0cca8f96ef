//go:build unix

package proxy

import (
	"syscall"
	"testing"
	"time"
)

// BenchmarkRelay measures the relay's path per command against a backend
// that answers from prepared bytes: NOOP (one untagged line and the
// completion), UID FETCH 1:* (FLAGS) answered by 1,000 FETCH lines (the
// small-response path of issue 12), and bodies of 1 KB and 1 MiB. Client, proxy and backend share the
// process, so ns/op is the whole round trip's CPU and waits:
//
//	go test -run '^$' -bench BenchmarkRelay -count 6 ./proxy/
func BenchmarkRelay(b *testing.B) {
	c := newFixedRelay(b, 1000)
	c.rounder("s SELECT INBOX")()
	for _, bc := range []struct{ name, cmd string }{
		{"NOOP", "n NOOP"},
		{"FLAGS1000", "f UID FETCH 1:* (FLAGS)"},
		{"BODY1K", "b UID FETCH 1 (BODY.PEEK[])"},
		{"BODY1M", "b UID FETCH 2 (BODY.PEEK[])"},
	} {
		b.Run(bc.name, func(b *testing.B) {
			round := c.rounder(bc.cmd)
			round()
			b.ReportAllocs()
			cpu0 := processCPU(b)
			for b.Loop() {
				round()
			}
			// CPU is steadier than wall time on a shared machine.
			b.ReportMetric(float64(processCPU(b)-cpu0)/float64(b.N), "cpu-ns/op")
		})
	}
}

// processCPU returns the CPU time (user and system) the process has used.
func processCPU(tb testing.TB) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		tb.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
