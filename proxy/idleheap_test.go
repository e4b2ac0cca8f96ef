package proxy

import (
	"bufio"
	"crypto/tls"
	"fmt"
	"net"
	"os"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
	"unsafe"
	"weak"

	"github.com/imapwarden/imapwarden/internal/testenv"
)

// heapSites is the live heap of the proxy's side of the process (every
// allocation but those whose stack passes through a test file: the test's
// clients and its backend), by allocation site, as of the last GC.
var depth = 4

func heapSites() (total, ours int64, sites map[string]int64) {
	var recs []runtime.MemProfileRecord
	n, _ := runtime.MemProfile(nil, true)
	for {
		recs = make([]runtime.MemProfileRecord, n+64)
		var ok bool
		if n, ok = runtime.MemProfile(recs, true); ok {
			recs = recs[:n]
			break
		}
	}
	sites = map[string]int64{}
	for _, r := range recs {
		b := r.InUseBytes()
		if b == 0 {
			continue
		}
		frames := runtime.CallersFrames(r.Stack())
		var names []string
		test, user, own, leaf := false, false, false, true
		for {
			f, more := frames.Next()
			if strings.HasSuffix(f.File, "_test.go") || strings.HasPrefix(f.Function, "testing.") {
				test = true
				break
			}
			if !strings.HasPrefix(f.Function, "runtime.") {
				user = true
			}
			// The allocation's own site: the first frame past the
			// runtime, maps, pools and buffers our code asked for.
			if leaf && !strings.HasPrefix(f.Function, "runtime.") && !strings.HasPrefix(f.Function, "internal/runtime/") &&
				!strings.HasPrefix(f.Function, "sync.") && !strings.HasPrefix(f.Function, "bufio.") {
				leaf, own = false, strings.HasPrefix(f.Function, "github.com/imapwarden/imapwarden/")
			}
			if len(names) < depth && !strings.HasPrefix(f.Function, "runtime.") {
				names = append(names, strings.TrimPrefix(f.Function, "github.com/imapwarden/imapwarden/"))
			}
			if !more {
				break
			}
		}
		// Only the runtime's own frames: goroutine descriptors (never
		// freed, reused; the test's backend runs a goroutine a session).
		if test || !user {
			continue
		}
		total += b
		if own {
			ours += b
		}
		sites[strings.Join(names, " < ")] += b
	}
	return total, ours, sites
}

// settledHeap runs the GC until the profile shows what survives it: the
// pools' victim caches are emptied by the second cycle, and the profile
// may lag two cycles behind (runtime.MemProfile).
func settledHeap() (total, ours int64, sites map[string]int64) {
	for range 4 {
		runtime.GC()
	}
	return heapSites()
}

// idleSessionHeap opens n authenticated TLS sessions in IDLE (after warm
// ones, so that pools and first-use allocations are not counted), waits
// until every pump parked, and returns the proxy's live heap per session,
// the part of it allocated by our own code (not crypto/tls's or net's),
// and the sites.
func idleSessionHeap(t *testing.T, n int) (total, ours float64, sites map[string]int64) {
	old := runtime.MemProfileRate
	runtime.MemProfileRate = 1
	t.Cleanup(func() { runtime.MemProfileRate = old })
	h, _ := parkHarness(t)
	const warm = 5
	open := func() {
		// The handshake's size stays in crypto/tls's buffers: an X25519
		// key share, as BenchmarkVsHAProxy's clients send, not the
		// default's post-quantum one (1.2 KB more).
		cfg := clientTLS("imap")
		cfg.CurvePreferences = []tls.CurveID{tls.X25519}
		conn, err := tls.Dial("tcp", h.imaps, cfg)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { conn.Close() })
		c := &tconn{t: t, c: conn, br: bufio.NewReader(conn)}
		c.expect("* OK")
		c.transact("l1 LOGIN alice alice-pw", "l1 OK")
		c.transact("s SELECT INBOX", "s OK")
		c.send("i IDLE")
		c.expect("+ ")
	}
	for range warm {
		open()
	}
	waitParked(t, h, warm)
	waitClientsParked(t, h, warm)
	waitNoPumpGoroutines(t)
	before, oursBefore, sitesBefore := settledHeap()
	for range n {
		open()
	}
	waitParked(t, h, warm+n)
	waitClientsParked(t, h, warm+n)
	waitNoPumpGoroutines(t)
	after, oursAfter, sites := settledHeap()
	for k, v := range sitesBefore {
		sites[k] -= v
	}
	return float64(after-before) / float64(n), float64(oursAfter-oursBefore) / float64(n), sites
}

