package difftest

import (
	"strings"
	"testing"
)

// TestAuditNamesMessagesReadBySequence: the trail says which messages a
// user read (ARCHITECTURE.md §11), also for a FETCH by sequence number
// without the UID item, to which backends send no UID (RFC 9051 §6.4.5):
// the proxy adds UID to such a FETCH's item list, and the record names
// the UIDs of the messages whose content went out. The set "1:2" alone
// names nothing once the mailbox changes; UIDVALIDITY says what the UIDs
// are relative to (RFC 9051 §2.3.1.1). (attack40 finding 3.)
func TestAuditNamesMessagesReadBySequence(t *testing.T) {
	forEachBackend(t, func(t *testing.T, e *Env) {
		w := e.Worker(t, 0)
		o := script(t, w, "a EXAMINE \"$PKeep\"\nb FETCH 1:2 BODY.PEEK[]\nc FETCH 2 (FLAGS BODY.PEEK[HEADER])\n")
		seen := map[string]bool{}
		for _, r := range o.Recs {
			if r.Tag != "b" && r.Tag != "c" {
				continue
			}
			seen[r.Tag] = true
			if r.Messages == 0 || len(r.UIDs) != r.Messages {
				t.Errorf("%s delivered %d bodies (%d octets); the record names UIDs %v", r.Tag, r.Messages, r.ContentBytes, r.UIDs)
			}
			if r.UIDValidity == 0 {
				t.Errorf("%s: the record has no uidvalidity for its UIDs", r.Tag)
			}
		}
		if !seen["b"] || !seen["c"] {
			t.Errorf("records of b and c missing: %v", seen)
		}
	})
}

// TestAuditNamesMessagesWhoseHeadersWereRead: ENVELOPE, BODYSTRUCTURE,
// BODY and the ALL and FULL macros show header fields (the read-content
// effect) though no octets of theirs are charged to a cap: a FETCH of
// them by sequence number gets the UID item too, and its record names
// every message whose headers went out, with no messages or
// content_bytes (those count content items). Each FETCH is awaited, so
// that the responses before its completion are its own.
func TestAuditNamesMessagesWhoseHeadersWereRead(t *testing.T) {
	forEachBackend(t, func(t *testing.T, e *Env) {
		w := e.Worker(t, 0)
		cmds := map[string]string{
			"d": "FETCH 1:2 ENVELOPE",
			"e": "FETCH 1:2 (FLAGS BODYSTRUCTURE)",
			"f": "FETCH 2 BODY",
			"g": "FETCH 1 ALL",
			"h": "FETCH 2 FULL",
		}
		s := "a EXAMINE \"$PKeep\"\n!wait a\n"
		for _, tag := range []string{"d", "e", "f", "g", "h"} {
			s += tag + " " + cmds[tag] + "\n!wait " + tag + "\n"
		}
		o := script(t, w, s)
		// The FETCH responses each completion ended.
		fetched := map[string]int{}
		n := 0
		for _, r := range o.Resps {
			switch {
			case r.Tag == "*" && strings.Contains(r.Text, " FETCH ("):
				n++
			case r.Tag != "*" && r.Tag != "+":
				fetched[r.Tag], n = n, 0
			}
		}
		seen := map[string]bool{}
		for _, r := range o.Recs {
			if cmds[r.Tag] == "" {
				continue
			}
			seen[r.Tag] = true
			if r.Result != "OK" || fetched[r.Tag] == 0 {
				t.Errorf("%s %s: %s with %d FETCH responses", r.Tag, cmds[r.Tag], r.Result, fetched[r.Tag])
				continue
			}
			if len(r.UIDs) != fetched[r.Tag] || r.Messages != 0 || r.ContentBytes != 0 || r.Fetch != "header" {
				t.Errorf("%s %s: %d FETCH responses; the record names UIDs %v (messages %d, content_bytes %d, fetch %q)",
					r.Tag, cmds[r.Tag], fetched[r.Tag], r.UIDs, r.Messages, r.ContentBytes, r.Fetch)
			}
			if r.UIDValidity == 0 {
				t.Errorf("%s: the record has no uidvalidity for its UIDs", r.Tag)
			}
		}
		if len(seen) != len(cmds) {
			t.Errorf("records of %v only", seen)
		}
	})
}

// TestPipelinedFetchContentCredited: Dovecot runs pipelined FETCHes at
// once (RFC 9051 §5.5) and sends a later one's responses before an
// earlier one's completion; a FETCH response has no tag, so the proxy
// credits each to the FETCH in flight whose set and items it fits, here
// c's BODY[HEADER] to c, not to b, the oldest (attack40 finding 7). Each
// response is counted once across the records.
func TestPipelinedFetchContentCredited(t *testing.T) {
	Binary(t)
	e := StartEnv(t, "dovecot")
	w := e.Worker(t, 0)
	o := script(t, w, "a EXAMINE \"$PKeep\"\nb FETCH 1 (BODY.PEEK[]) (CHANGEDSINCE 1)\nc UID FETCH 1:* BODY.PEEK[HEADER]\nd FETCH 1:2 BODY.PEEK[TEXT]\n")
	want := map[string]int{}
	for _, r := range o.Resps {
		if r.Tag != "*" || !strings.Contains(r.Text, " FETCH (") {
			continue
		}
		switch {
		case strings.Contains(r.Text, "BODY[HEADER]"):
			want["c"]++
		case strings.Contains(r.Text, "BODY[TEXT]"):
			want["d"]++
		case strings.Contains(r.Text, "BODY[]"):
			want["b"]++
		}
	}
	if want["c"] == 0 || want["d"] == 0 {
		t.Fatalf("the backend sent no headers or texts: %v", want)
	}
	for _, r := range o.Recs {
		if r.Tag == "b" || r.Tag == "c" || r.Tag == "d" {
			if r.Messages != want[r.Tag] || len(r.UIDs) != r.Messages || len(r.SharedWith) > 0 {
				t.Errorf("%s: record has %d messages (UIDs %v, shared with %v), its responses were %d", r.Tag, r.Messages, r.UIDs, r.SharedWith, want[r.Tag])
			}
		}
	}
}

// TestPipelinedFetchSharedContent: two pipelined FETCHes whose set and
// items fit the same responses: whichever way the backend interleaves
// them, each response is counted once, and a record credited with another
// one's share says so (content_shared_with) rather than guess.
func TestPipelinedFetchSharedContent(t *testing.T) {
	Binary(t)
	e := StartEnv(t, "dovecot")
	w := e.Worker(t, 0)
	o := script(t, w, "a EXAMINE \"$PKeep\"\nb FETCH 1:2 BODY.PEEK[]\nc FETCH 2 BODY.PEEK[]\n")
	bodies := 0
	for _, r := range o.Resps {
		if r.Tag == "*" && strings.Contains(r.Text, " FETCH (") && strings.Contains(r.Text, "BODY[]") {
			bodies++
		}
	}
	got := map[string]int{}
	shared := false
	for _, r := range o.Recs {
		if r.Tag == "b" || r.Tag == "c" {
			got[r.Tag] = r.Messages
			shared = shared || len(r.SharedWith) > 0
			if len(r.UIDs) != r.Messages {
				t.Errorf("%s: %d messages, UIDs %v", r.Tag, r.Messages, r.UIDs)
			}
		}
	}
	if bodies != 3 || got["b"]+got["c"] != bodies {
		t.Errorf("the records count %v, the client got %d bodies", got, bodies)
	}
	if (got["b"] != 2 || got["c"] != 1) && !shared {
		t.Errorf("the records count %v with no shared attribution", got)
	}
}
