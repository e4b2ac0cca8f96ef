package difftest

import (
	"fmt"
	"slices"
	"strings"
	"testing"
)

// TestCutFetchNamesItsMessageEveryForm: whatever item reads a message's
// text, in whatever form the client wrote it, a FETCH response cut
// mid-literal (the client hung up) is recorded naming its UID, on every
// backend (ARCHITECTURE.md §11: the proxy puts UID first in a FETCH by
// sequence number, and Courier answers in the order asked). Where the
// client itself asked for UID after the text, a backend that answers in
// order sends the UID after the cut: the record then says so (unnamed),
// never names nothing silently.
func TestCutFetchNamesItsMessageEveryForm(t *testing.T) {
	Binary(t)
	const size = 4 << 20
	items := []string{"BODY.PEEK[]", "BODY[]", "RFC822", "BODY.PEEK[TEXT]", "RFC822.TEXT", "BODY.PEEK[1]", "BODY.PEEK[]<0.4000000>", "BINARY.PEEK[]"}
	for _, name := range Backends {
		t.Run(name, func(t *testing.T) {
			b, p, box := bigMailbox(t, name, size)
			var cmds []string
			for _, it := range items {
				if strings.HasPrefix(it, "BINARY") && !b.Caps["BINARY"] {
					continue
				}
				cmds = append(cmds, "FETCH 1 "+it, "FETCH 1 (FLAGS "+it+")", "UID FETCH 1 "+it)
			}
			cmds = append(cmds, "FETCH 1 (BODY.PEEK[] UID)", "FETCH 1 (RFC822.SIZE BODY.PEEK[])")
			for _, cmd := range cmds {
				rs := cutFetchRecords(t, p, box, cmd, size)
				var got []string
				named, marked := false, false
				for _, r := range rs {
					got = append(got, fmt.Sprintf("%s: messages %d content %d uids %v unnamed %d", r.Kind, r.Messages, r.ContentBytes, r.UIDs, r.Unnamed))
					named = named || (r.Messages > 0 && slices.Contains(r.UIDs, 1))
					marked = marked || r.Unnamed > 0
				}
				switch {
				case named:
				case marked && strings.HasSuffix(cmd, " UID)"):
					t.Logf("%s: %s sent UID after the text, as asked; recorded as unnamed: %q", name, cmd, got)
				default:
					t.Errorf("%s: the client read half of UID 1 through %s and hung up; the records name no UID 1 with content: %q", name, cmd, got)
				}
			}
		})
	}
}