// TestIdleSessionHeap bounds the live heap an idle authenticated TLS
// session holds (ARCHITECTURE.md §16): every allocation whose stack
// passes through the proxy's code and not through the test's, counted
// exactly (MemProfileRate 1) after the GC.
func TestIdleSessionHeap(t *testing.T) {
	per, ours, sites := idleSessionHeap(t, 100)
	t.Logf("live heap per idle TLS session: %.0f bytes, %.0f of them allocated by imapwarden's code", per, ours)
	// Generous for what crypto/tls and net keep (about 4 KB with Go 1.26:
	// AES-GCM states, the Conn, its record buffers, descriptors); closer
	// for our own (2.8 KB; 4.3 KB before the structs were packed and the
	// prefix buffer pooled, 5.7 KB before that).
	// 2.6 KB since the relay's channels, the backend pump's work set, the
	// parking's timer and the session's decision input were no longer
	// kept, duplicates were dropped and the structs below shrunk (3.6 KB
	// before).
	const most, mostOurs = 12 << 10, 2750
	if per > most {
		t.Errorf("an idle TLS session keeps %.0f bytes of live heap, want at most %d", per, most)
	}
	if ours > mostOurs {
		t.Errorf("an idle TLS session keeps %.0f bytes of live heap allocated by our code, want at most %d", ours, mostOurs)
	}
	if testing.Verbose() || os.Getenv("IDLEHEAP_SITES") != "" {
		keys := make([]string, 0, len(sites))
		for k := range sites {
			keys = append(keys, k)
		}
		slices.SortFunc(keys, func(a, b string) int { return int(sites[b] - sites[a]) })
		var sb strings.Builder
		for _, k := range keys {
			if v := sites[k] / 100; v >= 8 {
				fmt.Fprintf(&sb, "%6d  %s\n", v, k)
			}
		}
		t.Logf("bytes per session by site:\n%s", sb.String())
	}
}

func init() {
	if v := os.Getenv("IDLEHEAP_DEPTH"); v != "" {
		fmt.Sscan(v, &depth)
	}
}

// trackPools makes the buffer pools record every buffer they create (weak
// pointers: the record keeps none alive) until the test ends.
func trackPools(t *testing.T) (live func() (readers, writers int)) {
	var (
		mu sync.Mutex
		rs []weak.Pointer[bufio.Reader]
		ws []weak.Pointer[bufio.Writer]
	)
	for _, rp := range []**readerPool{&clientReaders, &backendReaders} {
		old := *rp
		size := old.p.Get().(*bufio.Reader).Size()
		*rp = &readerPool{trackedPool(&mu, &rs, func() *bufio.Reader { return bufio.NewReaderSize(nil, size) })}
		t.Cleanup(func() { *rp = old })
	}
	for _, wp := range []**writerPool{&clientWriters, &backendWriters} {
		old := *wp
		size := old.p.Get().(*bufio.Writer).Size()
		*wp = &writerPool{trackedPool(&mu, &ws, func() *bufio.Writer { return bufio.NewWriterSize(nil, size) })}
		t.Cleanup(func() { *wp = old })
	}
	return func() (readers, writers int) {
		for range 4 {
			runtime.GC() // the pools' victim caches go by the second
		}
		mu.Lock()
		defer mu.Unlock()
		return alive(rs), alive(ws)
	}
}

func trackedPool[T any](mu *sync.Mutex, made *[]weak.Pointer[T], mk func() *T) sync.Pool {
	return sync.Pool{New: func() any {
		v := mk()
		mu.Lock()
		*made = append(*made, weak.Make(v))
		mu.Unlock()
		return v
	}}
}

func alive[T any](ps []weak.Pointer[T]) int {
	n := 0
	for _, p := range ps {
		if p.Value() != nil {
			n++
		}
	}
	return n
}

