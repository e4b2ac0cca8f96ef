package difftest

import (
	"strings"
	"testing"

	"github.com/imapwarden/imapwarden/audit"
)

// TestAttackReadOnlySelectThenRegrantedCloseExpungesHeld: the proxy takes
// a SELECT answered [READ-ONLY] as read-only for the whole selection
// (ARCHITECTURE.md §8), so CLOSE there carries no expunge (RFC 9051
// §6.4.1) and legal_hold lets it through. But the backend decides at the
// CLOSE, not at the SELECT: a user who may change ACLs takes her own
// write rights on a held mailbox, selects it (Dovecot answers
// [READ-ONLY]), gives them back (no untagged READ-WRITE follows) and
// CLOSEs: Dovecot expunges the held mailbox's \Deleted messages, which
// an EXPUNGE through the proxy is refused.
func TestAttackReadOnlySelectThenRegrantedCloseExpungesHeld(t *testing.T) {
	b, legal := legalDovecot(t)
	before, _ := legalState(t, b, legal)

	pc := ProxyFor(b)
	// alice may change ACLs (an administrator; or any user where the acl
	// policy is not deployed). Her mailbox Legal is held all the same.
	pc.PolicyData["acl"] = "admin_groups: [staff]\n"
	p := StartProxy(t, pc)
	cn := p.Login(t, "alice")
	if _, err := cn.OK("e", "SELECT %s", legal); err != nil {
		t.Fatal(err)
	}
	if rs, _ := cn.Cmd("x", "EXPUNGE"); rs[len(rs)-1].Status == "OK" {
		t.Fatalf("EXPUNGE of the held mailbox was allowed: %s", rs[len(rs)-1].Text)
	}
	trail := p.Audit()
	var answers []string
	for _, c := range []string{
		"SETACL " + legal + " alice lrx",
		"SELECT " + legal,
		"SETACL " + legal + " alice lrswipkxtea",
		"CLOSE",
	} {
		rs, err := cn.Cmd("a", "%s", c)
		if err != nil {
			t.Fatal(err)
		}
		answers = append(answers, c+" => "+rs[len(rs)-1].Text)
	}
	t.Logf("through the proxy: %s", strings.Join(answers, " | "))
	for _, r := range trail.Read() {
		if r.Kind == audit.KindCommand && r.Command == "CLOSE" {
			t.Logf("CLOSE recorded: mailbox %q read_only %v effects %v result %s", r.Selected, r.ReadOnly, r.Effects, r.Result)
		}
	}
	// The way out of a held mailbox the proxy cannot let CLOSE expunge.
	if _, err := cn.OK("u", "UNSELECT"); err != nil {
		t.Errorf("UNSELECT after the refused CLOSE: %v", err)
	}
	if after, _ := legalState(t, b, legal); after != before {
		t.Errorf("held mailbox Legal: %s before, %s after SETACL lrx, SELECT ([READ-ONLY]), SETACL back, CLOSE through the proxy", before, after)
	}
}
