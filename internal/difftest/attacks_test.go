package difftest

import (
	"maps"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/imapwarden/imapwarden/audit"
)

// forEachBackend runs fn for each backend in a subtest of its own, the
// backends at once (goroutines calling t.Run, not parallel subtests, which
// -parallel would queue on a 2-core machine).
func forEachBackend(t *testing.T, fn func(t *testing.T, e *Env)) {
	Binary(t)
	var wg sync.WaitGroup
	for _, name := range Backends {
		wg.Go(func() {
			t.Run(name, func(t *testing.T) { fn(t, StartEnv(t, name)) })
		})
	}
	wg.Wait()
}

// script runs a script as one step of w and fails the test on any
// disagreement the harness finds.
func script(t *testing.T, w *Env, s string) *Outcome {
	t.Helper()
	st, err := ParseScript(w.B, []byte(s))
	if err != nil {
		t.Fatal(err)
	}
	o, probs := w.Run(st)
	for _, p := range probs {
		t.Error(p)
	}
	return o
}

// status returns the completion of tag, or "" when none came.
func status(o *Outcome, tag string) string {
	if r := o.Done[tag]; r != nil {
		return r.Status
	}
	return ""
}

// wantStatus fails unless tag completed with st.
func wantStatus(t *testing.T, o *Outcome, tag, st string) {
	t.Helper()
	if got := status(o, tag); got != st {
		text := ""
		if r := o.Done[tag]; r != nil {
			text = r.Text
		}
		t.Errorf("%s completed with %q (%q), want %s", tag, got, text, st)
	}
}

// kept fails unless the backend still holds every message the logical
// mailbox held before the step.
func kept(t *testing.T, w *Env, o *Outcome, logical string) {
	t.Helper()
	c := w.B.Canonical(logical)
	a, b := o.Before.Boxes[c], o.After.Boxes[c]
	switch {
	case a == nil:
		t.Fatalf("%q did not exist before", c)
	case b == nil || b.NoSelect:
		t.Errorf("%q is gone from the backend", c)
	case !slices.Equal(slices.Sorted(maps.Keys(a.Msgs)), slices.Sorted(maps.Keys(b.Msgs))):
		t.Errorf("%q held UIDs %v, now %v", c, slices.Sorted(maps.Keys(a.Msgs)), slices.Sorted(maps.Keys(b.Msgs)))
	}
}

// absent fails if the backend has the logical mailbox after the step.
func absent(t *testing.T, w *Env, o *Outcome, logical string) {
	t.Helper()
	if b := o.After.Boxes[w.B.Canonical(logical)]; b != nil && !b.NoSelect {
		t.Errorf("%q was created", w.B.Canonical(logical))
	}
}

// refused fails unless the proxy answered tag with BAD itself: the
// trail holds no command record of it.
func refused(t *testing.T, o *Outcome, tag string) {
	t.Helper()
	for _, r := range o.Recs {
		if r.Tag == tag && (r.Kind == audit.KindCommand || r.Kind == audit.KindPolicyDeny) {
			t.Errorf("%s reached the backend or the policy: %s %s %q", tag, r.Kind, r.Command, r.Mailbox)
		}
	}
	if got := status(o, tag); got != "BAD" && !untaggedBAD(o) {
		t.Errorf("%s: %q, want BAD", tag, got)
	}
}

func untaggedBAD(o *Outcome) bool {
	for _, r := range o.Resps {
		if r.Tag == "*" && r.Status == "BAD" {
			return true
		}
	}
	return false
}

// denied fails unless tag was refused by a policy, in the selected
// mailbox the record names.
func denied(t *testing.T, w *Env, o *Outcome, tag, selected string) {
	t.Helper()
	wantStatus(t, o, tag, "NO")
	for _, r := range o.Recs {
		if r.Tag == tag && r.Kind == audit.KindPolicyDeny {
			if selected != "" && r.Selected != w.B.Canonical(selected) {
				t.Errorf("%s denied in %q, want %q", tag, r.Selected, w.B.Canonical(selected))
			}
			return
		}
	}
	t.Errorf("%s: no policy.deny record", tag)
}

// delivered adds up the content octets and messages the client received.
func delivered(o *Outcome) (octets, msgs int64) {
	for _, r := range o.Resps {
		if n, ok := fetchContent(r); ok {
			octets += n
			msgs++
		}
	}
	return octets, msgs
}

func byeLimit(o *Outcome) bool {
	return o.Bye != nil && strings.Contains(o.Bye.Text, "[LIMIT]")
}