// The structs an idle session keeps fit the size classes they were
// shrunk to (ARCHITECTURE.md §16; the runtime's classes: ..., 48, ...,
// 80, ..., 128, 144, ..., 224, ..., 416, ..., 640, 704, ...): a field
// added to one costs every idle session a whole class step, so that it
// must be a choice. The old sizes are in parentheses.
func TestIdleStructsFitSizeClasses(t *testing.T) {
	for _, c := range []struct {
		name       string
		size, most uintptr
	}{
		{"Session", unsafe.Sizeof(Session{}), 640},          // 704: the decision input
		{"relay", unsafe.Sizeof(relay{}), 224},              // 248: be, rawBackend
		{"clientPump", unsafe.Sizeof(clientPump{}), 144},    // 152: be
		{"backendPump", unsafe.Sizeof(backendPump{}), 48},   // 216: the work set
		{"inflight", unsafe.Sizeof(inflight{}), 416},        // 432: the tag twice
		{"backendConn", unsafe.Sizeof(backendConn{}), 224},  // 256: owedReader's pointers
		{"sockConn", unsafe.Sizeof(sockConn{}), 128},        // 144: ints and errnos
		{"parkedPump", unsafe.Sizeof(parkedPump{}), 80},     // 96: the timer, time.Time
		{"a command count", unsafe.Sizeof(nameCount{}), 16}, // 24: the name
	} {
		if c.size > c.most {
			t.Errorf("%s takes %d bytes, more than the %d of its size class", c.name, c.size, c.most)
		}
	}
}

// parkIdleSessions opens n sessions that enter IDLE after a command of
// each kind (a barrier, a plain one), and waits until all their pumps
// parked and returned.
func parkIdleSessions(t *testing.T, h *harness, n int) {
	t.Helper()
	for range n {
		c := h.login()
		c.transact("s SELECT INBOX", "s OK")
		c.transact("n NOOP", "n OK")
		c.send("i IDLE")
		c.expect("+ ")
	}
	waitParked(t, h, n)
	waitClientsParked(t, h, n)
	waitNoPumpGoroutines(t)
}

// An idle session holds no pooled buffer, not even through a pointer
// left behind (ARCHITECTURE.md §16): once every pump parked and the pools
// were emptied by the GC, no buffer they made is alive. The backend
// scanner used to keep the last read buffer it had read from, 32 KiB a
// session once the pool let go of it. Nor does it hold scanners (160
// bytes each, and the line buffer one may keep) or a parser.
func TestIdleSessionHoldsNoPooledBuffer(t *testing.T) {
	live := trackPools(t)
	h, _ := parkHarness(t)
	const sessions = 3
	parkIdleSessions(t, h, sessions)
	if r, w := live(); r != 0 || w != 0 {
		t.Fatalf("%d pooled read buffers and %d write buffers alive with every session parked, want none", r, w)
	}
	// Nor a scanner or a parser: a parked pump makes one when it runs
	// again. (The parker's lock orders the pumps' writes before these
	// reads.)
	h.srv.mu.Lock()
	defer h.srv.mu.Unlock()
	for s := range h.srv.sessions {
		if s.sc != nil || s.be.sc != nil || s.parser != nil {
			t.Errorf("a parked session holds a client scanner %v, a backend scanner %v, a parser %v; want none", s.sc != nil, s.be.sc != nil, s.parser != nil)
		}
	}
}

// An idle session holds nothing that only waiting or relaying needs
// (ARCHITECTURE.md §16): no relay channel (made when the client pump
// first waits for the backend), no backend work set (pooled while the
// pump waits), no timer of its own for the client's idle limit (the
// parker's one timer and its heap of deadlines). Each was made per
// session before: 300, 176 and 125 bytes of its heap. Nor do its sockets
// keep the functions they hand the poller (16 bytes each).
func TestIdleSessionHoldsNoWaitState(t *testing.T) {
	h, _ := parkHarness(t)
	const sessions = 3
	parkIdleSessions(t, h, sessions)
	pk := h.srv.parker
	pk.mu.Lock()
	deadlines := len(pk.deadlines)
	pk.mu.Unlock()
	if deadlines != sessions {
		t.Errorf("the parker holds %d deadlines, want one per parked client pump (%d)", deadlines, sessions)
	}
	// The parker's lock orders the pumps' writes before these reads.
	h.srv.mu.Lock()
	defer h.srv.mu.Unlock()
	for s := range h.srv.sessions {
		r := s.relay
		noRelayChannels(t, r)
		pp := r.parked.Load()
		if pp == nil {
			t.Fatal("a session's backend pump is not parked")
		}
		if bp := pp.pump.(*backendPump); bp.w != nil {
			t.Error("a parked backend pump holds its work set")
		}
		for _, c := range []net.Conn{s.raw.Conn, s.be.raw} {
			if sc, ok := c.(*sockConn); ok {
				sc.rmu.Lock()
				sc.wmu.Lock()
				if sc.readFn != nil || sc.writeFn != nil {
					t.Errorf("a parked session's socket keeps its read function %v, its write function %v; want neither", sc.readFn != nil, sc.writeFn != nil)
				}
				sc.wmu.Unlock()
				sc.rmu.Unlock()
			} else {
				t.Errorf("a session's connection is a %T, not a sockConn", c)
			}
		}
	}
}

