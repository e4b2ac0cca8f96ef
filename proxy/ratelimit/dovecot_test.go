package ratelimit

import (
	"bytes"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap/zaptest"

	"github.com/imapwarden/imapwarden/internal/dovecottest"
	"github.com/imapwarden/imapwarden/proxy"
)

func dovecotBackend(t testing.TB, dc *dovecottest.Server) *proxy.Backend {
	t.Helper()
	pem, err := os.ReadFile(dc.CAFile)
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(pem) {
		t.Fatal("no CA in", dc.CAFile)
	}
	// SendID: Dovecot logs (rip=) the real client, 127.0.0.1 or .2.
	return &proxy.Backend{Name: "dovecot", Addr: dc.Addr, Security: proxy.BackendStartTLS,
		TLS: &tls.Config{RootCAs: roots, ServerName: "localhost"}, SendID: true}
}

// mismatches counts Dovecot's log lines for a wrong password of user.
func mismatches(log, user string) int {
	n := 0
	for _, l := range strings.Split(log, "\n") {
		if strings.Contains(l, "("+user+",") && strings.Contains(l, "Password mismatch") {
			n++
		}
	}
	return n
}

// A password-guessing run through the proxy is locked out, and Dovecot's
// own log shows no attempt after the lockout began; the user, from an IP
// that never failed, still logs in.
func TestDovecotBruteForceLockout(t *testing.T) {
	dovecottest.Require(t)
	dc := dovecottest.Start(t, dovecottest.Options{})
	l, err := New(Options{
		LoginFailuresPerUserIP: 3,
		LoginFailuresPerUser:   5,
		LockoutBase:            time.Hour, // no lockout ends during the test
		LockoutMax:             time.Hour,
		LoginFailureDelay:      10 * time.Millisecond,
		Logger:                 zaptest.NewLogger(t),
	})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	addr, audit := startProxy(t, l, dovecotBackend(t, dc))

	// The attacker: one guess per connection, 20 guesses, the right
	// password among the last ones. Every answer is the same.
	const guesses = 20
	for i := 0; i < guesses; i++ {
		pw := fmt.Sprintf("guess-%d", i)
		if i == guesses-2 {
			pw = "alice-pw"
		}
		c := dial(t, addr, "127.0.0.1")
		c.want(fmt.Sprintf("a%d LOGIN alice %s", i, pw), fmt.Sprintf("a%d NO [AUTHENTICATIONFAILED] Authentication failed", i))
		c.c.Close()
	}
	ls, err := l.Lockouts(t.Context())
	if err != nil || len(ls) != 1 || ls[0].Kind != "user_ip" || ls[0].User != "alice" || ls[0].IP != "127.0.0.1" {
		t.Fatalf("lockouts %+v, %v", ls, err)
	}
	if n := audit.hits(LimitLoginFailuresPerUserIP); n != guesses-3 {
		t.Errorf("%d lockout refusals audited, want %d", n, guesses-3)
	}

	// A marker: bob logs in from the attacker's address (its IP is not
	// locked), so Dovecot's log is complete up to here once it shows.
	c := dial(t, addr, "127.0.0.1")
	c.want("m1 LOGIN bob bob-pw", "m1 OK")
	log := dc.WaitLog(t, "user=<bob>", 10*time.Second)
	if n := mismatches(log, "alice"); n != 3 {
		t.Errorf("Dovecot saw %d wrong passwords for alice, want 3 (none after the lockout):\n%s", n, log)
	}
	for _, line := range strings.Split(log, "\n") {
		if strings.Contains(line, "Login: user=<alice>") {
			t.Errorf("the right password, guessed after the lockout, reached Dovecot: %s", line)
		}
	}

	// The owner, from another address, logs in.
	owner := dial(t, addr, "127.0.0.2")
	owner.want("o1 LOGIN alice alice-pw", "o1 OK")
	log = dc.WaitLog(t, "rip=127.0.0.2", 10*time.Second)
	if !strings.Contains(log, "Login: user=<alice>") {
		t.Errorf("no login of alice in Dovecot's log:\n%s", log)
	}
	t.Logf("Dovecot's log of the run:\n%s", log)
}

