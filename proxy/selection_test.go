package proxy

import (
	"testing"

	"github.com/imapwarden/imapwarden/proxy/imapwire"
)

// TestRenameInboxKeepsSelection: RENAME INBOX moves INBOX's messages to a
// new mailbox and leaves INBOX and its inferiors where they are (RFC 9051
// §6.3.6); the selection follows any other rename of it or of a parent
// (attack40 finding 9: it followed RENAME INBOX to the new name).
func TestRenameInboxKeepsSelection(t *testing.T) {
	for _, tc := range []struct {
		cur, from, to, want string
		moved               bool
	}{
		{"INBOX", "INBOX", "Old", "INBOX", false},
		{"INBOX/Sub", "INBOX", "Old", "INBOX/Sub", false},
		{"INBOX.Legal", "INBOX", "Old", "INBOX.Legal", false},
		{"Work", "Work", "Done", "Done", true},
		{"Work/Sub", "Work", "Done", "Done/Sub", true},
	} {
		got, moved := renamedSelection(tc.cur, tc.from, tc.to)
		if got != tc.want || moved != tc.moved {
			t.Errorf("RENAME %s %s with %s selected: %q %v, want %q %v", tc.from, tc.to, tc.cur, got, moved, tc.want, tc.moved)
		}
	}
}

// TestEnableIMAP4rev2UTF8Names: after ENABLE IMAP4rev2 mailbox names are
// UTF-8, not modified UTF-7 (RFC 9051 §6.3.1), as after UTF8=ACCEPT
// (RFC 6855 §3): "&AOQ-" is no longer "ä", and the proxy must read names
// as the backend does (attack40 finding 9).
func TestEnableIMAP4rev2UTF8Names(t *testing.T) {
	for _, c := range []string{"IMAP4REV2", "UTF8=ACCEPT"} {
		ctx := imapwire.Context{State: imapwire.StateAuth, Delim: '/'}
		if got, err := ctx.Canonical("&AOQ-rger"); err != nil || got != "ärger" {
			t.Fatalf("before ENABLE: %q %v", got, err)
		}
		caps, unread := enabledCaps([]byte("* ENABLED " + c + "\r\n"))
		if unread {
			t.Fatalf("ENABLED %s read as an extension the proxy does not read", c)
		}
		applyEnabled(&ctx, caps)
		if !ctx.UTF8 {
			t.Fatalf("ENABLE %s: names still modified UTF-7", c)
		}
		if got, err := ctx.Canonical("ärger"); err != nil || got != "ärger" {
			t.Errorf("ENABLE %s: ärger read as %q %v", c, got, err)
		}
		if _, err := ctx.Canonical("&AOQ-rger"); err == nil {
			t.Errorf("ENABLE %s: &AOQ-rger still has one reading", c)
		}
	}
	ctx := imapwire.Context{}
	caps, _ := enabledCaps([]byte("* ENABLED CONDSTORE\r\n"))
	applyEnabled(&ctx, caps)
	if ctx.UTF8 {
		t.Error("ENABLE CONDSTORE switched names to UTF-8")
	}
}
