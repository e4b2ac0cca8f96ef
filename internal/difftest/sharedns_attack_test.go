package difftest

import (
	"fmt"
	"testing"
)

// TestAttackHeldOwnerThroughSharedNamespace: Courier shows a folder bob
// shares with alice as "#shared.bob.Legal", in its shared namespace (the
// third slot of NAMESPACE), not in an other-users one. The proxy reads an
// owner only in an other-users namespace, so policies judged the name as
// if it were alice's own: a delegate with rights on a held user's mailbox
// expunged or deleted it through the proxy, and deleted his protected
// Sent. Such a name's owner is unknown: the owner-keyed policies refuse
// its destructive commands unless configured, and everything else stays.
func TestAttackHeldOwnerThroughSharedNamespace(t *testing.T) {
	Binary(t)
	// bob on hold, or his Legal mailbox.
	for form, data := range map[string]string{"users": "users: [bob]\nmailboxes: {}\n", "mailboxes": "users: []\nmailboxes: {bob: [INBOX.Legal]}\n"} {
		for _, attack := range []string{"expunge", "delete", "rename"} {
			t.Run(form+"/"+attack, func(t *testing.T) {
				sharedAttack(t, "Legal", map[string]string{"legal_hold": data}, attack, true)
			})
		}
	}
	// bob's Sent, protected, shared with alice; no hold.
	noHold := "users: []\nmailboxes: {}\n"
	for _, attack := range []string{"delete", "rename"} {
		t.Run("protected/"+attack, func(t *testing.T) {
			sharedAttack(t, "Sent", map[string]string{"legal_hold": noHold}, attack, true)
		})
	}
	// A shared folder the operator says holds nothing held or protected:
	// alice deletes it through the proxy as the backend allows.
	t.Run("configured/delete", func(t *testing.T) {
		sharedAttack(t, "Keep", map[string]string{
			"legal_hold":        "users: [bob]\nmailboxes: {}\nshared_not_held: [\"#shared.bob.Keep\"]\n",
			"protected_folders": "mailboxes: [INBOX, INBOX.Sent]\nshared_unprotected: [\"#shared.bob.Keep\"]\n",
		}, "delete", false)
	})
}

// sharedAttack: bob shares his mailbox with alice, who tries attack on it
// through the proxy, with policy data; kept says whether it must survive.
func sharedAttack(t *testing.T, mailbox string, data map[string]string, attack string, kept bool) {
	b := startServer(t, "courier", map[string]string{"alice": "alice-pw", "bob": "bob-pw"}, true)
	b.Setup(t, "bob")
	owner := b.Login(t, "bob")
	// bob shares it with alice (a delegate, an assistant): every right.
	if _, err := owner.OK("a1", "SETACL INBOX.%s alice aceilrstwx", mailbox); err != nil {
		t.Fatal(err)
	}
	count := func() string {
		rs, err := owner.Cmd("c", "STATUS INBOX.%s (MESSAGES)", mailbox)
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
	for policy, d := range data {
		pc.PolicyData[policy] = d
	}
	p := StartProxy(t, pc)
	cn := p.Login(t, "alice")
	box := `"#shared.bob.` + mailbox + `"`
	var cmds []string
	switch attack {
	case "expunge":
		// Honest use of the shared folder stays: what destroys nothing.
		for _, c := range []string{"SELECT " + box, "FETCH 1 (FLAGS BODY.PEEK[HEADER])", `STORE 1 +FLAGS.SILENT (\Flagged)`, "COPY 1 " + box} {
			if _, err := cn.OK("b1", "%s", c); err != nil {
				t.Fatalf("%s: %v", c, err)
			}
		}
		before = count()
		cmds = []string{`STORE 1:* +FLAGS.SILENT (\Deleted)`, "EXPUNGE"}
	case "delete":
		cmds = []string{"DELETE " + box}
	case "rename":
		cmds = []string{"RENAME " + box + ` "#shared.bob.Moved"`, "RENAME " + box + ` "INBOX.Mine"`}
	}
	var answers []string
	for i, c := range cmds {
		rs, err := cn.Cmd(fmt.Sprintf("b%d", i+2), "%s", c)
		if err != nil {
			t.Fatal(err)
		}
		answers = append(answers, rs[len(rs)-1].Text)
	}
	t.Logf("%q: %q", cmds, answers)
	if after := count(); (after == before) != kept {
		t.Errorf("bob's INBOX.%s: %s messages before, %s after alice's %q through the proxy (want kept: %v): %q", mailbox, before, after, cmds, kept, answers)
	}
}
