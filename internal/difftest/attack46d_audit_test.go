package difftest

import (
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/imapwarden/imapwarden/audit"
	"github.com/imapwarden/imapwarden/proxy/imapwire"
)

// An expunge's record must let an auditor know which messages it
// removed. The set is the client's text, and the field cap
// (max_field_bytes, 1024) cuts it: a UID EXPUNGE (RFC 4315 §2.1) whose
// set names a run of absent UIDs before the one it removes is recorded
// with the absent ones only, and nothing else in the record (uids,
// code_args) names the message that went (attack46d).
func TestExpungeRecordNamesTheExpungedUIDs(t *testing.T) {
	forEachBackend(t, func(t *testing.T, e *Env) {
		if !e.B.Caps["UIDPLUS"] {
			t.Skip("the backend does not offer UIDPLUS")
		}
		w := e.Worker(t, 0)
		keep := script(t, w, "n NOOP\n").After.Boxes[w.B.Canonical("Keep")]
		if keep == nil || len(keep.Msgs) == 0 {
			t.Fatalf("Keep holds %v, want a message", keep)
		}
		var target uint32
		for uid := range keep.Msgs {
			target = max(target, uid)
		}
		// Absent UIDs, one by one, then the target: about 1.6 KB.
		var b strings.Builder
		for i := range 200 {
			fmt.Fprintf(&b, "%d,", 900000+2*i)
		}
		fmt.Fprintf(&b, "%d", target)
		set := b.String()
		o := script(t, w, fmt.Sprintf("s SELECT \"$PKeep\"\n!wait s\n"+
			"d UID STORE %s +FLAGS.SILENT (\\Deleted)\n!wait d\nx UID EXPUNGE %s\n!wait x\n", set, set))
		wantStatus(t, o, "x", "OK")
		if after := o.After.Boxes[w.B.Canonical("Keep")]; after != nil {
			if _, still := after.Msgs[target]; still {
				t.Fatalf("UID %d was not expunged: the step did not do what it sets out to", target)
			}
		}
		seen := false
		for _, r := range o.Recs {
			if r.Kind != audit.KindCommand || r.Tag != "x" {
				continue
			}
			seen = true
			named := slices.Contains(r.ExpungedUIDs, target) || strings.Contains(r.CodeArgs, fmt.Sprint(target))
			// A clipped set's last element may be a number cut short.
			if rs := r.Set; rs != "" {
				if cut := slices.ContainsFunc(r.Cut, func(c audit.Cut) bool { return c.Field == "set" }); cut {
					rs = rs[:strings.LastIndexByte(rs, ',')+1]
				}
				if imapwire.SetMayContain(strings.TrimSuffix(rs, ","), target) {
					named = true
				}
			}
			if !named {
				t.Errorf("the UID EXPUNGE record names no UID %d of the message it removed: set %d bytes recorded of %d (cut %v), expunged_uids %v, code_args %q",
					target, len(r.Set), len(set), r.Cut, r.ExpungedUIDs, r.CodeArgs)
			}
		}
		if !seen {
			t.Error("no record of the UID EXPUNGE")
		}
	})
}

// An APPEND's CATENATE URLs copy content from other mailboxes (RFC 4469
// §3): the record's sources must name every one, the one a policy or an
// auditor cares about (Legal) included. sources is a list from the
// client and max_list_items (32) keeps its first entries: 32 innocuous
// sources before Legal leave Legal out of the record (attack46d).
func TestCatenateRecordNamesEverySource(t *testing.T) {
	forEachBackend(t, func(t *testing.T, e *Env) {
		if !e.B.Caps["CATENATE"] {
			t.Skipf("%s has no CATENATE (RFC 4469)", e.B.Name)
		}
		w := e.Worker(t, 0)
		var setup, urls strings.Builder
		setup.WriteString("s SELECT \"$PKeep\"\n!wait s\n")
		for i := range 32 {
			fmt.Fprintf(&setup, "c%d CREATE \"$PS%02d\"\n!wait c%d\nk%d UID COPY 1:* \"$PS%02d\"\n!wait k%d\n", i, i, i, i, i, i)
			fmt.Fprintf(&urls, "URL \"/$PS%02d/;UID=1\" ", i)
		}
		// One step: the harness gives each step the fixtures afresh.
		o := script(t, w, setup.String()+"a APPEND \"$PKeep\" CATENATE ("+urls.String()+"URL \"/$PLegal/;UID=1\")\n!wait a\n")
		for i := range 32 {
			wantStatus(t, o, fmt.Sprintf("k%d", i), "OK")
		}
		wantStatus(t, o, "a", "OK")
		legal := w.B.Canonical("Legal")
		found := false
		for _, r := range o.Recs {
			if r.Kind != audit.KindCommand || r.Tag != "a" {
				continue
			}
			found = true
			if !slices.Contains(r.Sources, legal) {
				t.Errorf("APPEND CATENATE copied %s's UID 1; its record names %d sources (cut %v), not %s", legal, len(r.Sources), r.Cut, legal)
			}
		}
		if !found {
			t.Error("no record of a")
		}
	})
}
