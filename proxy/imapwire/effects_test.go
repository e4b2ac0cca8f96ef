package imapwire

import (
	"errors"
	"fmt"
	"testing"
)

// effectsOf parses and checks one command in testCtx and returns its
// effects as summary renders them, and ContentItems.
func effectsOf(t *testing.T, wire string) (string, bool, error) {
	t.Helper()
	var p CommandParser
	if _, err := parseWire(&p, wire); err != nil {
		return "", false, err
	}
	ctx := testCtx
	if err := p.Check(&ctx); err != nil {
		return "", false, err
	}
	c := p.Command()
	return effectsString(&c.Effects), c.ContentItems, nil
}

func effectsString(e *Effects) string {
	s := ""
	for i := range e.Len() {
		if i > 0 {
			s += ","
		}
		eo := e.At(i)
		s += eo.Effect.String() + "@" + [...]string{"-", "sel", "mbox", "dest", "any"}[eo.Target]
	}
	return s
}

// TestContentReadsClassified: what delivers header content (ENVELOPE, and
// BODYSTRUCTURE/BODY, which hold an attached message's envelope) or probes
// content (SEARCH, SORT and THREAD by text) is read-content, so that a
// policy refusing content sees it (attack40 finding 6); only the items the
// response tracker counts as content octets set ContentItems, which fetch
// caps and the audit's content_bytes follow.
func TestContentReadsClassified(t *testing.T) {
	const (
		meta    = "read-metadata@sel"
		content = "read-metadata@sel,read-content@sel"
	)
	for _, tt := range []struct {
		wire, eff string
		items     bool
	}{
		{"A FETCH 1 (FLAGS UID INTERNALDATE RFC822.SIZE)\r\n", meta, false},
		{"A FETCH 1 FAST\r\n", meta, false},
		{"A FETCH 1 (UID ENVELOPE)\r\n", content, false},
		{"A FETCH 1 envelope\r\n", content, false},
		{"A FETCH 1 BODYSTRUCTURE\r\n", content, false},
		{"A FETCH 1 (FLAGS BODY)\r\n", content, false},
		{"A FETCH 1 ALL\r\n", content, false},
		{"A FETCH 1 FULL\r\n", content, false},
		{"A FETCH 1 RFC822.HEADER\r\n", content, true},
		{"A FETCH 1 (ENVELOPE BODY.PEEK[TEXT])\r\n", content, true},
		{"A FETCH 1 BINARY.SIZE[1]\r\n", meta, false},
		{"A SEARCH UNSEEN SINCE 1-Feb-1994 LARGER 10 UID 1:4\r\n", meta, false},
		{"A SEARCH SENTBEFORE 1-Feb-1994 KEYWORD $Junk\r\n", meta, false},
		{"A SEARCH BODY secret\r\n", content, false},
		{"A UID SEARCH TEXT secret\r\n", content, false},
		{"A SEARCH NOT OR SEEN (HEADER X-Spam yes)\r\n", content, false},
		{"A SEARCH CHARSET UTF-8 OR SEEN BCC bob\r\n", content, false},
		{"A SEARCH FUZZY SUBJECT secret\r\n", content, false},
		{"A SEARCH RETURN (COUNT) CC x\r\n", content, false},
		{"A SORT (DATE REVERSE SIZE ARRIVAL) UTF-8 ALL\r\n", meta, false},
		{"A SORT (REVERSE FROM) UTF-8 ALL\r\n", content, false},
		{"A UID SORT (DISPLAYTO) UTF-8 SEEN\r\n", content, false},
		{"A SORT (DATE) UTF-8 TO bob\r\n", content, false},
		{"A THREAD REFERENCES UTF-8 ALL\r\n", content, false},
		{"A UID THREAD ORDEREDSUBJECT UTF-8 SEEN\r\n", content, false},
	} {
		eff, items, err := effectsOf(t, tt.wire)
		if err != nil {
			t.Errorf("%q: %v", tt.wire, err)
			continue
		}
		if eff != tt.eff || items != tt.items {
			t.Errorf("%q: effects %s, content items %v; want %s, %v", tt.wire, eff, items, tt.eff, tt.items)
		}
	}
	for _, name := range []string{"FETCH", "SEARCH", "SORT", "THREAD"} {
		if Lookup(name).MayEffect&(1<<EffReadContent) == 0 {
			t.Errorf("%s: MayEffect lacks read-content: a policy inspecting it would not be asked", name)
		}
	}
}

