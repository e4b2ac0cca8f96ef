package main

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"go.uber.org/zap"

	"github.com/imapwarden/imapwarden/internal/dovecottest"
	"github.com/imapwarden/imapwarden/internal/ldaptest"
	"github.com/imapwarden/imapwarden/proxy/authn"
)

// TestLDAPLockoutSpellings: the per-user login failure
// lockout is keyed on the name the client typed (Session.login,
// limitUser), but the directory matches uid with LDAP's caseIgnoreMatch,
// which drops leading and trailing spaces (RFC 4518 §2.6.1): " alice",
// "  alice", "alice " are all alice to slapd and each a fresh counter to
// the Limiter. A guesser locked out as alice goes on as " alice" and logs
// in. Such names are refused (ARCHITECTURE.md §17).
func TestLDAPLockoutSpellings(t *testing.T) {
	dovecottest.Require(t)
	ldaptest.Require(t)
	dir := ldaptest.Start(t, ldaptest.Options{})
	dc := dovecottest.Start(t, dovecottest.Options{})
	tmp := t.TempDir()
	svcPW := filepath.Join(tmp, "ldap.pw")
	os.WriteFile(svcPW, []byte(ldaptest.ServicePassword+"\n"), 0o600)
	masterPW := filepath.Join(tmp, "master.pw")
	os.WriteFile(masterPW, []byte(dc.MasterPassword+"\n"), 0o600)
	p := startAuthProxy(t, tmp, `
listeners: [{address: "127.0.0.1:0", mode: tls}]
tls: {certificates: [{cert: %[1]s, key: %[2]s}]}
backends:
  dovecot: {address: `+dc.Addr+`, security: starttls, tls: {ca_file: `+dc.CAFile+`, server_name: localhost}, login: master, master_user: `+dc.MasterUser+`, master_password_file: `+masterPW+`}
auth:
  authenticators:
    - name: corp
      type: ldap
      ldap:
        url: `+dir.URL+`
        start_tls: true
        ca_file: `+dir.CAFile+`
        search_base: "`+ldaptest.PeopleDN+`"
        search_filter: "(&(objectClass=inetOrgPerson)(uid={user}))"
        service_dn: "`+ldaptest.ServiceDN+`"
        service_password_file: `+svcPW+`
        timeout: 2s
rate_limits: {login_failure_delay: 1ms, login_failures_per_user: 3, login_failures_per_user_ip: 1000, login_failures_per_ip: 1000, lockout_base: 1h, lockout_max: 1h}
audit: {path: %[3]s, fsync: always}
admin: {address: ""}
drain_timeout: 5s
`)
	for i := range 4 {
		c := p.session()
		c.cmd(fmt.Sprintf("w%d", i), "NO", "LOGIN alice wrong-pw")
	}
	// Control: alice is locked out, even with her password.
	c := p.session()
	c.cmd("r1", "NO", "LOGIN alice alice-ldap-pw")
	c = p.session()
	got := c.cmd("r2", "", `LOGIN " alice" alice-ldap-pw`)
	if last := got[len(got)-1]; len(last) >= 5 && last[:5] == "r2 OK" {
		t.Errorf("locked-out alice logged in as %q: %q (the lockout counts the typed name, the directory ignores its spaces)", " alice", last)
	}
}

// TestFileLockoutUnicodeFold: the file authenticator looks a
// user up with strings.ToLower, a Unicode fold (KELVIN SIGN U+212A lowers
// to "k"), while the Limiter folds ASCII only: once kate is locked out,
// "\u212Aate" is a fresh lockout key whose password is still checked
// against kate's hash, so a guesser keeps getting verdicts. The Limiter
// now folds as the authenticator does (proxy.FoldUser, ARCHITECTURE.md §17).
func TestFileLockoutUnicodeFold(t *testing.T) {
	backendAddr, stopBackend, err := startDemoBackend(zap.NewNop())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(stopBackend)
	tmp := t.TempDir()
	hash, err := authn.HashPassword("kate-pw")
	if err != nil {
		t.Fatal(err)
	}
	users := filepath.Join(tmp, "users")
	os.WriteFile(users, []byte("kate:"+hash+":staff\n"), 0o600)
	p := startAuthProxy(t, tmp, `
listeners: [{address: "127.0.0.1:0", mode: tls}]
tls: {certificates: [{cert: %[1]s, key: %[2]s}]}
backends: {mem: {address: "`+backendAddr+`", security: plain}}
auth: {authenticators: [{type: file, file: {path: `+users+`}}]}
rate_limits: {login_failure_delay: 1ms, login_failures_per_user: 3, login_failures_per_user_ip: 1000, login_failures_per_ip: 1000, lockout_base: 1h, lockout_max: 1h}
audit: {path: %[3]s, fsync: always}
admin: {address: ""}
drain_timeout: 5s
`)
	for i := range 4 {
		p.session().cmd(fmt.Sprintf("w%d", i), "NO", "LOGIN kate wrong-pw")
		p.lastAuth()
	}
	p.session().cmd("r1", "NO", "LOGIN kate wrong-pw")
	if r := p.lastAuth(); r.Reason != "limit" {
		t.Fatalf("kate not locked out: %+v", r)
	}
	// KELVIN SIGN is K under NFKC too, so the name is refused before any
	// counter (ambiguous-name) or counted as kate's (limit): either way no
	// password is checked under a fresh counter.
	p.session().cmd("r2", "NO", "LOGIN \"\u212Aate\" wrong-pw")
	if r := p.lastAuth(); r.Reason != "limit" && r.Reason != "ambiguous-name" {
		t.Errorf("locked-out kate spelt \\u212Aate: reason %q (%s), want limit or ambiguous-name: the password was checked", r.Reason, r.Detail)
	}
}

// auth.user_separators: default "*", every backend's master_separator
// added (the proxy's own master login cannot be spelt by a client), and
// only separator-like strings (ARCHITECTURE.md §17).
func TestUserSeparatorsConfig(t *testing.T) {
	cfg := &fileConfig{Backends: map[string]*backendConfig{"a": {MasterSeparator: "%"}, "b": {}, "c": {MasterSeparator: "*"}}}
	var p problems
	if got := buildUserSeparators(&p, cfg); !slices.Equal(got, []string{"*", "%"}) || len(p) != 0 {
		t.Errorf("default: %q %v", got, p)
	}
	cfg.Auth.UserSeparators = &[]string{}
	if got := buildUserSeparators(&p, cfg); !slices.Equal(got, []string{"%", "*"}) || len(p) != 0 {
		t.Errorf("none configured: %q %v", got, p)
	}
	cfg.Auth.UserSeparators = &[]string{"", "a b", "*****", "\\", "#"}
	buildUserSeparators(&p, cfg)
	if len(p) != 4 || p[0].Key != "auth.user_separators[0]" || p[3].Key != "auth.user_separators[3]" {
		t.Errorf("bad separators: %v", p)
	}
}
