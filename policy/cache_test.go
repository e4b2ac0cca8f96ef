package policy

import (
	"context"
	"fmt"
	"net/netip"
	"runtime"
	"testing"
	"time"

	"github.com/imapwarden/imapwarden/proxy"
)

// The caches remember by what the policies read: sessions that differ only
// in what no policy reads (ID, source port, start time) share their
// entries, and each entry stays small whatever the input (maxEntry).

// idleSession is connection i of user from 127.0.0.1 over TLS, as the
// proxy describes it: its own ID, source port and start time.
func idleSession(user string, i int) *proxy.SessionInfo {
	s := testSession(user)
	s.ID = fmt.Sprintf("s%d", i)
	s.ClientAddr = netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), uint16(32768+i%28000))
	s.Started = time.Date(2026, 3, 2, 9, 0, 0, 0, time.UTC).Add(time.Duration(i) * time.Millisecond)
	s.Selected = ""
	return s
}

// decideIdle decides what a session that logs in, selects INBOX and idles
// asks for, in the proxy's order, and returns the decisions.
func decideIdle(t testing.TB, e *Engine, s *proxy.SessionInfo) []string {
	t.Helper()
	ctx := context.Background()
	user := s.User
	s.User = ""
	out := []string{fmt.Sprint(e.Decide(ctx, &proxy.DecisionInput{Point: proxy.PointConnect, Session: s}))}
	s.User = user
	for _, p := range []proxy.Point{proxy.PointAuth, PointRoute} {
		out = append(out, fmt.Sprint(e.Decide(ctx, &proxy.DecisionInput{Point: p, Session: s})))
	}
	for _, l := range []string{"a SELECT INBOX", "b IDLE", "c NOOP"} {
		out = append(out, fmt.Sprint(e.Decide(ctx, &proxy.DecisionInput{Point: proxy.PointCommand, Session: s, Command: parseCommand(t, l)})))
		s.Selected = "INBOX"
	}
	return out
}

// cacheEntries counts the remembered decisions, input.session parts (the
// ones with session rules) and other parts of inputs.
func cacheEntries(e *Engine) (decisions, sessions, parts int) {
	st := e.state.Load()
	if st.cache != nil {
		decisions = st.cache.len()
	}
	if st.docs != nil {
		st.docs.values(func(p *inputPart) {
			if p.rules != nil {
				sessions++
			} else {
				parts++
			}
		})
	}
	return decisions, sessions, parts
}

// TestSessionsShareCaches: many connections of one user from one address,
// differing only in session ID, source port and start time, leave the
// caches as one connection does (the address slot's key once held the
// port: every connection kept its own input.session and decisions, about
// 5 KiB each). Another address is another entry.
func TestSessionsShareCaches(t *testing.T) {
	for name, dir := range map[string]string{"shipped": shippedDir(t), "all-on": policySubset(t, planVariants["all-on"])} {
		t.Run(name, func(t *testing.T) {
			now := func() time.Time { return planTimes[0] }
			e, _ := newTestEngine(t, Options{Dirs: []Dir{{Path: dir}}, Groups: planGroups, Now: now})
			want := fmt.Sprint(decideIdle(t, e, idleSession("alice", 0)))
			d1, s1, p1 := cacheEntries(e)
			if d1 == 0 || s1 == 0 {
				t.Fatalf("one session remembered %d decisions and %d sessions: the test proves nothing", d1, s1)
			}
			for i := 1; i < 300; i++ {
				if got := fmt.Sprint(decideIdle(t, e, idleSession("alice", i))); got != want {
					t.Fatalf("session %d decided %s, the first %s", i, got, want)
				}
			}
			if d, s, p := cacheEntries(e); d != d1 || s != s1 || p != p1 {
				t.Fatalf("300 sessions remembered %d decisions, %d sessions, %d parts; one session %d, %d, %d",
					d, s, p, d1, s1, p1)
			}
			other := idleSession("alice", 300)
			other.ClientAddr = netip.MustParseAddrPort("127.0.0.2:40000")
			decideIdle(t, e, other)
			if _, s, _ := cacheEntries(e); s != 2*s1 {
				t.Fatalf("another address made %d sessions, want %d", s-s1, s1)
			}
		})
	}
}

