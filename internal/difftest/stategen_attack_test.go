package difftest

import (
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
)

// stategenSteps is TestAttackGeneratedState's steps in a normal run: a
// few pipelines per backend, a new seed each run (STATEGEN_STEPS for more).
const stategenSteps = 20

// TestAttackGeneratedState (STATEGEN_STEPS=n steps, default stategenSteps) sends random pipelines of selection changes
// (SELECT, EXAMINE of held, plain, missing mailboxes, with and without
// parameters; CLOSE, UNSELECT, ENABLE) and destructive commands (STORE,
// EXPUNGE, MOVE, by sequence number and UID, with SEARCHRES "$"), with
// tags reused and completions waited for at random: held mail stays and
// every change is one a forwarded command, as audited, accounts for
// (ARCHITECTURE.md §8, §9).
func TestAttackGeneratedState(t *testing.T) {
	sd, steps := genRun(t, "STATEGEN_STEPS", stategenSteps)
	forEachBackend(t, func(t *testing.T, e *Env) {
		w := e.Worker(t, 0)
		r := rand.New(rand.NewPCG(sd, uint64(len(e.B.Name))+7))
		q := func(l string) string { return Quote(e.B.Wire(l)) }
		boxes := []string{q("Legal"), q("Legal/Sub"), q("Legal"), q("Keep"), q("Victim"), "INBOX", q("Nope"), q("Legal/Nope")}
		sel := []string{"SELECT", "EXAMINE"}
		params := []string{"", "", "", " (CONDSTORE)", " (QRESYNC (1 1))", " ()", " (FOO)"}
		other := []string{
			`STORE 1:* +FLAGS.SILENT (\Deleted)`, `UID STORE 1:* +FLAGS (\Deleted)`, "EXPUNGE", "UID EXPUNGE 1:*",
			"CLOSE", "UNSELECT", "NOOP", "CHECK", "MOVE 1 " + q("Keep"), "UID MOVE 1:* " + q("Keep"),
			`SEARCH RETURN (SAVE) ALL`, `UID STORE $ +FLAGS.SILENT (\Deleted)`, "UID EXPUNGE $", "MOVE $ " + q("Keep"),
			"ENABLE QRESYNC", "ENABLE CONDSTORE", `STORE 1 -FLAGS (\Deleted)`, "FETCH 1 (FLAGS)", "COPY 1:* " + q("Keep"),
			"LOGOUT",
		}
		reported := 0
		for i := range steps {
			var sb strings.Builder
			var tags []string
			n := 4 + r.IntN(8)
			for j := range n {
				tag := fmt.Sprintf("t%d", j)
				if len(tags) > 0 && r.IntN(4) == 0 {
					fmt.Fprintf(&sb, "!wait %s\n", tags[r.IntN(len(tags))])
				}
				var c string
				if r.IntN(3) == 0 {
					c = sel[r.IntN(2)] + " " + boxes[r.IntN(len(boxes))] + params[r.IntN(len(params))]
				} else {
					c = other[r.IntN(len(other))]
				}
				fmt.Fprintf(&sb, "%s %s\n", tag, c)
				tags = append(tags, tag)
			}
			st, err := ParseScript(e.B, []byte(sb.String()))
			if err != nil {
				t.Fatal(err)
			}
			st.Label = fmt.Sprintf("stategen %d %q", i, sb.String())
			_, probs := w.Run(st)
			for _, p := range probs {
				if reported++; reported <= 40 {
					t.Errorf("%s: %s", st.Label, p)
				}
			}
		}
	})
}
