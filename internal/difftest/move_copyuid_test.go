package difftest

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/imapwarden/imapwarden/audit"
)

// MOVE's COPYUID comes in an untagged OK before its expunges (RFC 6851
// §4.3), COPY's in its tagged OK (RFC 4315 §3): both records name the
// source and destination UIDs in code_args. Two UID MOVEs pipelined
// are each credited their own: the COPYUID's source UIDs are the ones
// the MOVE named.
func TestMoveCopyUIDRecorded(t *testing.T) {
	forEachBackend(t, func(t *testing.T, e *Env) {
		if !e.B.Caps["MOVE"] || !e.B.Caps["UIDPLUS"] {
			t.Skip("the backend does not offer MOVE and UIDPLUS")
		}
		w := e.Worker(t, 0)
		keep := script(t, w, "n NOOP\n").After.Boxes[w.B.Canonical("Keep")]
		if keep == nil || len(keep.Msgs) < 3 {
			t.Fatalf("Keep holds %v, want 3 messages or more", keep)
		}
		uids := make([]uint32, 0, len(keep.Msgs))
		for uid := range keep.Msgs {
			uids = append(uids, uid)
		}
		slices.Sort(uids)
		o := script(t, w, fmt.Sprintf("s SELECT \"$PKeep\"\n!wait s\nc UID COPY %d \"$PVictim\"\n!wait c\n"+
			"m1 UID MOVE %d \"$PVictim\"\nm2 UID MOVE %d \"$PVictim\"\n", uids[0], uids[1], uids[2]))
		for _, tag := range []string{"c", "m1", "m2"} {
			wantStatus(t, o, tag, "OK")
		}
		before, after := o.Before.Boxes[w.B.Canonical("Victim")], o.After.Boxes[w.B.Canonical("Victim")]
		if before == nil || after == nil {
			t.Fatal("no Victim before or after the step")
		}
		var added []uint32
		for uid := range after.Msgs {
			if _, had := before.Msgs[uid]; !had {
				added = append(added, uid)
			}
		}
		slices.Sort(added)
		if len(added) != 3 {
			t.Fatalf("Victim gained %v, want 3 messages", added)
		}
		want := map[string]uint32{"c": uids[0], "m1": uids[1], "m2": uids[2]}
		dest := map[uint32]string{}
		for _, r := range o.Recs {
			src, ok := want[r.Tag]
			if !ok || r.Kind != audit.KindCommand {
				continue
			}
			delete(want, r.Tag)
			f := strings.Fields(r.CodeArgs)
			switch {
			case len(f) != 3:
				t.Errorf("%s %s recorded code_args %q, want its COPYUID", r.Tag, r.Command, r.CodeArgs)
				continue
			case f[0] != strconv.FormatUint(uint64(after.UIDValidity), 10):
				t.Errorf("%s COPYUID %q: UIDVALIDITY is not Victim's %d", r.Tag, r.CodeArgs, after.UIDValidity)
			case f[1] != strconv.FormatUint(uint64(src), 10):
				t.Errorf("%s COPYUID %q names source %s, want %d", r.Tag, r.CodeArgs, f[1], src)
			}
			d, err := strconv.ParseUint(f[2], 10, 32)
			if err != nil || !slices.Contains(added, uint32(d)) || dest[uint32(d)] != "" {
				t.Errorf("%s COPYUID %q: destination %s is not one of Victim's new %v once", r.Tag, r.CodeArgs, f[2], added)
			}
			dest[uint32(d)] = r.Tag
		}
		if len(want) > 0 {
			t.Errorf("no record of %v", want)
		}
	})
}
