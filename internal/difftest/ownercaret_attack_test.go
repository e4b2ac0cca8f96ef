package difftest

import (
	"crypto/tls"
	"fmt"
	"strings"
	"testing"

	"github.com/imapwarden/imapwarden/internal/testenv"
)

// TestAttackHeldOwnerWithDotInName: Cyrus writes a "." in a user name as
// "^" in the other users' namespace (unixhierarchysep off: bob.smith's
// Legal is "user.bob^smith.Legal"). The proxy hands policies that level as
// the owner as it is ("bob^smith"), and legal_hold's same_login compares
// it with the login names its data holds ("bob.smith"): a delegate with
// rights on a held user's mailbox expunges it through the proxy.
// "bobsmith", whose owner level is his login name, is the control.
func TestAttackHeldOwnerWithDotInName(t *testing.T) {
	Binary(t)
	for _, held := range []string{"bobsmith", "bob.smith"} {
		// The user on hold, or his Legal mailbox.
		for form, data := range map[string]string{"users": "users: [%s]\nmailboxes: {}\n", "mailboxes": "users: []\nmailboxes: {%q: [INBOX.Legal]}\n"} {
			t.Run(held+"/"+form, func(t *testing.T) { heldOwnerExpunge(t, held, fmt.Sprintf(data, held)) })
		}
	}
}

func heldOwnerExpunge(t *testing.T, held, data string) {
	wire := strings.ReplaceAll(held, ".", "^")
	b := startServer(t, "cyrus", map[string]string{"alice": "alice-pw", held: held + "-pw"}, true)
	b.Setup(t, held)
	owner := b.Login(t, held)
	// The held user shares Legal with alice (a delegate, an assistant).
	if _, err := owner.OK("a1", "SETACL INBOX.Legal alice lrswipkxtean"); err != nil {
		t.Fatal(err)
	}
	// (Cyrus's LIST "" "*" shows a dotted user none of his mailboxes:
	// STATUS counts them.)
	count := func() int {
		rs, err := owner.OK("c", "STATUS INBOX.Legal (MESSAGES)")
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range rs {
			if n, ok := statusMessages(r); ok {
				return n
			}
		}
		t.Fatal("no STATUS answer")
		return 0
	}
	before := count()

	pc := ProxyFor(b)
	pc.PolicyData["legal_hold"] = data
	p := StartProxy(t, pc)
	cn, _, err := Dial(p.Addr, &tls.Config{InsecureSkipVerify: true}, testenv.IOTimeout())
	if err != nil {
		t.Fatal(err)
	}
	defer cn.Close()
	if _, err := cn.OK("l", "LOGIN alice alice-pw"); err != nil {
		t.Fatal(err)
	}
	rs, err := cn.Cmd("b1", `LIST "" "user.*"`)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range rs {
		t.Logf("%s", r.Text)
	}
	box := `"user.` + wire + `.Legal"`
	if _, err := cn.OK("b2", "SELECT %s", box); err != nil {
		t.Fatal(err)
	}
	st, err := cn.Cmd("b3", `STORE 1:* +FLAGS.SILENT (\Deleted)`)
	if err != nil {
		t.Fatal(err)
	}
	ex, err := cn.Cmd("b4", "EXPUNGE")
	if err != nil {
		t.Fatal(err)
	}
	if after := count(); after != before {
		t.Errorf("the held user %s's INBOX.Legal held %d messages, now %d: STORE %q, EXPUNGE %q through the proxy",
			held, before, after, st[len(st)-1].Text, ex[len(ex)-1].Text)
	}
}
