package proxy

import (
	"fmt"
	"io"
	"math"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/imapwarden/imapwarden/internal/testenv"
)

// fetchCapHarness is a scripted backend that selects INBOX and answers
// every FETCH with what resp writes, behind the proxy with fl as its
// Limiter.
func fetchCapHarness(t *testing.T, fl Limiter, resp func(c net.Conn)) *harness {
	return scriptedHarness(t, func(c net.Conn, tag, line string) {
		switch {
		case line == "SELECT INBOX":
			fmt.Fprintf(c, "* 1 EXISTS\r\n%s OK [READ-WRITE] done\r\n", tag)
		case strings.Contains(line, "FETCH"):
			resp(c)
			fmt.Fprintf(c, "%s OK done\r\n", tag)
		default:
			fmt.Fprintf(c, "%s OK fine\r\n", tag)
		}
	}, func(o *Options) { o.Limiter = fl })
}

// closedRecord waits for the session's end and returns the record of the
// command tagged tag and the limit hits audited.
func closedRecord(t *testing.T, h *harness, tag string) (CommandEvent, []LimitResult) {
	t.Helper()
	h.audit.waitCloses(t, 1)
	h.audit.mu.Lock()
	defer h.audit.mu.Unlock()
	for _, e := range h.audit.commands {
		if e.Command.Tag == tag {
			return e, append([]LimitResult(nil), h.audit.limits...)
		}
	}
	t.Fatalf("no record of %s", tag)
	return CommandEvent{}, nil
}

// readLiteral reads n octets of x.
func readLiteral(t *testing.T, c *tconn, n int) {
	t.Helper()
	b := make([]byte, n)
	c.c.SetReadDeadline(time.Now().Add(testenv.IOTimeout()))
	if _, err := io.ReadFull(c.br, b); err != nil {
		t.Fatal(err)
	}
	if strings.Trim(string(b), "x") != "" {
		t.Fatal("the literal is not the backend's")
	}
}

// A charge refused once part of a FETCH response went out (the item before
// it too big to hold back) ends the session right there: the refused item
// and all after it stay at the proxy, the BYE starts a line of its own,
// one limit hit is audited for the response, and the FETCH's record names
// the message and the octets that went out (ARCHITECTURE.md §11, §12).
func TestFetchCapCutsResponse(t *testing.T) {
	const size = 100_000
	fl := &fakeLimiter{maxBytes: 150_000}
	h := fetchCapHarness(t, fl, func(c net.Conn) {
		fmt.Fprintf(c, "* 1 FETCH (UID 7")
		for i := 0; i < 3; i++ {
			fmt.Fprintf(c, " BODY[]<%d> {%d}\r\n%s", i, size, strings.Repeat("x", size))
		}
		fmt.Fprintf(c, ")\r\n")
	})
	c := h.login()
	c.transact("s SELECT INBOX", "s OK")
	c.send("f UID FETCH 7 (BODY.PEEK[]<0.100000> BODY.PEEK[]<1.100000> BODY.PEEK[]<2.100000>)")
	c.expect("* 1 FETCH (UID 7 BODY[]<0> {100000}")
	readLiteral(t, c, size)
	if l := c.line(); l != "" {
		t.Fatalf("after the charged item: %q, want the end of the cut line", l)
	}
	c.expectClosed("* BYE [LIMIT]")
	rec, limits := closedRecord(t, h, "f")
	if len(rec.UIDs) != 1 || rec.UIDs[0] != 7 || rec.Content != size || rec.Messages != 1 {
		t.Errorf("record of the cut FETCH: UIDs %v, content %d, messages %d; want [7], %d, 1", rec.UIDs, rec.Content, rec.Messages, size)
	}
	if len(limits) != 1 || !limits[0].Exceeded {
		t.Errorf("limit hits %+v, want the one refusal", limits)
	}
	fl.mu.Lock()
	defer fl.mu.Unlock()
	if fl.fetched != size {
		t.Errorf("charged %d octets, want %d", fl.fetched, size)
	}
}

