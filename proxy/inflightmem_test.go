package proxy

import (
	"bytes"
	"fmt"
	"net"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
)

// A client that pipelines commands toward a backend that has not answered
// them yet costs the proxy a bounded amount of memory per session, whatever
// the commands' size: each in-flight record keeps its command's sequence
// set (and, once several FETCHes are in flight, its ranges), so MaxInflight
// records of sets near MaxLine would hold MaxInflight × 64 KiB; the
// per-command budget (MaxCommandBytes) does not bound their sum,
// MaxInflightBytes does (ARCHITECTURE.md §12). The backend answers once the
// proxy sent all it may: all n commands, or what it sent before it waited
// for room (roomWait); the heap is measured then.
func TestPipelinedFetchSetsMemoryBounded(t *testing.T) {
	const n = DefaultMaxInflight
	var (
		mu       sync.Mutex
		held     []string
		be       net.Conn
		waited   bool // the proxy waited for room: answer all from then on
		measured bool
		base     atomic.Int64
		peak     atomic.Int64
		charged  atomic.Int64
	)
	heap := func() int64 {
		runtime.GC()
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		return int64(ms.HeapAlloc)
	}
	// answer completes the commands the backend holds, measuring the
	// heap before the first are; mu held.
	answer := func() {
		if !measured {
			measured = true
			peak.Store(heap() - base.Load())
		}
		for _, tg := range held {
			fmt.Fprintf(be, "%s OK done\r\n", tg)
		}
		held = held[:0]
	}
	// The proxy waits for room with all it may hold in flight: from then
	// on the backend answers at once (the commands it has, else the next).
	roomWait = func(h int64) {
		charged.Store(h)
		mu.Lock()
		defer mu.Unlock()
		if waited = true; len(held) > 0 {
			answer()
		}
	}
	t.Cleanup(func() { roomWait = nil })
	h := scriptedHarness(t, func(c net.Conn, tag, line string) {
		if strings.HasPrefix(line, "SELECT ") {
			fmt.Fprintf(c, "* 100000 EXISTS\r\n* OK [UIDVALIDITY 7] ok\r\n%s OK [READ-WRITE] done\r\n", tag)
			return
		}
		mu.Lock()
		defer mu.Unlock()
		be = c
		// Answered only once the proxy sent all it may: all n, or as
		// many as it holds before it waits for room.
		if held = append(held, strings.Clone(tag)); len(held) == n || waited { // a tag, not its line
			answer()
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
	runtime.KeepAlive(&b) // in the base: counted in each measure alike
	got := peak.Load()
	t.Logf("heap over the session's: %d KiB with FETCHes of a %d-byte set in flight (each charged %d bytes)", got>>10, set.Len(), charged.Load())
	if got > 8<<20 {
		t.Errorf("the proxy holds %d KiB for one session's pipelined commands (%d of %d bytes each): not bounded per session", got>>10, n, set.Len())
	}
}

// A client pump waiting for room under MaxInflightBytes waits only for
// commands the backend holds whole, so each wait ends: a command with a
// synchronizing literal (a message, a buffered mailbox name) pipelined
// behind a full budget gets its "+" once earlier ones complete, and FETCHes
// each over the budget alone go one at a time (ARCHITECTURE.md §12).
func TestInflightBytesWaitWithLiterals(t *testing.T) {
	var waits atomic.Int64
	roomWait = func(int64) { waits.Add(1) }
	t.Cleanup(func() { roomWait = nil })
	h := newDovecotHarness(t, nil, func(o *Options) { o.Limits.MaxInflightBytes = 1 << 10 })
	c := h.login()
	c.transact("s SELECT INBOX", "s OK")
	var b strings.Builder
	const n = 20
	for i := range n {
		fmt.Fprintf(&b, "f%d UID FETCH 1:* (FLAGS)\r\n", i)
	}
	msg := "Subject: room\r\n\r\nhello\r\n"
	fmt.Fprintf(&b, "a APPEND INBOX {%d}\r\n", len(msg))
	c.sendRaw(b.String())
	tags := map[string]bool{}
	// await reads lines to a "+" (want true) or to the tagged answers of
	// every tag sent, checking each is OK.
	await := func(plus bool) {
		t.Helper()
		for {
			l := c.line()
			if plus && strings.HasPrefix(l, "+") {
				return
			}
			if tag, rest, _ := strings.Cut(l, " "); tags[tag] {
				if !strings.HasPrefix(rest, "OK") {
					t.Fatalf("%q", l)
				}
				delete(tags, tag)
				if !plus && len(tags) == 0 {
					return
				}
			}
		}
	}
	for i := range n {
		tags[fmt.Sprintf("f%d", i)] = true
	}
	await(true)
	tags["a"] = true
	b.Reset()
	b.WriteString(msg + "\r\n")
	for i := range n {
		fmt.Fprintf(&b, "g%d UID FETCH 1:* (BODY.PEEK[])\r\n", i)
		tags[fmt.Sprintf("g%d", i)] = true
	}
	b.WriteString("m STATUS {5}\r\n")
	c.sendRaw(b.String())
	await(true)
	c.sendRaw("INBOX (MESSAGES)\r\n")
	tags["m"] = true
	await(false)
	if waits.Load() == 0 {
		t.Errorf("the client pump never waited for room under a 1 KiB MaxInflightBytes")
	}
}
