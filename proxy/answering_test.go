package proxy

import (
	"fmt"
	"slices"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/imapwarden/imapwarden/proxy/imapwire"
)

// TestAnsweringFetch: a FETCH response is credited to the FETCH in flight
// whose set and items it fits; when several fit, the oldest is credited
// and each names the others (attack40 finding 7).
func TestAnsweringFetch(t *testing.T) {
	fetch := func(tag string, uid bool, set string, items ...string) *inflight {
		f := &inflight{fetch: true, readContent: true}
		f.cmd = imapwire.Command{Tag: tag, Name: "FETCH", UID: uid, Set: set, FetchItems: items}
		return f
	}
	type step struct {
		resp   string
		want   string   // tag credited
		shared []string // tags with a sharedWith afterwards
	}
	tests := []struct {
		name     string
		inflight []*inflight
		steps    []step
	}{
		{"one", []*inflight{fetch("b", false, "1", "BODY.PEEK[]")},
			[]step{{"* 1 FETCH (UID 9 BODY[] {0}\r\n", "b", nil}}},
		// What no FETCH asked for (another message, other items: a
		// NOTIFY push) is none's, alone or not: a delivery of its own.
		{"one, another message", []*inflight{fetch("b", false, "1", "BODY.PEEK[]")},
			[]step{{"* 7 FETCH (UID 9 BODY[] {0}\r\n", "", nil}}},
		{"one, other items", []*inflight{fetch("b", false, "1", "BODY.PEEK[HEADER]")},
			[]step{{"* 1 FETCH (UID 9 BODY[] {0}\r\n", "", nil}}},
		{"by items", []*inflight{fetch("b", false, "1", "BODY.PEEK[]"), fetch("c", true, "1", "BODY.PEEK[HEADER]")},
			[]step{{"* 1 FETCH (UID 1 BODY[HEADER] {0}\r\n", "c", nil}, {"* 1 FETCH (UID 1 BODY[] {0}\r\n", "b", nil}}},
		{"by set", []*inflight{fetch("b", true, "3:4", "BODY.PEEK[]"), fetch("c", true, "5,9", "BODY.PEEK[]")},
			[]step{{"* 2 FETCH (UID 9 BODY[] {0}\r\n", "c", nil}, {"* 1 FETCH (UID 4 BODY[] {0}\r\n", "b", nil}}},
		{"by sequence number", []*inflight{fetch("b", false, "1", "BODY.PEEK[]"), fetch("c", false, "2", "BODY.PEEK[]")},
			[]step{{"* 2 FETCH (UID 9 BODY[] {0}\r\n", "c", nil}}},
		{"shared", []*inflight{fetch("b", false, "1:2", "BODY.PEEK[]"), fetch("c", false, "2", "BODY.PEEK[]"), fetch("d", false, "7", "BODY.PEEK[]")},
			[]step{{"* 2 FETCH (UID 9 BODY[] {0}\r\n", "b", []string{"b", "c"}}}},
		// Headers without content (ENVELOPE, BODYSTRUCTURE, BODY) answer
		// the FETCH that asked for them, a macro holding them included.
		{"headers by items", []*inflight{fetch("b", false, "1", "BODY.PEEK[]"), fetch("c", false, "1", "ENVELOPE")},
			[]step{{"* 1 FETCH (UID 1 ENVELOPE (NIL NIL NIL NIL NIL NIL NIL NIL NIL NIL))\r\n", "c", nil}}},
		{"headers by macro", []*inflight{fetch("b", false, "1", "BODYSTRUCTURE"), fetch("c", false, "1", "ALL")},
			[]step{{"* 1 FETCH (UID 1 FLAGS () ENVELOPE (NIL NIL NIL NIL NIL NIL NIL NIL NIL NIL))\r\n", "c", nil},
				{"* 1 FETCH (UID 1 BODYSTRUCTURE (\"text\" \"plain\" NIL NIL NIL \"7bit\" 5 1))\r\n", "b", nil}}},
		{"none fits", []*inflight{fetch("b", false, "1", "BODY.PEEK[]"), fetch("c", false, "2", "BODY.PEEK[]")},
			[]step{{"* 5 FETCH (UID 9 BODY[] {0}\r\n", "", nil}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := &backendPump{r: &relay{}, s: &Session{lim: new(Limits{}.withDefaults())}, w: &backendWork{}}
			for _, f := range tc.inflight {
				p.r.inflight.push(f)
			}
			for _, st := range tc.steps {
				resp, err := imapwire.ParseResponse([]byte(st.resp))
				if err != nil {
					t.Fatal(err)
				}
				dv := &p.w.dv
				*dv = delivery{num: resp.Num}
				dv.t.BeginResponse(&resp)
				dv.t.Part([]byte(st.resp))
				if strings.HasSuffix(st.resp, "{0}\r\n") {
					// Only a literal the line announces: one after
					// the attribute list is unreadable (GaveUp).
					dv.t.Literal(0)
				}
				uid, ok := dv.t.UID()
				f := p.answering(uid, ok)
				if st.want == "" && f != nil || st.want != "" && (f == nil || f.cmd.Tag != st.want) {
					t.Errorf("%q credited to %v, want %q", st.resp, f, st.want)
				}
				var shared []string
				p.r.inflight.each(func(x *inflight) {
					if names, _ := x.share.sharedWith(x, DefaultMaxAuditSharedWith); len(names) > 0 {
						shared = append(shared, x.cmd.Tag)
					}
				})
				if !slices.Equal(shared, st.shared) {
					t.Errorf("%q: shared %v, want %v", st.resp, shared, st.shared)
				}
			}
		})
	}
}