// TestAttacks runs issue 11's seven attacks and its "also seen" list
// against every backend that has what they need, and proves from the
// backend's own state (read directly, not through the proxy) that held
// mail is still there, nothing was created, and the caps held. Each also
// passes the harness's general check (check.go).
func TestAttacks(t *testing.T) {
	forEachBackend(t, func(t *testing.T, e *Env) {
		t.Run("A_escape", func(t *testing.T) {
			w := e.Worker(t, 0)
			o := script(t, w, AttackA)
			refused(t, o, "a")
			refused(t, o, "d")
			refused(t, o, "e")
			kept(t, w, o, "Legal")
			kept(t, w, o, "Sent")
			kept(t, w, o, "Drafts")
			absent(t, w, o, "Stolen")
		})
		t.Run("B_close", func(t *testing.T) {
			w := e.Worker(t, 0)
			o := script(t, w, AttackB)
			wantStatus(t, o, "a", "OK")
			denied(t, w, o, "b", "Legal")
			kept(t, w, o, "Legal")
			// CLOSE after EXAMINE expunges nothing and is allowed.
			o = script(t, w, "a EXAMINE \"$PLegal\"\nb CLOSE\n")
			wantStatus(t, o, "b", "OK")
			kept(t, w, o, "Legal")
		})
		t.Run("C_pipelined_select", func(t *testing.T) {
			w := e.Worker(t, 0)
			o := script(t, w, AttackC)
			wantStatus(t, o, "b", "OK")
			denied(t, w, o, "c", "Legal")
			denied(t, w, o, "d", "Legal")
			kept(t, w, o, "Legal")
			kept(t, w, o, "INBOX")
		})
		t.Run("D_tag", func(t *testing.T) {
			w := e.Worker(t, 0)
			o := script(t, w, AttackD)
			refused(t, o, "a]b")
			denied(t, w, o, "t3", "Legal")
			denied(t, w, o, "t4", "Legal")
			kept(t, w, o, "Legal")
			kept(t, w, o, "INBOX")
		})
		t.Run("E_catenate", func(t *testing.T) {
			if !e.B.Caps["CATENATE"] {
				t.Skipf("%s has no CATENATE (RFC 4469)", e.B.Name)
			}
			w := e.Worker(t, 0)
			o := script(t, w, AttackE)
			wantStatus(t, o, "a", "NO")
			if r := o.Done["a"]; r != nil && !strings.Contains(r.Text, "[TOOBIG]") {
				t.Errorf("a: %q, want NO [TOOBIG]", r.Text)
			}
			kept(t, w, o, "Keep")
			if n, m := len(o.After.Boxes[w.B.Canonical("Keep")].Msgs), len(o.Before.Boxes[w.B.Canonical("Keep")].Msgs); n != m {
				t.Errorf("Keep holds %d messages, held %d", n, m)
			}
			// The same URLs work for a user without the limit: the refusal
			// above is the policy's, not a broken URL.
			o = script(t, w, `a APPEND "$PKeep" CATENATE (URL "/INBOX/;UID=1" URL "/INBOX/;UID=2")`+"\n")
			wantStatus(t, o, "a", "OK")
			if n, m := len(o.After.Boxes[w.B.Canonical("Keep")].Msgs), len(o.Before.Boxes[w.B.Canonical("Keep")].Msgs); n != m+1 {
				t.Errorf("alice's CATENATE: Keep holds %d messages, held %d", n, m)
			}
		})
		t.Run("F_fetch_cap", func(t *testing.T) {
			w := e.Worker(t, 0)
			o := script(t, w, AttackF)
			octets, msgs := delivered(o)
			if octets > CapBytes || msgs > CapMessages {
				t.Errorf("delivered %d octets in %d messages, over the cap of %d octets, %d messages", octets, msgs, CapBytes, CapMessages)
			}
			if msgs == 0 {
				t.Error("nothing was delivered")
			}
			if !byeLimit(o) {
				t.Errorf("the session did not end with * BYE [LIMIT]: %v", o.Bye)
			}
			var audited int64
			for _, r := range o.Recs {
				audited += r.ContentBytes
			}
			if audited != octets {
				t.Errorf("the trail accounts for %d content octets, the client received %d", audited, octets)
			}
		})
		t.Run("G_notify_push", func(t *testing.T) {
			if !e.B.Caps["NOTIFY"] {
				t.Skipf("%s has no NOTIFY (RFC 5465)", e.B.Name)
			}
			w := e.Worker(t, 0)
			st, err := ParseScript(w.B, []byte(AttackG))
			if err != nil {
				t.Fatal(err)
			}
			// Wait for each push before the next delivery, so that the
			// pushes, not the timing, decide.
			pushed := func(r *Resp) bool { return isFetch(r) || r.Status == "BYE" }
			for i := range st.Cmds {
				if st.Cmds[i].Tag == "" && len(st.Cmds[i].Parts) == 1 && st.Cmds[i].Parts[0].Do != nil {
					st.Cmds[i].Parts[0].Until = pushed
					st.Cmds[i].Tag = "d" // its completion also ends the wait
				}
			}
			o, probs := w.Run(st)
			for _, p := range probs {
				t.Error(p)
			}
			octets, msgs := delivered(o)
			if octets > CapBytes || msgs > CapMessages {
				t.Errorf("delivered %d octets in %d messages, over the cap of %d octets, %d messages", octets, msgs, CapBytes, CapMessages)
			}
			if !byeLimit(o) {
				t.Errorf("the session did not end with * BYE [LIMIT]: %v", o.Bye)
			}
			// Every delivered body is in "imapwarden audit query --fetch
			// body", pushed ones included.
			var uids []uint32
			for _, r := range o.Resps {
				if _, ok := fetchContent(r); ok {
					uids = append(uids, fetchUID(r))
				}
			}
			got := map[uint32]bool{}
			for _, r := range w.P.AuditQuery(t, "--user", "capg", "--fetch", "body") {
				for _, u := range r.UIDs {
					got[u] = true
				}
			}
			for _, u := range uids {
				if !got[u] {
					t.Errorf("UID %d was delivered but audit query --fetch body does not name it (it names %v)", u, slices.Sorted(maps.Keys(got)))
				}
			}
			if len(uids) <= 5 {
				t.Errorf("no pushed body reached the client (%d bodies): the test proves nothing", len(uids))
			}
		})
		t.Run("seen_preview", func(t *testing.T) {
			if !e.B.Caps["PREVIEW"] {
				t.Skipf("%s has no PREVIEW (RFC 8970)", e.B.Name)
			}
			// Bodies spend most of the cap, then previews (and
			// snippets) of the whole mailbox: script fails unless the
			// trail accounts for every preview octet and message, and
			// the user's total stays within the cap.
			w := e.Worker(t, 0)
			o := script(t, w, SeenPreview)
			if !byeLimit(o) {
				t.Fatalf("the bodies did not reach the cap: %v", o.Bye)
			}
			o = script(t, w, SeenPreviewAfter)
			if _, msgs := delivered(o); msgs == 0 {
				t.Errorf("no preview was delivered: the test proves nothing (%v)", o.Done["d"])
			}
			if e.B.Caps["SNIPPET=FUZZY"] {
				script(t, w, "!user capp\ne SELECT INBOX\nf FETCH 1:* (SNIPPET (LAZY=FUZZY))\n")
			}
		})
		// Names with more than one reading: BAD from the proxy, the
		// mailboxes they could reach untouched.
		for _, c := range []struct {
			name, script string
			refused      string
			kept, absent []string
		}{
			{"seen_delimiters", SeenDelims, "a b c f", []string{"Sent", "Legal"}, []string{"Stolen"}},
			{"seen_utf7", SeenUTF7, "a b c d e f", []string{"Entwürfe"}, nil},
			{"seen_brackets", SeenBrackets, "a b c", []string{"Victim", "Legal"}, []string{"Stolen"}},
		} {
			t.Run(c.name, func(t *testing.T) {
				w := e.Worker(t, 0)
				o := script(t, w, c.script)
				for _, tag := range strings.Fields(c.refused) {
					refused(t, o, tag)
				}
				for _, m := range c.kept {
					kept(t, w, o, m)
				}
				for _, m := range c.absent {
					absent(t, w, o, m)
				}
			})
		}
		t.Run("seen_readonly_subscribe", func(t *testing.T) {
			w := e.Worker(t, 0)
			o := script(t, w, SeenReadOnly)
			denied(t, w, o, "a", "")
			denied(t, w, o, "b", "")
			if !maps.Equal(o.Before.Subs, o.After.Subs) {
				t.Errorf("subscriptions changed: %v -> %v", o.Before.Subs, o.After.Subs)
			}
		})
		t.Run("seen_tag_never_completed", func(t *testing.T) {
			w := e.Worker(t, 0)
			st, err := ParseScript(w.B, []byte(SeenTag))
			if err != nil {
				t.Fatal(err)
			}
			st.Logout = true
			o, probs := w.Run(st)
			for _, p := range probs {
				t.Error(p)
			}
			refused(t, o, "a]b")
			wantStatus(t, o, "z", "OK")
			for _, r := range o.Recs {
				if r.Tag == "a]b" {
					t.Errorf("the trail holds %s %s %q for a]b", r.Kind, r.Command, r.Result)
				}
			}
		})
	})
}
