package proxy

import (
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

func TestMetrics(t *testing.T) {
	reg := prometheus.NewPedanticRegistry()
	m, err := NewMetrics(reg)
	if err != nil {
		t.Fatal(err)
	}
	h := newHarness(t, func(o *Options) {
		o.Metrics = m
		o.Decider = funcDecider(func(in *DecisionInput) Decision {
			if in.Point == PointCommand && in.Command.Name == "DELETE" {
				return Decision{Reason: "no"}
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
	waitFor(t, func() bool { return testutil.ToFloat64(m.sessions.WithLabelValues("imaps")) == 0 })

	for _, tc := range []struct {
		c    prometheus.Collector
		want float64
	}{
		{m.connections.WithLabelValues("imaps"), 1},
		{m.connections.WithLabelValues("imap"), 1},
		{m.auth.WithLabelValues("LOGIN", "ok"), 1},
		{m.auth.WithLabelValues("LOGIN", "credentials"), 1},
		{m.commands.WithLabelValues("FETCH", "ok"), 1},
		{m.commands.WithLabelValues("DELETE", "denied"), 1},
		{m.handshakes.WithLabelValues("imaps", "ok", "TLS1.3"), 1},
		{m.backendDials.WithLabelValues("mem", "ok"), 2},
		{m.security.WithLabelValues("non-imap-client"), 1},
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
