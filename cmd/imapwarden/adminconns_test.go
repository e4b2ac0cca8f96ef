package main

import (
	"bufio"
	"fmt"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/imapwarden/imapwarden/internal/testenv"
)

// TestAdminConnectionsPerAddress: one address holds
// admin.max_connections_per_ip connections at most, even busy ones
// (requests it is slow to send): the next from it is closed at accept,
// while another address's tokened client (keep-alive, as Prometheus
// scrapes) and the kubelet's probes are served.
func TestAdminConnectionsPerAddress(t *testing.T) {
	// Long enough that the slow requests stay open for the test.
	f := startAdminFixture(t, "  read_header_timeout: 10m\n  max_connections_per_ip: 4")
	const other = "127.0.0.2"
	dial := func() net.Conn {
		d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(other)}}
		c, err := d.Dial("tcp", f.admin)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c
	}
	// Four requests begun, never finished: busy, never shed.
	for range 4 {
		if _, err := fmt.Fprintf(dial(), "GET /healthz HTTP/1.1\r\n"); err != nil {
			t.Fatal(err)
		}
	}
	// A fifth from the same address: closed before it is read.
	c := dial()
	c.SetDeadline(time.Now().Add(testenv.IOTimeout()))
	fmt.Fprintf(c, "GET /healthz HTTP/1.1\r\nHost: imapwarden\r\n\r\n")
	if resp, err := http.ReadResponse(bufio.NewReader(c), nil); err == nil {
		resp.Body.Close()
		t.Errorf("a fifth connection of %s (max_connections_per_ip 4) was served: %s", other, resp.Status)
	}

	// An honest tokened client elsewhere, one kept-alive connection.
	for i := range 5 {
		if code, body := f.do("GET", "/sessions", testReadToken, "", ""); code != http.StatusOK {
			t.Fatalf("request %d of a tokened client: %d %s", i, code, body)
		}
	}
	for _, path := range []string{"/healthz", "/readyz"} {
		if code, body := f.do("GET", path, "", "", ""); code != http.StatusOK {
			t.Errorf("probe %s: %d %s", path, code, body)
		}
	}
}

// TestAdminConnectionsPerAddressDefault: the default share of one
// address is a quarter of the pool, and a share over the pool is refused.
func TestAdminConnectionsPerAddressDefault(t *testing.T) {
	if defaultAdminTimeouts.MaxConnectionsPerIP*4 > defaultAdminTimeouts.MaxConnections {
		t.Errorf("default max_connections_per_ip %d is over a quarter of max_connections %d",
			defaultAdminTimeouts.MaxConnectionsPerIP, defaultAdminTimeouts.MaxConnections)
	}
	env := newServeEnv(t)
	for _, c := range []struct {
		admin string
		want  int // 0: refused
	}{
		{"{address: \"127.0.0.1:0\", max_connections: 8}", 2},
		{"{address: \"127.0.0.1:0\", max_connections: 8, max_connections_per_ip: 8}", 8},
		{"{address: \"127.0.0.1:0\", max_connections: 8, max_connections_per_ip: 9}", 0},
		{"{address: \"127.0.0.1:0\", max_connections_per_ip: 0}", 0},
	} {
		cfg, err := parseConfig(fmt.Appendf(nil, `
listeners: [{address: "127.0.0.1:0", mode: tls}]
tls: {certificates: [{cert: %s, key: %s}]}
backends: {mem: {address: %q, security: plain}}
admin: %s
`, env.cert.Cert, env.cert.Key, env.backend, c.admin))
		if err != nil {
			t.Fatal(err)
		}
		s, err := build(cfg, zap.NewNop())
		switch {
		case c.want == 0 && err == nil:
			t.Errorf("%s accepted", c.admin)
		case c.want != 0 && err != nil:
			t.Errorf("%s: %v", c.admin, err)
		case c.want != 0 && s.adminTimeouts.MaxConnectionsPerIP != c.want:
			t.Errorf("%s: max_connections_per_ip %d, want %d", c.admin, s.adminTimeouts.MaxConnectionsPerIP, c.want)
		}
	}
}

// TestAdminRequestBounds: a request's body and header are bounded by
// admin.max_body_bytes and admin.max_header_bytes (413, 431), on the API
// as on the console, and a configuration below a header that can hold a
// token is refused.
func TestAdminRequestBounds(t *testing.T) {
	f := startAdminFixture(t, "  max_body_bytes: 1024\n  max_header_bytes: 4096")
	body := func(n int) string { return strings.Repeat(" ", n) + `{"user":"nobody"}` }
	if code, out := f.do("POST", "/ratelimit/unlock", testWriteToken, "application/json", body(900)); code == http.StatusRequestEntityTooLarge {
		t.Errorf("a body under max_body_bytes: %d %s", code, out)
	}
	if code, out := f.do("POST", "/ratelimit/unlock", testWriteToken, "application/json", body(1100)); code != http.StatusRequestEntityTooLarge {
		t.Errorf("a body over max_body_bytes: %d %s, want 413", code, out)
	}
	if code, out := f.do("POST", "/console/login", "", "application/x-www-form-urlencoded", "token="+strings.Repeat("x", 2000)); code == http.StatusOK || code == http.StatusSeeOther {
		t.Errorf("a console sign-in over max_body_bytes: %d %s", code, out)
	}
	req, err := http.NewRequest("GET", "http://"+f.admin+"/sessions", nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+testReadToken)
	req.Header.Set("X-Pad", strings.Repeat("p", 8192))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusRequestHeaderFieldsTooLarge {
		t.Errorf("a header over max_header_bytes: %d, want 431", resp.StatusCode)
	}
	if code, out := f.do("GET", "/sessions", testReadToken, "", ""); code != http.StatusOK {
		t.Errorf("an ordinary request: %d %s", code, out)
	}

	env := newServeEnv(t)
	for _, bad := range []string{"max_body_bytes: 0", "max_header_bytes: 100"} {
		cfg, err := parseConfig(fmt.Appendf(nil, `
listeners: [{address: "127.0.0.1:0", mode: tls}]
tls: {certificates: [{cert: %s, key: %s}]}
backends: {mem: {address: %q, security: plain}}
admin: {address: "127.0.0.1:0", %s}
`, env.cert.Cert, env.cert.Key, env.backend, bad))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := build(cfg, zap.NewNop()); err == nil || !strings.Contains(err.Error(), strings.SplitN(bad, ":", 2)[0]) {
			t.Errorf("admin %s: %v, want refused", bad, err)
		}
	}
}