// TestSetMetadataEntriesClassified: a SETMETADATA's effects are what the
// server may do with each entry, later included (attack40 finding 2):
// Cyrus's expire, archive and delete annotations make cyr_expire destroy
// mail of the mailbox and of its inferiors; vendor entries the proxy cannot
// classify, and vendor entries of the server, are refused.
func TestSetMetadataEntriesClassified(t *testing.T) {
	const destroys = "metadata@mbox,expunge@mbox,delete-mailbox@mbox"
	for _, tt := range []struct{ wire, eff string }{
		{"A SETMETADATA INBOX (/private/comment \"x\")\r\n", "metadata@mbox"},
		{"A SETMETADATA INBOX (/shared/comment NIL /private/specialuse \"\\\\Archive\")\r\n", "metadata@mbox"},
		{"A SETMETADATA \"\" (/shared/admin \"mailto:root@example.org\")\r\n", "metadata@mbox"},
		{"A SETMETADATA Legal (/shared/vendor/cmu/cyrus-imapd/expire \"1\")\r\n", destroys},
		{"A SETMETADATA Legal (/private/vendor/cmu/cyrus-imapd/archive \"1\")\r\n", destroys},
		{"A SETMETADATA Legal (/shared/vendor/cmu/cyrus-imapd/delete NIL)\r\n", destroys},
		{"A SETMETADATA Legal (/SHARED/Vendor/CMU/Cyrus-IMAPd/EXPIRE \"1\")\r\n", destroys},
		{"A SETMETADATA Legal (/private/comment \"x\" /shared/vendor/cmu/cyrus-imapd/expire {1}\r\n1)\r\n", destroys},
		{"A SETMETADATA Legal ({37}\r\n/shared/vendor/cmu/cyrus-imapd/expire \"1\")\r\n", destroys},
	} {
		eff, _, err := effectsOf(t, tt.wire)
		if err != nil || eff != tt.eff {
			t.Errorf("%q: effects %s (%v), want %s", tt.wire, eff, err, tt.eff)
		}
	}
	if m := Lookup("SETMETADATA").MayEffect; m&(1<<EffExpunge) == 0 || m&(1<<EffDeleteMailbox) == 0 {
		t.Error("SETMETADATA: MayEffect lacks expunge or delete-mailbox: legal_hold would not be asked")
	}
	for _, tt := range []struct{ wire, code string }{
		{"A SETMETADATA Legal (/shared/vendor/cmu/cyrus-imapd/sieve \"x\")\r\n", "CANNOT"},
		{"A SETMETADATA Legal (/private/vendor/vendor.example/anything \"x\")\r\n", "CANNOT"},
		{"A SETMETADATA \"\" (/shared/vendor/cmu/cyrus-imapd/expire \"1\")\r\n", "CANNOT"},
		{"A SETMETADATA Legal (/private/comment \"x\" /shared/vendor/x/y \"1\")\r\n", "CANNOT"},
		{"A SETMETADATA Legal (/shared/imapsieve/script \"purge\")\r\n", "CANNOT"},
		{"A SETMETADATA \"\" (/shared/imapsieve/script \"purge\")\r\n", "CANNOT"},
		{"A SETMETADATA Legal (/shared/anything-the-server-defines \"1\")\r\n", "CANNOT"},
		{"A SETMETADATA Legal (/private/admin \"x\")\r\n", "CANNOT"},
		{"A SETMETADATA Legal (/vendor/cmu/cyrus-imapd/expire \"1\")\r\n", ""},
		{"A SETMETADATA Legal (/shared//vendor/cmu/cyrus-imapd/expire \"1\")\r\n", ""},
		{"A SETMETADATA Legal (/shared/vendor/cmu/cyrus-imapd/expire/ \"1\")\r\n", ""},
		{"A SETMETADATA Legal (/shared/ \"1\")\r\n", ""},
		{"A SETMETADATA Legal (\"/shared/com ment\" \"1\")\r\n", ""},
		{"A SETMETADATA Legal (\"/shared/comment*\" \"1\")\r\n", ""},
		{"A SETMETADATA Legal (\"/shared/vendor/cmu/cyrus-imapd/expiré\" \"1\")\r\n", ""},
	} {
		_, _, err := effectsOf(t, tt.wire)
		var se *SyntaxError
		// Unclassifiable entries are refused with NO, malformed ones get BAD.
		if !errors.As(err, &se) || se.Code != tt.code || se.Refuse != (tt.code == "CANNOT") {
			t.Errorf("%q: %v, want a refusal with code %q", tt.wire, err, tt.code)
		}
	}
	// RFC 5257's SETANNOTATION and Cyrus's own commands are not in the
	// table: refused as unknown, never relayed.
	for _, wire := range []string{
		"A SETANNOTATION Legal /vendor/cmu/cyrus-imapd/expire (value.shared \"1\")\r\n",
		"A SETANNOTATION Legal \"/vendor/cmu/cyrus-imapd/expire\" (\"value.shared\" \"1\")\r\n",
		"A XRUNANNOTATOR 1\r\n",
	} {
		if _, _, err := effectsOf(t, wire); err == nil || err.Error() != "imapwire: unknown command" {
			t.Errorf("%q: %v, want unknown command", wire, err)
		}
	}
}

