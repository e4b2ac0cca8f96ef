package difftest

import (
	"strings"
	"testing"
)

// TestAdjacentUTF7RunsRefused: a BASE64 run right after another
// ("&AOQ-&AOQ-", RFC 3501 §5.1.3 writes one run) has two readings: Dovecot
// and Cyrus refuse the name, Courier reads it as "&AOQA5A-". The proxy
// answers BAD and the backend creates nothing; the backend's own reading,
// over a direct connection, is logged as the reason.
func TestAdjacentUTF7RunsRefused(t *testing.T) {
	forEachBackend(t, func(t *testing.T, e *Env) {
		w := e.Worker(t, 0)
		for _, name := range []string{"Keep$D&AOQ-&AOQ-", "Keep$Dx&AOQ-&APw-y"} {
			o := script(t, w, "a CREATE \"$P"+name+"\"\n")
			wantStatus(t, o, "a", "BAD")
			created := w.B.Canonical("Keep") + string(w.B.Delim)
			for n, b := range o.After.Boxes {
				if _, had := o.Before.Boxes[n]; !had && !b.NoSelect && strings.HasPrefix(n, created) {
					t.Errorf("CREATE %q created %q", name, n)
				}
			}
		}
		// Last, as it changes the backend behind the harness's back.
		raw := strings.NewReplacer("$P", w.B.Prefix, "$D", string(w.B.Delim)).Replace("$PKeep$D&AOQ-&AOQ-")
		cn := w.Direct(w.Main)
		rs, err := cn.Cmd("d1", "CREATE %s", Quote(raw))
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("%s answers CREATE %q directly: %s", e.B.Name, raw, rs[len(rs)-1].Text)
		if rs, err = cn.Cmd("d2", "LIST \"\" %s", Quote(strings.TrimSuffix(raw, "&AOQ-&AOQ-")+"*")); err != nil {
			t.Fatal(err)
		}
		for _, r := range rs {
			t.Logf("%s: %s", e.B.Name, r.Text)
		}
	})
}
