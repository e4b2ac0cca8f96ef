package policy

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"net/netip"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/zap/zaptest"

	"github.com/imapwarden/imapwarden/internal/dovecottest"
	"github.com/imapwarden/imapwarden/internal/testenv"
	"github.com/imapwarden/imapwarden/proxy"
	"github.com/imapwarden/imapwarden/tlsterm"
)

// The end-to-end tests run the shipped policies in the proxy in front of a
// real, private Dovecot: one Dovecot per test function, shared by its
// subtests, one proxy per subtest.

// e2eUsers are Dovecot's users (password: name + "-pw") and their groups.
var e2eGroups = map[string][]string{
	"alice": {"staff", "small"},
	"bob":   {"staff"},
	"carol": {"contractors"},
	"dave":  {"staff"},
	"erin":  {"staff"},
	"frank": {"shift"},
	"gina":  {"managed"},
	"root":  {"admins"},
}

// e2eData configures every shipped policy for the users above.
var e2eData = map[string]string{
	"baseline":       "blocked_networks: []\nplaintext_networks: []\nproxy_terminates_compress: false\n",
	"network":        "groups: {contractors: [10.8.0.0/16], admins: [127.0.0.0/8]}\n",
	"readonly":       "users: [dave]\ngroups: []\n",
	"legal_hold":     "users: [erin]\nmailboxes: {\"*\": [Legal]}\n",
	"append_size":    "default_bytes: 0\ngroups: {small: 1000}\n",
	"acl":            "admin_groups: [admins]\n",
	"business_hours": "end_sessions: true\ngroups: {shift: {days: [Mon, Tue, Wed, Thu, Fri], start: \"08:00\", end: \"18:00\"}}\n",
	"clients":        "groups: {managed: [Thunderbird]}\n",
	"routing":        "users: {}\ngroups: {}\n",
}

type e2eEnv struct {
	t  *testing.T
	dc *dovecottest.Server
	be *proxy.Backend
}

func startDovecot(t *testing.T) *e2eEnv {
	dovecottest.Require(t)
	users := map[string]string{}
	for u := range e2eGroups {
		users[u] = u + "-pw"
	}
	dc := dovecottest.Start(t, dovecottest.Options{Users: users, ACL: true})
	pem, err := os.ReadFile(dc.CAFile)
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(pem)
	be := &proxy.Backend{Name: "dovecot", Addr: dc.Addr, Security: proxy.BackendStartTLS,
		TLS: &tls.Config{RootCAs: roots, ServerName: "localhost"}, SendID: true}
	return &e2eEnv{t: t, dc: dc, be: be}
}

// clock is a settable time for business hours.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time  { c.mu.Lock(); defer c.mu.Unlock(); return c.now }
func (c *clock) Set(t time.Time) { c.mu.Lock(); c.now = t; c.mu.Unlock() }

// countingRouter records whether a backend was asked for: the proxy
// routes only after the auth decision allowed the login.
type countingRouter struct {
	proxy.Router
	calls atomic.Int32
}

func (r *countingRouter) Route(ctx context.Context, s *proxy.SessionInfo, user string) (*proxy.Backend, error) {
	r.calls.Add(1)
	return r.Router.Route(ctx, s, user)
}

// recorder is a proxy.Auditor keeping command and auth events; the other
// events go to the proxy's log auditor.
type recorder struct {
	proxy.Auditor
	mu       sync.Mutex
	commands []proxy.CommandEvent
	auths    []proxy.AuthEvent
}

func (r *recorder) Auth(_ *proxy.SessionInfo, e proxy.AuthEvent) {
	r.mu.Lock()
	r.auths = append(r.auths, e)
	r.mu.Unlock()
}

// authDenied checks that the last auth event is a policy refusal with the
// given reason: the client saw only "Authentication failed".
func (r *recorder) authDenied(t *testing.T, reason string) {
	t.Helper()
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.auths) == 0 {
		t.Fatal("no auth event")
	}
	e := r.auths[len(r.auths)-1]
	if e.Success || e.Reason != "policy" || e.Decision == nil || !strings.HasPrefix(e.Decision.Reason, reason) {
		t.Fatalf("last auth event %+v, want a policy refusal %q", e, reason)
	}
}

func (r *recorder) Command(_ *proxy.SessionInfo, e proxy.CommandEvent) error {
	r.mu.Lock()
	r.commands = append(r.commands, e.Clone())
	r.mu.Unlock()
	return nil
}

