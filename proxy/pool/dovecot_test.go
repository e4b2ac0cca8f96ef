package pool

import (
	"fmt"
	"io"
	"net"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/imapwarden/imapwarden/internal/dovecottest"
	"github.com/imapwarden/imapwarden/internal/testenv"
	"github.com/imapwarden/imapwarden/proxy"
)

// loadUsers are the users every Dovecot of a load world has.
const loadUsers = 50

func loadUser(i int) (string, string) {
	u := fmt.Sprintf("u%02d", i%loadUsers)
	return u, "pw-" + u
}

// loadWorld is three real Dovecot servers as one pool behind the proxy.
type loadWorld struct {
	dcs    []*dovecottest.Server
	names  []string // the pool's server names: d0, d1, d2
	pool   *Pool
	srv    *proxy.Server
	addr   string
	events *eventLog
	// failovers: the servers logins could not use.
	failovers *failoverLog
}

// newLoadWorld starts the servers and the proxy. The timeouts are
// generous: the tests measure failover on a busy machine, where a healthy
// Dovecot may take seconds to answer; connectTimeout is what a frozen
// server costs a login.
func newLoadWorld(t *testing.T, h HealthOptions, connectTimeout time.Duration) *loadWorld {
	t.Helper()
	dovecottest.Require(t)
	users := map[string]string{}
	for i := range loadUsers {
		u, pw := loadUser(i)
		users[u] = pw
	}
	w := &loadWorld{}
	var servers []ServerOptions
	for i := range 3 {
		dc := dovecottest.Start(t, dovecottest.Options{Users: users, HighPerformance: true})
		w.dcs = append(w.dcs, dc)
		w.names = append(w.names, fmt.Sprintf("d%d", i))
		servers = append(servers, ServerOptions{Name: w.names[i], Addr: dc.Addr})
	}
	t.Cleanup(func() {
		if t.Failed() {
			for i, dc := range w.dcs {
				var notable []string
				for _, l := range strings.Split(dc.Log(), "\n") {
					if strings.Contains(l, "Warning") || strings.Contains(l, "Error") || strings.Contains(l, "Fatal") {
						notable = append(notable, l)
					}
				}
				t.Logf("d%d's warnings and errors:\n%s", i, strings.Join(notable[max(0, len(notable)-20):], "\n"))
			}
		}
	})
	p, err := New(Options{Backend: &proxy.Backend{Name: "dovecot", Security: proxy.BackendPlain, Login: proxy.LoginAuto,
		ConnectTimeout: connectTimeout, LoginTimeout: time.Minute}, Servers: servers, Health: h})
	if err != nil {
		t.Fatal(err)
	}
	w.pool = p
	set := mustSet(t, p)
	_, w.events = monitor(t, set)
	w.failovers = newFailoverLog(t)
	w.srv, w.addr = startProxy(t, &Router{Set: set, Next: &proxy.StaticRouter{Default: p.Backend()}},
		func(o *proxy.Options) { o.Auditor = w.failovers })
	return w
}

// loginRecord is one login of the load.
type loginRecord struct {
	start, end time.Time
	server     string // where it went ("" when it failed)
	err        string // the login failed
	// after: the session failed after its login (its NOOP or LOGOUT).
	after string
}

// load runs churning clients (connect, LOGIN, NOOP, LOGOUT, again) and
// long-lived sessions (LOGIN, SELECT, NOOP in a loop), counting every
// error, until stop.
type load struct {
	w        *loadWorld
	mu       sync.Mutex
	logins   []loginRecord
	progress chan struct{}
	done     atomic.Int64
	stopping chan struct{}
	wg       sync.WaitGroup
	// Long-lived sessions: their server, and the first error each met.
	longMu    sync.Mutex
	long      []*client
	longOn    []string
	longErr   []string
	longReady sync.WaitGroup
	// loginSlots bounds the long-lived sessions logging in at once.
	loginSlots chan struct{}
}

// Pacing of the load: a long-lived session sends a NOOP this often, like
// a client polling; churners run flat out.
const longNoopEvery = 100 * time.Millisecond

