package loadtest

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/imapwarden/imapwarden/internal/dovecottest"
)

// BenchmarkSessionMemory breaks the resident memory of imapwarden's
// sessions down, as BenchmarkVsHAProxy's memory round opens them (2000
// sessions idle in IDLE, then each sending a NOOP every 3 s; no GC or
// scavenging forced) and from the runtime's own figures (/metrics), per
// session: what the heap's objects take (live and garbage), the heap in
// use (objects and the free room of their spans), the free pages not yet
// returned to the system, goroutine stacks, the GC's next goal, and the
// goroutines with their average stack (ARCHITECTURE.md §16):
//
//	go test -run '^$' -bench SessionMemory -benchtime 1x -v ./internal/loadtest/
//
// RSS per session is about the GC's goal: twice the live heap at the
// default GOGC, plus the stacks twice (the goal counts them).
// LOADTEST_SESSIONS changes the 2000; LOADTEST_BINARY measures a binary
// built elsewhere (an older commit's, to compare); LOADTEST_PROFILE=DIR
// saves allocation profiles before and after the active phase.
func BenchmarkSessionMemory(b *testing.B) {
	dovecottest.Require(b)
	sz := loadSizes(b)
	dc := dovecottest.Start(b, dovecottest.Options{MaxSessions: sz.many + warmSessions + 100})
	populate(b, dc)
	d := newDeployment(b, dc.Addr)
	b.Logf("load average before: %s", loadAverage())
	s := d.startImapwarden(b)
	defer s.stop()
	warm := sessions(b, s, warmSessions, "INBOX", idle)
	defer closeAll(warm)
	rss0, m0 := rssKiB(b, s.pid()), goMemory(b, s)
	many := sessions(b, s, sz.many, "INBOX", idle)
	defer closeAll(many)
	n := float64(sz.many)
	show := func(what string, rss int, m map[string]float64) {
		kib := func(name string) float64 { return (m[name] - m0[name]) / 1024 / n }
		unreturned := func(m map[string]float64) float64 {
			return m["go_memstats_heap_idle_bytes"] - m["go_memstats_heap_released_bytes"]
		}
		b.Logf("%s, %d sessions, KiB per session: RSS %.1f; heap objects %.1f, heap in use %.1f, free pages kept %.1f, stacks %.1f, GC goal %.1f; %.3f goroutines per session; %.0f GCs so far",
			what, sz.many, float64(rss-rss0)/n, kib("go_memstats_heap_alloc_bytes"), kib("go_memstats_heap_inuse_bytes"),
			(unreturned(m)-unreturned(m0))/1024/n, kib("go_memstats_stack_inuse_bytes"), kib("go_memstats_next_gc_bytes"),
			(m["go_goroutines"]-m0["go_goroutines"])/n, m["go_gc_duration_seconds_count"])
		b.ReportMetric(float64(rss-rss0)/n, what+"-RSS-KiB/session")
		b.ReportMetric(kib("go_memstats_stack_inuse_bytes"), what+"-stack-KiB/session")
	}
	show("idle", rssKiB(b, s.pid()), goMemory(b, s))
	dir := os.Getenv("LOADTEST_PROFILE")
	if dir != "" {
		save(b, s, "/debug/pprof/allocs", filepath.Join(dir, "allocs-idle.pprof"))
	}
	active := activeRSS(b, s, many, sz.cycles)
	show("active", active, goMemory(b, s))
	if dir != "" {
		save(b, s, "/debug/pprof/allocs", filepath.Join(dir, "allocs-active.pprof"))
		b.Logf("what the active sessions' commands allocated: go tool pprof -sample_index=alloc_space -top -diff_base %s %s",
			filepath.Join(dir, "allocs-idle.pprof"), filepath.Join(dir, "allocs-active.pprof"))
	}
	b.Logf("load average after: %s", loadAverage())
}
