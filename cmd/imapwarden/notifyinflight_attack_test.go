package main

import (
	"crypto/tls"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/imapwarden/imapwarden/internal/testenv"
)

// backendPump.pushAllowed lets pushed content go while the trail is down
// when any FETCH is in flight, whatever that FETCH asked for: the FETCH
// was decided and recorded for message 1, but under NOTIFY (RFC 5465
// §5.2, MessageNew with BODY.PEEK[]) Dovecot ends it, at its closing
// sync, with the text of a message delivered meanwhile, before the tagged
// OK. That text is relayed to the client while no record of it can be
// written; only then does the FETCH's completion end the session. A push
// of a message no FETCH in flight named must end the session as one
// during IDLE does (ARCHITECTURE.md §11).
func TestAttackNotifyPushRidesFetchInFlight(t *testing.T) { notifyPushRides(t, "1") }

// backendPump.pushAllowed (7cff5a4) lets pushed content go while the
// trail is down only when a FETCH in flight asked for that message
// (fetchShare.fits), but fits reads a set with "*" (or "$") as every
// message (imapwire.SetRanges' all): a "UID FETCH *" sent while the
// mailbox held message 1 alone, and answered by Dovecot for message 1,
// "asks" for any message. Under NOTIFY (RFC 5465 §5.2, MessageNew with
// BODY.PEEK[]) Dovecot ends that FETCH with the text of a message
// delivered meanwhile; it is relayed while no record of it can be written,
// as in TestAttackNotifyPushRidesFetchInFlight before the fix. "*" is the
// largest number when the backend ran the command (RFC 9051 §9,
// seq-number), never a message that arrived after: the push must end the
// session (ARCHITECTURE.md §11).
// So do "1:*" and a range past the last UID.
func TestAttackNotifyPushRidesStarFetch(t *testing.T) {
	for _, set := range []string{"*", "1:*", "1:100"} {
		t.Run(set, func(t *testing.T) { notifyPushRides(t, set) })
	}
}

// notifyPushRides: a UID FETCH of set, answered for message 1 alone, is in
// flight when the trail goes down and message 2 arrives under NOTIFY: no
// text of message 2 may reach the client.
func notifyPushRides(t *testing.T, set string) {
	addr, sink, trail, dc := trailDownDovecot(t)
	// Message 1: large enough that Dovecot is still writing it when the
	// trail goes down and the new message arrives (the buffers between
	// Dovecot, the proxy and this client hold a few MB).
	var big strings.Builder
	big.WriteString("Subject: large\r\n\r\n")
	line := strings.Repeat("x", 1022) + "\r\n"
	for big.Len() < 48<<20 {
		big.WriteString(line)
	}
	dc.Deliver(t, "alice", "Watched", []byte(big.String()))

	c := dialAud(t, addr)
	if err := c.c.(*tls.Conn).NetConn().(*net.TCPConn).SetReadBuffer(256 << 10); err != nil {
		t.Fatal(err)
	}
	c.do("a1", "OK", "LOGIN alice alice-pw")
	c.do("a2", "OK", "SELECT Watched")
	caps := c.do("a3", "OK", "CAPABILITY")
	if !strings.Contains(caps, " NOTIFY") {
		t.Fatalf("Dovecot's NOTIFY not announced through the proxy: %q", caps)
	}
	c.do("a4", "OK", "NOTIFY SET (SELECTED (MessageNew (UID BODY.PEEK[]) MessageExpunge))")

	// A FETCH naming message 1, decided while the trail writes; its response
	// begins, and this client stops reading.
	fmt.Fprintf(c.c, "f1 UID FETCH %s (BODY.PEEK[])\r\n", set)
	c.c.SetReadDeadline(time.Now().Add(testenv.IOTimeout()))
	first, err := c.br.ReadString('\n')
	if err != nil || !strings.HasPrefix(first, "* 1 FETCH") {
		t.Fatalf("FETCH of message 1 began with %q, %v", first, err)
	}

	fillSinkDisk(t, addr, sink, trail)
	dc.Deliver(t, "alice", "Watched", []byte("Subject: merger\r\n\r\nthe secret figures\r\n"))

	var tail []string
	leaked := false
	for {
		c.c.SetReadDeadline(time.Now().Add(testenv.IOTimeout()))
		l, err := c.br.ReadString('\n')
		if strings.Contains(l, "the secret figures") {
			leaked = true
		}
		if l != "" && !strings.HasPrefix(l, "xxxx") {
			tail = append(tail, strings.TrimSpace(l))
		}
		if err != nil || strings.HasPrefix(l, "f1 ") || strings.HasPrefix(l, "* BYE") {
			break
		}
	}
	clearSinkDisk(t, sink, trail)
	if leaked {
		t.Errorf("while the trail was down, a FETCH in flight of UID %s (message 1 when sent) carried the pushed text of message 2 to the client: %q", set, tail)
	}
}