// TestCachedEntriesBounded: the caches hold at most CacheSize entries, and
// no entry larger than maxEntry, however many groups a user has (the
// groups file's are keyed by the user alone) or however large a value a
// session rule makes: such values are made again at each decision, which
// still decides as a fresh evaluation does.
func TestCachedEntriesBounded(t *testing.T) {
	ctx := context.Background()
	t.Run("count", func(t *testing.T) {
		e, _ := newTestEngine(t, Options{Dirs: []Dir{{Path: shippedDir(t)}}, CacheSize: 8})
		for i := range 50 {
			decideIdle(t, e, idleSession(fmt.Sprintf("user%d", i), i))
		}
		if d, s, p := cacheEntries(e); d > 8 || s+p > 8 {
			t.Fatalf("%d decisions and %d parts remembered, CacheSize 8", d, s+p)
		}
	})
	many := make([]string, 3000)
	for i := range many {
		many[i] = fmt.Sprintf("group-%04d", i)
	}
	many = append(many, "staff", "mobile")
	groups := map[string][]string{"big": many, "alice": {"staff", "mobile"}}
	// exact decides ins with a caching engine and an evaluating one,
	// twice, and fails on a difference.
	exact := func(t *testing.T, cached, fresh *Engine, ins []*proxy.DecisionInput) {
		t.Helper()
		for range 2 {
			for i, in := range ins {
				if got, want := fmt.Sprint(cached.Decide(ctx, in)), fmt.Sprint(fresh.Decide(ctx, in)); got != want {
					t.Fatalf("input %d: cached %s, evaluated %s", i, got, want)
				}
			}
		}
	}
	inputs := func(t *testing.T, user string) []*proxy.DecisionInput {
		var ins []*proxy.DecisionInput
		for i := range 2 {
			s := idleSession(user, i)
			ins = append(ins, &proxy.DecisionInput{Point: proxy.PointAuth, Session: s})
			for _, l := range []string{"a DELETE Sent", "a APPEND Sent {5}\r\nhello", "a IDLE"} {
				ins = append(ins, &proxy.DecisionInput{Point: proxy.PointCommand, Session: s, Command: parseCommand(t, l)})
			}
		}
		return ins
	}
	t.Run("groups", func(t *testing.T) {
		dir := policySubset(t, planVariants["all-on"])
		annotate := regoDir(t, map[string]string{"p.rego": `package imapwarden

import rego.v1

decision := {"allow": true, "annotations": {"groups": input.session.groups}}
`})
		opts := Options{Dirs: []Dir{{Path: dir}, {Path: annotate}}, Groups: groups, Now: func() time.Time { return planTimes[0] }}
		cached, _ := newTestEngine(t, opts)
		opts.CacheSize = -1
		fresh, _ := newTestEngine(t, opts)
		exact(t, cached, fresh, inputs(t, "big"))
		if d, s, _ := cacheEntries(cached); d != 0 || s != 0 {
			t.Fatalf("a user of %d groups left %d decisions and %d sessions remembered, want none", len(many), d, s)
		}
		exact(t, cached, fresh, inputs(t, "alice"))
		if d, s, _ := cacheEntries(cached); d == 0 || s == 0 {
			t.Fatalf("a user of 2 groups left %d decisions and %d sessions remembered: the test proves nothing", d, s)
		}
	})
	t.Run("rule", func(t *testing.T) {
		groups := map[string][]string{"alice": many[:60]}
		dir := regoDir(t, map[string]string{"p.rego": `package imapwarden

import rego.v1

pairs := [[g, h] | some g in input.session.groups; some h in input.session.groups]

size := count(input.session.groups)

decision := {"allow": count(pairs) == size * size}
`})
		opts := Options{Dirs: []Dir{{Path: dir}}, Groups: groups}
		cached, _ := newTestEngine(t, opts)
		opts.CacheSize = -1
		fresh, _ := newTestEngine(t, opts)
		if p := cached.state.Load().dirs[0]; p.prog == nil || p.prog.nsession < 2 {
			t.Fatal("the policy has no session rules: the test proves nothing")
		}
		exact(t, cached, fresh, inputs(t, "alice"))
		st := cached.state.Load()
		kept, big := 0, 0
		st.docs.values(func(part *inputPart) {
			for i := range part.rules {
				for j := range part.rules[i] {
					if v := part.rules[i][j].Load(); v != nil && v.k != kUndef {
						kept++
						if len(toAST(*v).String()) > maxEntry { // its text: smaller than its terms
							big++
						}
					}
				}
			}
		})
		if kept == 0 || big > 0 {
			t.Fatalf("%d session rule values kept, %d of them over %d bytes; want some, none", kept, big, maxEntry)
		}
	})
}

