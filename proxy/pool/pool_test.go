package pool

import (
	"errors"
	"fmt"
	"math"
	"testing"
	"time"

	"github.com/imapwarden/imapwarden/internal/testenv"
	"github.com/imapwarden/imapwarden/proxy"
)

func users(n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("user%d@example.com", i)
	}
	return out
}

func pick(t *testing.T, p *Pool, user string, tried ...string) string {
	t.Helper()
	b, err := p.Pick(&proxy.SessionInfo{}, user, tried)
	if err != nil {
		t.Fatalf("Pick(%s): %v", user, err)
	}
	return b.Server
}

// Rendezvous affinity: a user always gets the same server, shares follow
// the weights, a server's failure moves only its own users, and its return
// brings exactly them back.
func TestAffinity(t *testing.T) {
	p, err := New(Options{Backend: &proxy.Backend{Name: "b"}, Servers: []ServerOptions{
		{Name: "a", Addr: "10.0.0.1:143"}, {Name: "b", Addr: "10.0.0.2:143"}, {Name: "c", Addr: "10.0.0.3:143", Weight: 2},
	}})
	if err != nil {
		t.Fatal(err)
	}
	us := users(20000)
	before := map[string]string{}
	share := map[string]int{}
	for _, u := range us {
		s := pick(t, p, u)
		before[u] = s
		share[s]++
		if again := pick(t, p, u); again != s {
			t.Fatalf("%s: %s then %s", u, s, again)
		}
	}
	// Expected shares 1/4, 1/4, 1/2; 20000 draws stay within 2%.
	for s, want := range map[string]float64{"a": .25, "b": .25, "c": .5} {
		if got := float64(share[s]) / float64(len(us)); math.Abs(got-want) > .02 {
			t.Errorf("server %s takes %.3f of the users, want %.2f", s, got, want)
		}
	}
	// Case does not matter: the backend's user names are case-insensitive.
	if pick(t, p, "USER7@Example.COM") != before["user7@example.com"] {
		t.Error("affinity depends on the case of the user name")
	}

	b := p.server("b")
	b.observe(errors.New("refused"), true, 2, 3) // the first check decides
	moved := 0
	for _, u := range us {
		s := pick(t, p, u)
		switch {
		case s == "b":
			t.Fatalf("%s still goes to the down server", u)
		case before[u] != "b" && s != before[u]:
			t.Fatalf("%s moved from %s to %s though its server is up", u, before[u], s)
		case before[u] == "b":
			moved++
		}
	}
	if moved != share["b"] {
		t.Errorf("%d users moved, want the %d of b", moved, share["b"])
	}
	// Back up after rise good checks: every user of b returns to it.
	b.observe(nil, true, 2, 3)
	if pick(t, p, us[0]) == "b" && before[us[0]] == "b" {
		t.Fatal("b is up after one good check, rise is 2")
	}
	b.observe(nil, true, 2, 3)
	for _, u := range us {
		if s := pick(t, p, u); s != before[u] {
			t.Fatalf("%s on %s after b came back, was on %s", u, s, before[u])
		}
	}
	// Failover order is stable too: skipping a user's server gives the
	// same second choice each time.
	for _, u := range us[:100] {
		first := before[u]
		second := pick(t, p, u, first)
		if again := pick(t, p, u, first); second == first || again != second {
			t.Fatalf("%s: second choice %s then %s (first %s)", u, second, again, first)
		}
	}
	// Nothing left to try.
	if _, err := p.Pick(&proxy.SessionInfo{}, us[0], []string{"a", "b", "c"}); !errors.Is(err, proxy.ErrNoServer) {
		t.Errorf("all tried: %v", err)
	}
}

// Bounded load: a server over its share of the sessions sends the next
// users to their second choice, and no server exceeds the bound.
func TestBoundedLoad(t *testing.T) {
	p, err := New(Options{Backend: &proxy.Backend{Name: "b"}, MaxLoad: 1.25, Servers: []ServerOptions{
		{Addr: "10.0.0.1:143"}, {Addr: "10.0.0.2:143"}, {Addr: "10.0.0.3:143"}, {Addr: "10.0.0.4:143"},
	}})
	if err != nil {
		t.Fatal(err)
	}
	// One very busy user: all sessions would go to one server without
	// the bound.
	var releases []func()
	count := map[string]int{}
	for range 400 {
		b, err := p.Pick(&proxy.SessionInfo{}, "busy@example.com", nil)
		if err != nil {
			t.Fatal(err)
		}
		count[b.Server]++
		releases = append(releases, p.Acquire(b))
		total := len(releases)
		for s, n := range count {
			if limit := math.Ceil(1.25 * float64(total) / 4); float64(n) > limit {
				t.Fatalf("after %d sessions %s holds %d, over the bound %v", total, s, n, limit)
			}
		}
	}
	if len(count) != 4 {
		t.Errorf("sessions on %d servers, want all 4: %v", len(count), count)
	}
	for _, r := range releases {
		r()
		r() // a second release changes nothing
	}
	for _, st := range mustSet(t, p).Status()[0].Servers {
		if st.Sessions != 0 {
			t.Errorf("%s: %d sessions after every release", st.Name, st.Sessions)
		}
	}
}

