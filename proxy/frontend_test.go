package proxy

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/base64"
	"errors"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2/imapserver/imapmemserver"

	"github.com/imapwarden/imapwarden/internal/testenv"
)

func TestGreetingCapabilitiesBeforeTLS(t *testing.T) {
	h := newHarness(t)
	c := dialPlain(t, h.starttls)
	g := c.expect("* OK [CAPABILITY ")
	for _, want := range []string{"STARTTLS", "LOGINDISABLED"} {
		if !strings.Contains(g, want) {
			t.Errorf("greeting %q lacks %s", g, want)
		}
	}
	if strings.Contains(g, "AUTH=") {
		t.Errorf("greeting %q offers AUTH= before TLS", g)
	}
	un := c.transact("a1 CAPABILITY", "a1 OK")
	if len(un) != 1 || !strings.Contains(un[0], "LOGINDISABLED") || strings.Contains(un[0], "AUTH=") {
		t.Errorf("CAPABILITY before TLS: %q", un)
	}
	c.transact("a2 NOOP", "a2 OK")
	c.transact("a3 LOGOUT", "a3 OK")
}

// RFC 9051 §6.2.3: no credentials before TLS.
func TestPrivacyRequired(t *testing.T) {
	h := newHarness(t)
	c := dialPlain(t, h.starttls)
	c.expect("* OK")
	c.transact("a1 LOGIN alice alice-pw", "a1 NO [PRIVACYREQUIRED]")
	c.transact("a2 AUTHENTICATE PLAIN "+base64.StdEncoding.EncodeToString([]byte("\x00alice\x00alice-pw")), "a2 NO [PRIVACYREQUIRED]")
	// A literal password is refused before it is asked for: no "+".
	c.send("a3 LOGIN {5}")
	c.expect("a3 NO [PRIVACYREQUIRED]")
	// Each refusal was a failed login, the literal's too: the third is
	// max_auth_failures (Session.preAuthDone).
	c.expectClosed("* BYE Too many authentication failures")
}

func TestStartTLSThenLogin(t *testing.T) {
	h := newHarness(t)
	c := dialPlain(t, h.starttls)
	c.expect("* OK")
	c.starttls()
	un := c.transact("a1 CAPABILITY", "a1 OK")
	if len(un) != 1 || strings.Contains(un[0], "STARTTLS") || strings.Contains(un[0], "LOGINDISABLED") || !strings.Contains(un[0], "AUTH=PLAIN") {
		t.Errorf("CAPABILITY after TLS: %q", un)
	}
	c.transact("a2 STARTTLS", "a2 BAD")
	un = c.transact("a3 LOGIN alice alice-pw", "a3 OK [CAPABILITY")
	_ = un
	un = c.transact("a4 CAPABILITY", "a4 OK")
	for _, bad := range []string{"STARTTLS", "LOGINDISABLED", "AUTH="} {
		if strings.Contains(un[0], bad) {
			t.Errorf("relayed CAPABILITY %q contains %s", un[0], bad)
		}
	}
}

