package difftest

import (
	"fmt"
	"math/rand/v2"
	"os"
	"strconv"
	"strings"
	"testing"
)

// mutateName returns a random misspelling of the wire name w: characters
// inserted, replaced, dropped or case-flipped, modified UTF-7 runs of
// random base64, UTF-8 look-alikes, other namespaces' prefixes.
func mutateName(r *rand.Rand, w string, d byte) string {
	pieces := []string{
		string(d), string(d) + string(d), ".", "/", "&", "-", "&-", "+", ",", "%", "*", "~", "#", "^", "!", "'", ":", ";", "=", "?", "@", "_", "`", "|", "$",
		"[", "]", "{", "}", "(", ")", " ", "\"", "\\", "a", "A", "Z", "0", "9",
		"\u00fc", "u\u0308", "\u00a0", "\u2215", "\uff0e", "\u2024", "\ufeff", "\u200b", "\ufffd", "\u0130", "\u017f", "\u212a",
		"\x80", "\xc3", "\xff", "\xfc",
	}
	const b64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+,"
	piece := func() string {
		if r.IntN(4) == 0 {
			n := 1 + r.IntN(8)
			var sb strings.Builder
			sb.WriteByte('&')
			for range n {
				sb.WriteByte(b64[r.IntN(len(b64))])
			}
			if r.IntN(5) != 0 {
				sb.WriteByte('-')
			}
			return sb.String()
		}
		return pieces[r.IntN(len(pieces))]
	}
	s := w
	for range 1 + r.IntN(3) {
		i := r.IntN(len(s) + 1)
		switch r.IntN(6) {
		case 0, 1:
			s = s[:i] + piece() + s[i:]
		case 2:
			if i < len(s) {
				s = s[:i] + piece() + s[i+1:]
			}
		case 3:
			if i < len(s) {
				s = s[:i] + s[i+1:]
			}
		case 4:
			if i < len(s) {
				c := s[i]
				switch {
				case c >= 'a' && c <= 'z':
					c -= 32
				case c >= 'A' && c <= 'Z':
					c += 32
				}
				s = s[:i] + string(c) + s[i+1:]
			}
		case 5:
			pre := []string{"INBOX" + string(d), "inbox" + string(d), "user" + string(d) + "alice" + string(d),
				"user" + string(d) + "ALICE" + string(d), "#shared" + string(d), "shared" + string(d), "~/", "/", "#mh/", "%" + string(d)}
			s = pre[r.IntN(len(pre))] + s
		}
	}
	return s
}

// spellName writes s as a quoted string, a literal or an atom.
func spellName(r *rand.Rand, s string) []seg {
	switch r.IntN(4) {
	case 0:
		return []seg{L(s, litSync)}
	case 1:
		return []seg{L(s, litPlus)}
	default:
		return []seg{T(`"` + escapeQ(s) + `"`)}
	}
}

// genRun returns the seed and the number of steps of a generated attack
// run, from env (steps) and DIFFTEST_SEED; without env, def steps, and
// with def 0 the test skips: a run takes minutes on the three backends.
func genRun(t *testing.T, env string, def int) (uint64, int) {
	steps, err := strconv.Atoi(os.Getenv(env))
	if err != nil || steps <= 0 {
		steps = def
	}
	if steps <= 0 {
		t.Skipf("%s unset: a generated run takes minutes", env)
	}
	sd := seed()
	t.Logf("DIFFTEST_SEED=%d %s=%d", sd, env, steps)
	return sd, steps
}

// TestAttackGeneratedNames (NAMEGEN_STEPS=n to run) sends random misspellings of the fixtures'
// names (STATUS, SUBSCRIBE, EXAMINE, CREATE; with NAMEGEN_DESTRUCTIVE,
// DELETE and RENAME) through the proxy to each backend; the harness checks that each answer describes
// the mailbox the proxy audited (ARCHITECTURE.md §7, §10).
func TestAttackGeneratedNames(t *testing.T) {
	sd, steps := genRun(t, "NAMEGEN_STEPS", 0)
	destructive := os.Getenv("NAMEGEN_DESTRUCTIVE") != ""
	names := []string{"INBOX", "Legal", "Legal/Sub", "Sent", "Drafts", "Keep", "Victim", "Entwürfe"}
	forEachBackend(t, func(t *testing.T, e *Env) {
		w := e.Worker(t, 0)
		r := rand.New(rand.NewPCG(sd, uint64(len(e.B.Name))))
		reported := 0
		counts := map[string]int{}
		defer func() { t.Logf("completions: %v", counts) }()
		for i := range steps {
			st := &Step{Label: fmt.Sprintf("namegen %d", i)}
			var labels []string
			per := 25
			if destructive {
				per = 8
			}
			for j := range per {
				n := mutateName(r, e.B.Wire(names[r.IntN(len(names))]), e.B.Delim)
				tag := fmt.Sprintf("g%d", j)
				var verb string
				switch k := r.IntN(10); {
				case destructive && k < 5:
					verb = "DELETE"
				case destructive:
					verb = "RENAME"
				case k < 6:
					verb = "STATUS"
				case k < 7:
					verb = "SUBSCRIBE"
				case k < 8 || j < 20:
					verb = "EXAMINE"
				default:
					// Last: a mailbox created in the step is not in the
					// state before it, which the STATUS checks read.
					verb = "CREATE"
				}
				if verb == "SUBSCRIBE" && e.B.Name == "courier" && strings.Contains(n, "shared") {
					// Courier keeps subscriptions to shared folders
					// apart from LSUB.
					verb = "STATUS"
				}
				segs := append([]seg{T(" " + verb + " ")}, spellName(r, n)...)
				switch verb {
				case "STATUS":
					segs = append(segs, T(" (MESSAGES)"))
				case "RENAME":
					segs = append(segs, T(" "+Quote(e.B.Wire(fmt.Sprintf("Stolen%d", j)))))
				}
				st.Cmds = append(st.Cmds, Build(tag, segs...))
				labels = append(labels, fmt.Sprintf("%s %s %q", tag, verb, n))
			}
			st.Label = strings.Join(labels, "; ")
			o, probs := w.Run(st)
			for _, c := range st.Cmds {
				counts[status(o, c.Tag)]++
			}
			for _, p := range probs {
				if reported++; reported <= 40 {
					t.Errorf("%s: %s", st.Label, p)
				}
			}
		}
	})
}
