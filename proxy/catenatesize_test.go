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
// the resource is spent).
func TestAppendLimitBoundsCatenatedMessage(t *testing.T) {
	const limit = 64 << 10
	h := newDovecotHarness(t, nil, func(o *Options) { o.Limits.MaxAppendLiteral = limit })
	c := h.login()
	part := strings.Repeat("x", 60<<10-2) + "\r\n"
	const parts = 4
	c.sendRaw(fmt.Sprintf("a APPEND INBOX CATENATE (TEXT {%d}\r\n", len("Subject: big\r\n\r\n")))
	c.expect("+")
	c.sendRaw("Subject: big\r\n\r\n")
	refused := false
	for i := 0; i < parts && !refused; i++ {
		c.sendRaw(fmt.Sprintf(" TEXT {%d}\r\n", len(part)))
		if l := c.line(); !strings.HasPrefix(l, "+") {
			t.Logf("part %d: %q", i+1, l)
			refused = true
			break
		}
		c.sendRaw(part)
	}
	if !refused {
		c.sendRaw(")\r\n")
		t.Logf("APPEND: %q", c.expect("a "))
	}
	c = h.login()
	c.transact("s SELECT INBOX", "s OK")
	lines := c.transact("f FETCH 1:* (RFC822.SIZE)", "f OK")
	for _, l := range lines {
		var seq, size int
		if _, err := fmt.Sscanf(l, "* %d FETCH (RFC822.SIZE %d", &seq, &size); err == nil && size > limit {
			t.Errorf("message %d of %d octets stored through the proxy with MaxAppendLiteral %d", seq, size, limit)
		}
	}
}
