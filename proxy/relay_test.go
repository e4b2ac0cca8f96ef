package proxy

import (
	"bufio"
	"bytes"
	"compress/flate"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/imapwarden/imapwarden/internal/testenv"
)

func TestRelayBasics(t *testing.T) {
	h := newHarness(t)
	c := h.login()
	un := c.transact("a1 SELECT INBOX", "a1 OK")
	if !contains(un, "* 2 EXISTS") {
		t.Errorf("SELECT: %q", un)
	}
	if body := c.fetchBody("a2", 1); string(body) != testMessage(1) {
		t.Errorf("body %q", body)
	}
	c.transact("a3 UID FETCH 1:* (FLAGS)", "a3 OK")
	c.transact("a4 NOOP", "a4 OK")
	c.transact("a5 FOO", "a5 BAD")
	c.transact("a6 COMPRESS GZIP", "a6 NO [CANNOT]")
	c.transact("a7 LOGIN alice alice-pw", "a7 BAD")
	c.transact("a8 STARTTLS", "a8 BAD")
	un = c.transact("a9 CAPABILITY", "a9 OK")
	if len(un) != 1 || strings.Contains(un[0], "AUTH=") || strings.Contains(un[0], "UNAUTHENTICATE") {
		t.Errorf("CAPABILITY %q", un)
	}
	c.send("a10 LOGOUT")
	c.expectClosed("* BYE", "a10 OK")
}

func TestPipelining(t *testing.T) {
	h := newHarness(t)
	c := h.login()
	c.sendRaw("p1 SELECT INBOX\r\np2 FETCH 1:* (FLAGS)\r\np3 NOOP\r\np4 STORE 1 +FLAGS (\\Seen)\r\n")
	for _, tag := range []string{"p1", "p2", "p3", "p4"} {
		_, tl := c.tagged(tag)
		if !strings.HasPrefix(tl, tag+" OK") {
			t.Errorf("%s: %q", tag, tl)
		}
	}
}

// A mailbox name sent as a synchronizing literal is buffered: the proxy
// sends "+" itself and swallows the backend's.
func TestBufferedLiteralArgument(t *testing.T) {
	var mailboxes []string
	h := newHarness(t, func(o *Options) {
		o.Decider = funcDecider(func(in *DecisionInput) Decision {
			if in.Point == PointCommand && !in.Partial {
				mailboxes = append(mailboxes, in.Command.Mailbox)
				if in.Command.Mailbox == "Secret" {
					return Decision{Reason: "no secrets"}
				}
			}
			return Decision{Allow: true}
		})
	})
	c := h.login()
	c.send("a1 SELECT {5}")
	c.expect("+ ")
	c.sendRaw("INBOX\r\n")
	un, tl := c.tagged("a1")
	if !strings.HasPrefix(tl, "a1 OK") || contains(un, "+") {
		t.Fatalf("SELECT literal: %q %q", un, tl)
	}
	c.send("a2 CREATE {6}")
	c.expect("+ ")
	c.sendRaw("Secret\r\n")
	c.expect("a2 NO [NOPERM] no secrets")
	// Non-synchronizing form.
	c.sendRaw("a3 CREATE {6+}\r\nSecret\r\n")
	c.expect("a3 NO [NOPERM]")
	c.sendRaw("a4 CREATE {6+}\r\nPublic\r\n")
	c.expect("a4 OK")
	if got := strings.Join(mailboxes, ","); got != "INBOX,Secret,Secret,Public" {
		t.Errorf("decided mailboxes %q", got)
	}
}

