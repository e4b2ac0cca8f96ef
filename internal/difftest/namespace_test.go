package difftest

import (
	"strings"
	"testing"

	"github.com/imapwarden/imapwarden/audit"
)

// TestOtherUsersAliasOfOwnMailboxRefused: Cyrus (altnamespace: no) reaches
// the logged-in user's own mailboxes through the Other Users namespace
// ("user." in its NAMESPACE answer): "user.alice.Legal" IS "INBOX.Legal",
// "user.alice" IS INBOX. Policies know them by their personal names only,
// so the proxy refuses every such name with BAD [CANNOT], before the
// backend, and audits the refusal (found by attack40, finding 1).
func TestOtherUsersAliasOfOwnMailboxRefused(t *testing.T) {
	Binary(t)
	e := StartEnv(t, "cyrus")
	t.Run("expunge_held", func(t *testing.T) {
		w := e.Worker(t, 0)
		o := script(t, w, "a SELECT \"user.alice.Legal\"\nb STORE 1:* +FLAGS.SILENT (\\Deleted)\nc EXPUNGE\n")
		kept(t, w, o, "Legal")
		aliasRefused(t, o, "a", "user.alice.Legal")
	})
	t.Run("delete_rename_protected", func(t *testing.T) {
		w := e.Worker(t, 0)
		o := script(t, w, "a DELETE \"user.alice.Sent\"\nb RENAME \"user.alice.Drafts\" \"user.alice.Stolen\"\nc RENAME \"user.alice.Legal.Sub\" \"user.alice.Out\"\n")
		kept(t, w, o, "Sent")
		kept(t, w, o, "Drafts")
		absent(t, w, o, "Stolen")
		kept(t, w, o, "Legal/Sub")
		for _, tag := range []string{"a", "b", "c"} {
			aliasRefused(t, o, tag, "")
		}
	})
	t.Run("close_inbox", func(t *testing.T) {
		// user.alice is INBOX: its \Deleted message goes with CLOSE.
		w := e.Worker(t, 0)
		o := script(t, w, "a SELECT \"user.alice\"\nb CLOSE\n")
		kept(t, w, o, "INBOX")
		aliasRefused(t, o, "a", "user.alice")
	})
	t.Run("spellings", func(t *testing.T) {
		// Cyrus refuses these itself (case matters to it), the proxy
		// refuses them before: a backend that folds would reach INBOX.
		w := e.Worker(t, 1) // alice2
		o := script(t, w, strings.Join([]string{
			`a STATUS "user.ALICE2.Legal" (MESSAGES)`,
			`b STATUS "USER.alice2.Legal" (MESSAGES)`,
			`c EXAMINE user.alice2`,
			`d SUBSCRIBE "user.alice2.Legal"`,
			`e CREATE "user.alice2.New"`,
			`f LIST "user.alice2." "*"`,
			`g LIST "" "user.alice2.%"`,
			`h LSUB "user.Alice2." "*"`,
			`i SELECT INBOX.Legal`,
			`j COPY 1 "user.alice2.Legal"`,
			`k APPEND "user.alice2.Legal" {3+}`,
			`abc`,
			`l GETMETADATA "user.alice2" /shared/comment`,
			`m MYRIGHTS "user.alice2.Legal"`,
			"",
		}, "\n"))
		for _, tag := range []string{"a", "b", "c", "d", "e", "f", "g", "h", "j", "k", "l", "m"} {
			wantStatus(t, o, tag, "BAD")
		}
		for _, tag := range []string{"a", "b", "c", "d", "e", "j", "k"} {
			aliasRefused(t, o, tag, "")
		}
		wantStatus(t, o, "i", "OK")
		absent(t, w, o, "New")
	})
	t.Run("honest_names", func(t *testing.T) {
		// The personal names, other users' names and the namespace's
		// root stay the backend's to answer.
		w := e.Worker(t, 0)
		o := script(t, w, strings.Join([]string{
			`a STATUS "INBOX.Legal" (MESSAGES)`,
			`b STATUS "user.alice2.Legal" (MESSAGES)`,
			`c LIST "" "user.%"`,
			`d LIST "user." "%"`,
			`e EXAMINE INBOX`,
			"",
		}, "\n"))
		wantStatus(t, o, "a", "OK")
		if st := status(o, "b"); st != "NO" {
			t.Errorf("b (another user's mailbox): %q, want the backend's NO", st)
		}
		wantStatus(t, o, "c", "OK")
		wantStatus(t, o, "d", "OK")
		wantStatus(t, o, "e", "OK")
	})
}

// aliasRefused fails unless tag was answered BAD [CANNOT] by the proxy and
// the trail holds its refusal (naming mailbox, when not "").
func aliasRefused(t *testing.T, o *Outcome, tag, mailbox string) {
	t.Helper()
	r := o.Done[tag]
	if r == nil || r.Status != "BAD" || !strings.Contains(r.Text, "[CANNOT]") {
		t.Errorf("%s: %+v, want BAD [CANNOT]", tag, r)
	}
	for _, rec := range o.Recs {
		if rec.Tag != tag {
			continue
		}
		if rec.Kind == audit.KindCommand {
			t.Errorf("%s reached the backend: %s %q", tag, rec.Command, rec.Mailbox)
		}
		if rec.Kind == audit.KindPolicyDeny && rec.Result == "BAD" && rec.Code == "CANNOT" && (mailbox == "" || rec.Mailbox == mailbox) {
			return
		}
	}
	t.Errorf("%s: no policy.deny record of the refusal (mailbox %q)", tag, mailbox)
}

// TestOtherNamespacesWithoutAliasStayOpen: where the backend has no
// other-users namespace (Dovecot's fixture) or only shared ones (Courier:
// "shared." and "#shared."), names in them are forwarded as before: only
// an other-users namespace can alias the user's own mailboxes.
func TestOtherNamespacesWithoutAliasStayOpen(t *testing.T) {
	Binary(t)
	for _, name := range []string{"dovecot", "courier"} {
		t.Run(name, func(t *testing.T) {
			e := StartEnv(t, name)
			w := e.Worker(t, 0)
			o := script(t, w, strings.Join([]string{
				`a NAMESPACE`,
				`b STATUS "shared.alice.Legal" (MESSAGES)`,
				`c STATUS "#shared.alice.Legal" (MESSAGES)`,
				`d STATUS "Other Users/alice/Legal" (MESSAGES)`,
				`e LIST "" "shared.%"`,
				`f STATUS "$PLegal" (MESSAGES)`,
				"",
			}, "\n"))
			wantStatus(t, o, "a", "OK")
			for _, tag := range []string{"b", "c", "d"} {
				if st := status(o, tag); st == "BAD" || st == "" {
					t.Errorf("%s: %q, want the backend's answer", tag, st)
				}
			}
			wantStatus(t, o, "e", "OK")
			wantStatus(t, o, "f", "OK")
		})
	}
}