// While a charge may still be refused the response is held back: a line
// longer than the backend's read buffer before its first content item (a
// long echoed HEADER.FIELDS list), and that item, which the cap allows,
// go nowhere when the next item is refused. The client hears only
// "* BYE [LIMIT]", and no message is recorded as read.
func TestFetchCapHoldsResponseBack(t *testing.T) {
	var names []string
	for i := 0; i < 4000; i++ {
		names = append(names, fmt.Sprintf("X-%06d", i))
	}
	fl := &fakeLimiter{maxBytes: 1000}
	h := fetchCapHarness(t, fl, func(c net.Conn) {
		fmt.Fprintf(c, "* 1 FETCH (UID 7 BODY[HEADER.FIELDS (%s)] {2}\r\n\r\n BODY[] {100000}\r\n%s)\r\n",
			strings.Join(names, " "), strings.Repeat("x", 100_000))
	})
	c := h.login()
	c.transact("s SELECT INBOX", "s OK")
	c.send("f UID FETCH 7 (BODY.PEEK[HEADER.FIELDS (X-000000)] BODY.PEEK[])")
	if l := c.line(); !strings.HasPrefix(l, "* BYE [LIMIT]") {
		t.Fatalf("got %.60q..., want * BYE [LIMIT] and nothing of the response", l)
	}
	c.expectClosed()
	rec, limits := closedRecord(t, h, "f")
	if len(rec.UIDs) != 0 || rec.Content != 0 || rec.Messages != 0 {
		t.Errorf("record of the refused FETCH: UIDs %v, content %d, messages %d; want none", rec.UIDs, rec.Content, rec.Messages)
	}
	if len(limits) != 1 || !limits[0].Exceeded {
		t.Errorf("limit hits %+v, want the one refusal", limits)
	}
}

// An alert-only cap crossed is audited once a response, not once per
// content item in it.
func TestFetchCapOneHitPerResponse(t *testing.T) {
	fl := &fakeLimiter{} // alerts at every charge
	h := fetchCapHarness(t, fl, func(c net.Conn) {
		fmt.Fprintf(c, "* 1 FETCH (UID 7 BODY[]<0> {3}\r\nabc BODY[]<1> {2}\r\nbc BODY[]<2> {1}\r\nc)\r\n")
	})
	c := h.login()
	c.transact("s SELECT INBOX", "s OK")
	c.transact("f1 UID FETCH 7 (BODY.PEEK[]<0.3> BODY.PEEK[]<1.3> BODY.PEEK[]<2.3>)", "f1 OK")
	c.transact("f2 UID FETCH 7 (BODY.PEEK[]<0.3> BODY.PEEK[]<1.3> BODY.PEEK[]<2.3>)", "f2 OK")
	c.transact("z LOGOUT", "z OK")
	rec, limits := closedRecord(t, h, "f2")
	if rec.Content != 6 || rec.Messages != 1 {
		t.Errorf("record: content %d, messages %d; want 6, 1", rec.Content, rec.Messages)
	}
	if len(limits) != 2 {
		t.Errorf("%d limit hits for two responses, want 2", len(limits))
	}
}

// A backend lost in the middle of a content literal: the client has what
// went out and then the close, no BYE (its octets would be read as the
// literal's, ARCHITECTURE.md §15), and the FETCH's record names the
// message and the octets that went out (ARCHITECTURE.md §11).
func TestBackendLostMidLiteralRecord(t *testing.T) {
	const sent = 50_000
	fl := &fakeLimiter{}
	h := fetchCapHarness(t, fl, func(c net.Conn) {
		fmt.Fprintf(c, "* 1 FETCH (UID 7 BODY[] {100000}\r\n%s", strings.Repeat("x", sent))
		c.Close()
	})
	c := h.login()
	c.transact("s SELECT INBOX", "s OK")
	c.send("f UID FETCH 7 (BODY.PEEK[])")
	c.expect("* 1 FETCH (UID 7 BODY[] {100000}")
	if rest := c.readToClose(); len(rest) != sent || strings.Trim(string(rest), "x") != "" {
		t.Fatalf("after the FETCH line: %d octets (%q...)", len(rest), rest[:min(len(rest), 40)])
	}
	rec, _ := closedRecord(t, h, "f")
	if len(rec.UIDs) != 1 || rec.UIDs[0] != 7 || rec.Content != sent || rec.Messages != 1 {
		t.Errorf("record of the cut FETCH: UIDs %v, content %d, messages %d; want [7], %d, 1", rec.UIDs, rec.Content, rec.Messages, sent)
	}
}

