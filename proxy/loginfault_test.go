package proxy

import (
	"bufio"
	"context"
	"encoding/base64"
	"errors"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/imapwarden/imapwarden/internal/couriertest"
	"github.com/imapwarden/imapwarden/internal/cyrustest"
	"github.com/imapwarden/imapwarden/internal/dovecottest"
	"github.com/imapwarden/imapwarden/internal/testenv"
)

// recBalancer offers one server and records what it is told.
type recBalancer struct {
	b        *Backend
	mu       sync.Mutex
	picks    int
	results  []error
	sessions atomic.Int64
}

func (r *recBalancer) Pick(_ *SessionInfo, _ string, tried []string) (*Backend, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if slices.Contains(tried, r.b.Server) {
		return nil, ErrNoServer
	}
	r.picks++
	return r.b, nil
}

func (r *recBalancer) Result(_ *Backend, err error) {
	r.mu.Lock()
	r.results = append(r.results, err)
	r.mu.Unlock()
}

func (r *recBalancer) Acquire(*Backend) func() {
	r.sessions.Add(1)
	var once sync.Once
	return func() { once.Do(func() { r.sessions.Add(-1) }) }
}

func (r *recBalancer) failures() []error {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []error
	for _, err := range r.results {
		if err != nil {
			out = append(out, err)
		}
	}
	return out
}

// A backend that greets and then ends the connection on the login
// command (Dovecot's "* BYE Input buffer full" to a long LOGIN, a silent
// close or a reset) refused that login: the client is answered as for a
// wrong password, the lockouts count it, the pool is told nothing (no
// passive health failure for one client's login) and no other server is
// sent it (ARCHITECTURE.md §13).
func TestDroppedLoginIsAFailedLogin(t *testing.T) {
	for _, how := range []string{"bye", "close", "reset"} {
		t.Run(how, func(t *testing.T) {
			ln := serveEach(t, func(c net.Conn) {
				c.Write([]byte("* OK [CAPABILITY IMAP4rev1] hi\r\n"))
				r := bufio.NewReader(c)
				for {
					l, err := r.ReadString('\n')
					if err != nil || !strings.Contains(l, "LOGIN") {
						if err != nil {
							return
						}
						continue
					}
					switch how {
					case "bye":
						c.Write([]byte("* BYE Input buffer full, aborting\r\n"))
					case "reset":
						c.(*net.TCPConn).SetLinger(0)
					}
					return
				}
			})
			bal := &recBalancer{}
			be := &Backend{Name: "frail", Addr: ln.Addr().String(), Security: BackendPlain, Login: LoginCommand, Servers: bal}
			bal.b = &Backend{Name: "frail", Server: "s0", Addr: be.Addr, Security: BackendPlain, Login: LoginCommand}
			fl := &fakeLimiter{failures: map[string]int{}}
			h := newHarness(t, func(o *Options) {
				o.Router = &StaticRouter{Default: be}
				o.Limiter = fl
			})
			c := dialTLS(t, h.imaps)
			c.expect("* OK")
			c.transact("a LOGIN alice alice-pw", "a NO [AUTHENTICATIONFAILED]")
			if ev := h.audit.lastAuth(t); ev.Reason != "backend-dropped" {
				t.Errorf("audited reason %q, want backend-dropped", ev.Reason)
			}
			if f := bal.failures(); len(f) > 0 {
				t.Errorf("the dropped login was reported to the balancer as a server failure: %v", f)
			}
			if bal.picks != 1 {
				t.Errorf("%d servers picked for one login, want 1: a dropped login is not tried elsewhere", bal.picks)
			}
			fl.mu.Lock()
			n := fl.failures["alice"]
			fl.mu.Unlock()
			if n != 1 {
				t.Errorf("the lockouts counted %d failed logins, want 1", n)
			}
		})
	}
}

