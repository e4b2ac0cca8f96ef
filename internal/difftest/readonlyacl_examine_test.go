package difftest

import (
	"strings"
	"testing"

	"github.com/imapwarden/imapwarden/audit"
)

// TestExamineRegrantedStaysReadOnly pins what the command table keeps of
// EXAMINE (ARCHITECTURE.md §8): a mailbox opened by EXAMINE is read-only
// by protocol (RFC 9051 §6.3.3), whatever its rights become, so a FETCH of
// a body there carries no set-flags and CLOSE no expunge. Dovecot decides
// a SELECTed mailbox's rights again at CLOSE
// (TestAttackReadOnlySelectThenRegrantedCloseExpungesHeld), but not an
// EXAMINEd one's: with her write rights taken before EXAMINE and given back
// after it, alice's FETCH sets no \Seen and her CLOSE, which legal_hold
// lets through, expunges nothing.
func TestExamineRegrantedStaysReadOnly(t *testing.T) {
	b, legal := legalDovecot(t)
	beforeN, beforeF := legalState(t, b, legal)
	if !strings.Contains(beforeF, `\Deleted`) || strings.Contains(beforeF, `\Seen`) {
		t.Fatalf("fixture: Legal's last message is %s, want \\Deleted and not \\Seen", beforeF)
	}

	pc := ProxyFor(b)
	pc.PolicyData["acl"] = "admin_groups: [staff]\n"
	p := StartProxy(t, pc)
	cn := p.Login(t, "alice")
	trail := p.Audit()
	for _, c := range []string{
		"SETACL " + legal + " alice lrx",
		"EXAMINE " + legal,
		"SETACL " + legal + " alice lrswipkxtea",
		"FETCH * BODY[]",
		"CLOSE",
	} {
		rs, err := cn.Cmd("a", "%s", c)
		if err != nil {
			t.Fatal(err)
		}
		if st := rs[len(rs)-1]; st.Status != "OK" {
			t.Fatalf("%s through the proxy: %s", c, st.Text)
		}
	}
	for _, r := range trail.Read() {
		if r.Kind != audit.KindCommand || (r.Command != "FETCH" && r.Command != "CLOSE") {
			continue
		}
		if !r.ReadOnly || hasEffect(r, "set-flags") || hasEffect(r, "expunge") {
			t.Errorf("%s after EXAMINE recorded: read_only %v effects %v", r.Command, r.ReadOnly, r.Effects)
		}
	}
	if afterN, afterF := legalState(t, b, legal); afterN != beforeN || afterF != beforeF {
		t.Errorf("Legal after SETACL lrx, EXAMINE, SETACL back, FETCH * BODY[], CLOSE: %s, last %s; before %s, last %s",
			afterN, afterF, beforeN, beforeF)
	}
}

// legalDovecot starts a Dovecot with ACLs and alice's fixtures, and
// returns it with the quoted wire name of her mailbox Legal.
func legalDovecot(t *testing.T) (*Backend, string) {
	t.Helper()
	Binary(t)
	b := startServer(t, "dovecot", map[string]string{"alice": "alice-pw"}, true)
	b.Setup(t, "alice")
	return b, Quote(b.Wire("Legal"))
}

// legalState reads Legal directly on the backend: its STATUS MESSAGES
// answer and the flags of its last message (\Deleted and not \Seen in
// Fixtures).
func legalState(t *testing.T, b *Backend, legal string) (messages, flags string) {
	t.Helper()
	direct := b.Login(t, "alice")
	defer direct.Close()
	rs, err := direct.OK("s", "STATUS %s (MESSAGES)", legal)
	if err != nil {
		t.Fatal(err)
	}
	messages = rs[0].Text
	if _, err := direct.OK("e", "EXAMINE %s", legal); err != nil {
		t.Fatal(err)
	}
	if rs, err = direct.OK("f", "FETCH * FLAGS"); err != nil {
		t.Fatal(err)
	}
	return messages, rs[0].Text
}
