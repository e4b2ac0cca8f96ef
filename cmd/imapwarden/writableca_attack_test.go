package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"go.uber.org/zap"

	"github.com/imapwarden/imapwarden/tlsterm"
)

// TestAttackWorldWritableCABundlesAccepted: the files that decide whom
// the proxy trusts are judged by filemode.Trusted like the configuration
// and the policies, except the CA bundles. A client_ca_file other users
// may write lets any local user add a CA of their own, re-read at the next
// SIGHUP or tls.reload_interval poll, and present a certificate with any
// subject (policy input, the audit trail; with cert_login, any user's
// login). A backend's tls.ca_file other users may write lets them add a
// CA and stand in for the backend the proxy logs in to (master
// credentials, every mailbox's content). Both are taken at mode 0666
// without a word.
func TestAttackWorldWritableCABundlesAccepted(t *testing.T) {
	dir := t.TempDir()
	cf := tlsFiles(t, dir)
	ca, err := tlsterm.NewCA()
	if err != nil {
		t.Fatal(err)
	}
	clientCA := filepath.Join(dir, "client-ca.pem")
	backendCA := filepath.Join(dir, "backend-ca.pem") // written by tlsFiles
	if err := os.WriteFile(clientCA, ca.CertPEM, 0o644); err != nil {
		t.Fatal(err)
	}
	cfgFile := filepath.Join(dir, "imapwarden.yaml")
	if err := os.WriteFile(cfgFile, []byte(fmt.Sprintf(`
listeners: [{address: "127.0.0.1:0", mode: tls, client_auth: require, client_ca_file: %s}]
tls: {certificates: [{cert: %s, key: %s}]}
backends: {mem: {address: "127.0.0.1:993", security: tls, tls: {ca_file: %s}}}
admin: {address: ""}
`, clientCA, cf.Cert, cf.Key, backendCA)), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(filepath.Dir(dir), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	// The configuration itself passes (0600), so what is said is of the CAs.
	cfg, err := loadConfigFile(cfgFile)
	if err != nil {
		t.Fatal(err)
	}
	if s, err := build(cfg, zap.NewNop()); err != nil {
		t.Fatalf("the configuration with 0644 bundles: %v", err)
	} else {
		s.close()
	}
	for _, f := range []string{clientCA, backendCA} {
		if err := os.Chmod(f, 0o666); err != nil {
			t.Fatal(err)
		}
	}
	s, err := build(cfg, zap.NewNop())
	said := ""
	if err != nil {
		said = err.Error()
	} else {
		defer s.close()
		for _, w := range s.warnings {
			said += w.Key + ": " + w.Msg + "\n"
		}
	}
	for _, f := range []string{clientCA, backendCA} {
		if !strings.Contains(said, f) {
			t.Errorf("%s is writable by every user (0666), and the configuration is built without a word about it", filepath.Base(f))
		}
	}
}
