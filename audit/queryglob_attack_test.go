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
// records" of a trail that holds them.
func TestAttackQueryMissesNamesItWasGiven(t *testing.T) {
	for _, tc := range []struct {
		f Filter
		r Record
	}{
		{Filter{Mailbox: "Export[1]"}, Record{Kind: KindCommand, User: "mallory", Command: "COPY", Selected: "INBOX", Destination: "Export[1]"}},
		{Filter{Mailbox: `Q3\draft`}, Record{Kind: KindCommand, User: "mallory", Command: "FETCH", Selected: `Q3\draft`}},
		{Filter{Mailbox: "Legal*"}, Record{Kind: KindCommand, User: "mallory", Command: "FETCH", Selected: "Legal/Contracts"}},
		{Filter{Mailbox: "*"}, Record{Kind: KindCommand, User: "mallory", Command: "FETCH", Selected: "Archive/2026"}},
		{Filter{User: "mallory[x]"}, Record{Kind: KindCommand, User: "mallory[x]", Command: "FETCH", Selected: "INBOX"}},
		{Filter{User: "*"}, Record{Kind: KindAuth, User: "ops/mallory", Result: ResultSuccess}},
	} {
		if !tc.f.Match(&tc.r) {
			t.Errorf("filter user %q mailbox %q does not find the record of user %q, mailbox %q, selected %q, destination %q",
				tc.f.User, tc.f.Mailbox, tc.r.User, tc.r.Mailbox, tc.r.Selected, tc.r.Destination)
		}
	}
}
