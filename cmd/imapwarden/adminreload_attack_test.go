package main

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"go.uber.org/zap"
)

// TestAttackReloadLeavesAdminListenerWithoutTokens: the admin listener is
// bound once, at start, on the address of the first configuration, while
// a reload replaces its tokens with the new file's. buildAdmin checks the
// new file's address, not the running listener's: a listener on every
// interface, with tokens, that a reload "turns off" (admin.address: "")
// or "moves to loopback" without tokens keeps serving on every interface
// with no tokens, and the tokenless check trusts the Host header, which
// any client sets. Anyone who reaches the port then has write scope
// (end sessions, unlock, log level, profiles).
func TestAttackReloadLeavesAdminListenerWithoutTokens(t *testing.T) {
	for _, tc := range []struct{ name, admin string }{
		{"admin turned off", `admin: {address: ""}`},
		{"moved to loopback without tokens", `admin: {address: "127.0.0.1:0"}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir, auditPath, common := demoServeConfig(t)
			os.WriteFile(filepath.Join(dir, "write.token"), []byte(testWriteToken+"\n"), 0o600)
			// Every interface, with a write token: what buildAdmin asks for.
			first := common + fmt.Sprintf("admin:\n  address: \"0.0.0.0:0\"\n  tokens: [{name: oncall, scope: write, file: %s}]\n",
				filepath.Join(dir, "write.token"))
			srv := startServeText(t, dir, first)
			adm, cfgFile, hup := srv.admin, srv.cfgFile, srv.hup
			_, port, _ := net.SplitHostPort(adm.String())
			if ip := adm.(*net.TCPAddr).IP; !ip.IsUnspecified() {
				t.Fatalf("admin listener on %v, want every interface", adm)
			}
			// What a client on the network sends: it reaches the port on
			// any address of the host and names a loopback Host.
			unauthWrite := func() (int, string) {
				req, _ := http.NewRequest("PUT", "http://127.0.0.1:"+port+"/loglevel", strings.NewReader(`{"level":"debug"}`))
				req.Host = "127.0.0.1"
				req.Header.Set("Content-Type", "application/json")
				resp, err := http.DefaultClient.Do(req)
				if err != nil {
					return 0, err.Error() // the listener is gone: as good as refused
				}
				defer resp.Body.Close()
				b, _ := io.ReadAll(resp.Body)
				return resp.StatusCode, string(b)
			}
			if code, body := unauthWrite(); code != http.StatusUnauthorized {
				t.Fatalf("before the reload, a request without a token: %d %s", code, body)
			}

			os.WriteFile(cfgFile, []byte(common+tc.admin+"\n"), 0o600)
			hup <- syscall.SIGHUP
			waitReloadRecord(t, auditPath)

			if code, body := unauthWrite(); code == http.StatusOK {
				t.Errorf("after the reload, the listener on %v (every interface) took a write without a token: %d %s", adm, code, strings.TrimSpace(body))
			}
		})
	}
}

// demoServeConfig is a configuration without its admin section: a TLS
// listener in front of the in-memory backend and a file trail, both in
// dir.
func demoServeConfig(t *testing.T) (dir, auditPath, text string) {
	t.Helper()
	backendAddr, stopBackend, err := startDemoBackend(zap.NewNop())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(stopBackend)
	dir = t.TempDir()
	cf := tlsFiles(t, dir)
	auditPath = filepath.Join(dir, "audit.jsonl")
	text = fmt.Sprintf(`
listeners: [{address: "127.0.0.1:0", mode: tls}]
tls: {certificates: [{cert: %s, key: %s}]}
backends: {mem: {address: %q, security: plain}}
audit: {path: %q, fsync: always}
drain_timeout: 5s
`, cf.Cert, cf.Key, backendAddr, auditPath)
	return dir, auditPath, text
}

// waitReloadRecord waits for the trail's record of a configuration reload
// (written after the reload was applied) and fails if it is an error.
func waitReloadRecord(t *testing.T, path string) {
	t.Helper()
	if rec := reloadRecord(t, path); rec.Result != "ok" {
		t.Fatalf("reload: %s %s", rec.Result, rec.Detail)
	}
}