func startLoad(t *testing.T, w *loadWorld, churners, longLived int) *load {
	l := &load{w: w, progress: make(chan struct{}, 1), stopping: make(chan struct{})}
	l.longOn = make([]string, longLived)
	l.longErr = make([]string, longLived)
	l.long = make([]*client, longLived)
	l.longReady.Add(longLived)
	// Log them in twenty at a time, as clients coming in over a minute
	// would, not as one burst Dovecot's process spawning would queue.
	l.loginSlots = make(chan struct{}, 20)
	for i := range longLived {
		l.wg.Add(1)
		go l.longSession(i)
	}
	l.longReady.Wait()
	for i := range l.longErr {
		if l.longErr[i] != "" {
			t.Fatalf("long-lived session %d: %s", i, l.longErr[i])
		}
	}
	for i := range churners {
		l.wg.Add(1)
		go l.churn(i)
	}
	return l
}

func (l *load) longSession(i int) {
	defer l.wg.Done()
	fail := func(err error) {
		l.longMu.Lock()
		if l.longErr[i] == "" {
			l.longErr[i] = fmt.Sprintf("%s: %v", time.Now().Format("15:04:05.000"), err)
		}
		l.longMu.Unlock()
	}
	user, pw := loadUser(i)
	l.loginSlots <- struct{}{}
	c, refusal, err := login(l.w.addr, user, pw)
	<-l.loginSlots
	if err == nil && c == nil {
		err = fmt.Errorf("login refused: %s", refusal)
	}
	if err == nil {
		err = c.ok("SELECT INBOX")
	}
	if err != nil {
		fail(err)
		l.longReady.Done()
		return
	}
	l.longMu.Lock()
	l.long[i] = c
	l.longOn[i] = sessionServer(l.w.srv, c.c.LocalAddr())
	l.longMu.Unlock()
	l.longReady.Done()
	tick := time.NewTicker(longNoopEvery)
	defer tick.Stop()
	for {
		select {
		case <-l.stopping:
			c.do("LOGOUT")
			c.close()
			return
		case <-tick.C:
		}
		if err := c.ok("NOOP"); err != nil {
			fail(err)
			c.close()
			return
		}
	}
}

func (l *load) churn(i int) {
	defer l.wg.Done()
	for n := 0; ; n++ {
		select {
		case <-l.stopping:
			return
		default:
		}
		user, pw := loadUser(i*7 + n)
		rec := loginRecord{start: time.Now()}
		c, refusal, err := login(l.w.addr, user, pw)
		switch {
		case err != nil:
			rec.err = err.Error()
		case c == nil:
			rec.err = refusal
		default:
			rec.server = sessionServer(l.w.srv, c.c.LocalAddr())
			if err := c.ok("NOOP"); err != nil {
				rec.after = err.Error()
			}
			c.do("LOGOUT")
			c.close()
		}
		rec.end = time.Now()
		l.mu.Lock()
		l.logins = append(l.logins, rec)
		l.mu.Unlock()
		l.done.Add(1)
		select {
		case l.progress <- struct{}{}:
		default:
		}
	}
}

// waitLogins waits until n more logins have completed.
func (l *load) waitLogins(n int64) {
	target := l.done.Load() + n
	for l.done.Load() < target {
		<-l.progress
	}
}

func (l *load) stop() {
	close(l.stopping)
	l.wg.Wait()
}

// closeLong ends the long-lived sessions still open (those stuck on a
// frozen server).
func (l *load) closeLong() {
	l.longMu.Lock()
	defer l.longMu.Unlock()
	for _, c := range l.long {
		if c != nil {
			c.close()
		}
	}
}

// between returns the logins started in [from, to); a zero to is open.
func (l *load) between(from, to time.Time) []loginRecord {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []loginRecord
	for _, r := range l.logins {
		if !r.start.Before(from) && (to.IsZero() || r.start.Before(to)) {
			out = append(out, r)
		}
	}
	return out
}

// outage is when one server was broken, marked down, repaired and up.
type outage struct {
	broken, down, repaired, up time.Time
	downEvent                  Event
}

