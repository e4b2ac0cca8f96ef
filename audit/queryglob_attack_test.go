package audit

import "testing"

// TestAttackQueryMissesNamesItWasGiven: audit query's --user and
// --mailbox (and the console's and GET /audit's filters) match with
// path.Match, a file-path glob, not the names IMAP has: "[" opens a
// character class and "\" escapes, so the exact name of a mailbox a user
// made, "Export[1]" or "Q3\draft", finds none of its records; and "*"
// stops at "/", Dovecot's hierarchy delimiter, so "Legal*" misses
// "Legal/Contracts" and "*" misses every mailbox below the top level.
// A user who names a mailbox so, or files mail one level down, is not
// found by the investigator who searches for it: the query says "no
// records" of a trail that holds them. (Fixed: --user and --mailbox are
// exact; the patterns are --user-glob and --mailbox-glob, where "*"
// crosses "/", and "[" and a character after "\" are themselves.)
func TestAttackQueryMissesNamesItWasGiven(t *testing.T) {
	for _, tc := range []struct {
		f Filter
		r Record
	}{
		{Filter{Mailbox: "Export[1]"}, Record{Kind: KindCommand, User: "mallory", Command: "COPY", Selected: "INBOX", Destination: "Export[1]"}},
		{Filter{Mailbox: `Q3\draft`}, Record{Kind: KindCommand, User: "mallory", Command: "FETCH", Selected: `Q3\draft`}},
		{Filter{MailboxGlob: "Legal*"}, Record{Kind: KindCommand, User: "mallory", Command: "FETCH", Selected: "Legal/Contracts"}},
		{Filter{MailboxGlob: "*"}, Record{Kind: KindCommand, User: "mallory", Command: "FETCH", Selected: "Archive/2026"}},
		{Filter{MailboxGlob: "Export[1]"}, Record{Kind: KindCommand, User: "mallory", Command: "COPY", Selected: "INBOX", Destination: "Export[1]"}},
		{Filter{MailboxGlob: `Q3\\dr*`}, Record{Kind: KindCommand, User: "mallory", Command: "FETCH", Selected: `Q3\draft`}},
		{Filter{MailboxGlob: "inbox/*"}, Record{Kind: KindCommand, User: "mallory", Command: "FETCH", Selected: "INBOX/Archive/2026"}},
		{Filter{UserGlob: "MALLORY[?]"}, Record{Kind: KindCommand, User: "mallory[x]", Command: "FETCH", Selected: "INBOX"}},
		{Filter{User: "mallory[x]"}, Record{Kind: KindCommand, User: "mallory[x]", Command: "FETCH", Selected: "INBOX"}},
		{Filter{UserGlob: "*"}, Record{Kind: KindAuth, User: "ops/mallory", Result: ResultSuccess}},
	} {
		if !tc.f.Match(&tc.r) {
			t.Errorf("filter %+v does not find the record of user %q, mailbox %q, selected %q, destination %q",
				tc.f, tc.r.User, tc.r.Mailbox, tc.r.Selected, tc.r.Destination)
		}
	}
}

// TestQueryExactAndGlob: the exact filters match nothing else (a "*" or
// "?" in them is itself), INBOX is folded only as the first level, and a
// malformed pattern is an error, never a silent "no records".
func TestQueryExactAndGlob(t *testing.T) {
	rec := func(user, mbox string) *Record {
		return &Record{Kind: KindCommand, User: user, Command: "FETCH", Selected: mbox}
	}
	for _, tc := range []struct {
		f    Filter
		r    *Record
		want bool
	}{
		{Filter{Mailbox: "Legal*"}, rec("a", "Legal/Contracts"), false},
		{Filter{Mailbox: "Legal*"}, rec("a", "Legal*"), true},
		{Filter{Mailbox: "Q?"}, rec("a", "Q3"), false},
		{Filter{Mailbox: "inbox"}, rec("a", "INBOX"), true},
		{Filter{Mailbox: "Inbox.Sub"}, rec("a", "INBOX.Sub"), true},
		{Filter{Mailbox: "INBOX/sub"}, rec("a", "INBOX/Sub"), false},
		{Filter{Mailbox: "inboxes"}, rec("a", "INBOXES"), false},
		{Filter{Mailbox: "Archive/inbox"}, rec("a", "Archive/INBOX"), false},
		{Filter{User: "ALICE"}, rec("alice", "INBOX"), true},
		{Filter{User: "al*"}, rec("alice", "INBOX"), false},
		{Filter{UserGlob: "al?ce"}, rec("ALICE", "INBOX"), true},
		{Filter{MailboxGlob: `Legal\*`}, rec("a", "Legal/Contracts"), false},
		{Filter{MailboxGlob: `Legal\*`}, rec("a", "Legal*"), true},
		{Filter{MailboxGlob: "*/2026"}, rec("a", "Archive/Q/2026"), true},
		{Filter{MailboxGlob: "Arch*"}, rec("a", "archive"), false},
	} {
		if got := tc.f.Match(tc.r); got != tc.want {
			t.Errorf("filter %+v on user %q mailbox %q: %v, want %v", tc.f, tc.r.User, tc.r.Selected, got, tc.want)
		}
	}
	for _, f := range []Filter{{MailboxGlob: `Q3\`}, {UserGlob: `bob\`}} {
		if err := f.Check(); err == nil {
			t.Errorf("filter %+v: no error for a malformed pattern", f)
		}
		if _, err := Query(nil, &f, func(*Record, []byte) error { return nil }); err == nil {
			t.Errorf("query with %+v: no error for a malformed pattern", f)
		}
	}
}
