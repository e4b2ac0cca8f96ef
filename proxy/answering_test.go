package proxy

import (
	"slices"
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
			[]step{{"* 7 FETCH (UID 9 BODY[HEADER] {0}\r\n", "b", nil}}}, // alone: whatever it carries
		{"by items", []*inflight{fetch("b", false, "1", "BODY.PEEK[]"), fetch("c", true, "1", "BODY.PEEK[HEADER]")},
			[]step{{"* 1 FETCH (UID 1 BODY[HEADER] {0}\r\n", "c", nil}, {"* 1 FETCH (UID 1 BODY[] {0}\r\n", "b", nil}}},
		{"by set", []*inflight{fetch("b", true, "3:4", "BODY.PEEK[]"), fetch("c", true, "5,9", "BODY.PEEK[]")},
			[]step{{"* 2 FETCH (UID 9 BODY[] {0}\r\n", "c", nil}, {"* 1 FETCH (UID 4 BODY[] {0}\r\n", "b", nil}}},
		{"by sequence number", []*inflight{fetch("b", false, "1", "BODY.PEEK[]"), fetch("c", false, "2", "BODY.PEEK[]")},
			[]step{{"* 2 FETCH (UID 9 BODY[] {0}\r\n", "c", nil}}},
		{"shared", []*inflight{fetch("b", false, "1:2", "BODY.PEEK[]"), fetch("c", false, "2", "BODY.PEEK[]"), fetch("d", false, "7", "BODY.PEEK[]")},
			[]step{{"* 2 FETCH (UID 9 BODY[] {0}\r\n", "b", []string{"b", "c"}}}},
		{"none fits", []*inflight{fetch("b", false, "1", "BODY.PEEK[]"), fetch("c", false, "2", "BODY.PEEK[]")},
			[]step{{"* 5 FETCH (UID 9 BODY[] {0}\r\n", "b", []string{"b", "c"}}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := &backendPump{r: &relay{}, s: &Session{}, w: &backendWork{}}
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
				dv.t.Literal(0)
				uid, ok := dv.t.UID()
				f := p.answering(uid, ok)
				if f == nil || f.cmd.Tag != st.want {
					t.Errorf("%q credited to %v, want %s", st.resp, f, st.want)
				}
				var shared []string
				p.r.inflight.each(func(x *inflight) {
					if len(p.s.fetchShared[x]) > 0 {
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
