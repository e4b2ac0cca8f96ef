package difftest

import (
	"crypto/tls"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/imapwarden/imapwarden/internal/testenv"
)

// TestOwnerNamesDifferential: over generated login names with dots,
// carets, case and non-ASCII letters, the owner the proxy hands policies
// for a name in Cyrus's other users' namespace is the login whose mailbox
// it is (ARCHITECTURE.md §17): a delegate's expunge through the proxy
// destroys exactly the mailboxes of owners legal_hold does not hold, and
// each owner's own mailbox under its other-users name is refused
// (BAD [CANNOT]). Ground truth is the backend's: each owner's Legal holds
// a count of messages no other owner's has, read by the owner directly.
// (Dovecot's and Courier's fixtures announce no other users' namespace.)
func TestOwnerNamesDifferential(t *testing.T) {
	Binary(t)
	sd := seed()
	t.Logf("DIFFTEST_SEED=%d", sd)
	rng := rand.New(rand.NewPCG(sd, 0))
	names := ownerNames(rng, 14)
	users := map[string]string{"alice": "alice-pw"}
	for _, n := range names {
		// Cyrus folds a login to lower case before its sasldb look-up
		// (username_tolower).
		users[strings.ToLower(n)] = strings.ToLower(n) + "-pw"
	}
	b := startServer(t, "cyrus", users, true)

	// Each owner Cyrus takes makes its Legal with i+1 messages and shares
	// it with alice.
	msgs := map[string]int{}
	for i, n := range names {
		cn, ok := loginAs(t, b.TLSAddr, b.tls, n)
		if !ok {
			t.Logf("%q: Cyrus refuses the login", n)
			continue
		}
		if _, err := cn.OK("c", "CREATE INBOX.Legal"); err != nil {
			// Cyrus takes "bob^x" as a login, but gives it no mailbox.
			t.Logf("%q: %v", n, err)
			cn.Close()
			continue
		}
		for j := range i + 1 {
			if err := b.Append(cn, "INBOX.Legal", "", Message(fmt.Sprintf("%s %d", n, j), 200)); err != nil {
				t.Fatal(err)
			}
		}
		if _, err := cn.OK("a", "SETACL INBOX.Legal alice lrswipkxtean"); err != nil {
			t.Fatal(err)
		}
		cn.Close()
		msgs[n] = i + 1
	}
	if len(msgs) < len(names)/3 {
		t.Fatalf("Cyrus took only %d of %d owners", len(msgs), len(names))
	}
	count := func(n string) int {
		cn, ok := loginAs(t, b.TLSAddr, b.tls, n)
		if !ok {
			t.Fatalf("%q: login failed", n)
		}
		defer cn.Close()
		rs, err := cn.OK("s", "STATUS INBOX.Legal (MESSAGES)")
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range rs {
			if m, ok := statusMessages(r); ok {
				return m
			}
		}
		t.Fatalf("%q: no STATUS answer", n)
		return 0
	}

	// Half the owners Cyrus took are held, named in the hold as the
	// generated spelling (the policy folds case).
	held := map[string]bool{}
	var list []string
	for n := range msgs {
		if rng.IntN(2) == 0 {
			held[n] = true
			list = append(list, fmt.Sprintf("%q", n))
		}
	}
	pc := ProxyFor(b)
	pc.PolicyData["legal_hold"] = "users: [" + strings.Join(list, ", ") + "]\nmailboxes: {}\n"
	p := StartProxy(t, pc)

	cn, ok := loginAs(t, p.Addr, &tls.Config{InsecureSkipVerify: true}, "alice")
	if !ok {
		t.Fatal("alice: login through the proxy failed")
	}
	defer cn.Close()
	for _, n := range names {
		// The name Cyrus gives n's Legal in alice's view: the login
		// lower-cased, its "." written "^" (unixhierarchysep: no).
		box := Quote(EncodeMUTF7("user." + strings.ReplaceAll(strings.ToLower(n), ".", "^") + ".Legal"))
		want, exists := msgs[n]
		rs, err := cn.Cmd("s", "SELECT %s", box)
		if err != nil {
			t.Fatal(err)
		}
		if last := rs[len(rs)-1].Text; !strings.HasPrefix(last, "s OK") {
			if exists {
				t.Errorf("%q: SELECT %s through the proxy: %s", n, box, last)
			}
			continue
		}
		if !exists {
			t.Errorf("%q: SELECT %s of no owner's mailbox answered OK", n, box)
			continue
		}
		if _, err := cn.Cmd("f", `STORE 1:* +FLAGS.SILENT (\Deleted)`); err != nil {
			t.Fatal(err)
		}
		ex, err := cn.Cmd("e", "EXPUNGE")
		if err != nil {
			t.Fatal(err)
		}
		if _, err := cn.Cmd("u", "UNSELECT"); err != nil {
			t.Fatal(err)
		}
		got := count(n)
		switch {
		case held[n] && got != want:
			t.Errorf("%q is held: %s through the proxy took its Legal from %d messages to %d (EXPUNGE: %s)", n, box, want, got, ex[len(ex)-1].Text)
		case !held[n] && got != 0:
			t.Errorf("%q is not held: %s through the proxy kept %d of %d messages (EXPUNGE: %s)", n, box, got, want, ex[len(ex)-1].Text)
		}
	}

	// Each owner's own Legal under its other-users name, through the
	// proxy: one mailbox under two names, refused.
	for n := range msgs {
		own, ok := loginAs(t, p.Addr, &tls.Config{InsecureSkipVerify: true}, n)
		if !ok {
			t.Fatalf("%q: login through the proxy failed", n)
		}
		box := Quote(EncodeMUTF7("user." + strings.ReplaceAll(strings.ToLower(n), ".", "^") + ".Legal"))
		rs, err := own.Cmd("s", "SELECT %s", box)
		own.Close()
		if err != nil {
			t.Fatal(err)
		}
		if last := rs[len(rs)-1].Text; !strings.HasPrefix(last, "s BAD [CANNOT]") {
			t.Errorf("%q: its own Legal as %s: %s", n, box, last)
		}
	}
}