// ARCHITECTURE.md §10: a denied synchronizing literal gets the tagged NO instead of
// "+"; a denied non-synchronizing one is discarded and the session goes on.
func TestDeniedAppendLiterals(t *testing.T) {
	h := newHarness(t, func(o *Options) {
		o.Decider = funcDecider(func(in *DecisionInput) Decision {
			if in.Point == PointCommand && in.Command.Name == "APPEND" && in.Command.Mailbox == "Archive" {
				return Decision{Reason: "archive is read-only", Code: "NOPERM"}
			}
			return Decision{Allow: true}
		})
	})
	c := h.login()
	c.transact("a0 CREATE Archive", "a0 OK")
	msg := testMessage(9)
	c.send(fmt.Sprintf("a1 APPEND Archive (\\Seen) {%d}", len(msg)))
	c.expect("a1 NO [NOPERM] archive is read-only")
	c.sendRaw(fmt.Sprintf("a2 APPEND Archive {%d+}\r\n%s\r\n", len(msg), msg))
	c.expect("a2 NO [NOPERM]")
	c.transact("a3 NOOP", "a3 OK")
	// Allowed, synchronizing: the backend's "+" reaches the client.
	c.send(fmt.Sprintf("a4 APPEND INBOX (\\Seen) {%d}", len(msg)))
	c.expect("+")
	c.sendRaw(msg + "\r\n")
	c.expect("a4 OK")
	// Allowed, LITERAL+.
	c.sendRaw(fmt.Sprintf("a5 APPEND INBOX {%d+}\r\n%s\r\n", len(msg), msg))
	c.expect("a5 OK")
	un := c.transact("a6 STATUS INBOX (MESSAGES)", "a6 OK")
	if !contains(un, "MESSAGES 4") {
		t.Errorf("STATUS %q", un)
	}
	un = c.transact("a7 STATUS Archive (MESSAGES)", "a7 OK")
	if !contains(un, "MESSAGES 0") {
		t.Errorf("STATUS Archive %q", un)
	}
}

func TestAppendLimit(t *testing.T) {
	h := newHarness(t, func(o *Options) { o.Limits.MaxAppendLiteral = 1000 })
	c := h.login()
	c.send("a1 APPEND INBOX {5000}")
	c.expect("a1 NO [TOOBIG]")
	c.transact("a2 NOOP", "a2 OK")
	c.send("a3 APPEND INBOX {5000+}")
	c.expectClosed("* BYE [TOOBIG]")
}

func TestIdle(t *testing.T) {
	h := newHarness(t)
	c := h.login()
	c.transact("a1 SELECT INBOX", "a1 OK")
	c.send("a2 IDLE")
	c.expect("+")
	other := h.login()
	msg := testMessage(3)
	other.sendRaw(fmt.Sprintf("b1 APPEND INBOX {%d+}\r\n%s\r\n", len(msg), msg))
	other.expect("b1 OK")
	// go-imap's memory server writes "+ idling" before its Session.Idle
	// subscribes to updates (imapserver.handleIdle), and an update in
	// between waits for the next command: the EXISTS comes in the IDLE
	// or by the NOOP after it, relayed either way. That the proxy relays
	// what a backend pushes in IDLE is TestDovecotEndToEnd's.
	c.send("DONE")
	un, end := c.tagged("a2")
	if !strings.HasPrefix(end, "a2 OK") {
		t.Fatalf("IDLE end %q", end)
	}
	if !contains(un, "* 3 EXISTS") {
		un = c.transact("a3 NOOP", "a3 OK")
		if !contains(un, "* 3 EXISTS") {
			t.Fatalf("no EXISTS for the APPEND in IDLE nor after it: %q", un)
		}
	} else {
		c.transact("a3 NOOP", "a3 OK")
	}
	// A command instead of DONE ends the IDLE and still runs.
	c.send("a4 IDLE")
	c.expect("+")
	c.send("a5 NOOP")
	_, tl := c.tagged("a4")
	if !strings.HasPrefix(tl, "a4 OK") {
		t.Errorf("IDLE end %q", tl)
	}
	c.expect("a5 OK")
}

func TestSelectedMailboxTracking(t *testing.T) {
	var selected []string
	h := newHarness(t, func(o *Options) {
		o.Decider = funcDecider(func(in *DecisionInput) Decision {
			if in.Point == PointCommand && in.Command.Name == "NOOP" {
				selected = append(selected, fmt.Sprintf("%s/%v", in.Session.Selected, in.Session.SelectedReadOnly))
			}
			return Decision{Allow: true}
		})
	})
	c := h.login()
	c.transact("a1 NOOP", "a1 OK")
	c.transact("a2 SELECT INBOX", "a2 OK")
	c.transact("a3 NOOP", "a3 OK")
	c.transact("a4 EXAMINE INBOX", "a4 OK")
	c.transact("a5 NOOP", "a5 OK")
	c.transact("a6 SELECT Nope", "a6 NO")
	c.transact("a7 NOOP", "a7 OK")
	if got := strings.Join(selected, " "); got != "/false INBOX/false INBOX/true /false" {
		t.Errorf("selected: %q", got)
	}
}

func TestBackendKilledMidSession(t *testing.T) {
	h := newHarness(t)
	c := h.login()
	c.transact("a1 SELECT INBOX", "a1 OK")
	h.backend.srv.Close()
	c.expectClosed("* BYE [UNAVAILABLE]")
}

