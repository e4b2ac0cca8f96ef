package proxy

import (
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
)

// TestPipelinedFetchesLinearWork (attack44c): n FETCHes of one message
// sent in one write: each response made backendPump.answering compare
// every pair of FETCHes in flight and scan a list of all the others for
// each pair, n⁴ steps a burst (n = 200: 2 s of CPU; n = 400: no first
// answer in 30 s). Counted, not timed: answering looks at each FETCH in
// flight at most twice a response, whatever the interleaving of the
// client's commands and the server's responses; each response is
// credited once; a record names at most Limits.MaxAuditSharedWith others.
func TestPipelinedFetchesLinearWork(t *testing.T) {
	h := newDovecotHarness(t, nil)
	h.dc.Deliver(t, "alice", "INBOX", []byte(testMessage(1)))
	var steps atomic.Int64
	answerSteps = &steps
	t.Cleanup(func() { answerSteps = nil })
	for _, n := range []int{100, 200, 400} {
		c := h.login()
		c.transact("s1 SELECT INBOX", "s1 OK")
		var b strings.Builder
		for i := range n {
			fmt.Fprintf(&b, "f%d FETCH 1 BODY.PEEK[HEADER]\r\n", i)
		}
		steps.Store(0)
		c.sendRaw(b.String())
		for i := range n {
			c.expectTagged(fmt.Sprint("f", i), fmt.Sprintf("f%d OK", i))
		}
		got := steps.Load()
		c.transact("z LOGOUT", "z OK")
		t.Logf("%d pipelined FETCHes of one message: %d steps", n, got)
		if most := int64(2 * n * n); got > most {
			t.Errorf("%d pipelined FETCHes took %d steps, more than %d", n, got, most)
		}
	}
	h.audit.waitCloses(t, 3)
	h.audit.mu.Lock()
	defer h.audit.mu.Unlock()
	messages := 0
	for _, e := range h.audit.commands {
		if e.Command == nil || e.Command.Name != "FETCH" {
			continue
		}
		messages += e.Messages
		if len(e.SharedWith) > DefaultMaxAuditSharedWith || (e.SharedCount != 0 && e.SharedCount <= len(e.SharedWith)) {
			t.Errorf("%s names %d (%d in all)", e.Command.Tag, len(e.SharedWith), e.SharedCount)
		}
	}
	if want := 100 + 200 + 400; messages != want {
		t.Errorf("the records count %d messages, the FETCHes got %d", messages, want)
	}
}

// The record's lists are bounded by Limits.MaxAuditUIDs and
// MaxAuditSharedWith (configuration keys, ARCHITECTURE.md §12), not by
// constants: the counts cover what the lists leave out.
func TestAuditListsFollowLimits(t *testing.T) {
	h := newDovecotHarness(t, nil, func(o *Options) {
		o.Limits.MaxAuditUIDs = 3
		o.Limits.MaxAuditSharedWith = 1
	})
	for i := range 5 {
		h.dc.Deliver(t, "alice", "INBOX", []byte(testMessage(i)))
	}
	c := h.login()
	c.transact("s1 SELECT INBOX", "s1 OK")
	c.transact("u1 UID FETCH 1:* BODY.PEEK[]", "u1 OK")
	var b strings.Builder
	const n = 50
	for i := range n {
		fmt.Fprintf(&b, "f%d FETCH 1 BODY.PEEK[HEADER]\r\n", i)
	}
	c.sendRaw(b.String())
	for i := range n {
		c.expectTagged(fmt.Sprint("f", i), fmt.Sprintf("f%d OK", i))
	}
	c.transact("z LOGOUT", "z OK")
	waitFor(t, func() bool {
		h.audit.mu.Lock()
		defer h.audit.mu.Unlock()
		return len(h.audit.closes) == 1
	})
	h.audit.mu.Lock()
	defer h.audit.mu.Unlock()
	for _, e := range h.audit.commands {
		if e.Command == nil {
			continue
		}
		switch {
		case e.Command.Tag == "u1" && (len(e.UIDs) != 3 || e.Messages != 5):
			t.Errorf("UID FETCH of 5 messages names UIDs %v, counts %d messages; want 3 UIDs, 5", e.UIDs, e.Messages)
		case len(e.SharedWith) > 1 || (e.SharedCount != 0 && e.SharedCount <= len(e.SharedWith)):
			t.Errorf("%s names %v (%d in all), at most 1 allowed", e.Command.Tag, e.SharedWith, e.SharedCount)
		}
	}
}