// TestSearchKeysRecorded: what a SEARCH, SORT or THREAD probes of content
// is kept by kind (Command.SearchKeys, the trail's search_keys), never
// with the string searched for; keys on flags, dates and sizes are none.
func TestSearchKeysRecorded(t *testing.T) {
	tests := []struct {
		wire string
		want string
	}{
		{"a SEARCH SEEN SINCE 1-Jan-2000 LARGER 1\r\n", "[]"},
		{"a SEARCH BODY secret\r\n", "[BODY]"},
		{"a UID SEARCH OR subject x NOT text {3}\r\nabc\r\n", "[TEXT SUBJECT]"},
		{"a SEARCH HEADER Message-ID x FUZZY FROM y\r\n", "[FROM HEADER]"},
		{"a SORT (REVERSE DISPLAYFROM DATE SUBJECT) UTF-8 CC z\r\n", "[SUBJECT FROM CC]"},
		{"a SORT (DATE SIZE) UTF-8 ALL\r\n", "[]"},
		{"a THREAD REFERENCES UTF-8 BCC w\r\n", "[BCC THREAD]"},
	}
	for _, tc := range tests {
		c := checkedWire(t, tc.wire).Command()
		if got := fmt.Sprint(c.SearchKeys.Names()); got != tc.want {
			t.Errorf("%q: %s, want %s", tc.wire, got, tc.want)
		}
		if has := c.Effects.Has(EffReadContent); has != (c.SearchKeys != 0) {
			t.Errorf("%q: read-content %v with search keys %s", tc.wire, has, c.SearchKeys.Names())
		}
	}
}

// effectsWithinMay checks the table's promise (Spec.MayEffect): a policy
// inspecting an effect is asked about every command that can have it
// (ARCHITECTURE.md §10).
func effectsWithinMay(c *Command) error {
	for i := range c.Effects.Len() {
		if e := c.Effects.At(i).Effect; c.Spec.MayEffect&(1<<e) == 0 {
			return fmt.Errorf("%s has the effect %s, which its MayEffect lacks: a policy inspecting %s is not asked", c.Name, e, e)
		}
	}
	return nil
}

// TestEffectsWithinMayEffect: every command line the tests and the fuzz
// seeds know has only effects its Spec.MayEffect names. NOTIFY's fetch
// attributes (RFC 5465 §5.2) set \Seen unless peeked.
func TestEffectsWithinMayEffect(t *testing.T) {
	lines := append([]string{
		"A NOTIFY SET (SELECTED (MessageNew (UID BODY[]) MessageExpunge))\r\n",
		"A NOTIFY SET (SELECTED (MessageNew (BODY[TEXT]) MessageExpunge FlagChange))\r\n",
	}, fuzzSeeds...)
	checked := 0
	for _, wire := range lines {
		var p CommandParser
		if _, err := parseWire(&p, wire); err != nil {
			continue
		}
		for _, ctx := range fuzzCtxs {
			if p.Check(&ctx) != nil {
				continue
			}
			checked++
			if err := effectsWithinMay(p.Command()); err != nil {
				t.Errorf("%q: %v", wire, err)
			}
		}
	}
	if checked < 20 {
		t.Fatalf("only %d commands checked", checked)
	}
}
