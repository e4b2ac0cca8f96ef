package difftest

import (
	"bufio"
	"crypto/tls"
	"fmt"
	"io"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/imapwarden/imapwarden/audit"
	"github.com/imapwarden/imapwarden/internal/testenv"
)

// TestAttackCutFetchNamesNoUIDWhenUIDComesLast (atk-msgid): the proxy adds
// UID at the end of a FETCH's item list (imapwire.FetchUID: "(BODY.PEEK[]
// UID)"), and reads the UID from the response as it streams. Dovecot puts
// UID first, but a server may answer items in the order asked, the UID
// after the body's literal. A client that reads most of a large message
// and hangs up has read it (ARCHITECTURE.md §11: a response cut short
// "is recorded as one that ended: its UID, ..."; TestAuditNamesMessageOfCutFetch
// proves it on Dovecot), but where the UID comes after the literal the
// proxy never saw it: the FETCH's record counts the message and its
// octets and names no UID, and the sequence number it asked for names
// nothing once the mailbox changes. Courier answers in the order asked,
// "* 1 FETCH (BODY[] {n}" ... "UID 1)"; its UID FETCH puts UID first (the
// control: recorded).
func TestAttackCutFetchNamesNoUIDWhenUIDComesLast(t *testing.T) {
	Binary(t)
	const size = 4 << 20
	for _, name := range Backends {
		t.Run(name, func(t *testing.T) {
			_, p, box := bigMailbox(t, name, size)
			for _, cmd := range []string{"FETCH 1 (BODY.PEEK[])", "UID FETCH 1 (BODY.PEEK[])"} {
				got, named := cutFetch(t, p, box, cmd, size)
				if !named {
					t.Errorf("%s: the client read %d+ octets of UID 1 through %s and hung up; no record of the session names UID 1 with content: %q", name, size/2, cmd, got)
				}
			}
		})
	}
}

// bigMailbox starts the backend name and a proxy before it, and gives
// alice a mailbox holding one message of size octets.
func bigMailbox(t *testing.T, name string, size int) (*Backend, *Proxy, string) {
	t.Helper()
	b := StartBackend(t, name)
	p := StartProxy(t, ProxyFor(b))
	direct := b.Login(t, "alice")
	defer direct.Close()
	box := b.Wire("Big")
	if _, err := direct.OK("c", "CREATE %s", Quote(box)); err != nil {
		t.Fatal(err)
	}
	if err := b.Append(direct, box, "", Message("large", size)); err != nil {
		t.Fatal(err)
	}
	return b, p, box
}

// cutFetch logs alice in over a connection of its own, sends cmd, reads
// the response's first line and half of the message, hangs up, and
// returns the session's command and delivery records and whether one of
// them counts content and names UID 1.
func cutFetch(t *testing.T, p *Proxy, box, cmd string, size int64) (got []string, named bool) {
	t.Helper()
	for _, r := range cutFetchRecords(t, p, box, cmd, size) {
		got = append(got, fmt.Sprintf("%s %s: result %q messages %d content %d uids %v", r.Kind, r.Command, r.Result, r.Messages, r.ContentBytes, r.UIDs))
		named = named || (r.Messages > 0 && slices.Contains(r.UIDs, 1))
	}
	return got, named
}

// cutFetchRecords does cutFetch's cut and returns the records of the
// FETCH (tag f) and the deliveries of alice's session.
func cutFetchRecords(t *testing.T, p *Proxy, box, cmd string, size int64) (got []*audit.Record) {
	t.Helper()
	c, err := tls.Dial("tcp", p.Addr, &tls.Config{InsecureSkipVerify: true})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(testenv.IOTimeout()))
	br := bufio.NewReader(c)
	until := func(prefix string) string {
		t.Helper()
		for {
			l, err := br.ReadString('\n')
			if err != nil {
				t.Fatalf("waiting for %q: %v", prefix, err)
			}
			if strings.HasPrefix(l, prefix) {
				return l
			}
		}
	}
	until("* OK")
	fmt.Fprintf(c, "l LOGIN alice alice-pw\r\n")
	until("l OK")
	fmt.Fprintf(c, "s SELECT %s\r\n", Quote(box))
	until("s OK")
	tr := p.Audit()
	fmt.Fprintf(c, "f %s\r\n", cmd)
	first := until("* 1 FETCH")
	t.Logf("%s: the response begins %.80q", cmd, first)
	if _, err := io.CopyN(io.Discard, br, size/2); err != nil {
		t.Fatal(err)
	}
	c.Close()
	closed := false
	deadline := time.Now().Add(testenv.IOTimeout())
	for !closed && time.Now().Before(deadline) {
		tr.Wait(time.Until(deadline))
		for _, r := range tr.Read() {
			switch {
			case r.Kind == "session.close" && r.User == "alice":
				closed = true
			case (r.Kind == "command" && r.Tag == "f") || r.Kind == "delivery":
				got = append(got, r)
			}
		}
	}
	if !closed {
		t.Fatal("no session.close record")
	}
	return got
}
