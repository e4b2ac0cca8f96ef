package ratelimit

import (
	"encoding/binary"
	"fmt"
	"net/netip"
	"runtime"
	"testing"
	"time"

	"github.com/imapwarden/imapwarden/proxy"
)

func TestHotPathsDoNotAllocate(t *testing.T) {
	l, _ := newTest(t, func(o *Options) { o.LoginFailuresPerUserIP = 2 })
	s, _ := login(t, l, "192.0.2.1", "alice")
	body, flags := fetchBody(), fetchFlags()
	h := l.handle(s) // the proxy holds its session's handle
	h.Delivered(1000, 1)
	for name, f := range map[string]func(){
		"Command NOOP":        func() { h.Command(noop) },
		"Command FETCH body":  func() { h.Command(body) },
		"Command FETCH flags": func() { h.Command(flags) },
		"Delivered":           func() { h.Delivered(1000, 1) },
		"Login":               func() { h.Login(noWait, "Alice@Example.COM") },
	} {
		if n := testing.AllocsPerRun(1000, f); n != 0 {
			t.Errorf("%s: %v allocations", name, n)
		}
	}
	fail(t, l, "192.0.2.1", "bob")
	fail(t, l, "192.0.2.1", "bob")
	_, locked := l.Connect(info("192.0.2.1"))
	defer locked.Release()
	if r, _ := locked.Login(noWait, "bob"); !r.Exceeded {
		t.Fatal("not locked")
	}
	if n := testing.AllocsPerRun(1000, func() { locked.Login(noWait, "bob") }); n != 0 {
		t.Errorf("Login while locked: %v allocations", n)
	}
}

// ipN is the n-th of a flood of distinct IPv6 addresses.
func ipN(n uint64) netip.Addr {
	var b [16]byte
	b[0], b[1] = 0x20, 0x01
	binary.BigEndian.PutUint64(b[8:], n*0x9E3779B97F4A7C15) // spread over shards
	binary.BigEndian.PutUint32(b[2:], uint32(n))            // and over /48s (subnets) and /64s (hosts)
	return netip.AddrFrom16(b)
}

func sessionFrom(ip netip.Addr) *proxy.SessionInfo {
	return &proxy.SessionInfo{ClientAddr: netip.AddrPortFrom(ip, 1234)}
}

// A flood of distinct IPs and user names cannot grow memory beyond
// MaxTrackedKeys, and it does not wash out an attacker's lockout.
func TestFloodOfDistinctKeysIsBounded(t *testing.T) {
	const maxKeys = 4096
	l, clk := newTest(t, func(o *Options) {
		o.MaxTrackedKeys = maxKeys
		o.LoginFailuresPerUserIP = 3
		o.LoginFailureDelay = time.Millisecond
	})
	for i := 0; i < 3; i++ {
		fail(t, l, "192.0.2.66", "alice")
	}
	var before runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	n := 200000
	if testing.Short() {
		n = 20000
	}
	for i := 0; i < n; i++ {
		s := sessionFrom(ipN(uint64(i)))
		if r, release := l.connectInfo(s); release != nil {
			if i%4 == 0 {
				s.User = fmt.Sprint("user", i)
				l.Login(s, s.User)
				l.LoginResult(s, s.User, false)
			}
			release()
		} else if r.Exceeded {
			t.Fatalf("flood connection %d refused: %+v", i, r)
		}
		if i%1000 == 0 {
			clk.Advance(time.Millisecond)
		}
		if i%50000 == 0 {
			if got := l.local.tracked(); got > maxKeys {
				t.Fatalf("%d keys tracked after %d connections, max %d", got, i, maxKeys)
			}
		}
	}
	runtime.GC()
	var after runtime.MemStats
	runtime.ReadMemStats(&after)
	got := l.local.tracked()
	if got > maxKeys || l.Stats().Evicted == 0 {
		t.Fatalf("%d keys tracked, %d evicted", got, l.Stats().Evicted)
	}
	grown := int64(after.HeapAlloc) - int64(before.HeapAlloc)
	t.Logf("%d connections, %d failures: %d keys tracked, %d evicted, heap grew %d bytes", n, n/4, got, l.Stats().Evicted, grown)
	if grown > 4<<20 {
		t.Errorf("heap grew by %d bytes for at most %d keys", grown, maxKeys)
	}
	s := sessionFrom(netip.MustParseAddr("192.0.2.66"))
	if r := l.Login(s, "alice"); !r.Exceeded {
		t.Error("the flood evicted an active lockout")
	}
}

// memPerKey fills a store with n keys of one class and returns the heap
// bytes per key.
func memPerKey(tb testing.TB, n int, class string) float64 {
	clk := newClock()
	l, err := New(Options{Now: clk.Now, MaxTrackedKeys: 4 * n})
	if err != nil {
		tb.Fatal(err)
	}
	defer l.Close()
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	for i := 0; i < n; i++ {
		s := sessionFrom(ipN(uint64(i)))
		switch class {
		case "connection":
			// One per-IP bucket; the /64s are distinct too: two keys.
			_, release := l.connectInfo(s)
			release()
		case "failure":
			// Three records: ip, user, user_ip.
			user := fmt.Sprintf("user%08d@example.com", i)
			l.LoginResult(s, user, false)
		}
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	keys := l.local.tracked()
	runtime.KeepAlive(l)
	return float64(int64(after.HeapAlloc)-int64(before.HeapAlloc)) / float64(keys)
}

func TestMemoryPerTrackedKey(t *testing.T) {
	n := 100000
	if testing.Short() {
		n = 10000
	}
	for _, class := range []string{"connection", "failure"} {
		b := memPerKey(t, n, class)
		t.Logf("%s keys: %.0f bytes per tracked key", class, b)
		if b > 400 {
			t.Errorf("%s: %.0f bytes per key", class, b)
		}
	}
}

func BenchmarkMemoryPerKey(b *testing.B) {
	for _, class := range []string{"connection", "failure"} {
		b.Run(class, func(b *testing.B) {
			var v float64
			for i := 0; i < b.N; i++ {
				v = memPerKey(b, 100000, class)
			}
			b.ReportMetric(v, "B/key")
		})
	}
}