// command returns the last event of the command with tag.
func (r *recorder) command(tag string) (proxy.CommandEvent, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for i := len(r.commands) - 1; i >= 0; i-- {
		if r.commands[i].Command.Tag == tag {
			return r.commands[i], true
		}
	}
	return proxy.CommandEvent{}, false
}

type e2eProxy struct {
	engine   *Engine
	router   *countingRouter
	audit    *recorder
	imaps    string // implicit TLS
	starttls string // STARTTLS, plaintext login allowed from loopback by the listener
}

var e2eCert = sync.OnceValues(func() (tls.Certificate, error) {
	certPEM, keyPEM, err := tlsterm.SelfSigned([]string{"localhost", "127.0.0.1"}, time.Hour)
	if err != nil {
		return tls.Certificate{}, err
	}
	return tls.X509KeyPair(certPEM, keyPEM)
})

// startProxy runs the proxy with an Engine on opts, routing to Dovecot
// (or by policy when routes is set).
func (env *e2eEnv) startProxy(opts Options, routes map[string]*proxy.Backend) *e2eProxy {
	t := env.t
	cert, err := e2eCert()
	if err != nil {
		t.Fatal(err)
	}
	opts.Logger = zaptest.NewLogger(t)
	opts.PollInterval = -1
	if opts.Groups == nil {
		opts.Groups = e2eGroups
	}
	e, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.Close() })
	var router proxy.Router = &proxy.StaticRouter{Default: env.be}
	if routes != nil {
		router = &Router{Engine: e, Backends: routes, Fallback: router}
	}
	p := &e2eProxy{engine: e, router: &countingRouter{Router: router}, audit: &recorder{Auditor: proxy.NewLogAuditor(zaptest.NewLogger(t))}}
	tlsConf := &tls.Config{Certificates: []tls.Certificate{cert}, NextProtos: []string{"imap"}}
	srv, err := proxy.NewServer(proxy.Options{
		Listeners: []proxy.ListenerOptions{
			{Name: "imaps", Addr: "127.0.0.1:0", Mode: proxy.ImplicitTLS, TLS: tlsConf},
			{Name: "imap", Addr: "127.0.0.1:0", Mode: proxy.StartTLS, TLS: tlsConf,
				PlaintextAuthFrom: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}},
		},
		Router:  p.router,
		Decider: e,
		Auditor: p.audit,
		Logger:  zaptest.NewLogger(t),
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close(); srv.Wait() })
	addrs := srv.Addrs()
	p.imaps, p.starttls = addrs[0].String(), addrs[1].String()
	return p
}

// client is an IMAP client whose test reads like a transcript.
type client struct {
	t  *testing.T
	c  net.Conn
	br *bufio.Reader
}