// outage breaks the victim under load, waits until it is marked down,
// lets n more logins run, repairs it, waits until it is up and lets m
// more run, then stops the load.
func (w *loadWorld) outage(t *testing.T, l *load, victim int, brk, repair func(), n, m int64) outage {
	var o outage
	mark := w.events.len()
	o.broken = time.Now()
	brk()
	o.downEvent = waitEvent(t, w.events, mark, w.names[victim], Down)
	o.down = time.Now()
	l.waitLogins(n)
	mark = w.events.len()
	o.repaired = time.Now()
	repair()
	waitEvent(t, w.events, mark, w.names[victim], Up)
	o.up = time.Now()
	l.waitLogins(m)
	l.stop()
	return o
}

// checkLong fails the test for each long-lived session on another server
// than the victim that met an error, and returns how many were on the
// victim.
func (l *load) checkLong(t *testing.T, victim string) int {
	t.Helper()
	onVictim := 0
	for i, on := range l.longOn {
		switch {
		case on == victim:
			onVictim++
		case on == "":
			t.Errorf("session %d: no server recorded", i)
		case l.longErr[i] != "":
			t.Errorf("session %d on %s disturbed: %s", i, on, l.longErr[i])
		}
	}
	if onVictim == 0 {
		t.Errorf("no long-lived session was on %s: the test proves nothing", victim)
	}
	return onVictim
}

// reportFailed fails the test for each login that failed, and for each
// session that failed after its login on another server than the victim
// (a session on the victim may lose its server under it). A session that
// lost its backend before the test could ask which server it was on
// (server "") is the victim's only if it began before the victim was
// marked down and ended with the proxy's backend-lost BYE.
func reportFailed(t *testing.T, rs []loginRecord, victim string, o outage) {
	t.Helper()
	for _, r := range failed(rs) {
		t.Errorf("login at %s failed: %s", r.start.Format("15:04:05.000"), r.err)
	}
	for _, r := range rs {
		if r.server == "" && r.after != "" && !r.start.After(o.down) && strings.Contains(r.after, "Backend connection lost") {
			continue
		}
		if r.after != "" && r.server != victim {
			t.Errorf("session from %s on %s failed: %s", r.start.Format("15:04:05.000"), r.server, r.after)
		}
	}
}

func failed(rs []loginRecord) []loginRecord {
	var out []loginRecord
	for _, r := range rs {
		if r.err != "" {
			out = append(out, r)
		}
	}
	return out
}

func maxDuration(rs []loginRecord) time.Duration {
	var m time.Duration
	for _, r := range rs {
		m = max(m, r.end.Sub(r.start))
	}
	return m
}

func percentile(rs []loginRecord, p float64) time.Duration {
	if len(rs) == 0 {
		return 0
	}
	ds := make([]time.Duration, len(rs))
	for i, r := range rs {
		ds[i] = r.end.Sub(r.start)
	}
	sort.Slice(ds, func(i, j int) bool { return ds[i] < ds[j] })
	return ds[int(p*float64(len(ds)-1))]
}

// serverOf maps each user to the server the pool gives it now.
func (w *loadWorld) serverOf(t *testing.T) map[string]string {
	out := map[string]string{}
	for i := range loadUsers {
		u, _ := loadUser(i)
		b, err := w.pool.Pick(&proxy.SessionInfo{}, u, nil)
		if err != nil {
			t.Fatal(err)
		}
		out[u] = b.Server
	}
	return out
}

