package proxy

import (
	"encoding/base64"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/imapwarden/imapwarden/internal/testenv"
)

// preAuthKind is one way the proxy answers a command before login without
// a login: each path that answers one (Session.readPreAuthCommand while it
// reads the command, servePreAuth, login, authenticate).
type preAuthKind struct {
	name string
	tls  bool // sent over TLS (the implicit-TLS listener), else in plaintext
	// read: answered as it was read (the idle time goes on); auth: a
	// failed login (counted against MaxAuthFailures).
	read, auth bool
	want       string // the answer after the tag
	// spell sends one such command tagged tag; after each "+" it reads it
	// sends more (cont).
	spell string
	cont  []string
}

// preAuthKinds lists every kind of answer without a login. A path that
// answers a command before login is added here with its spelling.
var preAuthKinds = []preAuthKind{
	// Answered while read (Session.readPreAuthCommand).
	{name: "syntax error", spell: `NOOP "unterminated`, read: true, want: "BAD"},
	{name: "syntax error after a literal", tls: true, spell: "LOGIN {5}", cont: []string{`alice "unterminated`}, read: true, want: "BAD"},
	{name: "unexpected literal", spell: "NOOP {1}", read: true, want: "NO [CLIENTBUG]"},
	{name: "unexpected non-sync literal", spell: "NOOP {1+}\r\nx", read: true, want: "NO [CLIENTBUG]"},
	{name: "literal too big", tls: true, spell: "LOGIN {99999}", read: true, want: "NO [TOOBIG]"},
	{name: "login literal before TLS", spell: "LOGIN {5}", read: true, auth: true, want: "NO [PRIVACYREQUIRED]"},
	{name: "command too big", tls: true, spell: `ID ("a" {3000}`, read: true, want: "BAD [TOOBIG]"},
	{name: "ID of 31 pairs", tls: true, spell: "ID (" + idPairs(31) + ")", read: true, want: "BAD"},
	// Parsed, then refused (servePreAuth, handleID, startTLS).
	{name: "grammar", spell: "CAPABILITY extra", want: "BAD"},
	{name: "unknown command", spell: "FROB", want: "BAD"},
	{name: "not before login", spell: "SELECT INBOX", want: "BAD"},
	{name: "LOGIN arguments", tls: true, spell: "LOGIN alice", want: "BAD"},
	{name: "ID arguments", spell: `ID ("a")`, want: "BAD"},
	{name: "STARTTLS over TLS", tls: true, spell: "STARTTLS", want: "BAD"},
	// Failed logins (login, authenticate).
	{name: "LOGIN before TLS", spell: "LOGIN alice alice-pw", auth: true, want: "NO [PRIVACYREQUIRED]"},
	{name: "AUTHENTICATE before TLS", spell: "AUTHENTICATE PLAIN", auth: true, want: "NO [PRIVACYREQUIRED]"},
	{name: "wrong password", tls: true, spell: "LOGIN alice wrong", auth: true, want: "NO [AUTHENTICATIONFAILED]"},
	{name: "credentials too long", tls: true, spell: "LOGIN alice " + strings.Repeat("x", 500), auth: true, want: "NO [LIMIT]"},
	{name: "SASL syntax", tls: true, spell: "AUTHENTICATE PLAIN " + base64.StdEncoding.EncodeToString([]byte("alice")), auth: true, want: "NO [AUTHENTICATIONFAILED]"},
	{name: "EXTERNAL without a certificate", tls: true, spell: "AUTHENTICATE EXTERNAL", auth: true, want: "NO [AUTHENTICATIONFAILED]"},
	// Refused AUTHENTICATE without a failed login.
	{name: "unsupported mechanism", tls: true, spell: "AUTHENTICATE FROB", want: "NO [CANNOT]"},
	{name: "invalid base64", tls: true, spell: "AUTHENTICATE PLAIN abc", want: "BAD"},
	{name: "cancelled exchange", tls: true, spell: "AUTHENTICATE PLAIN", cont: []string{"*"}, want: "BAD"},
}

