package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	goldap "github.com/go-ldap/ldap/v3"

	"github.com/imapwarden/imapwarden/internal/dovecottest"
	"github.com/imapwarden/imapwarden/internal/ldaptest"
)

// TestAttackGroupPolicyEscapedByCase: with an RFC 2307 group filter
// (memberUid={user}, {user} documented for filters), a policy that
// refuses the group "contractors" at login refuses bob, and lets "BOB"
// in: the proxy takes "BOB" as bob (any case, ARCHITECTURE.md §17) and
// Dovecot opens bob's mailbox, but the group search asked for
// memberUid=BOB, which caseExactIA5Match does not find. A member of a
// restricted group escapes every group policy by typing capitals.
func TestAttackGroupPolicyEscapedByCase(t *testing.T) {
	dovecottest.Require(t)
	ldaptest.Require(t)
	dir := ldaptest.Start(t, ldaptest.Options{})
	dc := dovecottest.Start(t, dovecottest.Options{})
	// bob's RFC 2307 group, added as the fixture's root DN (the fixture
	// writes groupOfNames only).
	lc, err := goldap.DialURL(dir.URL)
	if err != nil {
		t.Fatal(err)
	}
	if err := lc.Bind("cn=admin,"+ldaptest.BaseDN, "admin-pw"); err != nil {
		t.Fatal(err)
	}
	add := goldap.NewAddRequest("cn=contractors-posix,"+ldaptest.GroupsDN, nil)
	add.Attribute("objectClass", []string{"posixGroup"})
	add.Attribute("cn", []string{"contractors-posix"})
	add.Attribute("gidNumber", []string{"5001"})
	add.Attribute("memberUid", []string{"bob"})
	if err := lc.Add(add); err != nil {
		t.Fatal(err)
	}
	lc.Close()

	tmp := t.TempDir()
	svcPW := filepath.Join(tmp, "ldap.pw")
	os.WriteFile(svcPW, []byte(ldaptest.ServicePassword+"\n"), 0o600)
	masterPW := filepath.Join(tmp, "master.pw")
	os.WriteFile(masterPW, []byte(dc.MasterPassword+"\n"), 0o600)
	pol := frameworkPolicyDir(t, tmp)
	os.WriteFile(filepath.Join(pol, "contractors.rego"), []byte(`package imapwarden

deny contains {"policy": "contractors", "code": "AUTHORIZATIONFAILED", "reason": "Contractors may not use mail"} if {
	input.point == "auth"
	"contractors-posix" in input.session.groups
}
`), 0o644)
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
        group_base: "`+ldaptest.GroupsDN+`"
        group_filter: "(&(objectClass=posixGroup)(memberUid={user}))"
        timeout: 2s
policy: {dirs: [{path: `+pol+`}]}
rate_limits: {login_failure_delay: 1ms, login_failures_per_user: 1000, login_failures_per_user_ip: 1000, login_failures_per_ip: 1000}
audit: {path: %[3]s, fsync: always}
admin: {address: ""}
drain_timeout: 5s
`)
	// Control: bob is refused by the group's policy.
	c := p.session()
	c.cmd("b1", "NO [AUTHENTICATIONFAILED]", "LOGIN bob bob-ldap-pw")
	if r := p.lastAuth("bob-ldap-pw"); r.Reason != "policy" {
		t.Fatalf("bob: audit %+v, want a policy refusal", r)
	}
	c = p.session()
	got := c.cmd("b2", "", "LOGIN BOB bob-ldap-pw")
	r := p.lastAuth("bob-ldap-pw")
	if strings.HasPrefix(got[len(got)-1], "b2 OK") {
		t.Errorf("BOB logged in past the contractors policy as %q with groups %v (identity %q)", r.User, r.Groups, r.Identity)
	}
}