// Done when of issue 15: with one of three servers killed under load, no
// login fails after the fall threshold (none at all: failed connections
// fail over), no session on the other two is disturbed, and the server's
// users come back to it at their next login once it returns.
func TestFailoverUnderLoad(t *testing.T) {
	w := newLoadWorld(t, HealthOptions{Interval: time.Second, FastInterval: 250 * time.Millisecond, Timeout: 10 * time.Second, Rise: 2, Fall: 3}, 30*time.Second)
	home := w.serverOf(t)
	l := startLoad(t, w, 50, 200)
	defer l.closeLong()
	l.waitLogins(200)

	victim := 1
	o := w.outage(t, l, victim, w.dcs[victim].Kill, func() { w.dcs[victim].Restart(t) }, 500, 300)

	window := l.between(o.broken, time.Time{})
	during := l.between(o.broken, o.down)
	before := l.between(time.Time{}, o.broken)
	t.Logf("kill to down %v (fall 3); down: %s", o.down.Sub(o.broken).Round(time.Millisecond), o.downEvent.Err)
	t.Logf("logins: %d in all, %d from the kill on (%d before the server was marked down), %d failed from the kill on, %d failed after down",
		len(l.between(time.Time{}, time.Time{})), len(window), len(during), len(failed(window)), len(failed(l.between(o.down, time.Time{}))))
	t.Logf("login latency before the kill p50 %v p99 %v; from kill to down p50 %v max %v; restart to up %v",
		percentile(before, .5), percentile(before, .99), percentile(during, .5), maxDuration(during),
		o.up.Sub(o.repaired).Round(time.Millisecond))
	reportFailed(t, l.between(time.Time{}, time.Time{}), w.names[victim], o)
	// Sessions on the survivors were never disturbed; those on the
	// victim ended.
	onVictim := l.checkLong(t, w.names[victim])
	for i, on := range l.longOn {
		if on == w.names[victim] && l.longErr[i] == "" {
			t.Errorf("session %d on the killed server did not notice", i)
		}
	}
	t.Logf("long-lived sessions: %d, %d on the killed server", len(l.longOn), onVictim)
	// No login went to the victim while it was down.
	for _, r := range l.between(o.down, o.repaired) {
		if r.server == w.names[victim] {
			t.Errorf("login at %s went to the down server", r.start.Format("15:04:05.000"))
		}
	}
	// Back: the same users as before, and logins reach it again.
	if after := w.serverOf(t); !mapsEqual(after, home) {
		t.Errorf("affinity changed across the outage:\n before %v\n after  %v", home, after)
	}
	back := 0
	for _, r := range l.between(o.up, time.Time{}) {
		if r.server == w.names[victim] {
			back++
		}
	}
	if back == 0 {
		t.Error("no login went back to the server once it was up")
	}
	checkSessions(t, w.pool)
}