// BenchmarkIdleSessionsHeap reports the heap the engine keeps for idle
// sessions (retained-B/session): 2,000 connections of alice from
// 127.0.0.1 that logged in, selected INBOX and idle, with the shipped
// policies, measured after a GC. Run:
//
//	go test -run '^$' -bench IdleSessionsHeap -benchtime 1x ./policy/
func BenchmarkIdleSessionsHeap(b *testing.B) {
	const n = 2000
	var ms runtime.MemStats
	for b.Loop() {
		e, err := New(Options{Dirs: []Dir{{Path: shippedDir(b)}}, PollInterval: -1})
		if err != nil {
			b.Fatal(err)
		}
		sessions := make([]*proxy.SessionInfo, n)
		for i := range sessions {
			sessions[i] = idleSession("alice", i)
		}
		decideIdle(b, e, idleSession("alice", n)) // the first decisions of the revision
		runtime.GC()
		runtime.ReadMemStats(&ms)
		before := ms.HeapAlloc
		for _, s := range sessions {
			decideIdle(b, e, s)
		}
		runtime.GC()
		runtime.ReadMemStats(&ms)
		b.ReportMetric((float64(ms.HeapAlloc)-float64(before))/n, "retained-B/session")
		runtime.KeepAlive(sessions)
		e.Close()
	}
}

// TestAddressKeysAreExact: a policy reading one of the address slots
// alone decides, with the caches, as a fresh evaluation for every address:
// IPv4 and its IPv4-mapped form (one input), zones, ports, none.
func TestAddressKeysAreExact(t *testing.T) {
	var addrs []netip.AddrPort
	for _, a := range []string{"10.0.0.1:5000", "10.0.0.1:5001", "[::ffff:10.0.0.1]:5000", "10.0.0.2:5000",
		"[::]:0", "[fe80::1%eth0]:5000", "[fe80::1%eth1]:5000", "[fe80::1]:5000", "[2001:db8::1]:5001"} {
		addrs = append(addrs, netip.MustParseAddrPort(a))
	}
	addrs = append(addrs, netip.AddrPort{})
	ctx := context.Background()
	for _, field := range []string{"client_ip", "client_port", "local_ip", "local_port"} {
		t.Run(field, func(t *testing.T) {
			dir := regoDir(t, map[string]string{"p.rego": fmt.Sprintf(`package imapwarden

import rego.v1

default decision := {"allow": true}

decision := {"allow": false, "reason": sprintf("%%v", [input.session.%s])} if input.session.%[1]s
`, field)})
			cached, _ := newTestEngine(t, Options{Dirs: []Dir{{Path: dir}}})
			fresh, _ := newTestEngine(t, Options{Dirs: []Dir{{Path: dir}}, CacheSize: -1})
			for round := range 2 {
				for i := range addrs {
					a := addrs[(i+round*3)%len(addrs)]
					s := idleSession("alice", i)
					s.ClientAddr, s.LocalAddr = a, a
					in := &proxy.DecisionInput{Point: proxy.PointAuth, Session: s}
					if got, want := fmt.Sprint(cached.Decide(ctx, in)), fmt.Sprint(fresh.Decide(ctx, in)); got != want {
						t.Fatalf("%v: cached %s, evaluated %s", a, got, want)
					}
				}
			}
			if cached.Stats().CacheHits == 0 {
				t.Fatal("no cache hit: the test proves nothing")
			}
		})
	}
}
