package proxy

import (
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/imapwarden/imapwarden/internal/dovecottest"
	"github.com/imapwarden/imapwarden/tlsterm"
)

// BenchmarkDovecot compares the same client work made directly to Dovecot's
// implicit-TLS port and through the proxy (TLS to the proxy, plaintext
// loopback to Dovecot), in one run:
//
//	go test -run '^$' -bench BenchmarkDovecot -benchtime 200x ./proxy/
func BenchmarkDovecot(b *testing.B) {
	h := newDovecotHarness(b, func(dc *dovecottestServer) *Backend {
		return &Backend{Name: "dovecot", Addr: dc.Addr, Security: BackendPlain, Login: LoginCommand}
	}, func(o *Options) { o.Logger = zap.NewNop() })
	big := bigMessage(1 << 20)
	h.dc.Deliver(b, "alice", "INBOX", big)
	// 1000 small messages in another mailbox, appended over IMAP.
	setup := dialTLSInsecure(b, h.dc.TLSAddr)
	setup.expect("* OK")
	setup.transact("s1 LOGIN alice alice-pw", "s1 OK")
	setup.transact("s2 CREATE Small", "s2 OK")
	var sb strings.Builder
	for i := 0; i < 1000; i++ {
		m := testMessage(i)
		fmt.Fprintf(&sb, "p%d APPEND Small {%d+}\r\n%s\r\n", i, len(m), m)
	}
	start := time.Now()
	setup.sendRaw(sb.String())
	for i := 0; i < 1000; i++ {
		tag := fmt.Sprintf("p%d", i)
		setup.expectTagged(tag, tag+" OK")
	}
	b.Logf("1000 appends in %v", time.Since(start))

	// direct-tls goes through Dovecot's own TLS; direct-plain is the
	// floor: the same fetch with no TLS and no proxy; haproxy is the
	// reference of ARCHITECTURE.md §16, a TLS-terminating relay that adds nothing.
	targets := map[string]func() *tconn{
		"direct-tls":   func() *tconn { return dialTLSInsecure(b, h.dc.TLSAddr) },
		"direct-plain": func() *tconn { return dialPlain(b, h.dc.Addr) },
		"proxy":        func() *tconn { return dialTLS(b, h.imaps) },
	}
	names := []string{"direct-tls", "direct-plain", "haproxy", "proxy"}
	if addr := startHAProxy(b, h.dc.Addr); addr != "" {
		targets["haproxy"] = func() *tconn { return dialTLS(b, addr) }
	} else {
		names = []string{"direct-tls", "direct-plain", "proxy"}
	}
	for _, name := range names {
		b.Run("fetch1MB/"+name, func(b *testing.B) {
			c := targets[name]()
			c.expect("* OK")
			c.transact("a1 LOGIN alice alice-pw", "a1 OK")
			c.transact("a2 SELECT INBOX", "a2 OK")
			b.SetBytes(int64(len(big)))
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				fetchDiscard(b, c, "f", 1)
			}
		})
	}
	// Per-command latency (ARCHITECTURE.md §16): NOOP
	// round trips in a selected mailbox, one at a time.
	for _, name := range names {
		b.Run("noop/"+name, func(b *testing.B) {
			c := targets[name]()
			c.expect("* OK")
			c.transact("a1 LOGIN alice alice-pw", "a1 OK")
			c.transact("a2 SELECT INBOX", "a2 OK")
			lat := make([]time.Duration, 0, b.N)
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				t0 := time.Now()
				c.send("n NOOP")
				c.expectTagged("n", "n OK")
				lat = append(lat, time.Since(t0))
			}
			b.StopTimer()
			slices.Sort(lat)
			b.ReportMetric(float64(lat[len(lat)/2].Nanoseconds()), "p50-ns")
			b.ReportMetric(float64(lat[len(lat)*99/100].Nanoseconds()), "p99-ns")
		})
	}
	for _, name := range names {
		b.Run("flags1000/"+name, func(b *testing.B) {
			c := targets[name]()
			c.expect("* OK")
			c.transact("a1 LOGIN alice alice-pw", "a1 OK")
			c.transact("a2 SELECT Small", "a2 OK")
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				c.send("f UID FETCH 1:* (FLAGS)")
				if n := len(c.expectTagged("f", "f OK")); n != 1000 {
					b.Fatalf("%d FETCH responses", n)
				}
			}
		})
	}
}

type dovecottestServer = dovecottest.Server

func dialTLSInsecure(t testing.TB, addr string) *tconn {
	t.Helper()
	c, err := tls.Dial("tcp", addr, &tls.Config{InsecureSkipVerify: true})
	if err != nil {
		t.Fatal(err)
	}
	tc := &tconn{t: t, c: c, br: bufioReader(c)}
	t.Cleanup(func() { c.Close() })
	return tc
}

// fetchDiscard fetches a body and throws it away without copying it whole.
func fetchDiscard(t testing.TB, c *tconn, tag string, seq int) {
	c.send(fmt.Sprintf("%s FETCH %d (BODY.PEEK[])", tag, seq))
	first := c.line()
	var size int64
	if i := strings.LastIndexByte(first, '{'); i < 0 {
		t.Fatalf("no literal in %q", first)
	} else {
		fmt.Sscanf(first[i:], "{%d}", &size)
	}
	c.c.SetReadDeadline(time.Now().Add(30 * time.Second))
	if _, err := io.CopyN(io.Discard, c.br, size); err != nil {
		t.Fatal(err)
	}
	c.expect(")")
	c.expect(tag + " OK")
}

// startHAProxy runs haproxy terminating TLS in front of backend (a plain
// TCP relay, no IMAP awareness), or returns "" when it is not installed.
func startHAProxy(b *testing.B, backend string) string {
	bin, err := exec.LookPath("haproxy")
	if err != nil {
		b.Log("haproxy not installed: no reference relay")
		return ""
	}
	dir := b.TempDir()
	certPEM, keyPEM, err := tlsterm.SelfSigned([]string{"localhost"}, time.Hour)
	if err != nil {
		b.Fatal(err)
	}
	pem := filepath.Join(dir, "pair.pem")
	os.WriteFile(pem, append(certPEM, keyPEM...), 0o600)
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	addr := ln.Addr().String()
	ln.Close()
	cfg := fmt.Sprintf(`global
  maxconn 1000
defaults
  mode tcp
  timeout connect 5s
  timeout client 1h
  timeout server 1h
frontend imaps
  bind %s ssl crt %s alpn imap
  default_backend dovecot
backend dovecot
  server d %s
`, addr, pem, backend)
	cf := filepath.Join(dir, "haproxy.cfg")
	os.WriteFile(cf, []byte(cfg), 0o600)
	cmd := exec.Command(bin, "-db", "-f", cf)
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	for i := 0; i < 50; i++ {
		if c, err := net.Dial("tcp", addr); err == nil {
			c.Close()
			return addr
		}
		time.Sleep(100 * time.Millisecond)
	}
	b.Fatal("haproxy did not start")
	return ""
}