func TestCommandSyntaxErrors(t *testing.T) {
	h := newHarness(t)
	c := h.login()
	c.sendRaw("a1 NOOP\x00\r\n")
	c.expect("a1 BAD")
	c.sendRaw("a2 NOOP\n")
	c.expect("a2 BAD")
	c.sendRaw("a3 SELECT \"INBOX\r\n")
	c.expect("a3 BAD")
	c.sendRaw("a4 FETCH {18446744073709551621}\r\n")
	c.expect("a4 BAD")
	c.transact("a5 NOOP", "a5 OK")
	// The error shows after the literal: the stream is still in step.
	c.sendRaw("a6 SELECT (\"x\" {3+}\r\nabc\r\n")
	c.expect("a6 BAD")
	c.transact("a7 NOOP", "a7 OK")
	// Before a {n+} literal it is not: its octets are already in flight.
	c.sendRaw("a8 SELECT ) {3+}\r\nabc\r\n")
	c.expectClosed("* BYE")
}

func TestShutdownSaysBye(t *testing.T) {
	h := newHarness(t)
	c := h.login()
	pre := dialTLS(t, h.imaps)
	pre.expect("* OK")
	ctx, cancel := contextWithTimeout(5 * time.Second)
	defer cancel()
	if err := h.srv.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	c.expectClosed("* BYE [UNAVAILABLE]")
	pre.expectClosed("* BYE [UNAVAILABLE]")
}

func contains(lines []string, sub string) bool {
	for _, l := range lines {
		if strings.Contains(l, sub) {
			return true
		}
	}
	return false
}

// Once a command's first part reached the backend (a streamed APPEND
// message), a syntax error in its rest cannot be answered with BAD: the
// backend is mid-command. The session ends.
func TestSyntaxErrorAfterStreamedLiteral(t *testing.T) {
	h := newHarness(t)
	c := h.login()
	msg := testMessage(5)
	c.sendRaw(fmt.Sprintf("a1 APPEND INBOX {%d+}\r\n%s )\r\n", len(msg), msg))
	c.expectClosed("* BYE [CLIENTBUG]")
}

