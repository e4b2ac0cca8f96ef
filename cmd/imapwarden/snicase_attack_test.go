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
)

// TestAttackSNICaseTwoReadings: the proxy reads the client's SNI twice.
// Certificate selection folds case (tlsterm: "case-insensitive", DNS names
// are, RFC 4343), and policy input (session.tls.sni) and the trail get the
// bytes the client sent. A policy that refuses a listener's public name
// for some clients ("not through imap.example.com") refuses
// "imap.example.com" and lets "IMAP.EXAMPLE.COM" through, the same name,
// the same certificate. One name, one reading (ARCHITECTURE.md §7): the
// name judged must be the one the handshake chose on, or the handshake
// refused.
func TestAttackSNICaseTwoReadings(t *testing.T) {
	env := newServeEnv(t)
	pdir := filepath.Join(env.dir, "policies", "sni")
	if err := os.MkdirAll(pdir, 0o755); err != nil {
		t.Fatal(err)
	}
	rego := `package imapwarden

deny contains {"policy": "sni", "code": "NOPERM", "reason": "Not through this name"} if {
	input.point == "connect"
	input.session.tls.sni == "imap.example.com"
}
`
	if err := os.WriteFile(filepath.Join(pdir, "sni.rego"), []byte(rego), 0o644); err != nil {
		t.Fatal(err)
	}
	s, _, log, _ := env.buildFile(t, fmt.Sprintf(`
listeners: [{name: imaps, address: "127.0.0.1:0", mode: tls}]
tls: {certificates: [{cert: %s, key: %s}]}
backends: {mem: {address: %q, security: plain}}
admin: {address: ""}
policy: {dirs: [{path: %q}], poll_interval: -1s}
lame_duck: 0s
`, env.cert.Cert, env.cert.Key, env.backend, pdir))
	addrs, _, cancel, done := serve(t, s, log, nil, nil)
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	}()
	greeting := func(sni string) string {
		t.Helper()
		c, err := tls.Dial("tcp", addrs[0].String(), &tls.Config{InsecureSkipVerify: true, ServerName: sni, NextProtos: []string{"imap"}})
		if err != nil {
			return "handshake: " + err.Error()
		}
		defer c.Close()
		c.SetReadDeadline(time.Now().Add(testenv.IOTimeout()))
		l, err := bufio.NewReader(c).ReadString('\n')
		if err != nil {
			return "read: " + err.Error()
		}
		return strings.TrimSpace(l)
	}
	if g := greeting("imap.example.com"); !strings.HasPrefix(g, "* BYE") {
		t.Fatalf("SNI imap.example.com: %q, want the policy's BYE", g)
	}
	for _, sni := range []string{"IMAP.EXAMPLE.COM", "Imap.Example.Com"} {
		if g := greeting(sni); strings.HasPrefix(g, "* OK") {
			t.Errorf("SNI %q, the name the policy refuses in another case: %q", sni, g)
		}
	}
}
