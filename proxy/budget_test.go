package proxy

import (
	"fmt"
	"strings"
	"testing"
)

// walkLiterals sends first, then piece(i) after each "+" (each piece ends
// by announcing the next synchronizing literal), until the proxy answers
// tag instead of "+" or n pieces went; it returns the tagged line and the
// pieces sent.
func walkLiterals(c *tconn, tag, first string, piece func(i int) string, n int) (string, int) {
	c.t.Helper()
	c.sendRaw(first)
	for i := range n {
		l := c.line()
		if !strings.HasPrefix(l, "+") {
			if !strings.HasPrefix(l, tag+" ") {
				c.t.Fatalf("got %q, want a continuation or %s's answer", l, tag)
			}
			return l, i
		}
		c.sendRaw(piece(i))
	}
	_, tl := c.tagged(tag)
	return tl, n
}

// One command of many literals, each under MaxBufferedLiteral and each
// piece under MaxLine: their sum is bounded by MaxCommandBytes, charged as
// they arrive, not held until the command's end (ARCHITECTURE.md §12). With
// synchronizing literals the refusal takes the place of a "+" and the
// session goes on; with {n+} literals in flight it ends.
func TestCommandBudgetManyLiterals(t *testing.T) {
	h := newDovecotHarness(t, nil, func(o *Options) {
		o.Limits.MaxLine = 1024
		o.Limits.MaxBufferedLiteral = 64
		o.Limits.MaxCommandBytes = 16 << 10
	})
	lit := strings.Repeat("x", 64)
	const n = 2000 // 4,000 arguments: under the parser's 10,000

	c := h.login()
	c.transact("s1 SELECT INBOX", "s1 OK")
	tl, sent := walkLiterals(c, "a1", "a1 SEARCH TEXT {64}\r\n", func(i int) string {
		if i == n-1 {
			return lit + "\r\n"
		}
		return lit + " TEXT {64}\r\n"
	}, n)
	if !strings.HasPrefix(tl, "a1 BAD [TOOBIG]") || sent > 200 {
		t.Fatalf("after %d literals of 64 bytes (MaxCommandBytes 16 KiB): %q", sent, tl)
	}
	c.transact("a2 NOOP", "a2 OK")

	c = h.login()
	c.transact("s1 SELECT INBOX", "s1 OK")
	var b strings.Builder
	b.WriteString("a1 SEARCH")
	for range n {
		fmt.Fprintf(&b, " TEXT {64+}\r\n%s", lit)
	}
	b.WriteString("\r\n")
	cmd := b.String()
	go c.c.Write([]byte(cmd)) // the proxy stops reading; the write's error is expected
	c.expectClosed("* BYE [TOOBIG]")
}

// Before login the same: an ID of many small literals (or any command) is
// bounded by MaxPreAuthCommandBytes as its pieces arrive.
func TestPreAuthCommandBudgetManyLiterals(t *testing.T) {
	h := newHarness(t, func(o *Options) {
		o.Limits.MaxLine = 1024
		o.Limits.MaxBufferedLiteral = 64
		o.Limits.MaxPreAuthCommandBytes = 2048
	})
	val := strings.Repeat("v", 64)
	const n = 4000

	c := dialTLS(t, h.imaps)
	c.expect("* OK")
	tl, sent := walkLiterals(c, "a1", "a1 ID (\"k0\" {64}\r\n", func(i int) string {
		if i == n-1 {
			return val + ")\r\n"
		}
		return fmt.Sprintf("%s \"k%d\" {64}\r\n", val, i+1)
	}, n)
	if !strings.HasPrefix(tl, "a1 BAD [TOOBIG]") || sent >= 30 {
		t.Fatalf("before login, after %d literals of 64 bytes (MaxPreAuthCommandBytes 2 KiB): %q", sent, tl)
	}
	c.transact("a2 NOOP", "a2 OK")

	c = dialTLS(t, h.imaps)
	c.expect("* OK")
	var b strings.Builder
	b.WriteString("a1 ID (")
	for i := range n {
		fmt.Fprintf(&b, "\"k%d\" {64+}\r\n%s ", i, val)
	}
	b.WriteString("\"end\" NIL)\r\n")
	cmd := b.String()
	go c.c.Write([]byte(cmd))
	c.expectClosed("* BYE [TOOBIG]")
}

// RFC 2971 §3.3 allows 30 field-value pairs in an ID: the 31st is refused
// as it is parsed, before its literal is asked for, not after the whole
// list was read.
func TestPreAuthIDPairsCountedAsParsed(t *testing.T) {
	h := newHarness(t)
	c := dialTLS(t, h.imaps)
	c.expect("* OK")
	var b strings.Builder
	b.WriteString("a1 ID (")
	for i := range 30 {
		fmt.Fprintf(&b, "\"k%d\" {1+}\r\nv ", i)
	}
	b.WriteString("\"k30\" {1}\r\n")
	c.sendRaw(b.String())
	c.expect("a1 BAD")
	c.transact("a2 NOOP", "a2 OK")
}