// The audit hook learns which messages' content a FETCH returned (from the
// responses), the APPENDUID of an APPEND, and per-session counters.
func TestAuditEventsCarryMessageAccess(t *testing.T) {
	h := newHarness(t)
	c := h.login()
	c.transact("a1 SELECT INBOX", "a1 OK")
	c.transact("a2 UID FETCH 1:* (UID BODY.PEEK[])", "a2 OK")
	c.transact("a3 FETCH 1:* (FLAGS)", "a3 OK")
	c.transact("a4 FETCH 2 (BODY.PEEK[HEADER])", "a4 OK")
	msg := testMessage(4)
	c.sendRaw(fmt.Sprintf("a5 APPEND INBOX {%d+}\r\n%s\r\n", len(msg), msg))
	c.expectTagged("a5", "a5 OK")
	c.send("a6 LOGOUT")
	c.expectClosed("* BYE", "a6 OK")
	h.audit.waitCloses(t, 1)
	h.audit.mu.Lock()
	defer h.audit.mu.Unlock()
	byTag := map[string]CommandEvent{}
	for _, e := range h.audit.commands {
		byTag[e.Command.Tag] = e
	}
	if e := byTag["a2"]; !e.BodyRead || e.Messages != 2 || fmt.Sprint(e.UIDs) != "[1 2]" || e.BytesOut < int64(2*len(testMessage(1))) {
		t.Errorf("a2: body=%v messages=%d uids=%v out=%d", e.BodyRead, e.Messages, e.UIDs, e.BytesOut)
	}
	if e := byTag["a3"]; e.BodyRead || e.Messages != 0 {
		t.Errorf("a3 (flags only): body=%v messages=%d", e.BodyRead, e.Messages)
	}
	// Whether UID is listed here depends on the server adding it unasked
	// (go-imap does; RFC 9051 §6.4.5 allows it).
	if e := byTag["a4"]; !e.BodyRead || e.Messages != 1 {
		t.Errorf("a4: body=%v messages=%d uids=%v", e.BodyRead, e.Messages, e.UIDs)
	}
	if e := byTag["a5"]; e.Code != "APPENDUID" || !strings.HasSuffix(e.CodeArgs, " 3") {
		t.Errorf("a5: code %q args %q", e.Code, e.CodeArgs)
	}
	ce := h.audit.closes[0]
	if ce.MessagesFetched != 3 || ce.CommandsByName["FETCH"] != 3 || ce.CommandsByName["APPEND"] != 1 {
		t.Errorf("close: fetched=%d byName=%v", ce.MessagesFetched, ce.CommandsByName)
	}
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(testenv.IOTimeout())
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// COMPRESS=DEFLATE (RFC 4978) is terminated by the proxy: the client's leg
// is compressed, each response readable at once; commands stay inspected.
func TestCompress(t *testing.T) {
	var decided []string
	h := newHarness(t, func(o *Options) {
		o.Decider = funcDecider(func(in *DecisionInput) Decision {
			if in.Point == PointCommand {
				decided = append(decided, in.Command.Name)
			}
			return Decision{Allow: true}
		})
	})
	c := h.login()
	un := c.transact("a1 CAPABILITY", "a1 OK")
	if !strings.Contains(un[0], "COMPRESS=DEFLATE") {
		t.Fatalf("CAPABILITY lacks COMPRESS=DEFLATE: %s", un[0])
	}
	// Pipelined behind COMPRESS, already compressed: it must survive.
	var pipelined bytes.Buffer
	zw, _ := flate.NewWriter(&pipelined, flate.BestSpeed)
	zw.Write([]byte("a3 SELECT INBOX\r\n"))
	zw.Flush()
	c.sendRaw("a2 COMPRESS DEFLATE\r\n" + pipelined.String())
	c.expect("a2 OK DEFLATE active")
	// From here on: deflate both ways, on the same stream.
	zr := flate.NewReader(io.MultiReader(c.br, c.c))
	c.br = bufio.NewReader(zr)
	c.expectTagged("a3", "a3 OK")
	send := func(cmd string) {
		zw.Reset(c.c)
		zw.Write([]byte(cmd + "\r\n"))
		zw.Flush()
	}
	send("a4 FETCH 1 (BODY.PEEK[])")
	first := c.expect("* 1 FETCH")
	var size int
	fmt.Sscanf(first[strings.LastIndexByte(first, '{'):], "{%d}", &size)
	body := make([]byte, size)
	if _, err := io.ReadFull(c.br, body); err != nil {
		t.Fatal(err)
	}
	if string(body) != testMessage(1) {
		t.Errorf("body over DEFLATE %q", body)
	}
	c.expect(")")
	c.expect("a4 OK")
	send("a5 COMPRESS DEFLATE")
	c.expect("a5 NO [COMPRESSIONACTIVE]")
	send("a6 LOGOUT")
	c.expectClosed("* BYE", "a6 OK")
	if got := strings.Join(decided, " "); !strings.Contains(got, "COMPRESS SELECT FETCH") {
		t.Errorf("commands decided: %s", got)
	}
}

// Compressing sessions are bounded: each holds a large deflater.
func TestCompressLimit(t *testing.T) {
	h := newHarness(t, func(o *Options) { o.Limits.MaxCompressSessions = 1 })
	a := h.login()
	a.transact("a1 COMPRESS DEFLATE", "a1 OK DEFLATE active")
	b := h.login()
	b.transact("b1 COMPRESS DEFLATE", "b1 NO [LIMIT]")
	b.transact("b2 NOOP", "b2 OK") // uncompressed, unharmed
	a.c.Close()
	waitFor(t, func() bool { return h.srv.compressing.Load() == 0 })
	b.transact("b3 COMPRESS DEFLATE", "b3 OK DEFLATE active")
}

// An Auditor that cannot hold a command's record ends the session with
// BYE [UNAVAILABLE] instead of relaying the reply or the refusal
// (ARCHITECTURE.md §11: nothing is acknowledged that the trail does not hold).
func TestAuditFailureWithholdsReply(t *testing.T) {
	for _, tc := range []struct{ name, cmd string }{
		{"relayed", "a2 NOOP"},
		{"denied", "a2 DELETE Trash"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, func(o *Options) {
				o.Decider = funcDecider(func(in *DecisionInput) Decision {
					return Decision{Allow: in.Command == nil || in.Command.Name != "DELETE", Reason: "no"}
				})
			})
			c := h.login()
			c.transact("a1 SELECT INBOX", "a1 OK")
			h.audit.mu.Lock()
			h.audit.commandErr = errors.New("sink full")
			h.audit.mu.Unlock()
			c.send(tc.cmd)
			// expectClosed fails on any line after the BYE: no "a2 OK",
			// no "a2 NO".
			c.expectClosed("* BYE [UNAVAILABLE]")
			h.srv.Close()
			h.srv.Wait()
			h.audit.mu.Lock()
			defer h.audit.mu.Unlock()
			if n := len(h.audit.closes); n != 1 || h.audit.closes[0].Reason != CloseAuditUnavailable {
				t.Errorf("closes %+v, want one with reason audit-unavailable", h.audit.closes)
			}
		})
	}
}

