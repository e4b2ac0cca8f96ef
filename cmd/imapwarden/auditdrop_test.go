package main

import (
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"

	"github.com/imapwarden/imapwarden/audit"
	"github.com/imapwarden/imapwarden/internal/testenv"
)

// Issue 13.1, audit.on_full: drop end to end: the trail on a tiny tmpfs
// fills up under load, records are dropped (fail-open: commands keep
// being acknowledged), then space is freed and the sink writes again.
// With audit.drop_readiness on (the default) /readyz stays 503 after the
// sink recovered, saying records were dropped; with it off /readyz is
// 200 again as soon as the sink works, the drops noted only in the trail.
func TestAuditDropReadiness(t *testing.T) {
	for _, on := range []bool{true, false} {
		t.Run(fmt.Sprintf("drop_readiness=%v", on), func(t *testing.T) {
			trailDir := tinyTmpfs(t)
			trail := filepath.Join(trailDir, "audit.jsonl")
			cfgFile := writeDemoConfig(t, fmt.Sprintf(
				"audit: {path: %s, fsync: interval, fsync_interval: 50ms, on_full: drop, drop_readiness: %v, drop_readiness_window: 1h}\n", trail, on))
			addrs, admin := serveConfigFile(t, cfgFile, zaptest.NewLogger(t, zaptest.Level(zap.WarnLevel)))
			adminAddr := admin.String()
			if code, body := readyz(adminAddr); code != http.StatusOK {
				t.Fatalf("/readyz before the disk filled: %d %s", code, body)
			}

			ld := startLoad(t, addrs[0].String(), 2)
			acked := &ld.acked

			filler := fillDisk(t, trailDir)
			// The sink fails: /readyz says so in either mode.
			waitReadyz(t, adminAddr, nil, func(code int, body string) bool {
				return code == http.StatusServiceUnavailable && strings.Contains(body, "no space left on device")
			})
			// Fail-open: commands go on being acknowledged meanwhile.
			acks := countAcked(acked)
			eventually(t, "commands acknowledged with the sink failing", func() bool { return countAcked(acked) >= acks+20 })
			// The load would fill the freed space again at once: from here
			// on one command per look at /readyz, enough for the writer
			// to try the sink again.
			ld.stop()
			if err := os.Remove(filler); err != nil {
				t.Fatal(err)
			}
			c := dialDemo(t, addrs[0].String())
			n := 0
			noop := func() { n++; c.cmd(fmt.Sprintf("n%d", n), "OK", "NOOP") }
			// Until the sink works again; then, while the drops are recent
			// (audit.drop_readiness_window, an hour here: no stall of a busy
			// machine outlasts it), readiness follows drop_readiness.
			var code int
			var body string
			waitReadyz(t, adminAddr, noop, func(c int, b string) bool {
				code, body = c, b
				return !strings.Contains(b, "no space left")
			})
			if on && (code != http.StatusServiceUnavailable || !strings.Contains(body, "records dropped")) {
				t.Errorf("records dropped with drop_readiness on: /readyz %d %s", code, body)
			}
			if !on && code != http.StatusOK {
				t.Errorf("records dropped with drop_readiness off: /readyz %d %s", code, body)
			}
			// The trail tells how many records it lost.
			eventually(t, "an audit.dropped record", func() bool { noop(); return droppedInTrail(t, trail) > 0 })
			if n := ld.byes.Load(); n != 0 {
				t.Errorf("%d sessions told BYE: drop mode must not end sessions", n)
			}
		})
	}
}

// writeDemoConfig writes a config file serving the demo backend over TLS,
// with an admin listener, and more; it returns its name.
func writeDemoConfig(t *testing.T, more string) string {
	t.Helper()
	dir := t.TempDir()
	cf := tlsFiles(t, dir)
	cfgFile := filepath.Join(dir, "imapwarden.yaml")
	err := os.WriteFile(cfgFile, append(fmt.Appendf(nil, `
listeners: [{address: "127.0.0.1:0", mode: tls}]
tls: {certificates: [{cert: %s, key: %s}]}
backends:
  mem: {address: %q, security: plain}
admin: {address: "127.0.0.1:0"}
`, cf.Cert, cf.Key, demoBackend(t)), more...), 0o600)
	if err != nil {
		t.Fatal(err)
	}
	return cfgFile
}

// fillDisk writes a file in dir until the file system is full and
// returns its name.
func fillDisk(t *testing.T, dir string) string {
	t.Helper()
	name := filepath.Join(dir, "filler")
	f, err := os.Create(name)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	buf := make([]byte, 4096)
	for {
		if _, err := f.Write(buf); err != nil {
			if !errors.Is(err, syscall.ENOSPC) {
				t.Fatal(err)
			}
			break
		}
	}
	// Single bytes, until not even one fits.
	for {
		if _, err := f.Write(buf[:1]); err != nil {
			return name
		}
	}
}

// waitReadyz polls /readyz, as a load balancer does, until ok holds;
// each look runs tick first, when set.
func waitReadyz(t *testing.T, adminAddr string, tick func(), ok func(code int, body string) bool) {
	t.Helper()
	var code int
	var body string
	deadline := time.Now().Add(testenv.IOTimeout())
	for {
		if tick != nil {
			tick()
		}
		if code, body = readyz(adminAddr); ok(code, body) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("/readyz still %d %q", code, body)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// dialDemo logs in to the demo backend through the proxy at addr.
func dialDemo(t *testing.T, addr string) *imapConn {
	t.Helper()
	c := dialIMAPS(t, addr)
	c.cmd("l1", "OK", `LOGIN demo "demo-password"`)
	return c
}

func countAcked(m *sync.Map) int {
	n := 0
	m.Range(func(k, _ any) bool { n++; return true })
	return n
}

// droppedInTrail sums the counts of the trail's audit.dropped records.
func droppedInTrail(t *testing.T, trail string) uint64 {
	t.Helper()
	files, err := audit.Files(trail)
	if err != nil {
		t.Fatal(err)
	}
	var n uint64
	audit.Scan(files, func(r *audit.Record, _ []byte) error {
		if r.Kind == audit.KindAuditDropped {
			n += r.Count
		}
		return nil
	})
	return n
}
