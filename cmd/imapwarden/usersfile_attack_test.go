package main

import (
	"bufio"
	"crypto/tls"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/imapwarden/imapwarden/proxy/authn"
)

// TestAttackUsersFileRevocationSilentlyIgnored: the file authenticator
// re-reads its users file when it changes (README: "re-read when it
// changes"), and an edit that does not parse keeps the users loaded
// before it (authn.File.reload), its error dropped: no log line, no
// metric, no readiness, nothing in the trail. An operator revokes a
// compromised account by deleting its line and, in the same edit, adds
// a user whose hash the proxy does not take ({SSHA}, pasted from an old
// LDAP, or a stray colon): the revoked account keeps logging in, and
// nothing says the file is not in force. A TLS certificate or a policy
// that fails to reload is logged and counted; the users file must not
// fail silently either.
func TestAttackUsersFileRevocationSilentlyIgnored(t *testing.T) {
	env := newServeEnv(t)
	hash, err := authn.HashPassword(demoPassword)
	if err != nil {
		t.Fatal(err)
	}
	users := filepath.Join(env.dir, "users")
	if err := os.WriteFile(users, []byte(demoUser+":"+hash+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	s, _, log, logs := env.buildFile(t, fmt.Sprintf(`
listeners: [{name: imaps, address: "127.0.0.1:0", mode: tls}]
tls: {certificates: [{cert: %s, key: %s}]}
backends: {mem: {address: %q, security: plain}}
auth: {authenticators: [{name: local, type: file, file: {path: %s}}]}
admin: {address: ""}
lame_duck: 0s
`, env.cert.Cert, env.cert.Key, env.backend, users))
	addrs, _, cancel, done := serve(t, s, log, nil, nil)
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	}()

	// The revocation, with a new user whose hash the proxy does not take.
	revoked := "# " + demoUser + " revoked: password leaked\ncarol:{SSHA}W6ph5Mm5Pz8GgiULbPgzG37mj9g=\n"
	if err := os.WriteFile(users, []byte(revoked), 0o600); err != nil {
		t.Fatal(err)
	}
	before := logs.Len()
	tc, err := tls.Dial("tcp", addrs[0].String(), &tls.Config{InsecureSkipVerify: true})
	if err != nil {
		t.Fatal(err)
	}
	defer tc.Close()
	c := &imapConn{t: t, c: tc, r: bufio.NewReader(tc)}
	c.line()
	fmt.Fprintf(tc, "a LOGIN %s %q\r\n", demoUser, demoPassword)
	var answer string
	for {
		if l := c.line(); strings.HasPrefix(l, "a ") {
			answer = l
			break
		}
	}
	told := false
	for _, e := range logs.All()[before:] {
		all := e.Message
		for _, f := range e.Context {
			all += " " + f.String
			if f.Interface != nil {
				all += fmt.Sprint(f.Interface)
			}
		}
		if strings.Contains(all, users) || strings.Contains(strings.ToLower(all), "users file") {
			told = true
		}
	}
	if strings.HasPrefix(answer, "a OK") && !told {
		t.Errorf("%s, deleted from the users file, still logs in (%q) and nothing says the edit is not in force", demoUser, strings.TrimSpace(answer))
	}
}