// CVE-2011-0411: a command pipelined behind STARTTLS must not be executed
// as if it came over TLS.
func TestStartTLSInjection(t *testing.T) {
	h := newHarness(t)
	c := dialPlain(t, h.starttls)
	c.expect("* OK")
	c.sendRaw("a1 STARTTLS\r\na2 LOGIN alice alice-pw\r\n")
	c.expectClosed("a1 OK")
	deadline := time.Now().Add(testenv.IOTimeout())
	for !h.audit.hasSecurity("starttls-injection") {
		if time.Now().After(deadline) {
			t.Fatal("injection not audited")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestNonIMAPFirstLine(t *testing.T) {
	h := newHarness(t)
	for name, first := range map[string]string{
		"http":        "GET / HTTP/1.1\r\nHost: x\r\n\r\n",
		"clienthello": "\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03\r\n",
		"smtp":        "EHLO example.com\r\n",
	} {
		t.Run(name, func(t *testing.T) {
			c := dialPlain(t, h.starttls)
			c.expect("* OK")
			c.sendRaw(first)
			c.expectClosed("* BYE")
		})
	}
	if !h.audit.hasSecurity("non-imap-client") {
		t.Error("non-IMAP client not audited")
	}
}

// ALPACA: another ALPN protocol on the IMAP port is refused.
func TestALPN(t *testing.T) {
	h := newHarness(t)
	for _, tc := range []struct {
		alpn []string
		ok   bool
	}{{nil, true}, {[]string{"imap"}, true}, {[]string{"http/1.1"}, false}, {[]string{"h2", "http/1.1"}, false}} {
		conn, err := tls.Dial("tcp", h.imaps, clientTLS(tc.alpn...))
		if err == nil {
			conn.SetReadDeadline(time.Now().Add(testenv.IOTimeout()))
			buf := make([]byte, 4)
			_, err = conn.Read(buf)
			conn.Close()
		}
		if (err == nil) != tc.ok {
			t.Errorf("ALPN %v: err=%v, want ok=%v", tc.alpn, err, tc.ok)
		}
	}
}

func TestAuthenticate(t *testing.T) {
	h := newHarness(t)
	b64 := func(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }

	// PLAIN with SASL-IR (RFC 4959).
	c := dialTLS(t, h.imaps)
	c.expect("* OK")
	c.transact("a1 AUTHENTICATE PLAIN "+b64("\x00alice\x00alice-pw"), "a1 OK")

	// PLAIN without initial response.
	c = dialTLS(t, h.imaps)
	c.expect("* OK")
	c.send("a1 AUTHENTICATE PLAIN")
	c.expect("+")
	c.send(b64("\x00alice\x00alice-pw"))
	c.expect("a1 OK")

	// LOGIN mechanism.
	c = dialTLS(t, h.imaps)
	c.expect("* OK")
	c.send("a1 AUTHENTICATE LOGIN")
	if l := c.expect("+ "); l != "+ "+b64("Username:") {
		t.Errorf("LOGIN challenge %q", l)
	}
	c.send(b64("alice"))
	c.expect("+ " + b64("Password:"))
	c.send(b64("alice-pw"))
	c.expect("a1 OK")

	// Cancel is a tagged BAD (RFC 9051 §6.2.2), then retry works.
	c = dialTLS(t, h.imaps)
	c.expect("* OK")
	c.send("a1 AUTHENTICATE PLAIN")
	c.expect("+")
	c.send("*")
	c.expect("a1 BAD")
	c.transact("a2 AUTHENTICATE PLAIN "+b64("\x00alice\x00wrong"), "a2 NO [AUTHENTICATIONFAILED]")
	c.transact("a3 AUTHENTICATE PLAIN "+b64("alice\x00alice\x00alice-pw"), "a3 OK")

	// An authzid for someone else is refused unless configured.
	c = dialTLS(t, h.imaps)
	c.expect("* OK")
	c.transact("a1 AUTHENTICATE PLAIN "+b64("bob\x00alice\x00alice-pw"), "a1 NO [AUTHORIZATIONFAILED]")
	c.transact("a2 AUTHENTICATE DIGEST-MD5", "a2 NO")
}

func TestLoginFailuresAndRetry(t *testing.T) {
	h := newHarness(t)
	c := dialTLS(t, h.imaps)
	c.expect("* OK")
	c.transact("a1 LOGIN alice wrong", "a1 NO [AUTHENTICATIONFAILED]")
	// NUL, CR or LF in a credential, through a literal.
	c.send("a2 LOGIN alice {6}")
	c.expect("+")
	c.sendRaw("bad\x00pw\r\n")
	c.expect("a2 NO")
	c.transact("a3 LOGIN alice alice-pw", "a3 OK")
	// Too many failures end the connection.
	c = dialTLS(t, h.imaps)
	c.expect("* OK")
	c.transact("a1 LOGIN alice x", "a1 NO")
	c.transact("a2 LOGIN alice y", "a2 NO")
	c.send("a3 LOGIN alice z")
	c.expectClosed("a3 NO", "* BYE")
}

func TestLoginLiterals(t *testing.T) {
	h := newHarness(t)
	c := dialTLS(t, h.imaps)
	c.expect("* OK")
	c.send("a1 LOGIN {5}")
	c.expect("+")
	c.sendRaw("alice {8+}\r\nalice-pw\r\n")
	c.expect("a1 OK")
}

func TestBackendDown(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := ln.Addr().String()
	ln.Close()
	h := newHarness(t, func(o *Options) {
		o.Router = &StaticRouter{Default: &Backend{Name: "dead", Addr: dead, ConnectTimeout: time.Second}}
	})
	c := dialTLS(t, h.imaps)
	c.expect("* OK")
	c.transact("a1 LOGIN alice alice-pw", "a1 NO [UNAVAILABLE]")
}

func TestPreAuthLimits(t *testing.T) {
	h := newHarness(t, func(o *Options) {
		o.Limits.MaxLine = 1024
		o.Limits.MaxPreAuthCommands = 3
	})
	c := dialTLS(t, h.imaps)
	c.expect("* OK")
	c.sendRaw("a1 NOOP " + strings.Repeat("x", 2000) + "\r\n")
	c.expectClosed("* BYE [TOOBIG]")

	c = dialTLS(t, h.imaps)
	c.expect("* OK")
	c.transact("a1 NOOP", "a1 OK")
	c.transact("a2 NOOP", "a2 OK")
	c.transact("a3 NOOP", "a3 OK")
	// The third was the last: the session ends without waiting for a
	// fourth (preAuthDone).
	c.expectClosed("* BYE [LIMIT]")

	c = dialTLS(t, h.imaps)
	c.expect("* OK")
	c.send("a1 LOGIN {99999}")
	c.expect("a1 NO [TOOBIG]")
}

func TestPreAuthIdleTimeout(t *testing.T) {
	// PreAuthIdle bounds the TLS handshake too: long enough for one on a
	// busy machine, so that what ends the session is the idle greeting.
	h := newHarness(t, func(o *Options) { o.Limits.PreAuthIdle = 2 * time.Second })
	c := dialTLS(t, h.imaps)
	c.expect("* OK")
	c.expectClosed("* BYE")
}

// A TLS handshake that never completes is cut by PreAuthIdle, whether the
// client sends nothing or stops inside its ClientHello (the socket's
// deadline bounds the handshake: Session.handshake).
func TestHandshakeStallTimesOut(t *testing.T) {
	h := newHarness(t, func(o *Options) { o.Limits.PreAuthIdle = 200 * time.Millisecond })
	for name, sent := range map[string][]byte{
		"nothing":            nil,
		"half a ClientHello": {0x16, 0x03, 0x01, 0x00, 0xc8, 0x01, 0x00},
	} {
		t.Run(name, func(t *testing.T) {
			c, err := net.Dial("tcp", h.imaps)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			if _, err := c.Write(sent); err != nil {
				t.Fatal(err)
			}
			c.SetReadDeadline(time.Now().Add(testenv.IOTimeout()))
			buf := make([]byte, 512)
			for {
				_, err := c.Read(buf)
				if err == nil {
					continue // an alert, if any
				}
				var ne net.Error
				if errors.As(err, &ne) && ne.Timeout() {
					t.Fatal("the proxy kept a stalled handshake open")
				}
				return // closed
			}
		})
	}
}

// idSession dials a proxy whose decider keeps the client ID it sees at
// auth in *seen.
func idSession(t *testing.T, seen *map[string]string) *tconn {
	h := newHarness(t, func(o *Options) {
		o.Decider = funcDecider(func(in *DecisionInput) Decision {
			if in.Point == PointAuth {
				*seen = in.Session.ClientID
			}
			return Decision{Allow: true}
		})
	})
	c := dialTLS(t, h.imaps)
	c.expect("* OK")
	return c
}

func TestIDBeforeLogin(t *testing.T) {
	var seen map[string]string
	c := idSession(t, &seen)
	un := c.transact(`a1 ID ("name" "Thunderbird" "version" {4}`+"\r\n"+`115a)`, "a1 OK")
	_ = un
	c.transact("a2 ID NIL", "a2 OK")
	c.transact(`a3 ID ("name" "Thunderbird" "version" "115")`, "a3 OK")
	c.transact("a4 LOGIN alice alice-pw", "a4 OK")
	if seen["name"] != "Thunderbird" || seen["version"] != "115" {
		t.Errorf("client ID at auth = %v", seen)
	}
}

// An ID field name has one reading (ARCHITECTURE.md §11): one given twice,
// or beyond ASCII (which the audit trail's readers fold together where
// ToLower does not: "s" and U+017F), gets BAD; the ID before stays.
func TestIDFieldNamesOneReading(t *testing.T) {
	var seen map[string]string
	c := idSession(t, &seen)
	c.transact(`a1 ID ("name" "Thunderbird" "s" "one")`, "a1 OK")
	c.transact(`a2 ID ("name" "a" "NAME" "b")`, "a2 BAD")
	c.transact(`a3 ID ("name" NIL "Name" "b")`, "a3 BAD")
	c.transact("a4 ID (\"s\" \"one\" \"\u017f\" \"two\")", "a4 BAD")
	c.transact("a5 ID (\"\u017f\" \"two\")", "a5 BAD")
	c.transact("a6 ID (\"\u212a\" \"two\")", "a6 BAD")
	c.transact("a7 LOGIN alice alice-pw", "a7 OK")
	if seen["name"] != "Thunderbird" || seen["s"] != "one" || len(seen) != 2 {
		t.Errorf("client ID at auth = %v", seen)
	}
}

func TestPolicyDeniesConnectAndAuth(t *testing.T) {
	h := newHarness(t, func(o *Options) {
		o.Decider = funcDecider(func(in *DecisionInput) Decision {
			switch {
			case in.Point == PointConnect && in.Session.Listener == "imap":
				return Decision{Reason: "plaintext port closed"}
			case in.Point == PointAuth && in.Session.User == "bob":
				return Decision{Reason: "bob is suspended", Code: "AUTHORIZATIONFAILED"}
			}
			return Decision{Allow: true}
		})
	})
	c := dialPlain(t, h.starttls)
	c.expectClosed("* BYE [NOPERM] plaintext port closed")
	c = dialTLS(t, h.imaps)
	c.expect("* OK")
	// The auth decision comes after the password was checked, and its
	// refusal reads exactly like a wrong password (no enumeration); the
	// audit keeps the truth.
	c.send("a1 LOGIN bob bob-pw")
	_, denied := c.tagged("a1")
	if e := h.audit.lastAuth(t); e.Reason != "policy" || e.Decision == nil || e.Decision.Reason != "bob is suspended" {
		t.Errorf("audit of the policy refusal: %+v", e)
	}
	c.send("a2 LOGIN bob wrong-pw")
	_, wrong := c.tagged("a2")
	if e := h.audit.lastAuth(t); e.Reason != "credentials" {
		t.Errorf("audit of the wrong password: %+v", e)
	}
	if !strings.HasPrefix(denied, "a1 NO [AUTHENTICATIONFAILED]") || strings.TrimPrefix(denied, "a1") != strings.TrimPrefix(wrong, "a2") {
		t.Errorf("policy refusal %q differs from a wrong password %q", denied, wrong)
	}
	c.transact("a3 LOGIN alice alice-pw", "a3 OK")
}

type routerFunc func(user string) (*Backend, error)

func (f routerFunc) Route(_ context.Context, _ *SessionInfo, user string) (*Backend, error) {
	return f(user)
}

// A master login without an Authenticator would let anyone in as anyone.
func TestMasterLoginNeedsAuthenticator(t *testing.T) {
	master := &Backend{Name: "m", Addr: "127.0.0.1:1", Login: LoginMaster, MasterUser: "alice", MasterPassword: "alice-pw"}
	_, err := NewServer(Options{
		Listeners: []ListenerOptions{{Name: "imaps", Addr: "127.0.0.1:0", Mode: ImplicitTLS, TLS: serverTLS()}},
		Router:    &StaticRouter{Users: map[string]*Backend{"bob": master}},
	})
	if err == nil || !strings.Contains(err.Error(), "Authenticator") {
		t.Fatalf("NewServer accepted a master backend without authenticator: %v", err)
	}
	h := newHarness(t, func(o *Options) {
		master.Addr = o.Router.(*StaticRouter).Default.Addr
		o.Router = routerFunc(func(string) (*Backend, error) { return master, nil })
	})
	c := dialTLS(t, h.imaps)
	c.expect("* OK")
	// Nobody verified the password: an ordinary failure.
	c.transact("a1 LOGIN bob anything", "a1 NO [AUTHENTICATIONFAILED]")
	if e := h.audit.lastAuth(t); e.Reason != "no-verifier" {
		t.Errorf("audit reason %q, want no-verifier", e.Reason)
	}
}

// A backend that accepts but never greets costs the client ConnectTimeout,
// then NO [UNAVAILABLE].
func TestBackendSilent(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	done := make(chan struct{})
	defer close(done)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() { <-done; c.Close() }()
		}
	}()
	h := newHarness(t, func(o *Options) {
		o.Router = &StaticRouter{Default: &Backend{Name: "silent", Addr: ln.Addr().String(), ConnectTimeout: 300 * time.Millisecond}}
	})
	c := dialTLS(t, h.imaps)
	c.expect("* OK")
	c.transact("a1 LOGIN alice alice-pw", "a1 NO [UNAVAILABLE]")
}

// Credentials a quoted string cannot carry (8-bit) reach the backend as
// literals: synchronizing with LOGIN, whatever the client used.
func TestEightBitCredentials(t *testing.T) {
	h := newHarness(t)
	user := imapmemserver.NewUser("jörg", "pässwörd")
	user.Create("INBOX", nil)
	h.backend.mem.AddUser(user)
	c := dialTLS(t, h.imaps)
	c.expect("* OK")
	c.send(fmt.Sprintf("a1 LOGIN {%d}", len("jörg")))
	c.expect("+")
	c.sendRaw(fmt.Sprintf("jörg {%d+}\r\npässwörd\r\n", len("pässwörd")))
	c.expect("a1 OK")
	c.transact("a2 SELECT INBOX", "a2 OK")
}

// A backend (or a man in the middle) that sends bytes after its STARTTLS
// OK would have them read as if they came over TLS: the proxy gives up on
// that backend (RFC 9051 §6.2.1, CVE-2011-0411 class).
func TestBackendStartTLSInjection(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				r := bufio.NewReader(c)
				c.Write([]byte("* OK [CAPABILITY IMAP4rev1 STARTTLS] fake\r\n"))
				for {
					l, err := r.ReadString('\n')
					if err != nil {
						return
					}
					tag := strings.Fields(l)[0]
					if strings.Contains(l, "STARTTLS") {
						// OK and an injected response in the same write.
						c.Write([]byte(tag + " OK Begin TLS\r\n* OK [CAPABILITY IMAP4rev1 AUTH=PLAIN] injected\r\n"))
						continue
					}
					c.Write([]byte(tag + " BAD what\r\n"))
				}
			}()
		}
	}()
	h := newHarness(t, func(o *Options) {
		o.Router = &StaticRouter{Default: &Backend{Name: "evil", Addr: ln.Addr().String(), Security: BackendStartTLS,
			TLS: &tls.Config{InsecureSkipVerify: true}}}
	})
	c := dialTLS(t, h.imaps)
	c.expect("* OK")
	c.transact("a1 LOGIN alice alice-pw", "a1 NO [UNAVAILABLE]")
	if !h.audit.hasSecurity("backend-starttls-injection") {
		t.Error("backend STARTTLS injection not audited")
	}
}
