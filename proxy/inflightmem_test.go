package proxy

import (
	"bytes"
	"fmt"
	"net"
	"runtime"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
)

// A client that pipelines commands toward a backend that has not answered
// them yet costs the proxy a bounded amount of memory per session, whatever
// the commands' size: each in-flight record keeps its command's sequence
// set (and, once several FETCHes are in flight, its ranges), so MaxInflight
// records of sets near MaxLine hold MaxInflight × 64 KiB. The per-command
// budget (MaxCommandBytes, 1 MiB) does not bound their sum
// (ARCHITECTURE.md §12: one command's sum; §16: memory per session).
func TestPipelinedFetchSetsMemoryBounded(t *testing.T) {
	const n = DefaultMaxInflight
	var held []string
	var base, peak atomic.Int64
	heap := func() int64 {
		runtime.GC()
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		return int64(ms.HeapAlloc)
	}
	h := scriptedHarness(t, func(c net.Conn, tag, line string) {
		if strings.HasPrefix(line, "SELECT ") {
			fmt.Fprintf(c, "* 100000 EXISTS\r\n* OK [UIDVALIDITY 7] ok\r\n%s OK [READ-WRITE] done\r\n", tag)
			return
		}
		// Answered only once the proxy sent all it may.
		if held = append(held, tag); len(held) == n {
			// All n are in flight at the proxy: measure before any answer.
			peak.Store(heap() - base.Load())
			for _, tg := range held {
				fmt.Fprintf(c, "%s OK done\r\n", tg)
			}
			held = held[:0]
		}
	}, func(o *Options) { o.Auditor = countingAuditor{o.Auditor.(*recAuditor)} })
	// A set of about 60 KB: "1,3,5,...".
	var set strings.Builder
	for i := 1; set.Len() < 60<<10; i += 2 {
		if set.Len() > 0 {
			set.WriteByte(',')
		}
		set.WriteString(strconv.Itoa(i))
	}
	var b bytes.Buffer
	for i := range n {
		fmt.Fprintf(&b, "f%d FETCH %s (FLAGS)\r\n", i, set.String())
	}
	c := h.login()
	c.transact("s SELECT INBOX", "s OK")
	base.Store(heap())
	go c.c.Write(b.Bytes())
	for i := range n {
		c.expect(fmt.Sprintf("f%d OK", i))
	}
	got := peak.Load()
	t.Logf("heap over the session's: %d KiB with %d FETCHes of a %d-byte set in flight", got>>10, n, set.Len())
	if got > 8<<20 {
		t.Errorf("the proxy holds %d KiB for one session's pipelined commands (%d of %d bytes each): not bounded per session", got>>10, n, set.Len())
	}
}
