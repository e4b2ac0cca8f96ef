package ratelimit

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap/zaptest"

	"github.com/imapwarden/imapwarden/internal/dovecottest"
)

// The fetch cap's overshoot is one message, not one response: a single
// FETCH response may hold the same message many times (distinct partials
// of BODY[] are distinct items, RFC 9051 §6.4.5), and once the cap is
// crossed inside it the rest must not go out uncharged (ARCHITECTURE.md
// §12: caps count what is delivered, at message boundaries).
func TestFetchCapOvershootBoundedByOneMessage(t *testing.T) {
	dovecottest.Require(t)
	dc := dovecottest.Start(t, dovecottest.Options{})
	const kb = 1 << 10
	const size = 100 * kb
	dc.Deliver(t, "alice", "INBOX", bigMessage(1, size))
	const budget = 150 * kb
	l, err := New(Options{FetchBytesPerUser: Rate{N: budget, Per: time.Hour}, Logger: zaptest.NewLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	addr, audit := startProxy(t, l, dovecotBackend(t, dc))
	c := dial(t, addr, "127.0.0.1")
	c.want("a1 LOGIN alice alice-pw", "a1 OK")
	c.want("a2 SELECT INBOX", "a2 OK")
	var items []string
	for i := 0; i < 40; i++ {
		items = append(items, fmt.Sprintf("BODY.PEEK[]<%d.%d>", i, 2*size))
	}
	resp, n := c.do("f1 UID FETCH 1 (UID " + strings.Join(items, " ") + ")")
	t.Logf("answer %q after %d content octets (budget %d, message about %d)", resp, n, budget, size)
	// The refused charges: each content item past the cap is a limit hit
	// of its own (one audit record each).
	t.Logf("%d fetch cap hits for one response", audit.hits(LimitFetchBytesPerUser))
	if n > budget+2*size {
		t.Fatalf("%d content octets delivered under a %d-octet cap (messages of about %d octets): %.0fx the cap",
			n, budget, size, float64(n)/budget)
	}
}

// A spent fetch budget delivers no content to a new session, whatever the
// shape of the response: the cap must not depend on whether the first
// piece of the response line already reached the client before its first
// content item is seen (a long echoed HEADER.FIELDS list puts it there).
func TestSpentFetchBudgetDeliversNothing(t *testing.T) {
	dovecottest.Require(t)
	dc := dovecottest.Start(t, dovecottest.Options{})
	const kb = 1 << 10
	const size = 100 * kb
	for i := 1; i <= 2; i++ {
		dc.Deliver(t, "alice", "INBOX", bigMessage(i, size))
	}
	const budget = 150 * kb
	l, err := New(Options{FetchBytesPerUser: Rate{N: budget, Per: time.Hour}, Logger: zaptest.NewLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	addr, _ := startProxy(t, l, dovecotBackend(t, dc))
	c := dial(t, addr, "127.0.0.1")
	c.want("a1 LOGIN alice alice-pw", "a1 OK")
	c.want("a2 SELECT INBOX", "a2 OK")
	c.want("a3 UID FETCH 1 (BODY.PEEK[])", "a3 OK")
	// The second message crosses the budget: refused, the session ends.
	if resp, n := c.do("a4 UID FETCH 2 (BODY.PEEK[])"); !strings.HasPrefix(resp, "* BYE [LIMIT]") || n != 0 {
		t.Fatalf("over the cap: %q after %d octets", resp, n)
	}
	// A new session: the budget is spent. Header names echoed in the
	// response make its first line longer than the backend read buffer.
	var names []string
	for i := 0; i < 4000; i++ {
		names = append(names, fmt.Sprintf("X-%06d", i))
	}
	for round := 0; round < 3; round++ {
		c = dial(t, addr, "127.0.0.1")
		c.want("b1 LOGIN alice alice-pw", "b1 OK")
		c.want("b2 SELECT INBOX", "b2 OK")
		resp, n := c.do("b3 UID FETCH 1:2 (UID BODY.PEEK[HEADER.FIELDS (" + strings.Join(names, " ") + ")] BODY.PEEK[])")
		if n != 0 {
			t.Fatalf("session %d after the budget was spent: %d content octets delivered (%q)", round+1, n, resp)
		}
	}
}
