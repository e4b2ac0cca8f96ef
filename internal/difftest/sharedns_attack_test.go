package difftest

import (
	"crypto/tls"
	"fmt"
	"testing"

	"github.com/imapwarden/imapwarden/internal/testenv"
)

// TestAttackHeldOwnerThroughSharedNamespace: Courier shows a folder bob
// shares with alice as "#shared.bob.Legal", in its shared namespace (the
// third slot of NAMESPACE), not in an other-users one. The proxy reads an
// owner only in an other-users namespace, so policies judge the name as
// if it were alice's own: a delegate with rights on a held user's mailbox
// expunges, deletes or renames it through the proxy.
func TestAttackHeldOwnerThroughSharedNamespace(t *testing.T) {
	Binary(t)
	// bob on hold, or his Legal mailbox.
	for form, data := range map[string]string{"users": "users: [bob]\nmailboxes: {}\n", "mailboxes": "users: []\nmailboxes: {bob: [INBOX.Legal]}\n"} {
		for _, attack := range []string{"expunge", "delete", "rename"} {
			t.Run(form+"/"+attack, func(t *testing.T) { sharedHeldAttack(t, data, attack) })
		}
	}
}

func sharedHeldAttack(t *testing.T, data, attack string) {
	b := startServer(t, "courier", map[string]string{"alice": "alice-pw", "bob": "bob-pw"}, true)
	b.Setup(t, "bob")
	owner := b.Login(t, "bob")
	// bob shares Legal with alice (a delegate, an assistant): every right.
	if _, err := owner.OK("a1", "SETACL INBOX.Legal alice aceilrstwx"); err != nil {
		t.Fatal(err)
	}
	count := func() string {
		rs, err := owner.Cmd("c", "STATUS INBOX.Legal (MESSAGES)")
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range rs {
			if n, ok := statusMessages(r); ok {
				return fmt.Sprint(n)
			}
		}
		return rs[len(rs)-1].Text
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
	const box = `"#shared.bob.Legal"`
	var cmds []string
	switch attack {
	case "expunge":
		if _, err := cn.OK("b1", "SELECT %s", box); err != nil {
			t.Fatal(err)
		}
		cmds = []string{`STORE 1:* +FLAGS.SILENT (\Deleted)`, "EXPUNGE"}
	case "delete":
		cmds = []string{"DELETE " + box}
	case "rename":
		cmds = []string{"RENAME " + box + ` "INBOX.Mine"`}
	}
	var answers []string
	for i, c := range cmds {
		rs, err := cn.Cmd(fmt.Sprintf("b%d", i+2), "%s", c)
		if err != nil {
			t.Fatal(err)
		}
		answers = append(answers, rs[len(rs)-1].Text)
	}
	if after := count(); after != before {
		t.Errorf("bob's held INBOX.Legal: %s messages before, %s after alice's %q through the proxy: %q", before, after, cmds, answers)
	}
}
