package difftest

import (
	"crypto/tls"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/imapwarden/imapwarden/audit"
	"github.com/imapwarden/imapwarden/internal/testenv"
)

// Env is one backend behind one imapwarden, and what the harness knows of
// both: the backend's state as last read directly, the audit trail read so
// far, the proxy session in use.
//
// Several Envs may share one backend and proxy (Worker), each with users
// of its own, so that a backend's cases run in parallel: records are told
// apart by their user.
type Env struct {
	t     testing.TB
	B     *Backend
	P     *Proxy
	Trail *AuditReader
	// Main is the user of steps that name none.
	Main string

	direct map[string]*Conn           // per user, to the backend itself
	state  map[string]*State          // per user, as last read
	subs   map[string]map[string]bool // per user, the baseline subscriptions
	sess   *Conn                      // the proxy session, nil when none
	user   string                     // its user
	sessID string                     // its id in the trail
	early  []*audit.Record            // records of it read before they were asked for
	got    *received                  // content the client received, shared by Workers
	seq    int
	// Resets and Logins count the harness's own work, for its report.
	Resets, Logins int
}

// received counts, per user, the content clients received through one
// proxy: octets and messages.
type received struct {
	mu     sync.Mutex
	octets map[string]int64
	msgs   map[string]int64
}

// add counts content user received and returns the user's totals.
func (r *received) add(user string, octets, msgs int64) (int64, int64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.octets[user] += octets
	r.msgs[user] += msgs
	return r.octets[user], r.msgs[user]
}

// ProxyFor returns the proxy configuration the tests use in front of b:
// the shipped policies with data naming b's mailboxes, the users' groups,
// the capped group's limits.
func ProxyFor(b *Backend) ProxyConfig {
	legal := []string{}
	for _, h := range Held[:1] {
		legal = append(legal, fmt.Sprintf("%q", b.Canonical(h)))
	}
	prot := []string{}
	for _, p := range Protected {
		prot = append(prot, fmt.Sprintf("%q", b.Canonical(p)))
	}
	return ProxyConfig{
		BackendAddr: b.TLSAddr,
		BackendCA:   b.CAFile,
		PolicyData: map[string]string{
			"legal_hold":        fmt.Sprintf("users: []\nmailboxes: {\"*\": [%s]}\n", strings.Join(legal, ", ")),
			"protected_folders": fmt.Sprintf("mailboxes: [%s]\n", strings.Join(prot, ", ")),
			"readonly":          "users: [rouser]\ngroups: []\n",
			"append_size":       "default_bytes: 0\ngroups: {small: 2000}\n",
		},
		Groups: map[string][]string{"staff": {"alice", "alice2", "alice3", "alice4"}, "small": {"small"}, "capped": {"capf", "capg", "capp"}},
		RateLimits: fmt.Sprintf("group_limits: {capped: {fetch_bytes_per_user: %dKiB/24h, fetch_messages_per_user: %d/24h}}",
			CapBytes/1024, CapMessages),
	}
}

// StartEnv starts backend name with the fixtures for every user and an
// imapwarden in front of it.
func StartEnv(t testing.TB, name string) *Env {
	t.Helper()
	b := StartBackend(t, name)
	for _, u := range Users {
		if !strings.HasPrefix(u, "cap") {
			b.Setup(t, u)
		}
	}
	for _, u := range []string{"capf", "capg", "capp"} {
		cn := b.Login(t, u)
		for i := range 40 {
			if err := b.Append(cn, "INBOX", "", Message(fmt.Sprintf("%s bulk %d", u, i), 3000)); err != nil {
				t.Fatal(err)
			}
		}
		cn.Close()
	}
	return newEnv(t, b, StartProxy(t, ProxyFor(b)), "alice", &received{octets: map[string]int64{}, msgs: map[string]int64{}})
}

// Worker returns an Env on the same backend and proxy for test t, whose
// steps run as alice<k+1> (k > 0; alice for k = 0).
func (e *Env) Worker(t testing.TB, k int) *Env {
	main := "alice"
	if k > 0 {
		main = fmt.Sprintf("alice%d", k+1)
	}
	return newEnv(t, e.B, e.P, main, e.got)
}

// SetT makes the Env report to t from now on (a fuzz target's Env serves
// one input after another).
func (e *Env) SetT(t testing.TB) { e.t = t }

func newEnv(t testing.TB, b *Backend, p *Proxy, main string, got *received) *Env {
	e := &Env{t: t, B: b, P: p, Main: main, direct: map[string]*Conn{}, state: map[string]*State{},
		subs: map[string]map[string]bool{}, got: got}
	e.Trail = e.P.Audit()
	t.Cleanup(func() {
		if e.sess != nil {
			e.sess.Close()
		}
		for _, c := range e.direct {
			c.Close()
		}
	})
	return e
}