func mustSet(t *testing.T, pools ...*Pool) *Set {
	t.Helper()
	s, err := NewSet(pools...)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestHealthTransitions(t *testing.T) {
	s := newServer("b", "s", "10.0.0.1:143")
	fail := errors.New("refused")
	const rise, fall = 2, 3
	steps := []struct {
		err    error
		active bool
		want   Health
		event  bool
	}{
		{nil, true, Up, false},   // the first check decides, silently when up
		{fail, false, Up, false}, // passive failures count toward fall
		{fail, true, Up, false},
		{nil, false, Up, false}, // a success breaks the run
		{fail, false, Up, false},
		{fail, true, Up, false},
		{fail, false, Down, true},
		{fail, true, Down, false},
		{nil, false, Down, false}, // sessions do not bring a server back
		{nil, true, Down, false},
		{fail, true, Down, false}, // the rise run starts again
		{nil, true, Down, false},
		{nil, true, Up, true},
	}
	for i, st := range steps {
		tr := s.observe(st.err, st.active, rise, fall)
		if s.health != st.want || (tr != nil) != st.event {
			t.Fatalf("step %d: health %v transition %v, want %v event %v", i, s.health, tr, st.want, st.event)
		}
	}
	// A first check that fails takes an unknown server down at once.
	s = newServer("b", "s", "10.0.0.1:143")
	if tr := s.observe(fail, true, rise, fall); tr == nil || s.health != Down {
		t.Fatalf("first failed check: %v %v", s.health, tr)
	}
	// Leaving maintenance forgets the health.
	s.setAdmin(Disabled)
	if s.available() {
		t.Fatal("a disabled server is available")
	}
	s.setAdmin(Enabled)
	if s.health != Unknown || !s.available() {
		t.Fatalf("after enable: %v available %v", s.health, s.available())
	}
	s.setAdmin(Draining)
	if s.available() {
		t.Fatal("a draining server is available")
	}
}

func TestResolve(t *testing.T) {
	a, err := New(Options{Backend: &proxy.Backend{Name: "main"}, Servers: []ServerOptions{
		{Name: "imap1", Addr: "imap1.example.com:143"}, {Addr: "10.0.0.2:143"}, {Addr: "[2001:db8::7]:143"},
	}})
	if err != nil {
		t.Fatal(err)
	}
	b := newPool(t, "legacy", HealthOptions{}, "10.0.0.9:143", "10.0.0.9:993")
	set := mustSet(t, a, b)
	for hint, want := range map[string]string{
		"main":                  "*",
		"imap1":                 "imap1",
		"IMAP1.example.com":     "imap1",
		"imap1.example.com.":    "imap1",
		"imap1.example.com:143": "imap1",
		"10.0.0.2":              "10.0.0.2:143",
		"10.0.0.2:143":          "10.0.0.2:143",
		"2001:db8::7":           "[2001:db8::7]:143",
		"[2001:db8:0::7]:143":   "[2001:db8::7]:143",
		"10.0.0.9:993":          "10.0.0.9:993",
	} {
		be, err := set.Resolve(hint)
		if err != nil {
			t.Errorf("Resolve(%q): %v", hint, err)
			continue
		}
		if want == "*" {
			if be != a.Backend() {
				t.Errorf("Resolve(%q) is not the backend", hint)
			}
			continue
		}
		got, err := be.Servers.Pick(&proxy.SessionInfo{}, "x", nil)
		if err != nil || got.Server != want {
			t.Errorf("Resolve(%q) picks %v, %v; want %s", hint, got, err, want)
		}
		// Pinned: no other server of the backend is offered.
		if _, err := be.Servers.Pick(&proxy.SessionInfo{}, "x", []string{want}); !errors.Is(err, proxy.ErrNoServer) {
			t.Errorf("Resolve(%q) fails over: %v", hint, err)
		}
	}
	for _, hint := range []string{"", "10.0.0.3", "10.0.0.2:993", "evil.example.com:143", "10.0.0.9", "127.0.0.1:143"} {
		if _, err := set.Resolve(hint); !errors.Is(err, ErrUnlisted) {
			t.Errorf("Resolve(%q) = %v, want ErrUnlisted", hint, err)
		}
	}
	// A pinned server that is down refuses rather than moving the user.
	be, _ := set.Resolve("10.0.0.2")
	a.server("10.0.0.2:143").observe(errors.New("down"), true, 2, 3)
	if _, err := be.Servers.Pick(&proxy.SessionInfo{}, "x", nil); !errors.Is(err, proxy.ErrNoServer) {
		t.Errorf("pinned down server: %v", err)
	}
}

func TestEscapeMailAuth(t *testing.T) {
	for in, want := range map[string]string{
		"alice":        "alice",
		"a b%c":        "a%20b%25c",
		"tab\there":    "tab%09here",
		"ünï":          "%C3%BCn%C3%AF",
		"del\x7f\r\nx": "del%7F%0D%0Ax",
		`quote"back\\`: `quote"back\\`,
	} {
		if got := escapeMailAuth(in); got != want {
			t.Errorf("escape(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestNewRefuses(t *testing.T) {
	tmpl := &proxy.Backend{Name: "b"}
	for _, o := range []Options{
		{Backend: tmpl},
		{Backend: &proxy.Backend{}, Servers: []ServerOptions{{Addr: "a:1"}}},
		{Backend: tmpl, Servers: []ServerOptions{{Addr: "no-port"}}},
		{Backend: tmpl, Servers: []ServerOptions{{Addr: "a:1"}, {Addr: "a:1"}}},
		{Backend: tmpl, Servers: []ServerOptions{{Addr: "a:1", Weight: -1}}},
		{Backend: tmpl, Servers: []ServerOptions{{Addr: "a:1"}}, MaxLoad: 0.5},
	} {
		if _, err := New(o); err == nil {
			t.Errorf("New(%+v) accepted", o)
		}
	}
}

// A reload (Monitor.Apply of a new Set) keeps each server's health, admin
// state and session count when its backend, name and address are the
// same; a new server is checked at once; a removed one stops being
// checked.
func TestMonitorApplyKeepsState(t *testing.T) {
	live := startMem(t, "alice")
	dead := deadAddr(t)
	h := HealthOptions{Interval: time.Hour, Timeout: testenv.IOTimeout()}
	first := newPool(t, "main", h, live.addr, dead)
	mon, events := monitor(t, mustSet(t, first))
	waitEvent(t, events, 0, dead, Down)
	if _, _, err := mon.Set().SetAdmin("main", live.addr, Draining); err != nil {
		t.Fatal(err)
	}
	release := first.Acquire(&proxy.Backend{Server: live.addr})
	defer release()

	// The same servers and one more, with other check settings.
	other := startMem(t, "alice")
	second := newPool(t, "main", HealthOptions{Interval: time.Hour, Timeout: testenv.IOTimeout(), Fall: 5}, live.addr, dead, other.addr)
	mark := events.len()
	mon.Apply(mustSet(t, second))
	st := mon.Set().Status()[0].Servers
	if st[0].Admin != "drain" || st[0].Sessions != 1 || st[1].Health != "down" {
		t.Errorf("state lost across Apply: %+v", st)
	}
	if got := second.server(live.addr).cfg.Load().health.Fall; got != 5 {
		t.Errorf("new settings not applied: fall %d", got)
	}
	// The new server is checked at once (it comes up); a down one moves
	// to it.
	deadline := time.Now().Add(testenv.IOTimeout())
	for second.server(other.addr).status().Health != "up" {
		if time.Now().After(deadline) {
			t.Fatal("the new server was not checked")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if events.len() != mark {
		t.Errorf("Apply reported health changes of kept servers")
	}
	// Servers left out stop being checked (their checkers are canceled;
	// the cleanup's leak check sees them end).
	mon.Apply(mustSet(t, newPool(t, "main", h, other.addr)))
	mon.mu.Lock()
	n := len(mon.running)
	mon.mu.Unlock()
	if n != 1 {
		t.Errorf("%d checkers after the reload, want 1", n)
	}
}
