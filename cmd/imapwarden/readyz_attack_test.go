package main

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/imapwarden/imapwarden/internal/testenv"
)

// TestAttackReadyzTellsStrangersTheBackends: /readyz needs no token
// (the kubelet calls it), and admin.authorize lets it through because
// the probes "reveal nothing". Yet a not-ready answer carries every
// reason in full: each backend server's name and its last error, the
// dial error naming the backend's internal address and port (a TLS
// verification error names its host names), the audit sink's error with
// the trail's path. Whoever reaches the admin port without a token (any
// pod of the cluster with the Helm chart) maps the mail backends and
// learns when they fail; an authenticated caller may learn the reasons,
// a stranger the status code.
func TestAttackReadyzTellsStrangersTheBackends(t *testing.T) {
	dead, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	hidden := dead.Addr().String() // refuses connections from now on
	dead.Close()
	dir := t.TempDir()
	cf := tlsFiles(t, dir)
	tokenFile := filepath.Join(dir, "write.token")
	if err := os.WriteFile(tokenFile, []byte(testWriteToken+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	st := startServeText(t, dir, fmt.Sprintf(`
listeners: [{address: "127.0.0.1:0", mode: tls}]
tls: {certificates: [{cert: %s, key: %s}]}
backends: {vault: {servers: [{name: mailstore-7, address: %q}], security: plain}}
admin: {address: "127.0.0.1:0", token_file: %s}
`, cf.Cert, cf.Key, hidden, tokenFile))

	// The kubelet's probe, no token, until the proxy has found the
	// backend down (its first health check).
	var body string
	deadline := time.Now().Add(testenv.IOTimeout())
	for {
		resp, err := http.Get("http://" + st.admin.String() + "/readyz")
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode == http.StatusServiceUnavailable {
			body = string(b)
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("/readyz still %d with its only backend down: %s", resp.StatusCode, b)
		}
	}
	t.Logf("GET /readyz without a token: %s", body)
	_, port, _ := net.SplitHostPort(hidden)
	for _, secret := range []string{hidden, ":" + port, "mailstore-7", "vault", "connection refused"} {
		if strings.Contains(body, secret) {
			t.Errorf("an unauthenticated /readyz tells %q", secret)
		}
	}
}
