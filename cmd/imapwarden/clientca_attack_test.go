package main

import (
	"bufio"
	"crypto/tls"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/imapwarden/imapwarden/internal/testenv"
	"github.com/imapwarden/imapwarden/tlsterm"
)

// TestAttackRemovedClientCAStillTrusted: listeners[].client_ca_file is
// read once, at start (tlsterm.Server.ListenerConfig). An operator who
// retires a client CA (compromised, or its holders' access revoked)
// removes it from the bundle and sends SIGHUP: the reload reports
// "configuration reloaded" (the key names the same file, so nothing
// changed; reload_success 1), while the listener still trusts the removed
// CA. Its certificates keep passing client_auth: require, and with
// cert_login they keep logging in as the user their email SAN names.
// Every other file that decides who gets in is re-read or refused
// (users files, policies, certificate files): the CA bundle must either
// be applied or the reload must say it is not.
func TestAttackRemovedClientCAStillTrusted(t *testing.T) {
	env := newServeEnv(t)
	retired, err := tlsterm.NewCA()
	if err != nil {
		t.Fatal(err)
	}
	current, err := tlsterm.NewCA()
	if err != nil {
		t.Fatal(err)
	}
	bundle := filepath.Join(env.dir, "clients-ca.pem")
	if err := os.WriteFile(bundle, append(append([]byte{}, retired.CertPEM...), current.CertPEM...), 0o644); err != nil {
		t.Fatal(err)
	}
	certPEM, keyPEM, err := retired.Issue([]string{"mallory.clients.example"}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	client, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	s, cfgFile, log, logs := env.buildFile(t, fmt.Sprintf(`
listeners: [{name: imaps, address: "127.0.0.1:0", mode: tls, client_auth: require, client_ca_file: %s}]
tls: {certificates: [{cert: %s, key: %s}], reload_interval: 1h}
backends: {mem: {address: %q, security: plain}}
admin: {address: ""}
lame_duck: 0s
`, bundle, env.cert.Cert, env.cert.Key, env.backend))
	addrs, hup := serveReloading(t, s, cfgFile, log)
	// greeted reports whether a handshake with the retired CA's
	// certificate gets the greeting: in TLS 1.3 a refused client
	// certificate shows at the first read. No session cache: every
	// handshake is a full one.
	greeted := func() (bool, string) {
		c, err := tls.Dial("tcp", addrs[0].String(), &tls.Config{InsecureSkipVerify: true, NextProtos: []string{"imap"},
			GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return &client, nil }})
		if err != nil {
			return false, err.Error()
		}
		defer c.Close()
		c.SetReadDeadline(time.Now().Add(testenv.IOTimeout()))
		l, err := bufio.NewReader(c).ReadString('\n')
		if err != nil {
			return false, err.Error()
		}
		return strings.HasPrefix(l, "* OK"), l
	}
	if ok, got := greeted(); !ok {
		t.Fatalf("before the change, a certificate of a CA in the bundle: %s", got)
	}

	if err := os.WriteFile(bundle, current.CertPEM, 0o644); err != nil {
		t.Fatal(err)
	}
	hup <- os.Interrupt
	waitAnyLog(t, logs, "configuration reloaded", "configuration reload failed, keeping the running configuration")
	reported := logs.FilterMessage("configuration reload failed, keeping the running configuration").Len() > 0
	if ok, got := greeted(); ok && !reported {
		t.Errorf("the CA removed from %s still lets its certificate in after a SIGHUP that reported \"configuration reloaded\" (greeting %q)", bundle, strings.TrimSpace(got))
	}
}
