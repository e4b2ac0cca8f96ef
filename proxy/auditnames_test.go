package proxy

import (
	"fmt"
	"strings"
	"testing"
)

// A command whose record could not name every mailbox it reads or
// watches is refused, NO [LIMIT], not recorded without some: an APPEND
// whose CATENATE URLs copy from more mailboxes than MaxAuditMailboxNames
// (the trail's MaxMailboxNames) stores nothing, one within it is
// stored, and a NOTIFY naming too many is refused the same way
// (ARCHITECTURE.md §11, attack46d).
func TestCommandNamingTooManyMailboxesRefused(t *testing.T) {
	const limit = 3
	h := newDovecotHarness(t, nil, func(o *Options) { o.Limits.MaxAuditMailboxNames = limit })
	c := h.login()
	var urls []string
	msg := "Subject: x\r\n\r\nx\r\n"
	for i := range limit + 1 {
		c.transact(fmt.Sprintf("c%d CREATE S%d", i, i), fmt.Sprintf("c%d OK", i))
		c.sendRaw(fmt.Sprintf("p%d APPEND S%d {%d+}\r\n%s\r\n", i, i, len(msg), msg))
		c.expectTagged(fmt.Sprintf("p%d", i), fmt.Sprintf("p%d OK", i))
		urls = append(urls, fmt.Sprintf(`URL "/S%d/;UID=1"`, i))
	}
	messages := func(tag string) string {
		return strings.Join(c.transact(tag+" STATUS INBOX (MESSAGES)", tag+" OK"), "")
	}
	before := messages("m0")
	c.sendRaw(fmt.Sprintf("a APPEND INBOX CATENATE (%s TEXT {%d+}\r\n%s)\r\n", strings.Join(urls, " "), len(msg), msg))
	if _, l := c.tagged("a"); !strings.HasPrefix(l, "a NO [LIMIT]") {
		t.Errorf("APPEND CATENATE reading %d mailboxes with a limit of %d: %q, want a NO [LIMIT]", limit+1, limit, l)
	}
	c.sendRaw(fmt.Sprintf("b APPEND INBOX CATENATE (%s TEXT {%d+}\r\n%s)\r\n", strings.Join(urls[:limit], " "), len(msg), msg))
	if _, l := c.tagged("b"); !strings.HasPrefix(l, "b OK") {
		t.Errorf("APPEND CATENATE reading %d mailboxes: %q", limit, l)
	}
	if before != "* STATUS INBOX (MESSAGES 0)" || messages("m1") != "* STATUS INBOX (MESSAGES 1)" {
		t.Errorf("INBOX: %q, then %q: want one message, the one within the limit", before, messages("m2"))
	}
	var boxes []string
	for i := range limit + 1 {
		boxes = append(boxes, fmt.Sprintf("S%d", i))
	}
	c.send(fmt.Sprintf("n NOTIFY SET (mailboxes (%s) (MessageNew))", strings.Join(boxes, " ")))
	if _, l := c.tagged("n"); !strings.HasPrefix(l, "n NO [LIMIT]") {
		t.Errorf("NOTIFY naming %d mailboxes: %q, want n NO [LIMIT]", limit+1, l)
	}
	hit := false
	h.audit.mu.Lock()
	for _, l := range h.audit.limits {
		hit = hit || l.Limit == "max_audit_mailbox_names"
	}
	h.audit.mu.Unlock()
	if !hit {
		t.Error("no max_audit_mailbox_names limit audited")
	}
}
