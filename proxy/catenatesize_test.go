package proxy

import (
	"fmt"
	"strings"
	"testing"
)

// MaxAppendLiteral bounds one APPEND message (options.go), however it is
// spelled: a CATENATE of TEXT parts, each under the limit, makes one
// message of their sum (RFC 4469 §5), which must be held to it as a
// single literal is (ARCHITECTURE.md §12: every limit is checked before
// the resource is spent). The part that crosses it is refused as a
// literal over the limit is once the backend holds part of the command:
// BYE [TOOBIG], the limit audited, and the backend's command aborted, so
// nothing is stored. Each message of a MULTIAPPEND is a message of its
// own, and a CATENATE under the limit is stored.
func TestAppendLimitBoundsCatenatedMessage(t *testing.T) {
	const limit = 64 << 10
	h := newDovecotHarness(t, nil, func(o *Options) { o.Limits.MaxAppendLiteral = limit })
	c := h.login()
	part := strings.Repeat("x", 60<<10-2) + "\r\n"
	const parts = 4
	c.sendRaw(fmt.Sprintf("a APPEND INBOX CATENATE (TEXT {%d}\r\n", len("Subject: big\r\n\r\n")))
	c.expect("+")
	c.sendRaw("Subject: big\r\n\r\n")
	refused := ""
	for i := 0; i < parts && refused == ""; i++ {
		c.sendRaw(fmt.Sprintf(" TEXT {%d}\r\n", len(part)))
		if l := c.line(); !strings.HasPrefix(l, "+") {
			t.Logf("part %d: %q", i+1, l)
			refused = l
			break
		}
		c.sendRaw(part)
	}
	if refused == "" {
		c.sendRaw(")\r\n")
		t.Logf("APPEND: %q", c.expect("a "))
	}
	if !strings.HasPrefix(refused, "* BYE [TOOBIG]") {
		t.Errorf("the CATENATE crossing MaxAppendLiteral got %q, want * BYE [TOOBIG]", refused)
	}
	hit := false
	h.audit.mu.Lock()
	for _, l := range h.audit.limits {
		hit = hit || (l.Limit == "max_append_literal" && l.Code == "TOOBIG")
	}
	h.audit.mu.Unlock()
	if !hit {
		t.Errorf("no max_append_literal limit audited")
	}

	// Under the limit: one CATENATE of two parts; a MULTIAPPEND of two
	// messages each under it, together over it.
	c = h.login()
	half := strings.Repeat("y", 30<<10-2) + "\r\n"
	head := "Subject: ok\r\n\r\n"
	c.sendRaw(fmt.Sprintf("b APPEND INBOX CATENATE (TEXT {%d}\r\n", len(head)))
	c.expect("+")
	c.sendRaw(fmt.Sprintf("%s TEXT {%d+}\r\n%s)\r\n", head, len(half), half))
	c.expect("b OK")
	msg := "Subject: m\r\n\r\n" + strings.Repeat("z", 50<<10)
	c.sendRaw(fmt.Sprintf("m APPEND INBOX {%d+}\r\n%s {%d+}\r\n%s\r\n", len(msg), msg, len(msg), msg))
	c.expect("m OK")

	c.transact("s SELECT INBOX", "s OK")
	lines := c.transact("f UID FETCH 1:* (RFC822.SIZE)", "f OK")
	if len(lines) != 3 {
		t.Errorf("%d messages stored, want 3: %q", len(lines), lines)
	}
	for _, l := range lines {
		var seq, uid, size int
		if _, err := fmt.Sscanf(l, "* %d FETCH (UID %d RFC822.SIZE %d", &seq, &uid, &size); err != nil {
			if _, err := fmt.Sscanf(l, "* %d FETCH (RFC822.SIZE %d", &seq, &size); err != nil {
				t.Fatalf("%q: %v", l, err)
			}
		}
		if size > limit {
			t.Errorf("message %d of %d octets stored through the proxy with MaxAppendLiteral %d", seq, size, limit)
		}
	}
}