// ownerNames generates distinct login names: levels of ASCII letters and
// digits joined by ".", "-" or "_", some with upper case, some with a
// "^" or a non-ASCII letter (which Cyrus refuses as user names).
func ownerNames(rng *rand.Rand, n int) []string {
	const alnum = "abcdefghijklmnopqrstuvwxyz0123456789"
	seen := map[string]bool{"alice": true}
	var out []string
	for len(out) < n {
		var sb strings.Builder
		for l := range 1 + rng.IntN(3) {
			if l > 0 {
				sb.WriteByte(".-_."[rng.IntN(4)])
			}
			sb.WriteByte(alnum[rng.IntN(26)])
			for range 1 + rng.IntN(5) {
				sb.WriteByte(alnum[rng.IntN(len(alnum))])
			}
		}
		s := sb.String()
		switch rng.IntN(8) {
		case 0:
			s = strings.ToUpper(s[:1]) + s[1:]
		case 1:
			s = strings.ToUpper(s)
		case 2:
			s = strings.Replace(s, ".", "^", 1)
		case 3:
			s += "\u00f6"
		}
		if k := strings.ToLower(s); !seen[k] {
			seen[k] = true
			out = append(out, s)
		}
	}
	return out
}

// loginAs logs in as user (password user-pw, lower-cased), a literal for
// non-ASCII names; ok is false when the server refuses the login.
func loginAs(t *testing.T, addr string, conf *tls.Config, user string) (*Conn, bool) {
	t.Helper()
	cn, _, err := Dial(addr, conf, testenv.IOTimeout())
	if err != nil {
		t.Fatal(err)
	}
	pw := Quote(strings.ToLower(user) + "-pw")
	var rs []*Resp
	if quotable(user) {
		rs, err = cn.Cmd("l", "LOGIN %s %s", Quote(user), pw)
	} else {
		rs, err = cn.Cmd("l", "LOGIN {%d+}\r\n%s %s", len(user), user, pw)
	}
	if err != nil {
		t.Fatal(err)
	}
	if last := rs[len(rs)-1].Text; !strings.HasPrefix(last, "l OK") {
		t.Logf("%s: LOGIN %q: %s", addr, user, last)
		cn.Close()
		return nil, false
	}
	return cn, true
}
