package proxy

import (
	"fmt"
	"go/ast"
	"go/token"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/imapwarden/imapwarden/proxy/imapwire"
)

func TestMetrics(t *testing.T) {
	reg := prometheus.NewPedanticRegistry()
	m, err := NewMetrics(reg)
	if err != nil {
		t.Fatal(err)
	}
	m.Init([]string{"imaps", "imap"}, nil, nil)
	// Every close reason's series is there before any session closed.
	if n := testutil.CollectAndCount(m.closed); n != 2*len(CloseReasons()) {
		t.Errorf("%d sessions_closed_total series after Init, want %d", n, 2*len(CloseReasons()))
	}
	h := newHarness(t, func(o *Options) {
		o.Metrics = m
		o.Decider = funcDecider(func(in *DecisionInput) Decision {
			switch {
			case in.Point == PointCommand && in.Command.Name == "DELETE":
				return Decision{Reason: "no"}
			case in.Point == PointCommand && in.Command.Name == "RENAME":
				return Decision{Reason: "no", Disconnect: true}
			}
			return Decision{Allow: true}
		})
	})
	c := dialTLS(t, h.imaps)
	c.expect("* OK")
	c.transact("a0 LOGIN alice wrong", "a0 NO")
	c.transact("a1 LOGIN alice alice-pw", "a1 OK")
	c.transact("a2 SELECT INBOX", "a2 OK")
	c.transact("a3 FETCH 1:2 (BODY.PEEK[])", "a3 OK")
	c.transact("a4 DELETE INBOX", "a4 NO [NOPERM]")
	c.send("a5 LOGOUT")
	c.expectClosed("* BYE", "a5 OK")
	p := dialPlain(t, h.starttls)
	p.expect("* OK")
	p.sendRaw("GET / HTTP/1.0\r\n\r\n")
	p.expectClosed("* BYE")
	q := dialPlain(t, h.starttls)
	q.expect("* OK")
	q.send("z LOGOUT")
	q.expectClosed("* BYE", "z OK")
	d := dialTLS(t, h.imaps)
	d.expect("* OK")
	d.transact("b1 LOGIN alice alice-pw", "b1 OK")
	d.send("b2 RENAME INBOX x")
	d.expectClosed("* BYE [NOPERM]")
	waitFor(t, func() bool {
		return testutil.ToFloat64(m.sessions.WithLabelValues("imaps")) == 0 && testutil.ToFloat64(m.sessions.WithLabelValues("imap")) == 0
	})

	for _, tc := range []struct {
		c    prometheus.Collector
		want float64
	}{
		{m.connections.WithLabelValues("imaps"), 2},
		{m.connections.WithLabelValues("imap"), 2},
		{m.auth.WithLabelValues("LOGIN", "ok"), 2},
		{m.auth.WithLabelValues("LOGIN", "credentials"), 1},
		{m.commands.WithLabelValues("FETCH", "ok"), 1},
		{m.commands.WithLabelValues("DELETE", "denied"), 1},
		{m.handshakes.WithLabelValues("imaps", "ok", "TLS1.3"), 2},
		{m.backendDials.WithLabelValues("mem", "ok"), 3},
		{m.security.WithLabelValues("non-imap-client"), 1},
		// A LOGOUT ends the session as a logout, whether the proxy
		// answers it (before login) or the backend (RFC 9051 §6.1.3).
		{m.closed.WithLabelValues("imaps", CloseLogout.String()), 1},
		{m.closed.WithLabelValues("imaps", CloseBackendBye.String()), 0},
		{m.closed.WithLabelValues("imap", CloseLogout.String()), 1},
		{m.closed.WithLabelValues("imaps", ClosePolicyDisconnect.String()), 1},
		{m.closed.WithLabelValues("imap", CloseNonIMAPClient.String()), 1},
		{m.closed.WithLabelValues("imaps", CloseClientClosed.String()), 0},
	} {
		if got := testutil.ToFloat64(tc.c); got != tc.want {
			t.Errorf("%v = %v, want %v", tc.c.(prometheus.Metric).Desc(), got, tc.want)
		}
	}
	if got := testutil.ToFloat64(m.toClient); got < float64(2*len(testMessage(1))) {
		t.Errorf("bytes to client %v", got)
	}
	problems, err := testutil.GatherAndLint(reg)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Errorf("lint: %s: %s", p.Metric, p.Text)
	}
	// No user, address or mailbox ever becomes a label value.
	mfs, _ := reg.Gather()
	for _, mf := range mfs {
		for _, mm := range mf.GetMetric() {
			for _, l := range mm.GetLabel() {
				if v := l.GetValue(); strings.Contains(v, "alice") || strings.Contains(v, "127.0.0.1") || strings.Contains(v, "INBOX") {
					t.Errorf("%s has label %s=%q", mf.GetName(), l.GetName(), v)
				}
			}
		}
	}
}

