package difftest

import (
	"crypto/tls"
	"fmt"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/imapwarden/imapwarden/internal/backendtest"
	"github.com/imapwarden/imapwarden/internal/testenv"
)

// TestAttackMetadataPatternExpiresHeldMail (atk-ext): Cyrus expands "*"
// and "%" in SETMETADATA's mailbox argument (RFC 5464 §4.3 names one
// mailbox): SETMETADATA "INBOX.*" sets the entry on every mailbox the
// pattern matches. The proxy reads the argument as the one mailbox
// "INBOX.*", which is neither held nor holds a held mailbox, so legal_hold
// lets /shared/vendor/cmu/cyrus-imapd/expire through (the same entry on
// INBOX.Legal or INBOX is refused, TestVendorAnnotationCannotExpireHeldMail)
// and the record names "INBOX.*". Cyrus sets expire on the held INBOX.Legal
// and its own cyr_expire then expunges the held mail. The proxy must
// refuse a wildcard there, or judge every mailbox it may match.
func TestAttackMetadataPatternExpiresHeldMail(t *testing.T) {
	srv, direct, p := heldCyrus(t)
	cn, _, err := Dial(p.Addr, &tls.Config{InsecureSkipVerify: true}, testenv.IOTimeout())
	if err != nil {
		t.Fatal(err)
	}
	defer cn.Close()
	if _, err := cn.OK("l", "LOGIN alice alice-pw"); err != nil {
		t.Fatal(err)
	}
	trail := p.Audit()
	const cmd = `SETMETADATA "INBOX.*" (/shared/vendor/cmu/cyrus-imapd/expire "1")`
	rs, err := cn.Cmd("a", "%s", cmd)
	if err != nil {
		t.Fatal(err)
	}
	answer := rs[len(rs)-1].Text
	t.Logf("%s: %s", cmd, answer)
	var recorded []string
	for _, r := range trail.Read() {
		if r.Tag == "a" {
			recorded = append(recorded, fmt.Sprintf("%s %s mailbox %q effects %v", r.Kind, r.Command, r.Mailbox, r.Effects))
		}
	}

	// The server's own maintenance (cyrus.conf EVENTS runs it daily).
	dirs, _ := filepath.Glob(filepath.Join(backendtest.Root(), "cyrus/usr/lib/*-linux-gnu"))
	x := exec.Command("runuser", "-u", "cyrus", "--", filepath.Join(backendtest.Root(), "cyrus/usr/lib/cyrus/bin/cyr_expire"),
		"-C", filepath.Join(srv.Dir, "imapd.conf"), "-E", "1", "-X", "0", "-v")
	x.Env = backendtest.ChildEnv("LD_LIBRARY_PATH=" + strings.Join(dirs, ":"))
	if out, err := x.CombinedOutput(); err != nil {
		t.Fatalf("cyr_expire: %v\n%s", err, out)
	}
	rs, err = direct.OK("s", "STATUS INBOX.Legal (MESSAGES)")
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range rs {
		if strings.HasPrefix(r.Text, "* STATUS") && !strings.Contains(r.Text, "MESSAGES 1)") {
			t.Errorf("%s through the proxy was answered %q and recorded as %q; then cyr_expire expunged the held INBOX.Legal: %s, want MESSAGES 1",
				cmd, answer, recorded, r.Text)
		}
	}
}
