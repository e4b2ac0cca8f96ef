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
	if !h.limitAudited("max_audit_mailbox_names") {
		t.Error("no max_audit_mailbox_names limit audited")
	}
}

// limitAudited tells whether a limit of that name was audited.
func (h *dovecotHarness) limitAudited(limit string) bool {
	h.audit.mu.Lock()
	defer h.audit.mu.Unlock()
	for _, l := range h.audit.limits {
		if l.Limit == limit {
			return true
		}
	}
	return false
}

// A command whose names (user, command, mailbox, destination, selected,
// sources, mailboxes, SETACL's identifier and rights) total more than
// MaxAuditNameBytes, as the trail encodes them, is refused, NO [LIMIT],
// not recorded cut (ARCHITECTURE.md §11): a RENAME whose two names are
// within it each but not together does not happen, one within it does.
func TestCommandNamesOverBytesRefused(t *testing.T) {
	const limit = 250
	h := newDovecotHarness(t, nil, func(o *Options) { o.Limits.MaxAuditNameBytes = limit })
	c := h.login()
	from, to := "R"+strings.Repeat("a", 120), "T"+strings.Repeat("b", 150)
	c.transact(fmt.Sprintf("c CREATE %s", from), "c OK")
	c.send(fmt.Sprintf("r1 RENAME %s %s", from, to))
	if _, l := c.tagged("r1"); !strings.HasPrefix(l, "r1 NO [LIMIT]") {
		t.Errorf("RENAME naming %d bytes with a limit of %d: %q, want a NO [LIMIT]", len(from)+len(to), limit, l)
	}
	c.transact(fmt.Sprintf("r2 RENAME %s %s", from, to[:100]), "r2 OK")
	if l := strings.Join(c.transact("l LIST \"\" *", "l OK"), "\n"); strings.Contains(l, to) || !strings.Contains(l, to[:100]) {
		t.Errorf("LIST after the RENAMEs: %q", l)
	}
	if !h.limitAudited("max_audit_name_bytes") {
		t.Error("no max_audit_name_bytes limit audited")
	}
}

// jsonStringLen counts a name as the trail writes it.
func TestJSONStringLen(t *testing.T) {
	for s, want := range map[string]int{"": 0, "INBOX": 5, "a\"b\\c": 7, "\n\t\r": 6, "\x01\x7f": 7, "\xff": 6, "é": 2, "\u017f\ufffd": 5} {
		if got := jsonStringLen(s); got != want {
			t.Errorf("jsonStringLen(%q) = %d, want %d", s, got, want)
		}
	}
}