// Metrics.command's resolved children count into the same series as
// WithLabelValues, created when they were: the same commands and results
// (the table's names, unknown ones as "other", a table name in another
// case under its own label, a result outside commandResults) give the
// same exposition as the vectors driven directly. A known command costs
// no allocation once its children are resolved.
func TestMetricsCommandChildren(t *testing.T) {
	regFast, regRef := prometheus.NewRegistry(), prometheus.NewRegistry()
	fast, err := NewMetrics(regFast)
	if err != nil {
		t.Fatal(err)
	}
	ref, err := NewMetrics(regRef)
	if err != nil {
		t.Fatal(err)
	}
	byLabels := func(name, result string, d time.Duration) {
		name = commandLabel(name)
		ref.commands.WithLabelValues(name, result).Inc()
		if result != "denied" {
			ref.commandDuration.WithLabelValues(name).Observe(d.Seconds())
		}
	}
	names := []string{"XYZZY", "noop", "Fetch"}
	for _, s := range imapwire.Specs() {
		names = append(names, s.Name)
	}
	results := append(commandResults[:], "other-result")
	for i, name := range names {
		for j, result := range results {
			if (i+j)%3 == 0 {
				continue // some series stay unused: neither side creates them
			}
			for k := range 2 {
				d := time.Duration(i*j+k) * time.Millisecond
				fast.command(name, result, d)
				byLabels(name, result, d)
			}
		}
	}
	gathered := func(g prometheus.Gatherer) string {
		mfs, err := g.Gather()
		if err != nil {
			t.Fatal(err)
		}
		// When a series was made differs between the two registries.
		return created.ReplaceAllString(fmt.Sprint(mfs), "")
	}
	if got, want := gathered(regFast), gathered(regRef); got != want {
		i := 0
		for i < min(len(got), len(want)) && got[i] == want[i] {
			i++
		}
		t.Errorf("exposition differs at %d:\n%.300s\nwant\n%.300s", i, got[max(0, i-100):], want[max(0, i-100):])
	}
	// The resolved children are what counted.
	if cs := fast.bySpec["NOOP"]; cs == nil || cs.counters[0].Load() == nil || cs.duration.Load() == nil {
		t.Error("NOOP's children were not kept")
	}
	if fast.bySpec["noop"] != nil {
		t.Error("a table name in another case has an entry of its own")
	}
	if n := testing.AllocsPerRun(100, func() { fast.command("NOOP", "ok", time.Millisecond) }); n != 0 {
		t.Errorf("Metrics.command of a NOOP: %.1f allocations, want 0", n)
	}
}

var created = regexp.MustCompile(`created_timestamp:\{[^}]*\}`)

// BenchmarkMetricsCommand is the per-command metrics cost (a NOOP
// completing OK).
//
//	go test -run '^$' -bench BenchmarkMetricsCommand -benchmem ./proxy/
func BenchmarkMetricsCommand(b *testing.B) {
	m, err := NewMetrics(prometheus.NewRegistry())
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		m.command("NOOP", "ok", time.Millisecond)
	}
}

// Every (limit, key) series Init makes for the proxy's own limits is one
// a LimitResult of the proxy names, and every such LimitResult has its
// series made: a series made but never hit is a stale label, one hit but
// never made hides its first hit from rate() (ARCHITECTURE.md §14).
func TestProxyLimitHitsListed(t *testing.T) {
	fset, files := parseProxyFiles(t)
	consts := map[string]string{}
	for _, f := range files {
		for _, d := range f.Decls {
			if g, ok := d.(*ast.GenDecl); ok && g.Tok == token.CONST {
				for _, sp := range g.Specs {
					vs := sp.(*ast.ValueSpec)
					for i, n := range vs.Names {
						if i < len(vs.Values) {
							if bl, ok := vs.Values[i].(*ast.BasicLit); ok && bl.Kind == token.STRING {
								consts[n.Name], _ = strconv.Unquote(bl.Value)
							}
						}
					}
				}
			}
		}
	}
	value := func(e ast.Expr) string {
		switch e := e.(type) {
		case *ast.BasicLit:
			v, _ := strconv.Unquote(e.Value)
			return v
		case *ast.Ident:
			if v, ok := consts[e.Name]; ok {
				return v
			}
		}
		t.Errorf("%s: a LimitResult's Limit or Key is not a constant string", fset.Position(e.Pos()))
		return ""
	}
	hit := map[[2]string]bool{}
	for _, f := range files {
		ast.Inspect(f, func(n ast.Node) bool {
			cl, ok := n.(*ast.CompositeLit)
			if !ok {
				return true
			}
			if id, ok := cl.Type.(*ast.Ident); !ok || id.Name != "LimitResult" {
				return true
			}
			var h [2]string
			named := false
			for _, el := range cl.Elts {
				kv := el.(*ast.KeyValueExpr)
				switch kv.Key.(*ast.Ident).Name {
				case "Limit":
					h[0], named = value(kv.Value), true
				case "Key":
					h[1] = value(kv.Value)
				}
			}
			if named {
				hit[h] = true
			}
			return true
		})
	}
	made := map[[2]string]bool{}
	for _, h := range proxyLimitHits {
		made[h] = true
		if !hit[h] {
			t.Errorf("limit hit series %v is made at Init but no LimitResult of the proxy names it", h)
		}
	}
	for h := range hit {
		if !made[h] {
			t.Errorf("the proxy reports limit hit %v, whose series Init does not make", h)
		}
	}
	if len(hit) == 0 {
		t.Fatal("found no LimitResult in the proxy's sources")
	}
}