func idPairs(n int) string {
	var b strings.Builder
	for i := range n {
		fmt.Fprintf(&b, `"k%d" "v" `, i)
	}
	return strings.TrimSpace(b.String())
}

// dial connects where k is sent and reads the greeting.
func (k preAuthKind) dial(t *testing.T, h *harness) *tconn {
	t.Helper()
	var c *tconn
	if k.tls {
		c = dialTLS(t, h.imaps)
	} else {
		c = dialPlain(t, h.starttls)
	}
	c.expect("* OK")
	return c
}

// send sends one command of kind k and returns the line that answered it:
// its tagged answer, or a BYE.
func (k preAuthKind) send(c *tconn, tag string) string {
	c.t.Helper()
	c.sendRaw(tag + " " + k.spell + "\r\n")
	cont := k.cont
	for {
		l := c.line()
		switch {
		case strings.HasPrefix(l, "* BYE"), strings.HasPrefix(l, tag+" "):
			return l
		case strings.HasPrefix(l, "+") && len(cont) > 0:
			c.sendRaw(cont[0] + "\r\n")
			cont = cont[1:]
		case strings.HasPrefix(l, "+"):
			c.t.Fatalf("%q: unexpected continuation %q", k.spell, l)
		}
	}
}

// TestEveryPreAuthAnswerAccounted: every kind of command the proxy
// answers before login without a login, whichever path answers it, counts
// against max_preauth_commands, a failed login of any kind against
// max_auth_failures, and past either the session ends at once with its
// BYE. The cases are generated: each kind under each limit.
func TestEveryPreAuthAnswerAccounted(t *testing.T) {
	const commands, failures = 5, 3
	for _, lim := range []struct {
		name             string
		commands, fails  int
		bye              string
		limitsAuthKinds  bool
		limitsOtherKinds bool
	}{
		{"max_preauth_commands", commands, 1000, "* BYE [LIMIT]", true, true},
		{"max_auth_failures", 1000, failures, "* BYE Too many authentication failures", true, false},
	} {
		t.Run(lim.name, func(t *testing.T) {
			h := newHarness(t, func(o *Options) {
				o.Limits.MaxPreAuthCommands = lim.commands
				o.Limits.MaxAuthFailures = lim.fails
				o.Limits.MaxPreAuthCommandBytes = 1024
			})
			for _, k := range preAuthKinds {
				t.Run(k.name, func(t *testing.T) {
					c := k.dial(t, h)
					// Not the first command: no BYE for a non-IMAP peer.
					c.transact("a0 NOOP", "a0 OK")
					// What the session answers before it must end: the
					// commands left after the NOOP, or the failures.
					answers := 2 * failures
					limited := k.auth && lim.limitsAuthKinds || !k.auth && lim.limitsOtherKinds
					if limited {
						answers = lim.commands - 1
						if lim.fails < lim.commands {
							answers = lim.fails
						}
					}
					for i := range answers {
						tag := fmt.Sprintf("b%d", i)
						if l := k.send(c, tag); !strings.HasPrefix(l, tag+" "+k.want) {
							t.Fatalf("%s %d: got %q, want %q", k.name, i+1, l, tag+" "+k.want)
						}
					}
					if limited {
						c.expectClosed(lim.bye)
					} else {
						c.transact("z NOOP", "z OK")
					}
				})
			}
		})
	}
}

