package proxy

import (
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/imapwarden/imapwarden/internal/testenv"
)

// preAuthHarness is a proxy with a cap of max connections awaiting login,
// metrics, and refusals recorded at most once an hour (so that only the
// first and the flush at Close can be records, however slow the machine).
func preAuthHarness(t *testing.T, max int, opts ...harnessOption) (*harness, *Metrics) {
	t.Helper()
	m, err := NewMetrics(prometheus.NewPedanticRegistry())
	if err != nil {
		t.Fatal(err)
	}
	h := newHarness(t, append([]harnessOption{func(o *Options) {
		o.Metrics = m
		o.Limits.MaxPreAuthConnections = max
	}}, opts...)...)
	h.srv.preAuth.mu.Lock()
	h.srv.preAuth.every = time.Hour
	h.srv.preAuth.mu.Unlock()
	return h, m
}

// expectRefusedTLS: on the implicit-TLS port a refused connection is
// closed before the handshake, without a byte.
func expectRefusedTLS(t *testing.T, addr string) {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetReadDeadline(time.Now().Add(testenv.IOTimeout()))
	n, err := c.Read(make([]byte, 1))
	if n != 0 || err == nil || isTimeout(err) {
		t.Fatalf("refused TLS connection: read %d bytes, %v; want a close", n, err)
	}
}

// TestMaxPreAuthConnections holds the cap's worth of real connections
// awaiting login on both kinds of listener, then checks that more are
// turned away (BYE [UNAVAILABLE] on STARTTLS, a close before the TLS
// handshake), counted one by one in the metric but audited in two records,
// and that a login or a close frees a slot.
func TestMaxPreAuthConnections(t *testing.T) {
	const max, extra = 100, 150
	h, m := preAuthHarness(t, max)
	held := make([]*tconn, 0, max)
	for i := range max {
		var c *tconn
		if i%2 == 0 {
			c = dialTLS(t, h.imaps)
		} else {
			c = dialPlain(t, h.starttls)
		}
		c.expect("* OK")
		held = append(held, c)
	}
	if got := testutil.ToFloat64(m.preAuth); got != max {
		t.Fatalf("imapwarden_preauth_connections = %v, want %d", got, max)
	}
	for i := range extra {
		if i%2 == 0 {
			expectRefusedTLS(t, h.imaps)
		} else {
			c := dialPlain(t, h.starttls)
			c.expectClosed("* BYE [UNAVAILABLE] ")
		}
	}
	hits := m.limitHits.WithLabelValues(LimitMaxPreAuthConnections, "server")
	if got := testutil.ToFloat64(hits); got != extra {
		t.Errorf("limit hits %v, want %d", got, extra)
	}
	h.audit.mu.Lock()
	if n := len(h.audit.limits); n != 1 || h.audit.limits[0].Count != 1 || h.audit.limits[0].Limit != LimitMaxPreAuthConnections ||
		h.audit.limits[0].Code != "UNAVAILABLE" {
		t.Errorf("audited %+v, want the first refusal only", h.audit.limits)
	}
	h.audit.mu.Unlock()

	// A login gives its slot back: a newcomer is greeted.
	held[0].transact("l1 LOGIN alice alice-pw", "l1 OK")
	waitFor(t, func() bool { return h.srv.preAuth.n.Load() == max-1 })
	dialPlain(t, h.starttls).expect("* OK")
	// So does a connection that ends before login.
	held[1].c.Close()
	waitFor(t, func() bool { return h.srv.preAuth.n.Load() == max-1 })
	dialTLS(t, h.imaps).expect("* OK")
	c := dialPlain(t, h.starttls)
	c.expectClosed("* BYE [UNAVAILABLE] ")

	// Close records the refusals counted since the first.
	h.srv.Close()
	h.srv.Wait()
	h.audit.mu.Lock()
	defer h.audit.mu.Unlock()
	total := 0
	for _, r := range h.audit.limits {
		total += r.Count
	}
	if len(h.audit.limits) != 2 || total != extra+1 {
		t.Errorf("audited %d records for %d refusals, want 2 for %d: %+v", len(h.audit.limits), total, extra+1, h.audit.limits)
	}
	if got := testutil.ToFloat64(m.preAuth); got != 0 {
		t.Errorf("imapwarden_preauth_connections = %v after close", got)
	}
}

// TestMaxPreAuthConnectionsProxyProtocol is the flood of issue 17:
// connections from a trusted balancer that never send their PROXY header
// held a slot each until preauth_idle, whatever the per-IP limits; the cap
// turns the next one away before its header is read.
func TestMaxPreAuthConnectionsProxyProtocol(t *testing.T) {
	const max = 40
	h, m := preAuthHarness(t, max, func(o *Options) {
		for i := range o.Listeners {
			o.Listeners[i].ProxyProtocolFrom = []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}
		}
	})
	for range max {
		dialPlain(t, h.starttls) // says nothing: the proxy waits for its header
	}
	waitFor(t, func() bool { return h.srv.preAuth.n.Load() == max })
	c := dialPlain(t, h.starttls)
	c.expectClosed("* BYE [UNAVAILABLE] ")
	expectRefusedTLS(t, h.imaps)
	if got := testutil.ToFloat64(m.limitHits.WithLabelValues(LimitMaxPreAuthConnections, "server")); got != 2 {
		t.Errorf("limit hits %v, want 2", got)
	}
}

// TestDefaultMaxPreAuthConnections: a quarter of the open-file limit,
// within bounds.
func TestDefaultMaxPreAuthConnections(t *testing.T) {
	d := DefaultMaxPreAuthConnections()
	if fds := openFileLimit(); fds > 0 && d != min(max(fds/4, 64), 4096) || d < 64 || d > 4096 {
		t.Errorf("default %d with an open-file limit of %d", d, openFileLimit())
	}
	if got := (Limits{}).withDefaults().MaxPreAuthConnections; got != d {
		t.Errorf("withDefaults: %d, want %d", got, d)
	}
}
