// Package loadtest measures the imapwarden binary from outside, as an
// operator would: a real process, real clients, the kernel's figures.
package loadtest

import (
	"bufio"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/imapwarden/imapwarden/internal/dovecottest"
	"github.com/imapwarden/imapwarden/tlsterm"
)

// BenchmarkIdleSessionRSS reports the proxy's resident memory per
// authenticated TLS session waiting in IDLE (ARCHITECTURE.md §16: ≤ 16 KiB):
//
//	go test -run '^$' -bench IdleSessionRSS -benchtime 1x ./internal/loadtest/
//
// Dovecot runs at most 100 imap processes by default, hence 90 sessions.
func BenchmarkIdleSessionRSS(b *testing.B) {
	const sessions = 90
	dovecottest.Require(b)
	dc := dovecottest.Start(b, dovecottest.Options{})
	dir := b.TempDir()
	bin := imapwardenBinary(b)
	cf, err := tlsterm.WriteSelfSigned(dir, []string{"localhost"})
	if err != nil {
		b.Fatal(err)
	}
	addr, adminAddr := freeAddr(b), freeAddr(b)
	cfg := fmt.Sprintf(`listeners: [{address: %q, mode: tls}]
tls: {certificates: [{cert: %q, key: %q}]}
backends: {dovecot: {address: %q, security: plain}}
log: {level: error}
admin: {address: %q, pprof: true}
rate_limits: {enabled: false}
`, addr, cf.Cert, cf.Key, dc.Addr, adminAddr)
	cfgFile := filepath.Join(dir, "imapwarden.yaml")
	os.WriteFile(cfgFile, []byte(cfg), 0o600)
	cmd := exec.Command(bin, "serve", "-c", cfgFile)
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	defer func() { cmd.Process.Kill(); cmd.Wait() }()
	var conns []net.Conn
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	open := func() {
		var c *tls.Conn
		for i := 0; ; i++ {
			c, err = tls.Dial("tcp", addr, &tls.Config{InsecureSkipVerify: true})
			if err == nil {
				break
			}
			if i > 50 {
				b.Fatal(err)
			}
			time.Sleep(100 * time.Millisecond)
		}
		r := bufio.NewReader(c)
		say := func(cmd, want string) {
			fmt.Fprintf(c, "%s\r\n", cmd)
			for {
				l, err := r.ReadString('\n')
				if err != nil {
					b.Fatalf("%s: %v", cmd, err)
				}
				if strings.HasPrefix(l, want) {
					return
				}
			}
		}
		r.ReadString('\n')
		say("a LOGIN alice alice-pw", "a OK")
		say("b SELECT INBOX", "b OK")
		say("c IDLE", "+")
		conns = append(conns, c)
	}
	// Warm up: pools, runtime, first TLS handshakes.
	for i := 0; i < 10; i++ {
		open()
	}
	settle(b, adminAddr)
	before, goBefore, grBefore := rssKiB(b, cmd.Process.Pid), goInuseKiB(b, adminAddr), goMetric(b, adminAddr, "go_goroutines")
	for i := 0; i < sessions; i++ {
		open()
	}
	settle(b, adminAddr)
	after, goAfter, grAfter := rssKiB(b, cmd.Process.Pid), goInuseKiB(b, adminAddr), goMetric(b, adminAddr, "go_goroutines")
	if f := os.Getenv("LOADTEST_HEAP_PROFILE"); f != "" {
		// For looking into what a session holds: go tool pprof -top FILE
		resp, err := http.Get("http://" + adminAddr + "/debug/pprof/heap")
		if err == nil {
			data, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			os.WriteFile(f, data, 0o644)
		}
	}
	b.ReportMetric(float64(after-before)/sessions, "RSS-KiB/session")
	b.ReportMetric(float64(goAfter-goBefore)/sessions, "heap+stack-KiB/session")
	b.ReportMetric(float64(after), "RSS-KiB-total")
	b.ReportMetric((grAfter-grBefore)/sessions, "goroutines/session")
}

// settle lets the process reach its steady state: the sessions park
// (limits.park_after, 10 ms), a GC (through pprof's heap endpoint, as an
// operator can ask) empties the buffer pools and frees the stacks of the
// goroutines parking ended, and the runtime's scavenger gets time to
// return freed pages.
func settle(b *testing.B, admin string) {
	time.Sleep(3 * time.Second)
	for i := 0; i < 2; i++ {
		resp, err := http.Get("http://" + admin + "/debug/pprof/heap?gc=1")
		if err != nil {
			b.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
	time.Sleep(3 * time.Second)
}

// goInuseKiB is what the Go runtime has in use for heap objects and
// goroutine stacks, from /metrics.
func goInuseKiB(b *testing.B, admin string) int {
	return int((goMetric(b, admin, "go_memstats_heap_inuse_bytes") + goMetric(b, admin, "go_memstats_stack_inuse_bytes")) / 1024)
}

// goMetric is one unlabelled metric of /metrics.
func goMetric(b *testing.B, admin, name string) float64 {
	resp, err := http.Get("http://" + admin + "/metrics")
	if err != nil {
		b.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	for _, l := range strings.Split(string(body), "\n") {
		if v, ok := strings.CutPrefix(l, name+" "); ok {
			f, _ := strconv.ParseFloat(v, 64)
			return f
		}
	}
	b.Fatalf("no %s in /metrics", name)
	return 0
}
