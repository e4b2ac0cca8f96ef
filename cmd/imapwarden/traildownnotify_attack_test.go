package main

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/imapwarden/imapwarden/internal/testenv"
)

// While the trail is known down, every command with an effect is refused
// before it reaches the backend (Session.trailDown; a UID FETCH of
// BODY.PEEK[] gets NO [UNAVAILABLE]), but NOOP, which the table gives no
// effect, is forwarded: under a NOTIFY set before the disk filled
// (RFC 5465 §5.2, MessageNew with fetch attributes), Dovecot answers it
// with the text of a message that arrived meanwhile, and the proxy
// relays that text to the client while no record of it can be written.
// Only the NOOP's completion is withheld. Content must not leave while
// its record cannot be written (ARCHITECTURE.md §11, "Nothing is carried
// out that the trail cannot record").
func TestAttackNotifyPushesContentWhileTrailIsDown(t *testing.T) {
	addr, sink, trail, dc := trailDownDovecot(t)
	c := dialAud(t, addr)
	c.do("a1", "OK", "LOGIN alice alice-pw")
	c.do("a2", "OK", "CREATE Watched")
	c.do("a3", "OK", "SELECT Watched")
	caps := c.do("a4", "OK", "CAPABILITY")
	if !strings.Contains(caps, " NOTIFY") {
		t.Skipf("no NOTIFY through the proxy: %q", caps)
	}
	c.do("a5", "OK", "NOTIFY SET (SELECTED (MessageNew (UID BODY.PEEK[]) MessageExpunge))")

	fillSinkDisk(t, addr, sink, trail)
	// What the proxy refuses now: reading a message's text.
	c.do("d1", "NO [UNAVAILABLE]", "UID FETCH 1:* (BODY.PEEK[])")

	dc.Deliver(t, "alice", "Watched", []byte("Subject: merger\r\n\r\nthe secret figures\r\n"))
	fmt.Fprintf(c.c, "n1 NOOP\r\n")
	var got []string
	leaked := false
	for {
		c.c.SetReadDeadline(time.Now().Add(testenv.IOTimeout()))
		l, err := c.br.ReadString('\n')
		if l != "" {
			got = append(got, strings.TrimSpace(l))
		}
		if strings.Contains(l, "the secret figures") {
			leaked = true
		}
		if err != nil || strings.HasPrefix(l, "n1 ") || strings.HasPrefix(l, "* BYE") {
			break
		}
	}
	clearSinkDisk(t, sink, trail)
	if leaked {
		t.Errorf("while the trail was down (a FETCH of the text refused NO [UNAVAILABLE]), a NOOP under NOTIFY relayed a new message's text to the client: %q", got)
	}
}
