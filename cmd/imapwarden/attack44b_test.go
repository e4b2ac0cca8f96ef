package main

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/imapwarden/imapwarden/internal/dovecottest"
	"github.com/imapwarden/imapwarden/internal/ldaptest"
)

// TestLDAPLockoutSpellings (attack44b): the per-user login failure
// lockout is keyed on the name the client typed (Session.login,
// limitUser), but the directory matches uid with LDAP's caseIgnoreMatch,
// which drops leading and trailing spaces (RFC 4518 §2.6.1): " alice",
// "  alice", "alice " are all alice to slapd and each a fresh counter to
// the Limiter. A guesser locked out as alice goes on as " alice" and logs
// in.
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