// Credentials longer than max_credential_bytes are answered NO [LIMIT]
// before anything is checked; no backend is sent them.
func TestCredentialsOverBoundRefused(t *testing.T) {
	var dials atomic.Int64
	ln := serveEach(t, func(c net.Conn) {
		dials.Add(1)
		c.Write([]byte("* OK [CAPABILITY IMAP4rev1 AUTH=PLAIN SASL-IR] hi\r\n"))
		r := bufio.NewReader(c)
		for {
			l, err := r.ReadString('\n')
			if err != nil {
				return
			}
			tag, _, _ := strings.Cut(l, " ")
			c.Write([]byte(tag + " NO [AUTHENTICATIONFAILED] no\r\n"))
		}
	})
	h := newHarness(t, func(o *Options) {
		o.Router = &StaticRouter{Default: &Backend{Name: "b", Addr: ln.Addr().String(), Security: BackendPlain}}
		o.Limits.MaxAuthFailures = 10
	})
	c := dialTLS(t, h.imaps)
	c.expect("* OK")
	over := strings.Repeat("p", DefaultMaxCredentialBytes-len("alice")+1)
	c.transact(`a1 LOGIN alice "`+over+`"`, "a1 NO [LIMIT]")
	plain := base64.StdEncoding.EncodeToString([]byte("\x00alice\x00" + over))
	c.transact("a2 AUTHENTICATE PLAIN "+plain, "a2 NO [LIMIT]")
	if n := dials.Load(); n != 0 {
		t.Errorf("credentials over the bound reached the backend (%d connections)", n)
	}
	if ev := h.audit.lastAuth(t); ev.Reason != "credentials-too-long" || strings.Contains(ev.Detail, "ppp") {
		t.Errorf("audited %q (%q), want credentials-too-long without them", ev.Reason, ev.Detail)
	}
	at := over[1:]
	c.transact(`a3 LOGIN alice "`+at+`"`, "a3 NO [AUTHENTICATIONFAILED]")
	if n := dials.Load(); n != 1 {
		t.Errorf("credentials at the bound not sent to the backend (%d connections)", n)
	}
}