// The backend pump keeps the client writer across buffered lines of a
// FETCH burst only while the next line is whole in its buffer: it never
// waits on the backend holding the writer, so that a backend stopped in
// the middle of a line cannot hold back the answers the proxy gives itself
// (BAD, "+", BYE). The lines are relayed intact all the same.
func TestHeldWriterNotKeptForPartialLine(t *testing.T) {
	var waitedHolding atomic.Int32
	waiting := make(chan struct{}, 1)
	c := newFixedRelay(t, 0, func(o *Options) {
		o.beforeBackendRead = func(held, whole bool) {
			if whole {
				return
			}
			if held {
				waitedHolding.Add(1)
			}
			select {
			case waiting <- struct{}{}:
			default:
			}
		}
	})
	bc := <-c.be.conns // the session's backend connection
	c.rounder("s SELECT INBOX")()
	c.conn.SetReadDeadline(time.Now().Add(testenv.IOTimeout()))
	// Unsolicited FETCH data (RFC 9051 §7.5.2: flag changes may come at
	// any time), the third line cut short, then its end.
	select { // a wait before this one is not the one looked for
	case <-waiting:
	default:
	}
	if _, err := bc.Write([]byte("* 1 FETCH (UID 1 FLAGS ())\r\n* 2 FETCH (UID 2 FLAGS ())\r\n* 3 FETCH (UID")); err != nil {
		t.Fatal(err)
	}
	// The rest only once the pump waits for it.
	select {
	case <-waiting:
	case <-time.After(testenv.IOTimeout()):
		t.Fatal("the backend pump never reached the cut line")
	}
	if _, err := bc.Write([]byte(" 3 FLAGS ())\r\n")); err != nil {
		t.Fatal(err)
	}
	for i := 1; i <= 3; i++ {
		want := fmt.Sprintf("* %d FETCH (UID %d FLAGS ())\r\n", i, i)
		if l, err := c.r.ReadString('\n'); err != nil || l != want {
			t.Fatalf("line %d: %q %v", i, l, err)
		}
	}
	c.rounder("n NOOP")()
	if n := waitedHolding.Load(); n != 0 {
		t.Errorf("the backend pump waited for a line %d times holding the client writer", n)
	}
}

// A NUL in a client's literal (RFC 9051 §4.3: CHAR8 excludes it; only a
// literal8 may hold one) ends the session before the NUL reaches the
// backend, whether the literal is streamed (a message) or buffered (a
// search string). A message cut short, by that or by the client leaving
// mid-literal, is never stored: the backend connection is reset, not
// closed, so that no server takes the end of the stream for the end of
// the literal (go-imap's server does).
func TestNULInLiteral(t *testing.T) {
	h := newHarness(t)
	for i, cmd := range []struct {
		first, lit string
		eof        bool
	}{
		{"a1 APPEND INBOX {12}", "Subject: \x00x\r\n", false},
		{"a1 APPEND INBOX {12+}", "Subject: \x00x\r\n", false},
		{"a1 UID SEARCH SUBJECT {3}", "a\x00b", false},
		{"a1 APPEND INBOX {12}", "Subject:", true},
	} {
		c := h.login()
		c.transact("a0 SELECT INBOX", "a0 OK")
		c.send(cmd.first)
		if !strings.HasSuffix(cmd.first, "+}") {
			c.expect("+")
		}
		if cmd.eof {
			c.sendRaw(cmd.lit)
			c.c.Close()
		} else {
			c.sendRaw(cmd.lit + "\r\n")
			c.expectClosed("* BYE [CLIENTBUG] NUL in literal")
		}
		waitFor(t, func() bool { // the session, its backend connection with it, ended
			h.audit.mu.Lock()
			defer h.audit.mu.Unlock()
			return len(h.audit.closes) == i+1
		})
	}
	c := h.login()
	if un := c.transact("s STATUS INBOX (MESSAGES)", "s OK"); len(un) != 1 || !strings.Contains(un[0], "(MESSAGES 2)") {
		t.Fatalf("the backend's INBOX after the refused APPENDs: %q", un)
	}
}