// Direct returns the direct connection to the backend as user.
func (e *Env) Direct(user string) *Conn {
	if c := e.direct[user]; c != nil {
		return c
	}
	c := e.B.Login(e.t, user)
	e.direct[user] = c
	return c
}

// State returns user's state, read when first asked.
func (e *Env) State(user string) *State {
	if st := e.state[user]; st != nil {
		return st
	}
	st, err := Snapshot(e.Direct(user), e.B.Delim)
	if err != nil {
		e.t.Fatalf("%s: snapshot: %v", e.B.Name, err)
	}
	e.state[user] = st
	if e.subs[user] == nil {
		e.subs[user] = copySet(st.Subs)
	}
	return st
}

func copySet(m map[string]bool) map[string]bool {
	out := make(map[string]bool, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}

// Tag returns a fresh tag with prefix p.
func (e *Env) Tag(p string) string {
	e.seq++
	return fmt.Sprintf("%s%d", p, e.seq)
}

// Part is one write of a command: a line up to a literal's content or the
// command's end.
type Part struct {
	Data []byte
	// Cont: after Data, wait for a continuation request ("+", for a
	// synchronizing literal or IDLE) or the command's completion, which
	// ends the command.
	Cont bool
	// Do runs after Data (and the continuation), e.g. a delivery while
	// IDLE; Until then reads responses until one satisfies it or the
	// command completes.
	Do    func(*Env) error
	Until func(*Resp) bool
}

// Cmd is one command of a step.
type Cmd struct {
	Tag   string
	Parts []Part
	// After: written only once the command tagged After completed.
	After string
	// Alone: what is written so far leaves before the next command.
	Alone bool
}

// Step is what the harness sends in one go, and what it expects of the
// backend's state beyond the audited commands.
type Step struct {
	Label string
	User  string // "" for alice
	Cmds  []Cmd
	// Adds are canonical mailboxes that Do hooks deliver messages to.
	Adds []string
	// Logout ends the session after the step, so that records written
	// after the client's last answer (deliveries, the session's end) are
	// in the trail before the checks.
	Logout bool
}

// Outcome is what happened in a step.
type Outcome struct {
	Resps  []*Resp
	Done   map[string]*Resp // completions by tag
	Closed bool             // the session ended
	// Stuck: a response the step waited for did not come within
	// testenv.IOTimeout; the harness then closed the session.
	Stuck  error
	Bye    *Resp
	Recs   []*audit.Record // records of the step's session(s)
	Before *State
	After  *State
}

// session makes sure a proxy session is logged in as user.
func (e *Env) session(user string) error {
	if e.sess != nil && e.user == user {
		return nil
	}
	e.endSession()
	cn, g, err := Dial(e.P.Addr, &tls.Config{InsecureSkipVerify: true}, testenv.IOTimeout())
	if err != nil {
		return err
	}
	if g.Status != "OK" {
		cn.Close()
		return fmt.Errorf("greeting %q", g.Text)
	}
	if _, err := cn.OK("L", "LOGIN %s %s", user, Quote(user+"-pw")); err != nil {
		cn.Close()
		return fmt.Errorf("login %s through the proxy: %w", user, err)
	}
	e.sess, e.user = cn, user
	e.Logins++
	// The session's id, from its auth record: the trail is shared with
	// other workers' sessions.
	e.sessID, e.early = "", nil
	deadline := time.Now().Add(testenv.IOTimeout())
	for e.sessID == "" {
		for _, r := range e.Trail.Read() {
			if r.Kind == audit.KindAuth && r.User == user && r.Result == audit.ResultSuccess && e.sessID == "" {
				e.sessID = r.Session
			} else if e.sessID != "" && r.Session == e.sessID {
				e.early = append(e.early, r)
			}
		}
		if e.sessID == "" && !e.Trail.Wait(time.Until(deadline)) {
			return fmt.Errorf("no auth record for %s in the trail", user)
		}
	}
	return nil
}

// endSession logs out and waits until the trail holds the session's end.
func (e *Env) endSession() {
	if e.sess == nil {
		return
	}
	e.sess.Cmd("LO", "LOGOUT")
	e.sess.Close()
	e.sess = nil
}

// Run sends a step through the proxy and checks the backend's state
// against what the proxy decided and audited. It returns the problems
// found (none: the proxy and the backend agree).
func (e *Env) Run(st *Step) (*Outcome, []string) {
	user := st.User
	if user == "" {
		user = e.Main
	}
	before := e.State(user)
	if err := e.session(user); err != nil {
		e.t.Fatalf("%s: %s: %v", e.B.Name, st.Label, err)
	}
	o := e.exec(st)
	o.Before = before
	if o.Closed {
		e.sess.Close()
		e.sess = nil
	}
	if o.Stuck != nil {
		// What the session was sent and answered, for the report.
		var sent strings.Builder
		for _, c := range st.Cmds {
			for _, p := range c.Parts {
				sent.Write(p.Data)
			}
		}
		e.t.Logf("%s: %s: stuck (%v) after sending %q; the proxy answered:", e.B.Name, st.Label, o.Stuck, sent.String())
		for _, r := range o.Resps {
			e.t.Logf("  %q", r.Text)
		}
	}
	o.Recs = e.records(o.Closed, st.Label)
	after, err := Snapshot(e.Direct(user), e.B.Delim)
	if err != nil {
		e.t.Fatalf("%s: %s: snapshot: %v", e.B.Name, st.Label, err)
	}
	o.After = after
	probs := e.check(st, user, o)
	if o.Stuck != nil {
		probs = append(probs, fmt.Sprintf("stuck: %v (responses so far: %d)", o.Stuck, len(o.Resps)))
	}
	if fix, extra := e.B.shapeProblems(after, e.subs[user]); len(fix) > 0 || len(extra) > 0 || !sameSet(after.Subs, e.subs[user]) {
		// The session must not see the mailboxes change under it, and
		// some servers keep a selected mailbox from being deleted.
		e.endSession()
		e.Resets++
		if after, err = e.B.Reset(e.Direct(user), after, e.subs[user]); err != nil {
			e.t.Fatalf("%s: after %s: %v", e.B.Name, st.Label, err)
		}
	}
	e.state[user] = after
	return o, probs
}

func sameSet(a, b map[string]bool) bool {
	if len(a) != len(b) {
		return false
	}
	for k := range a {
		if !b[k] {
			return false
		}
	}
	return true
}

// records reads the records of the step's session; when the session
// ended, up to its session.close record, which the proxy writes after
// every other record of the session.
func (e *Env) records(ended bool, label string) []*audit.Record {
	out := e.early
	e.early = nil
	closed := false
	for _, r := range out {
		closed = closed || r.Kind == audit.KindSessionClose
	}
	deadline := time.Now().Add(testenv.IOTimeout())
	for {
		for _, r := range e.Trail.Read() {
			if r.Session != e.sessID {
				continue
			}
			out = append(out, r)
			closed = closed || r.Kind == audit.KindSessionClose
		}
		if !ended || closed {
			return out
		}
		if !e.Trail.Wait(time.Until(deadline)) {
			e.t.Fatalf("%s: %s: no session.close record of session %s in the trail; its log:\n%s", e.B.Name, label, e.sessID, e.P.SessionLog(e.sessID))
		}
	}
}

// exec writes a step's commands as the step says and reads the responses
// up to a final NOOP's, or the end of the session.
func (e *Env) exec(st *Step) *Outcome {
	o := &Outcome{Done: map[string]*Resp{}}
	cn := e.sess
	var buf []byte
	flush := func() bool {
		if len(buf) == 0 {
			return true
		}
		err := cn.Write(buf)
		buf = buf[:0]
		return err == nil
	}
	read := func() *Resp {
		r, err := cn.Next()
		if err != nil {
			if !errors.Is(err, errClosed) {
				o.Stuck = err
				cn.Close()
			}
			o.Closed = true
			return nil
		}
		o.Resps = append(o.Resps, r)
		if r.Status == "BYE" {
			o.Bye = r
		}
		if r.Tag != "*" && r.Tag != "+" {
			o.Done[r.Tag] = r
		}
		return r
	}
	waitTag := func(tag string) bool {
		for o.Done[tag] == nil {
			if read() == nil {
				return false
			}
		}
		return true
	}
cmds:
	for _, c := range st.Cmds {
		if c.After != "" {
			if !flush() || !waitTag(c.After) {
				break
			}
		}
	parts:
		for _, p := range c.Parts {
			buf = append(buf, p.Data...)
			if p.Cont {
				if !flush() {
					break cmds
				}
				for {
					r := read()
					if r == nil {
						break cmds
					}
					if r.Cont() {
						break
					}
					if r.Tag == c.Tag || (r.Tag == "*" && r.Status == "BAD") {
						// Refused: the rest of the command is not sent.
						break parts
					}
				}
			}
			if p.Do != nil {
				if !flush() {
					break cmds
				}
				if err := p.Do(e); err != nil {
					e.t.Fatalf("%s: %s: %v", e.B.Name, st.Label, err)
				}
			}
			if p.Until != nil {
				for o.Done[c.Tag] == nil {
					r := read()
					if r == nil {
						break cmds
					}
					if p.Until(r) {
						break
					}
				}
			}
		}
		if c.Alone && !flush() {
			break
		}
	}
	if !o.Closed {
		// A NOOP marks the end; or LOGOUT, after which the trail holds
		// every record of the session once it holds its end.
		end, verb := e.Tag("zz"), "NOOP"
		if st.Logout {
			verb = "LOGOUT"
		}
		buf = append(buf, end+" "+verb+"\r\n"...)
		if !flush() || !waitTag(end) || st.Logout {
			o.Closed = true
		}
	}
	if o.Closed {
		// What is left after BYE, up to the close.
		for read() != nil {
		}
	}
	return o
}