// The default max_credential_bytes is what Dovecot, Cyrus and Courier
// take: credentials at the bound, in the forms that cost the most on the
// wire (escaped quoted strings, 8-bit literals, SASL PLAIN's base64),
// pipelined behind ID as the proxy sends them, are answered (NO, a wrong
// password), not a closed connection. Past the bound Dovecot ends the
// connection, which the proxy reads as a dropped login.
func TestCredentialBoundTakenByBackends(t *testing.T) {
	const user = "alice"
	room := DefaultMaxCredentialBytes - len(user)
	forms := map[string]string{
		"ascii":     strings.Repeat("p", room),
		"backslash": strings.Repeat(`\`, room),
		"quote":     strings.Repeat(`"`, room),
		"8bit":      strings.Repeat("é", room/2) + strings.Repeat("p", room%2),
	}
	info := &SessionInfo{ID: "bound", ClientAddr: netip.MustParseAddrPort("192.0.2.1:50000"), LocalAddr: netip.MustParseAddrPort("192.0.2.2:143")}
	try := func(t *testing.T, addr string, mode LoginMode, pass string) error {
		b := &Backend{Name: "b", Addr: addr, Security: BackendPlain, Login: mode, SendID: true,
			ConnectTimeout: testenv.IOTimeout(), LoginTimeout: testenv.IOTimeout()}
		bc, unwatch, err := dialBackend(context.Background(), b, info)
		if err != nil {
			t.Fatal(err)
		}
		defer bc.release()
		defer unwatch()
		return bc.login(context.Background(), user, "", user, pass, "LOGIN")
	}
	for _, name := range []string{"dovecot", "cyrus", "courier"} {
		t.Run(name, func(t *testing.T) {
			var addr string
			switch name {
			case "dovecot":
				dovecottest.Require(t)
				addr = dovecottest.Start(t, dovecottest.Options{}).Addr
			case "cyrus":
				cyrustest.Require(t)
				addr = cyrustest.Start(t, cyrustest.Options{}).Addr
			case "courier":
				couriertest.Require(t)
				addr = couriertest.Start(t, couriertest.Options{}).Addr
			}
			for _, mode := range []LoginMode{LoginCommand, LoginPlain} {
				for form, pass := range forms {
					if err := try(t, addr, mode, pass); !errors.Is(err, errBackendAuth) {
						t.Errorf("%v login, %s password of %d bytes: %v, want the credentials refused", mode, form, len(pass), err)
					}
				}
			}
			if name == "dovecot" {
				if err := try(t, addr, LoginCommand, strings.Repeat("p", 2000)); !errors.Is(err, errLoginDropped) {
					t.Errorf("a LOGIN past Dovecot's input buffer: %v, want a dropped login", err)
				}
			}
		})
	}
}

// Every count a session holds (the pre-login gate, COMPRESS, the
// Limiter's session and connection, the Balancer's place on its server)
// is given back however the session ends: a reset before a reply could
// be written, a reset at rest, Server.Close with sessions in every state
// (ARCHITECTURE.md §15).
func TestSessionEndsGiveEveryCountBack(t *testing.T) {
	bal := &recBalancer{}
	fl := &fakeLimiter{failures: map[string]int{}}
	h := newHarness(t, func(o *Options) {
		mem := o.Router.(*StaticRouter).Default
		s0 := *mem
		s0.Server = "s0"
		bal.b = &s0
		mem.Servers = bal
		o.Limiter = fl
		o.Limits.MaxCompressSessions = 2
	})
	counts := func() string {
		fl.mu.Lock()
		defer fl.mu.Unlock()
		var bad []string
		for name, n := range map[string]int64{
			"compressing": h.srv.compressing.Load(), "pre-auth": h.srv.preAuth.n.Load(),
			"limiter sessions": int64(fl.sessions), "limiter connections": int64(fl.live), "balancer sessions": bal.sessions.Load(),
		} {
			if n != 0 {
				bad = append(bad, name+"="+strconv.FormatInt(n, 10))
			}
		}
		slices.Sort(bad)
		return strings.Join(bad, " ")
	}
	waitZero := func(when string) {
		t.Helper()
		deadline := time.Now().Add(testenv.IOTimeout())
		for counts() != "" {
			if time.Now().After(deadline) {
				t.Errorf("%s: counts not given back: %s", when, counts())
				return
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	reset := func(raw net.Conn) { raw.(*net.TCPConn).SetLinger(0); raw.Close() }
	open := func() (net.Conn, *tconn) { return dialGreeted(t, h.imaps) }
	// Ended by the client, at each point.
	ends := 0
	for _, at := range []string{"preauth", "loggedin", "compress-unanswered", "compressed"} {
		raw, c := open()
		switch at {
		case "loggedin":
			c.transact("l LOGIN alice alice-pw", "l OK")
		case "compress-unanswered":
			c.transact("l LOGIN alice alice-pw", "l OK")
			c.send("z COMPRESS DEFLATE")
		case "compressed":
			c.transact("l LOGIN alice alice-pw", "l OK")
			c.transact("z COMPRESS DEFLATE", "z OK")
		}
		reset(raw)
		ends++
	}
	h.audit.waitCloses(t, ends)
	waitZero("after resets")
	// Ended by Server.Close, in each state.
	_, pre := open()
	_, in := open()
	in.transact("l LOGIN alice alice-pw", "l OK")
	_, z := open()
	z.transact("l LOGIN alice alice-pw", "l OK")
	z.transact("z COMPRESS DEFLATE", "z OK")
	_ = pre
	h.srv.Close()
	h.srv.Wait()
	waitZero("after Close")
}

// An administrator's EndSession reaches a session logging in to a
// backend that never answers: the login ends at once (NO [UNAVAILABLE]),
// then the BYE with the administrator's text; the silent server is not
// reported to the balancer as failed (ARCHITECTURE.md §15).
func TestEndSessionEndsLogin(t *testing.T) {
	ln, gotLogin, hold := frozenLoginBackend(t)
	bal := &recBalancer{}
	bal.b = &Backend{Name: "frozen", Server: "s0", Addr: ln.Addr().String(), Security: BackendPlain, Login: LoginCommand, LoginTimeout: time.Hour}
	h := newHarness(t, func(o *Options) {
		o.Router = &StaticRouter{Default: &Backend{Name: "frozen", Addr: ln.Addr().String(), Security: BackendPlain,
			Login: LoginCommand, LoginTimeout: time.Hour, Servers: bal}}
	})
	t.Cleanup(func() { close(hold) })
	c := dialTLS(t, h.imaps)
	c.expect("* OK")
	c.send("a LOGIN alice alice-pw")
	<-gotLogin
	var id string
	for _, s := range h.srv.Sessions() {
		id = s.ID
	}
	if !h.srv.EndSession(id) {
		t.Fatal("EndSession found no session")
	}
	c.expectTagged("a", "a NO [UNAVAILABLE]")
	c.expectClosed("* BYE [UNAVAILABLE] Session ended by the administrator")
	if f := bal.failures(); len(f) > 0 {
		t.Errorf("a login the session ended was reported to the balancer as a server failure: %v", f)
	}
}