// bigMessage is a message of about n bytes.
func bigMessage(i, n int) []byte {
	var b bytes.Buffer
	fmt.Fprintf(&b, "From: bob@example.com\r\nTo: alice@example.com\r\nSubject: big %d\r\nMessage-ID: <big%d@example.com>\r\n\r\n", i, i)
	raw := make([]byte, n*3/4)
	rand.Read(raw)
	enc := base64.StdEncoding.EncodeToString(raw)
	for len(enc) > 76 {
		b.WriteString(enc[:76] + "\r\n")
		enc = enc[76:]
	}
	b.WriteString(enc + "\r\n")
	return b.Bytes()
}

// The exfiltration cap stops a bulk export where it is crossed: the
// message that would take the user over the budget is not sent, the
// session ends with BYE [LIMIT] at that message boundary (ARCHITECTURE.md §12:
// count what is delivered), and metadata stays readable.
func TestDovecotFetchCap(t *testing.T) {
	dovecottest.Require(t)
	dc := dovecottest.Start(t, dovecottest.Options{})
	const mb = 1 << 20
	for i := 1; i <= 5; i++ {
		dc.Deliver(t, "alice", "INBOX", bigMessage(i, mb))
	}
	l, err := New(Options{FetchBytesPerUser: Rate{N: 5 * mb / 2, Per: time.Hour}, Logger: zaptest.NewLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	addr, audit := startProxy(t, l, dovecotBackend(t, dc))
	c := dial(t, addr, "127.0.0.1")
	c.want("a1 LOGIN alice alice-pw", "a1 OK")
	c.want("a2 SELECT INBOX", "a2 OK")
	var got int64
	refusedAt := 0
	for i := 1; i <= 5; i++ {
		resp, n := c.do(fmt.Sprintf("f%d UID FETCH %d (UID BODY.PEEK[])", i, i))
		got += n
		if strings.HasPrefix(resp, "* BYE [LIMIT]") {
			refusedAt = i
			break
		}
		if !strings.HasPrefix(resp, fmt.Sprintf("f%d OK", i)) {
			t.Fatalf("fetch %d: %q", i, resp)
		}
	}
	// 1 MB, 2 MB, then the third would cross 2.5 MB: it is not sent.
	if refusedAt != 3 || got < 2*mb || got > 5*mb/2 {
		t.Fatalf("refused at message %d after %d bytes", refusedAt, got)
	}
	// One FETCH of everything on a new session stops at the same place:
	// no content at all (the first message would cross).
	c = dial(t, addr, "127.0.0.1")
	c.want("c1 LOGIN alice alice-pw", "c1 OK")
	c.want("c2 SELECT INBOX", "c2 OK")
	if resp, n := c.do("b1 UID FETCH 1:* (BODY.PEEK[])"); !strings.HasPrefix(resp, "* BYE [LIMIT]") || n != 0 {
		t.Fatalf("bulk fetch over the cap: %q after %d bytes", resp, n)
	}
	c = dial(t, addr, "127.0.0.1")
	c.want("d1 LOGIN alice alice-pw", "d1 OK")
	c.want("d2 SELECT INBOX", "d2 OK")
	c.want("b2 FETCH 1:* (FLAGS RFC822.SIZE)", "b2 OK")
	if audit.hits(LimitFetchBytesPerUser) != 2 { // two refusals at delivery
		t.Errorf("%d fetch cap hits audited, want 2", audit.hits(LimitFetchBytesPerUser))
	}
	if snap := l.Snapshot(&proxy.SessionInfo{}); len(snap) != 0 {
		t.Errorf("snapshot of an unknown session: %v", snap)
	}
}
