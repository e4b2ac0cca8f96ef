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
// effect, was forwarded: under a NOTIFY set before the disk filled
// (RFC 5465 §5.2, MessageNew with fetch attributes), Dovecot answers it
// with the text of a message that arrived meanwhile, and the proxy
// relayed that text to the client while no record of it could be
// written. Only the NOOP's completion was withheld. Content must not
// leave while its record cannot be written (ARCHITECTURE.md §11,
// "Nothing is carried out that the trail cannot record"): NOOP, CHECK
// and IDLE are refused under such a NOTIFY, and an IDLE begun before
// the trail went down ends with BYE [UNAVAILABLE] before any pushed
// content is relayed.
func TestAttackNotifyPushesContentWhileTrailIsDown(t *testing.T) {
	for _, trigger := range []string{"NOOP", "CHECK", "IDLE", "IDLE before"} {
		t.Run(trigger, func(t *testing.T) {
			addr, sink, trail, dc := trailDownDovecot(t)
			c := dialAud(t, addr)
			c.do("a1", "OK", "LOGIN alice alice-pw")
			c.do("a2", "OK", "CREATE Watched")
			c.do("a3", "OK", "SELECT Watched")
			caps := c.do("a4", "OK", "CAPABILITY")
			if !strings.Contains(caps, " NOTIFY") {
				t.Fatalf("Dovecot's NOTIFY not announced through the proxy: %q", caps)
			}
			c.do("a5", "OK", "NOTIFY SET (SELECTED (MessageNew (UID BODY.PEEK[]) MessageExpunge))")
			if trigger == "IDLE before" {
				fmt.Fprintf(c.c, "n1 IDLE\r\n")
				if l := c.line(); !strings.HasPrefix(l, "+") {
					t.Fatalf("IDLE: %q", l)
				}
			}

			fillSinkDisk(t, addr, sink, trail)
			if trigger != "IDLE before" {
				// What the proxy refuses now: reading a message's text.
				c.do("d1", "NO [UNAVAILABLE]", "UID FETCH 1:* (BODY.PEEK[])")
			}

			dc.Deliver(t, "alice", "Watched", []byte("Subject: merger\r\n\r\nthe secret figures\r\n"))
			if trigger != "IDLE before" {
				fmt.Fprintf(c.c, "n1 %s\r\n", trigger)
			}
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
				if err != nil || leaked || strings.HasPrefix(l, "n1 ") || strings.HasPrefix(l, "* BYE") {
					break
				}
				if strings.HasPrefix(l, "+") {
					// An IDLE let through: end it, as a client would.
					fmt.Fprintf(c.c, "DONE\r\n")
				}
			}
			clearSinkDisk(t, sink, trail)
			if leaked {
				t.Errorf("while the trail was down (a FETCH of the text refused NO [UNAVAILABLE]), %s under NOTIFY relayed a new message's text to the client: %q", trigger, got)
			}
			last := got[len(got)-1]
			want := "n1 NO [UNAVAILABLE]"
			if trigger == "IDLE before" {
				want = "* BYE [UNAVAILABLE]"
			}
			if !strings.HasPrefix(last, want) {
				t.Errorf("%s under NOTIFY while the trail was down: %q, want %s", trigger, got, want)
			}
		})
	}
}