// TestAnsweringWorkBounded (attack44c): with n FETCHes pipelined,
// answering looks at each FETCH in flight at most once a response (one
// pass), never at pairs of them: n⁴ steps
// a burst before. A pipeline of FETCHes of one message, the attack, costs
// a step or two a response once they share a group. Each response is
// credited once and the records name at most Limits.MaxAuditSharedWith others.
func TestAnsweringWorkBounded(t *testing.T) {
	var steps atomic.Int64
	answerSteps = &steps
	t.Cleanup(func() { answerSteps = nil })
	all := func(n int) int { return n * (n - 1) }
	chain := func(n int) int { return n*(n+1)/2 - 1 }
	none := func(int) int { return 0 }
	shapes := []struct {
		name string
		cmd  func(i int) (set string, uid bool)
		resp func(i int) string
		// shared: the FETCHes the records share with, summed: in one
		// group all the others; chaining, those grouped so far.
		shared  func(n int) int
		cheap   bool // a few steps a response
		unasked bool // no FETCH asked for the responses: none credited
	}{
		{"one message", func(int) (string, bool) { return "1", false },
			func(int) string { return "* 1 FETCH (UID 7 BODY[HEADER] {0}\r\n" }, all, true, false},
		{"one message by UID", func(int) (string, bool) { return "7", true },
			func(int) string { return "* 1 FETCH (UID 7 BODY[HEADER] {0}\r\n" }, all, true, false},
		{"a message each", func(i int) (string, bool) { return fmt.Sprint(i + 1), false },
			func(i int) string { return fmt.Sprintf("* %d FETCH (UID %d BODY[HEADER] {0}\r\n", i+1, i+1) }, none, false, false},
		// Each response fits the next FETCH too: the groups chain into one.
		{"overlapping sets", func(i int) (string, bool) { return fmt.Sprintf("%d:%d", i+1, i+2), false },
			func(i int) string { return fmt.Sprintf("* %d FETCH (UID %d BODY[HEADER] {0}\r\n", i+2, i+2) }, chain, false, false},
		{"none fits", func(int) (string, bool) { return "1", false },
			func(int) string { return "* 2 FETCH (UID 7 BODY[HEADER] {0}\r\n" }, none, false, true},
	}
	for _, sh := range shapes {
		for _, n := range []int{100, 200, 400} {
			p := &backendPump{r: &relay{}, s: &Session{lim: new(Limits{}.withDefaults())}, w: &backendWork{}}
			for i := range n {
				set, uid := sh.cmd(i)
				f := &inflight{fetch: true, readContent: true}
				f.cmd = imapwire.Command{Tag: fmt.Sprint("f", i), Name: "FETCH", UID: uid, Set: set,
					FetchItems: []string{"FLAGS", "BODY.PEEK[HEADER]"}}
				p.r.inflight.push(f)
			}
			steps.Store(0)
			messages, named, counted := 0, 0, 0
			for i := range n {
				resp, err := imapwire.ParseResponse([]byte(sh.resp(i)))
				if err != nil {
					t.Fatal(err)
				}
				dv := &p.w.dv
				*dv = delivery{num: resp.Num}
				dv.t.BeginResponse(&resp)
				dv.t.Part([]byte(sh.resp(i)))
				dv.t.Literal(0)
				uid, ok := dv.t.UID()
				f := p.answering(uid, ok)
				switch {
				case f == nil && !sh.unasked:
					t.Fatalf("%s: response %d credited to none", sh.name, i)
				case f != nil && sh.unasked:
					t.Fatalf("%s: response %d, which no FETCH asked for, credited to %s", sh.name, i, f.cmd.Tag)
				case f != nil:
					f.messages++
				}
				// The server completes them in order.
				done := p.r.inflight.take([]byte(fmt.Sprint("f", i)))
				done.share.left()
				messages += int(done.messages)
				names, count := done.share.sharedWith(done, DefaultMaxAuditSharedWith)
				if len(names) > DefaultMaxAuditSharedWith {
					t.Errorf("%s: %s names %d FETCHes", sh.name, done.cmd.Tag, len(names))
				}
				if slices.Contains(names, done.cmd.Tag) {
					t.Errorf("%s: %s names itself", sh.name, done.cmd.Tag)
				}
				if count > 0 && count <= len(names) {
					t.Errorf("%s: %s: count %d with %d names", sh.name, done.cmd.Tag, count, len(names))
				}
				named += len(names)
				counted += max(count, len(names))
			}
			got := steps.Load()
			t.Logf("%s, %d FETCHes: %d steps, %d names, %d shared", sh.name, n, got, named, counted)
			if sh.unasked {
				messages += n // each a delivery of its own
			}
			if messages != n {
				t.Errorf("%s: %d responses credited %d times", sh.name, n, messages)
			}
			if most := int64(n * (n + 1)); got > most {
				t.Errorf("%s: %d FETCHes took %d steps, more than %d", sh.name, n, got, most)
			}
			if most := int64(3 * n); sh.cheap && got > most {
				t.Errorf("%s: %d FETCHes took %d steps, more than %d", sh.name, n, got, most)
			}
			if want := sh.shared(n); counted != want {
				t.Errorf("%s: records share %d times, want %d", sh.name, counted, want)
			}
		}
	}
}
