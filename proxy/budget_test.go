package proxy

import (
	"encoding/base64"
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

// The client's responses during AUTHENTICATE are part of its one command:
// each under MaxLine, their sum is bounded by MaxPreAuthCommandBytes, the
// exchange ended with BAD [TOOBIG] and a limit record (ARCHITECTURE.md
// §12); the session goes on. A refused token's dummy response counts too.
func TestPreAuthSASLResponsesCharged(t *testing.T) {
	h := newHarness(t, func(o *Options) {
		o.Limits.MaxLine = 4096
		o.Limits.MaxPreAuthCommandBytes = 2048
		o.Authenticator = tokenAuth{}
	})
	b64 := func(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }
	big := b64(strings.Repeat("u", 900)) // 1,200 bytes: each response fits

	c := dialTLS(t, h.imaps)
	c.expect("* OK")
	c.send("a1 AUTHENTICATE LOGIN")
	c.expect("+ " + b64("Username:"))
	c.send(big)
	c.expect("+ " + b64("Password:"))
	c.send(big)
	c.expect("a1 BAD [TOOBIG]")
	c.transact("a2 NOOP", "a2 OK")

	// The dummy response after a refused token (RFC 7628 §3.2.2).
	c.send("a3 AUTHENTICATE OAUTHBEARER " + b64("n,,\x01auth=Bearer "+strings.Repeat("x", 1200)+"\x01\x01"))
	c.expect("+ ")
	c.send(big)
	c.expect("a3 BAD [TOOBIG]")
	c.transact("a4 NOOP", "a4 OK")

	h.audit.mu.Lock()
	defer h.audit.mu.Unlock()
	n := 0
	for _, l := range h.audit.limits {
		if l.Limit == "max_preauth_command_bytes" && l.Code == "TOOBIG" {
			n++
		}
	}
	if n != 2 {
		t.Errorf("%d max_preauth_command_bytes records, want 2: %+v", n, h.audit.limits)
	}
}

// The rest of a refused command, lines and small {n+} literals the proxy
// reads and drops, counts against MaxCommandBytes as any command's bytes
// (MaxPreAuthCommandBytes before login): a chain of them ends the session
// instead of keeping the proxy reading one command for ever.
func TestRefusedCommandRestCounted(t *testing.T) {
	h := newHarness(t, func(o *Options) {
		o.Limits.MaxCommandBytes = 16 << 10
		o.Limits.MaxPreAuthCommandBytes = 16 << 10
	})
	chain := func(first string) string {
		lit := strings.Repeat("x", 4096)
		var b strings.Builder
		b.WriteString(first)
		for range 8 {
			b.WriteString(" {4096+}\r\n" + lit)
		}
		b.WriteString("\r\nb NOOP\r\n")
		return b.String()
	}
	t.Run("authenticated", func(t *testing.T) {
		c := h.login()
		// Over MaxBufferedLiteral (4 KiB): refused, its bytes dropped.
		c.sendRaw(chain("a CREATE {5000+}\r\n" + strings.Repeat("m", 5000)))
		if l := c.line(); !strings.HasPrefix(l, "* BYE [TOOBIG]") {
			t.Fatalf("after a refused command's rest of 32 KiB (MaxCommandBytes 16 KiB): %q", l)
		}
	})
	t.Run("before login", func(t *testing.T) {
		c := dialPlain(t, h.starttls)
		c.expect("* OK")
		// LOGIN before TLS: refused (RFC 9051 §6.2.3), its literal dropped.
		c.sendRaw(chain("a LOGIN {5+}\r\nalice"))
		if l := c.line(); !strings.HasPrefix(l, "* BYE [TOOBIG]") {
			t.Fatalf("after a refused command's rest of 32 KiB (MaxPreAuthCommandBytes 16 KiB): %q", l)
		}
	})
}
