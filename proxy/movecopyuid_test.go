package proxy

import (
	"testing"

	"github.com/imapwarden/imapwarden/proxy/imapwire"
)

// An untagged COPYUID goes to the oldest MOVE in flight without one, and
// to a UID MOVE only when its source UIDs are ones the MOVE named: a
// COPYUID no MOVE fits is recorded nowhere (RFC 6851 §4.3).
func TestMoveCopyUIDCredit(t *testing.T) {
	mk := func(tag, name string, uid bool, set string) *inflight {
		return &inflight{cmd: imapwire.Command{Tag: tag, Name: name, UID: uid, Set: set}}
	}
	for _, c := range []struct {
		name  string
		cmds  []*inflight
		codes []string
		want  map[string]string // tag -> codeArgs
	}{
		{"one move", []*inflight{mk("a", "MOVE", false, "1:3")}, []string{"7 1:3 10:12"},
			map[string]string{"a": "7 1:3 10:12"}},
		{"pipelined moves in order", []*inflight{mk("f", "FETCH", true, "1"), mk("m1", "MOVE", true, "4,9"), mk("m2", "MOVE", true, "5:6")},
			[]string{"7 4,9 20:21", "7 5:6 22:23"}, map[string]string{"m1": "7 4,9 20:21", "m2": "7 5:6 22:23"}},
		{"source the UID MOVE did not name", []*inflight{mk("m1", "MOVE", true, "4"), mk("m2", "MOVE", true, "5")},
			[]string{"7 5 20"}, map[string]string{}},
		{"source partly outside", []*inflight{mk("m1", "MOVE", true, "4:6,9")}, []string{"7 6:9 20:23"}, map[string]string{}},
		{"uid set with star", []*inflight{mk("m1", "MOVE", true, "4:*")}, []string{"7 4:6 20:22"}, map[string]string{"m1": "7 4:6 20:22"}},
		{"malformed", []*inflight{mk("m1", "MOVE", false, "1")}, []string{"7 1"}, map[string]string{}},
		{"no move in flight", []*inflight{mk("c", "COPY", true, "1")}, []string{"7 1 20"}, map[string]string{}},
	} {
		t.Run(c.name, func(t *testing.T) {
			p := &backendPump{r: &relay{}}
			for _, f := range c.cmds {
				p.r.inflight.push(f)
			}
			for _, code := range c.codes {
				p.moveCopyUID(code)
			}
			for _, f := range c.cmds {
				if f.copyUID() != c.want[f.cmd.Tag] {
					t.Errorf("%s %s: code args %q, want %q", f.cmd.Tag, f.cmd.Name, f.copyUID(), c.want[f.cmd.Tag])
				}
			}
		})
	}
}