func mapsEqual(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

// checkSessions waits until the pool counts no session (every client has
// gone), so that a leaked count fails the test.
func checkSessions(t *testing.T, p *Pool) {
	t.Helper()
	deadline := time.Now().Add(testenv.IOTimeout())
	for {
		var open []string
		set := mustSet(t, p)
		for _, st := range set.Status()[0].Servers {
			if st.Sessions != 0 {
				open = append(open, fmt.Sprintf("%s: %d", st.Name, st.Sessions))
			}
		}
		if len(open) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Errorf("sessions still counted after every client left: %v", open)
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// A frozen server (SIGSTOP: it accepts, never greets) under load: logins
// sent to it wait out the connect timeout and fail over; once it is
// marked down no login waits for it; the other servers' sessions are
// undisturbed; thawed, it comes back.
func TestFrozenServerUnderLoad(t *testing.T) {
	const connectTimeout = 10 * time.Second
	w := newLoadWorld(t, HealthOptions{Interval: time.Second, FastInterval: 250 * time.Millisecond, Timeout: 5 * time.Second, Rise: 2, Fall: 3}, connectTimeout)
	l := startLoad(t, w, 30, 120)
	defer l.closeLong()
	l.waitLogins(150)

	victim := 2
	thawed := false
	defer func() {
		if !thawed {
			w.dcs[victim].Thaw()
		}
	}()
	o := w.outage(t, l, victim, w.dcs[victim].Freeze, func() { w.dcs[victim].Thaw(); thawed = true }, 300, 100)

	window := l.between(o.broken, time.Time{})
	during := l.between(o.broken, o.down)
	afterDown := l.between(o.down, o.repaired)
	t.Logf("freeze to down %v (%s); logins from the freeze on %d, %d before down (max latency %v), failed %d; after down p99 %v max %v",
		o.down.Sub(o.broken).Round(time.Millisecond), o.downEvent.Err, len(window), len(during), maxDuration(during).Round(time.Millisecond),
		len(failed(window)), percentile(afterDown, .99), maxDuration(afterDown).Round(time.Millisecond))
	reportFailed(t, l.between(time.Time{}, time.Time{}), w.names[victim], o)
	// After down, no login waited for the frozen server: none that began
	// after the mark tried it (until it was thawed). Whether a login took
	// the connect timeout is no measure: a healthy login takes as long
	// on a busy machine.
	for _, f := range w.failovers.triedSince(w.names[victim], o.down, o.repaired) {
		t.Errorf("a session opened at %s tried the frozen server after it was marked down (failed at %s)",
			f.started.Format("15:04:05.000"), f.at.Format("15:04:05.000"))
	}
	l.checkLong(t, w.names[victim])
}

// A server that greets and then never answers (a wedged process) and an
// address where nothing listens: the checks take both down, logins fail
// over to the good server, and once down neither gets a connection.
func TestGreetsButNeverAnswers(t *testing.T) {
	dovecottest.Require(t)
	good := dovecottest.Start(t, dovecottest.Options{})
	mute := startMute(t)
	nowhere := deadAddr(t)
	p, err := New(Options{Backend: &proxy.Backend{Name: "mixed", Security: proxy.BackendPlain,
		ConnectTimeout: 5 * time.Second, LoginTimeout: 3 * time.Second},
		Servers: []ServerOptions{{Name: "good", Addr: good.Addr}, {Name: "mute", Addr: mute}, {Name: "nowhere", Addr: nowhere}},
		Health:  HealthOptions{Interval: time.Second, FastInterval: 200 * time.Millisecond, Timeout: 2 * time.Second, Rise: 2, Fall: 3}})
	if err != nil {
		t.Fatal(err)
	}
	set := mustSet(t, p)
	_, events := monitor(t, set)
	failovers := newFailoverLog(t)
	srv, addr := startProxy(t, &Router{Set: set, Next: &proxy.StaticRouter{Default: p.Backend()}},
		func(o *proxy.Options) { o.Auditor = failovers })
	// Before the checks have decided, logins already fail over.
	for _, u := range []string{"alice", "bob"} {
		c, refusal, err := login(addr, u, u+"-pw")
		if err != nil || c == nil {
			t.Fatalf("%s: %q %v", u, refusal, err)
		}
		if on := sessionServer(srv, c.c.LocalAddr()); on != "good" {
			t.Errorf("%s on %s", u, on)
		}
		c.close()
	}
	for _, name := range []string{"mute", "nowhere"} {
		e := waitEvent(t, events, 0, name, Down)
		t.Logf("%s down: %s", name, e.Err)
	}
	st := set.Status()[0]
	if !st.Available || st.Servers[1].Health != "down" || st.Servers[2].Health != "down" || st.Servers[0].Health != "up" {
		t.Errorf("status %+v", st)
	}
	// Down: logins go straight to the good server; none tries the others.
	// (The mute one still gets the checks' connections, as many as the
	// logins take seconds: not a measure.)
	downAt := time.Now()
	for range 20 {
		c, _, err := login(addr, "alice", "alice-pw")
		if err != nil || c == nil {
			t.Fatal(err)
		}
		c.close()
	}
	for _, name := range []string{"mute", "nowhere"} {
		if tried := failovers.triedSince(name, downAt, time.Time{}); len(tried) > 0 {
			t.Errorf("%d logins tried the down server %s", len(tried), name)
		}
	}
	if err := set.Ready(); err != nil {
		t.Errorf("Ready with one good server: %v", err)
	}
	mark := events.len()
	good.Kill()
	e := waitEvent(t, events, mark, "good", Down)
	err = set.Ready()
	if err == nil || !strings.Contains(err.Error(), "no server taking logins") || !strings.Contains(err.Error(), "good down") {
		t.Errorf("Ready with every server down: %v (good went down: %s)", err, e.Err)
	}
	c, refusal, err := login(addr, "alice", "alice-pw")
	if err != nil || c != nil || !strings.HasPrefix(refusal, "NO [UNAVAILABLE]") {
		t.Errorf("login with every server down: %q %v", refusal, err)
	}
}

// startMute listens on loopback, greets each connection with a bare OK
// (no capabilities: the proxy must ask CAPABILITY) and then reads and
// never answers. It returns the address.
func startMute(t *testing.T) string {
	addr, _ := serveTCP(t, func(c net.Conn) {
		c.Write([]byte("* OK mute server ready\r\n"))
		io.Copy(io.Discard, c)
	})
	return addr
}

// Drain, kick and enable from the operator: a drained server takes no new
// login while its sessions go on; kicked, they end at their next command
// with BYE [UNAVAILABLE]; enabled, its users come back at their next
// login. Metrics follow.
func TestDrainKickEnable(t *testing.T) {
	dovecottest.Require(t)
	users := map[string]string{}
	for i := range 10 {
		u, pw := loadUser(i)
		users[u] = pw
	}
	var servers []ServerOptions
	for _, n := range []string{"x", "y"} {
		dc := dovecottest.Start(t, dovecottest.Options{Users: users})
		servers = append(servers, ServerOptions{Name: n, Addr: dc.Addr})
	}
	p, err := New(Options{Backend: &proxy.Backend{Name: "main", Security: proxy.BackendPlain}, Servers: servers})
	if err != nil {
		t.Fatal(err)
	}
	set := mustSet(t, p)
	mon, _ := monitor(t, set)
	srv, addr := startProxy(t, &Router{Set: set, Next: &proxy.StaticRouter{Default: p.Backend()}})
	home := func(u string) string { b, _ := p.Pick(&proxy.SessionInfo{}, u, nil); return b.Server }
	// A user of each server.
	var ux, uy string
	for u := range users {
		if home(u) == "x" {
			ux = u
		} else {
			uy = u
		}
	}
	if ux == "" || uy == "" {
		t.Fatalf("ten users on one server: %q %q", ux, uy)
	}
	open := func(u string) (*client, string) {
		c, refusal, err := login(addr, u, users[u])
		if err != nil || c == nil {
			t.Fatalf("%s: %q %v", u, refusal, err)
		}
		return c, sessionServer(srv, c.c.LocalAddr())
	}
	cx, on := open(ux)
	if on != "x" {
		t.Fatalf("%s on %s", ux, on)
	}
	if _, _, err := set.SetAdmin("main", "x", Draining); err != nil {
		t.Fatal(err)
	}
	if err := cx.ok("NOOP"); err != nil {
		t.Fatalf("session on the drained server: %v", err)
	}
	c2, on := open(ux)
	if on != "y" {
		t.Errorf("new login of %s during the drain on %s", ux, on)
	}
	c2.close()
	if got := gaugeValue(t, mon, "imapwarden_backend_admin_state", `backend="main",server="x",state="drain"`); got != 1 {
		t.Errorf("admin_state drain = %v", got)
	}
	if got := gaugeValue(t, mon, "imapwarden_backend_sessions", `backend="main",server="x"`); got != 1 {
		t.Errorf("sessions on x = %v", got)
	}
	// Kick: the session ends at its next command.
	if n := srv.EndServerSessions("main", "x", "Backend server taken out of service"); n != 1 {
		t.Errorf("kicked %d sessions, want 1", n)
	}
	un, st, err := cx.do("NOOP")
	if err == nil || !slices.ContainsFunc(un, func(l string) bool {
		return strings.HasPrefix(l, "* BYE [UNAVAILABLE] Backend server taken out of service")
	}) {
		t.Errorf("kicked session: %q %q %v", un, st, err)
	}
	if _, _, err := set.SetAdmin("main", "x", Enabled); err != nil {
		t.Fatal(err)
	}
	c3, on := open(ux)
	if on != "x" {
		t.Errorf("after enable %s logs in on %s", ux, on)
	}
	c3.close()
	cy, _ := open(uy)
	defer cy.close()
	if _, _, err := set.SetAdmin("main", "nope", Draining); err == nil {
		t.Error("unknown server accepted")
	}
	if got := gaugeValue(t, mon, "imapwarden_backend_up", `backend="main",server="y"`); got != 1 {
		t.Errorf("up y = %v", got)
	}
}

// gaugeValue reads one series of the Monitor's metrics (-1 when absent),
// after linting them all.
func gaugeValue(t *testing.T, mon *Monitor, name, labels string) float64 {
	t.Helper()
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(mon.Collector())
	problems, err := testutil.GatherAndLint(reg)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Errorf("metric lint: %s: %s", p.Metric, p.Text)
	}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			var ls []string
			for _, lp := range m.GetLabel() {
				ls = append(ls, fmt.Sprintf("%s=%q", lp.GetName(), lp.GetValue()))
			}
			if strings.Join(ls, ",") != labels {
				continue
			}
			if g := m.GetGauge(); g != nil {
				return g.GetValue()
			}
			return m.GetCounter().GetValue()
		}
	}
	return -1
}