// pumpGoroutine returns the ID of the goroutine whose stack holds fn, 0
// if none.
func pumpGoroutine(fn string) string {
	for _, g := range ourGoroutines() {
		if strings.Contains(g, fn) {
			id, _, _ := strings.Cut(strings.TrimPrefix(g, "goroutine "), " ")
			return id
		}
	}
	return ""
}

// A pump that did work lingers on a fresh goroutine (ARCHITECTURE.md §5):
// after a command, the waits for the next one and for the backend's next
// response move off the goroutines that relayed it, whose stacks may have
// grown, though the session is far from parking (ParkAfter an hour).
func TestLingeringPumpsHandOver(t *testing.T) {
	h, _ := parkHarness(t, func(o *Options) { o.Limits.ParkAfter = time.Hour })
	c := h.login()
	c.transact("s SELECT INBOX", "s OK")
	waiting := func(fn string) string {
		deadline := time.Now().Add(testenv.IOTimeout())
		for {
			if id := pumpGoroutine(fn); id != "" {
				return id
			}
			if time.Now().After(deadline) {
				t.Fatalf("no goroutine in %s", fn)
			}
			time.Sleep(time.Millisecond)
		}
	}
	const client, backend = "(*Session).waitClient", "(*backendConn).waitReadable"
	for round := range 3 {
		cid, bid := waiting(client), waiting(backend)
		c.transact(fmt.Sprintf("n%d NOOP", round), fmt.Sprintf("n%d OK", round))
		deadline := time.Now().Add(testenv.IOTimeout())
		for {
			nc, nb := pumpGoroutine(client), pumpGoroutine(backend)
			if nc != "" && nb != "" && nc != cid && nb != bid {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("round %d: the pumps wait on goroutines %s and %s, before the command %s and %s: no fresh goroutine took the wait", round, nc, nb, cid, bid)
			}
			time.Sleep(time.Millisecond)
		}
	}
}

// A parked session holds none of the relay's channels, even after its
// client pump once waited on one (a command pipelined behind a barrier
// made freed): they are dropped when it parks (clientPump.park).
func TestParkedSessionDropsRelayChannels(t *testing.T) {
	var gate atomic.Bool
	held := make(chan struct{}, 1)
	h, _ := parkHarness(t, func(o *Options) {
		o.beforeBackendRead = func(bool, bool) {
			// Hold the backend pump until the client pump waits on the
			// barrier (freed made under mu).
			if gate.Load() {
				select {
				case held <- struct{}{}:
				default:
				}
			}
			for gate.Load() {
				time.Sleep(time.Millisecond)
			}
		}
	})
	c := h.login()
	gate.Store(true)
	c.send("s SELECT INBOX\r\nn NOOP")
	// The backend pump, started after the relay was set, is held: the
	// relay can be read.
	<-held
	var r *relay
	h.srv.mu.Lock()
	for s := range h.srv.sessions {
		r = s.relay
	}
	h.srv.mu.Unlock()
	for {
		r.mu.Lock()
		made := r.freed != nil
		r.mu.Unlock()
		if made {
			break
		}
		time.Sleep(time.Millisecond)
	}
	gate.Store(false)
	c.expect("* 3 EXISTS")
	c.expect("s OK")
	c.expect("n OK")
	c.send("i IDLE")
	c.expect("+ ")
	waitParked(t, h, 1)
	waitClientsParked(t, h, 1)
	h.srv.mu.Lock()
	defer h.srv.mu.Unlock()
	for s := range h.srv.sessions {
		noRelayChannels(t, s.relay)
	}
}

// noRelayChannels fails t when the parked relay r holds a channel.
func noRelayChannels(t *testing.T, r *relay) {
	t.Helper()
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.contCh != nil || r.freed != nil || r.backendDone != nil {
		t.Errorf("a parked session holds relay channels: verdict %v, freed %v, backend done %v; want none", r.contCh != nil, r.freed != nil, r.backendDone != nil)
	}
}