func dialIMAPS(t *testing.T, addr string) *client {
	t.Helper()
	c, err := tls.Dial("tcp", addr, &tls.Config{InsecureSkipVerify: true, NextProtos: []string{"imap"}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	cl := &client{t: t, c: c, br: bufio.NewReader(c)}
	return cl
}

func dialPlain(t *testing.T, addr string) *client {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return &client{t: t, c: c, br: bufio.NewReader(c)}
}

func (c *client) sendRaw(s string) {
	c.t.Helper()
	c.c.SetWriteDeadline(time.Now().Add(testenv.IOTimeout()))
	if _, err := c.c.Write([]byte(s)); err != nil {
		c.t.Fatalf("write %q: %v", s, err)
	}
}

func (c *client) line() string {
	c.t.Helper()
	c.c.SetReadDeadline(time.Now().Add(testenv.IOTimeout()))
	l, err := c.br.ReadString('\n')
	if err != nil {
		c.t.Fatalf("read: %v (got %q)", err, l)
	}
	return strings.TrimRight(l, "\r\n")
}

func (c *client) expect(prefix string) string {
	c.t.Helper()
	l := c.line()
	if !strings.HasPrefix(l, prefix) {
		c.t.Fatalf("got %q, want %q...", l, prefix)
	}
	return l
}

// transact sends cmd and checks its tagged reply starts with want; it
// returns the untagged lines.
func (c *client) transact(cmd, want string) []string {
	c.t.Helper()
	c.sendRaw(cmd + "\r\n")
	tag, _, _ := strings.Cut(cmd, " ")
	return c.tagged(tag, want)
}

func (c *client) tagged(tag, want string) []string {
	c.t.Helper()
	var un []string
	for {
		l := c.line()
		if strings.HasPrefix(l, tag+" ") {
			if !strings.HasPrefix(l, want) {
				c.t.Fatalf("got %q, want %q... (before: %q)", l, want, un)
			}
			return un
		}
		un = append(un, l)
	}
}

// expectClosed reads the given lines, then the end of the connection.
func (c *client) expectClosed(prefixes ...string) {
	c.t.Helper()
	for _, p := range prefixes {
		c.expect(p)
	}
	c.c.SetReadDeadline(time.Now().Add(testenv.IOTimeout()))
	if l, err := c.br.ReadString('\n'); err == nil {
		c.t.Fatalf("connection open, got %q", l)
	}
}

func (p *e2eProxy) login(t *testing.T, user string) *client {
	t.Helper()
	c := dialIMAPS(t, p.imaps)
	c.expect("* OK")
	c.transact(fmt.Sprintf("l1 LOGIN %s %s-pw", user, user), "l1 OK")
	return c
}

func message(subject string) string {
	return fmt.Sprintf("From: a@example.com\r\nTo: b@example.com\r\nSubject: %s\r\n\r\nbody of %s\r\n", subject, subject)
}

// monday10 is within business hours.
var monday10 = time.Date(2026, 3, 2, 10, 0, 0, 0, time.UTC)

// TestEndToEndShippedPolicies runs every shipped policy at once, as an
// operator would, through the proxy to Dovecot.
func TestEndToEndShippedPolicies(t *testing.T) {
	env := startDovecot(t)
	for _, u := range []string{"alice", "bob", "erin"} {
		env.dc.Deliver(t, u, "INBOX", []byte(message("one")))
		env.dc.Deliver(t, u, "INBOX", []byte(message("two")))
	}
	env.dc.Deliver(t, "bob", "Legal", []byte(message("evidence")))
	env.dc.Deliver(t, "alice", "Old", []byte(message("old")))
	clk := &clock{now: monday10}
	p := env.startProxy(Options{Dirs: []Dir{{Path: policySubset(t, e2eData)}}, Now: clk.Now}, nil)

	t.Run("baseline", func(t *testing.T) {
		// The listener allows plaintext login from loopback; the policy
		// does not. It decides once the password is checked (here by the
		// backend), and its refusal reads like a wrong password.
		c := dialPlain(t, p.starttls)
		c.expect("* OK")
		c.transact("a1 LOGIN alice alice-pw", "a1 NO [AUTHENTICATIONFAILED] Authentication failed")
		p.audit.authDenied(t, "TLS is required")
		c = p.login(t, "alice")
		// This test's baseline data turns proxy_terminates_compress off.
		c.transact("a2 COMPRESS DEFLATE", "a2 NO [CANNOT] COMPRESS is not available")
		c.transact("a3 NOOP", "a3 OK")
	})

	t.Run("network", func(t *testing.T) {
		c := dialIMAPS(t, p.imaps)
		c.expect("* OK")
		c.transact("a1 LOGIN carol carol-pw", "a1 NO [AUTHENTICATIONFAILED] Authentication failed")
		p.audit.authDenied(t, "Login not allowed from this network")
		p.login(t, "root") // admins: from 127.0.0.0/8 only
	})

	t.Run("readonly", func(t *testing.T) {
		c := p.login(t, "dave")
		c.transact("a1 SELECT INBOX", "a1 NO [NOPERM] Read-only account: open mailboxes with EXAMINE")
		c.transact("a2 EXAMINE INBOX", "a2 OK [READ-ONLY]")
		c.transact("a3 CREATE Notes", "a3 NO [NOPERM]")
		// A denied synchronizing literal gets the tagged NO, never "+".
		msg := message("x")
		c.sendRaw(fmt.Sprintf("a4 APPEND INBOX {%d}\r\n", len(msg)))
		c.expect("a4 NO [NOPERM] Read-only account: cannot add messages")
		// A denied non-synchronizing literal is discarded, the session goes on.
		c.sendRaw(fmt.Sprintf("a5 APPEND INBOX {%d+}\r\n%s\r\n", len(msg), msg))
		c.expect("a5 NO [NOPERM]")
		c.transact("a6 STATUS INBOX (MESSAGES)", "a6 OK")
		c.transact("a7 NOOP", "a7 OK")
	})

	t.Run("legal_hold", func(t *testing.T) {
		c := p.login(t, "erin")
		c.transact("a1 SELECT INBOX", "a1 OK")
		c.transact(`a2 STORE 1 +FLAGS (\Deleted)`, "a2 NO [NOPERM] Mailbox is under legal hold")
		c.transact(`a3 UID STORE 1:* FLAGS.SILENT (\Seen \Deleted)`, "a3 NO [NOPERM]")
		c.transact(`a4 STORE 1 +FLAGS (\Flagged)`, "a4 OK")
		c.transact("a5 EXPUNGE", "a5 NO [NOPERM]")
		c.transact("a6 MOVE 1 Trash", "a6 NO [NOPERM]")
		c.transact("a7 COPY 1 Archive", "a7 ") // allowed; Dovecot may refuse a missing mailbox
		c.transact("a8 DELETE INBOX", "a8 NO [NOPERM]")
		un := c.transact("a9 STATUS INBOX (MESSAGES)", "a9 OK")
		if len(un) != 1 || !strings.Contains(un[0], "MESSAGES 2") {
			t.Fatalf("messages lost: %q", un)
		}
		// A held mailbox of another user.
		b := p.login(t, "bob")
		b.transact("b1 SELECT Legal", "b1 OK")
		b.transact("b2 EXPUNGE", "b2 NO [NOPERM]")
		b.transact("b3 RENAME Legal Gone", "b3 NO [NOPERM]")
		b.transact("b4 SELECT INBOX", "b4 OK")
		b.transact(`b5 STORE 2 +FLAGS (\Deleted)`, "b5 OK")
		b.transact("b6 EXPUNGE", "b6 OK")
	})

	t.Run("protected_folders", func(t *testing.T) {
		c := p.login(t, "alice")
		c.transact("a1 CREATE Sent", "a1 ")
		c.transact("a2 DELETE Sent", "a2 NO [NOPERM] Sent is protected and cannot be deleted")
		c.transact(`a3 RENAME "drafts" Other`, "a3 NO [NOPERM]")
		// The mailbox name in a literal: "+" for the literal (nothing
		// known yet), then the whole command is decided.
		c.sendRaw("a4 DELETE {4}\r\n")
		c.expect("+")
		c.sendRaw("Sent\r\n")
		c.expect("a4 NO [NOPERM] Sent is protected")
		c.transact("a5 DELETE Old", "a5 OK")
	})

	t.Run("append_size", func(t *testing.T) {
		c := p.login(t, "alice") // group small: 1000 bytes
		big := message(strings.Repeat("x", 1200))
		c.sendRaw(fmt.Sprintf("a1 APPEND INBOX {%d}\r\n", len(big)))
		c.expect("a1 NO [TOOBIG] Message too big: the limit is 1000 bytes")
		c.sendRaw(fmt.Sprintf("a2 APPEND INBOX {%d+}\r\n%s\r\n", len(big), big))
		c.expect("a2 NO [TOOBIG]")
		small := message("small")
		c.sendRaw(fmt.Sprintf("a3 APPEND INBOX {%d}\r\n", len(small)))
		c.expect("+")
		c.sendRaw(small + "\r\n")
		c.tagged("a3", "a3 OK")
		p.login(t, "bob").transact(fmt.Sprintf("b1 APPEND INBOX {%d+}\r\n%s", len(big), big), "b1 OK")
	})

	t.Run("acl", func(t *testing.T) {
		c := p.login(t, "alice")
		c.transact("a1 SETACL INBOX bob lr", "a1 NO [NOPERM] Only administrators may change access rights")
		c.transact("a2 DELETEACL INBOX bob", "a2 NO [NOPERM]")
		// An admin's SETACL reaches Dovecot (whose answer depends on its
		// ACL plugin): anything but the policy's refusal.
		r := p.login(t, "root")
		r.sendRaw("r1 SETACL INBOX bob lr\r\n")
		for {
			l := r.line()
			if strings.HasPrefix(l, "r1 ") {
				if strings.Contains(l, "administrators") {
					t.Fatalf("admin refused: %q", l)
				}
				break
			}
		}
	})

	t.Run("business_hours", func(t *testing.T) {
		c := p.login(t, "frank")
		c.transact("a1 SELECT INBOX", "a1 OK")
		// The hours end during the session: the next command ends it.
		clk.Set(time.Date(2026, 3, 2, 18, 0, 0, 0, time.UTC))
		defer clk.Set(monday10)
		c.sendRaw("a2 NOOP\r\n")
		c.expectClosed("* BYE [NOPERM] Business hours are over")
		// And a login after hours is refused.
		c = dialIMAPS(t, p.imaps)
		c.expect("* OK")
		c.transact("a3 LOGIN frank frank-pw", "a3 NO [AUTHENTICATIONFAILED] Authentication failed")
		p.audit.authDenied(t, "Access is limited to business hours")
		// Others are not concerned.
		p.login(t, "bob").transact("b1 NOOP", "b1 OK")
	})

	t.Run("clients", func(t *testing.T) {
		c := dialIMAPS(t, p.imaps)
		c.expect("* OK")
		c.transact("a1 LOGIN gina gina-pw", "a1 NO [AUTHENTICATIONFAILED] Authentication failed")
		p.audit.authDenied(t, "This mail client is not allowed")
		c.transact(`a2 ID ("name" "Outlook" "version" "16")`, "a2 OK")
		c.transact("a3 LOGIN gina gina-pw", "a3 NO [AUTHENTICATIONFAILED]")
		c.transact(`a4 ID ("name" "thunderbird" "version" "128.0")`, "a4 OK")
		c.transact("a5 LOGIN gina gina-pw", "a5 OK")
	})

	t.Run("audit", func(t *testing.T) {
		// Denials reach the audit with the policy and its revision.
		ev, ok := p.audit.command("a2")
		if !ok {
			t.Fatal("no audit event")
		}
		found := false
		p.audit.mu.Lock()
		for _, e := range p.audit.commands {
			if e.Denied && e.Decision != nil && e.Decision.Annotations["policy"] == "legal_hold" {
				found = e.Decision.Annotations[AnnotationRevision] == p.engine.Revision()
			}
		}
		p.audit.mu.Unlock()
		if !found {
			t.Fatalf("no audited legal hold denial with the revision (last a2: %+v)", ev)
		}
	})
}

// TestEndToEndEnforcement covers the remaining decision points: a denial
// at connect, shadow mode, and routing by policy.
func TestEndToEndEnforcement(t *testing.T) {
	env := startDovecot(t)
	env.dc.Deliver(t, "alice", "INBOX", []byte(message("one")))

	t.Run("connect_denied", func(t *testing.T) {
		data := map[string]string{"baseline": "blocked_networks: [127.0.0.0/8]\nplaintext_networks: []\n"}
		p := env.startProxy(Options{Dirs: []Dir{{Path: policySubset(t, data, "baseline")}}}, nil)
		c := dialIMAPS(t, p.imaps)
		c.expectClosed("* BYE [NOPERM] Connections from this network are not accepted")
		c = dialPlain(t, p.starttls)
		c.expectClosed("* BYE [NOPERM]")
	})

	t.Run("shadow", func(t *testing.T) {
		// The read-only policy on trial for alice: recorded, not enforced.
		enforced := policySubset(t, nil, "baseline")
		trial := policySubset(t, map[string]string{"readonly": "users: [alice]\ngroups: []\n"}, "readonly")
		p := env.startProxy(Options{Dirs: []Dir{{Path: enforced}, {Path: trial, Shadow: true}}}, nil)
		c := p.login(t, "alice")
		c.transact("a1 SELECT INBOX", "a1 OK")
		c.transact(`a2 STORE 1 +FLAGS (\Flagged)`, "a2 OK")
		ev, ok := p.audit.command("a2")
		if !ok || ev.Denied || ev.Result != "OK" || ev.Decision == nil {
			t.Fatalf("audit %+v", ev)
		}
		sd, ok := ev.Decision.Annotations[AnnotationShadowDeny].(map[string]any)
		if !ok || sd["dir"] != trial || sd["reason"] != "Read-only account: cannot change flags" {
			t.Fatalf("annotations %v", ev.Decision.Annotations)
		}
		if s := p.engine.Stats(); s.ShadowDenies < 2 || s.Denies != 0 {
			t.Fatalf("stats %+v", s)
		}
	})

	t.Run("route", func(t *testing.T) {
		tlsBackend := *env.be
		tlsBackend.Name, tlsBackend.Addr, tlsBackend.Security = "dovecot-tls", env.dc.TLSAddr, proxy.BackendTLS
		data := map[string]string{"routing": "users: {alice: dovecot-tls, bob: missing}\ngroups: {}\n"}
		p := env.startProxy(Options{Dirs: []Dir{{Path: policySubset(t, data, "baseline", "routing")}}},
			map[string]*proxy.Backend{"dovecot-tls": &tlsBackend})
		p.login(t, "alice").transact("a1 SELECT INBOX", "a1 OK")
		// A policy naming a backend that is not configured: unavailable.
		c := dialIMAPS(t, p.imaps)
		c.expect("* OK")
		c.transact("a2 LOGIN bob bob-pw", "a2 NO [UNAVAILABLE]")
		p.audit.mu.Lock()
		defer p.audit.mu.Unlock()
		var backends []string
		for _, a := range p.audit.auths {
			if a.Success {
				backends = append(backends, a.User+"@"+a.Backend)
			}
		}
		if len(backends) != 1 || backends[0] != "alice@dovecot-tls" {
			t.Fatalf("logins %v", backends)
		}
	})
}