// TestPreAuthIdleRestartedOnlyByParsedCommands: a command answered as it
// was read (it did not parse, or was refused before the proxy read it
// whole) does not restart the pre-login idle time: a client that sends
// only such commands, however often, keeps its slot at most preauth_idle
// after its last command that parsed, and is ended as idle. A command
// that parsed restarts it, refused or not (a NOOP does as much). One
// connection per kind, all at once, ten commands a preauth_idle on each.
func TestPreAuthIdleRestartedOnlyByParsedCommands(t *testing.T) {
	const idle = 3 * time.Second
	h := newHarness(t, func(o *Options) {
		o.Limits.PreAuthIdle = idle
		o.Limits.MaxPreAuthCommands = 1 << 20
		o.Limits.MaxAuthFailures = 1 << 20
		o.Limits.MaxPreAuthCommandBytes = 1024
	})
	type conn struct {
		k    preAuthKind
		c    *tconn
		sent int
	}
	var open []*conn
	for _, k := range preAuthKinds {
		c := k.dial(t, h)
		c.sendRaw("a0 NOOP\r\n")
		if l := c.line(); strings.HasPrefix(l, "* BYE Autologout") {
			continue // a busy machine: idle before the first command
		} else if !strings.HasPrefix(l, "a0 OK") {
			t.Fatalf("%s: NOOP: %q", k.name, l)
		}
		open = append(open, &conn{k: k, c: c})
	}
	start := time.Now()
	tick := time.NewTicker(idle / 10)
	defer tick.Stop()
	// Until every connection sending refused-while-read commands is
	// closed and the others have outlived two idle times.
	for {
		read := 0
		for _, o := range open {
			if o.k.read {
				read++
			}
		}
		if read == 0 && time.Since(start) > 2*idle {
			return
		}
		<-tick.C
		if time.Since(start) > testenv.IOTimeout() {
			for _, o := range open {
				if o.k.read {
					t.Errorf("%s: session open after %d such commands in %v, preauth_idle %v: each restarted the idle time",
						o.k.name, o.sent, time.Since(start).Round(time.Second), idle)
				}
			}
			return
		}
		var still []*conn
		for _, o := range open {
			o.sent++
			tag := fmt.Sprintf("b%d", o.sent)
			l := o.k.send(o.c, tag)
			switch {
			case strings.HasPrefix(l, "* BYE Autologout"):
				// Expected of a command answered as read; of one that
				// parsed only after a stall of the machine longer than
				// preauth_idle, which this loop cannot tell apart: that
				// such a command restarts the idle time is proved without
				// a clock (TestPreAuthIdleRestartByKind).
				o.c.expectClosed()
			case !strings.HasPrefix(l, tag+" "+o.k.want):
				t.Fatalf("%s %d: got %q, want %q or the idle BYE", o.k.name, o.sent, l, tag+" "+o.k.want)
			default:
				still = append(still, o)
			}
		}
		open = still
	}
}

// TestPreAuthIdleRestartByKind: of each kind of command answered before
// login, exactly the ones that parsed restart the idle time, told by
// preAuthDone itself rather than by a clock, so that no stall of a busy
// machine can fail it. The session answers each command only once it
// accounted the one before it.
func TestPreAuthIdleRestartByKind(t *testing.T) {
	var (
		mu  sync.Mutex
		got []bool
	)
	preAuthAccounted = func(restarted bool) {
		mu.Lock()
		got = append(got, restarted)
		mu.Unlock()
	}
	t.Cleanup(func() { preAuthAccounted = nil })
	h := newHarness(t, func(o *Options) {
		o.Limits.MaxPreAuthCommands = 1 << 20
		o.Limits.MaxAuthFailures = 1 << 20
		o.Limits.MaxPreAuthCommandBytes = 1024
	})
	for _, k := range preAuthKinds {
		c := k.dial(t, h)
		c.transact("a0 NOOP", "a0 OK")
		if l := k.send(c, "b"); !strings.HasPrefix(l, "b "+k.want) {
			t.Fatalf("%s: got %q, want %q", k.name, l, "b "+k.want)
		}
		c.transact("z NOOP", "z OK")
		// The session accounts a command after its answer: LOGOUT, which
		// it does not account, is answered once the NOOP's account is in.
		c.transact("y LOGOUT", "y OK")
		mu.Lock()
		seq := slices.Clone(got)
		got = got[:0]
		mu.Unlock()
		if want := []bool{true, !k.read, true}; !slices.Equal(seq, want) {
			t.Errorf("%s: idle time restarted %v by NOOP, the command, NOOP; want %v", k.name, seq, want)
		}
	}
}