// A literal of any size the scanner takes (up to imapwire.MaxLiteralSize)
// is weighed against the room left to hold it, never added to what is
// held: the backend announcing the largest one and then leaving costs its
// session, not the process.
func TestHugeLiteralNotHeld(t *testing.T) {
	h := fetchCapHarness(t, &blockingLimiter{}, func(c net.Conn) {
		fmt.Fprintf(c, "* 1 FETCH (UID 7 BODY[] {%d}\r\nxxx", int64(math.MaxInt64))
		c.Close()
	})
	c := h.login()
	c.transact("s SELECT INBOX", "s OK")
	c.send("f UID FETCH 7 (BODY.PEEK[])")
	c.expect("* 1 FETCH (UID 7 BODY[] {")
	if rest := c.readToClose(); string(rest) != "xxx" {
		t.Fatalf("after the FETCH line: %q", rest)
	}
	if rec, _ := closedRecord(t, h, "f"); rec.Content != 3 {
		t.Errorf("record of the cut FETCH: content %d, want 3", rec.Content)
	}
}

// A quoted content value (RFC 9051 §4.3: an nstring may be quoted) is
// charged as its pieces pass, each before it is written, however long the
// string: held back while it fits, nothing of a response refused there
// goes out; streamed after a long literal, it is cut at the piece whose
// charge is refused, and what the client got is what was charged and
// recorded (ARCHITECTURE.md §12). It used to be charged at its closing
// DQUOTE, after up to MaxResponseLine of it went out.
func TestFetchCapChargesQuotedContent(t *testing.T) {
	const size = 200_000
	quoted := `"` + strings.Repeat("y", size) + `"`
	t.Run("held", func(t *testing.T) {
		fl := &fakeLimiter{maxBytes: 1000}
		h := fetchCapHarness(t, fl, func(c net.Conn) {
			fmt.Fprintf(c, "* 1 FETCH (UID 7 BODY[] %s)\r\n", quoted)
		})
		c := h.login()
		c.transact("s SELECT INBOX", "s OK")
		c.send("f UID FETCH 7 (BODY.PEEK[])")
		if l := c.line(); !strings.HasPrefix(l, "* BYE [LIMIT]") {
			t.Fatalf("got %.60q... (%d octets), want * BYE [LIMIT] and nothing of the response", l, len(l))
		}
		c.expectClosed()
		rec, _ := closedRecord(t, h, "f")
		if rec.Content != 0 || rec.Messages != 0 {
			t.Errorf("record of the refused FETCH: content %d, messages %d; want none", rec.Content, rec.Messages)
		}
	})
	t.Run("streamed", func(t *testing.T) {
		const lit = 100_000
		fl := &fakeLimiter{maxBytes: 150_000}
		h := fetchCapHarness(t, fl, func(c net.Conn) {
			fmt.Fprintf(c, "* 1 FETCH (UID 7 BODY[]<0> {%d}\r\n%s BODY[]<%d> %s)\r\n", lit, strings.Repeat("x", lit), lit, quoted)
		})
		c := h.login()
		c.transact("s SELECT INBOX", "s OK")
		c.send("f UID FETCH 7 (BODY.PEEK[]<0.100000> BODY.PEEK[]<100000.200000>)")
		c.expect("* 1 FETCH (UID 7 BODY[]<0> {100000}")
		readLiteral(t, c, lit)
		rest := string(c.readToClose())
		got, bye, _ := strings.Cut(strings.TrimPrefix(rest, ` BODY[]<100000> "`), "\r\n")
		if strings.Trim(got, "y") != "" || !strings.HasPrefix(bye, "* BYE [LIMIT]") {
			t.Fatalf("after the literal: %.60q... (%d octets), want part of the quoted value, then * BYE [LIMIT]", rest, len(rest))
		}
		rec, _ := closedRecord(t, h, "f")
		fl.mu.Lock()
		defer fl.mu.Unlock()
		if fl.fetched > fl.maxBytes || fl.fetched != int64(lit+len(got)) || rec.Content != fl.fetched {
			t.Errorf("charged %d (cap %d), recorded %d, sent %d content octets; want them equal and within the cap",
				fl.fetched, fl.maxBytes, rec.Content, lit+len(got))
		}
	})
}
