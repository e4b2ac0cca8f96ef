package main

import (
	"context"
	"crypto/tls"
	"net/http"
	"os"
	"testing"

	"go.uber.org/zap"

	"github.com/imapwarden/imapwarden/tlsterm"
)

// admin.tls certificates are renewed in place (certbot, cert-manager) like
// the listeners' own: the next handshake serves the new pair, with no
// restart and no SIGHUP, and a pair that does not load keeps the old one.
// Before, the pair was read once at start and expired in service.
func TestAdminTLSReloads(t *testing.T) {
	dir := t.TempDir()
	tlsFiles(t, dir)
	ca, err := tlsterm.NewCA()
	if err != nil {
		t.Fatal(err)
	}
	cf, err := ca.WriteFiles(dir, "admin", []string{"localhost", "127.0.0.1"})
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := parseConfig([]byte("listeners: [{address: \"127.0.0.1:0\", mode: tls}]\ntls: {certificates: [{cert: " + dir + "/cert.pem, key: " + dir + "/key.pem}]}\n" +
		"backends: {main: {address: \"127.0.0.1:143\", security: plain}}\n" +
		"admin: {address: \"127.0.0.1:0\", tls: {cert: " + cf.Cert + ", key: " + cf.Key + "}}\n"))
	if err != nil {
		t.Fatal(err)
	}
	s, err := check(cfg, zap.NewNop())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	addr, wait, err := serveAdminWith(ctx, "127.0.0.1:0", s.adminTLS, http.NotFoundHandler(), defaultAdminTimeouts, zap.NewNop())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cancel(); wait() })
	served := func() string {
		t.Helper()
		c, err := tls.Dial("tcp", addr.String(), &tls.Config{RootCAs: ca.Pool(), ServerName: "localhost"})
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		return c.ConnectionState().PeerCertificates[0].SerialNumber.String()
	}
	first := served()
	if _, err := ca.WriteFiles(dir, "admin", []string{"localhost", "127.0.0.1"}); err != nil {
		t.Fatal(err)
	}
	renewed := served()
	if renewed == first {
		t.Fatalf("after renewal the admin listener still serves serial %s", first)
	}
	// A broken pair (key for another certificate) keeps the last good one.
	other, err := ca.WriteFiles(t.TempDir(), "other", []string{"localhost"})
	if err != nil {
		t.Fatal(err)
	}
	key, err := os.ReadFile(other.Key)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(cf.Key, key, 0o600); err != nil {
		t.Fatal(err)
	}
	if got := served(); got != renewed {
		t.Errorf("a mismatched key: serial %s, want the last good %s", got, renewed)
	}
}
