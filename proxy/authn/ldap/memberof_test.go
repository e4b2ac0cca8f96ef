package ldap

import (
	"slices"
	"strings"
	"testing"

	goldap "github.com/go-ldap/ldap/v3"

	"github.com/imapwarden/imapwarden/internal/ldaptest"
)

// memberOfOptions: search-then-bind, groups from the entry's memberOf only.
func memberOfOptions(t testing.TB, s *ldaptest.Server, base string) Options {
	o := searchOptions(t, s)
	o.GroupBase, o.GroupFilter = "", ""
	o.GroupAttribute, o.GroupAttributeBase = "memberOf", base
	return o
}

// TestMemberOfOnlyUnderItsBase: a group of the same short name elsewhere
// in the directory (a self-service OU where users make their own groups)
// is not the policies' "admins"; only memberOf values under
// group_attribute_base name groups, compared as DNs (case of the types
// and values, RFC 4519), and the base is required with the attribute.
func TestMemberOfOnlyUnderItsBase(t *testing.T) {
	s := ldaptest.Start(t, ldaptest.Options{MemberOf: true, Users: map[string]ldaptest.User{
		"alice": {Password: "alice-pw", Groups: []string{"staff", "cn=admins,ou=self-service," + ldaptest.BaseDN}},
		"carol": {Password: "carol-pw", Groups: []string{"staff", "admins"}},
	}})
	for _, base := range []string{ldaptest.GroupsDN, strings.ToUpper(ldaptest.GroupsDN)} {
		d := newDir(t, memberOfOptions(t, s, base))
		for user, want := range map[string][]string{"alice": {"staff"}, "carol": {"admins", "staff"}} {
			id, err := login(d, user, user+"-pw")
			if err != nil {
				t.Fatalf("base %s: %s: %v", base, user, err)
			}
			got := slices.Sorted(slices.Values(id.Groups))
			if !slices.Equal(got, want) {
				t.Errorf("base %s: %s's groups %q, want %q", base, user, got, want)
			}
		}
	}
	if _, err := New(memberOfOptions(t, s, "")); err == nil {
		t.Error("group_attribute without group_attribute_base accepted")
	}
	if _, err := New(memberOfOptions(t, s, "not a dn")); err == nil {
		t.Error("group_attribute_base that is no DN accepted")
	}
}

// TestMemberOfValueUnreadable: a memberOf value under the base that has no
// single name (not a DN; a multi-valued or non-cn first RDN) fails the
// login closed rather than dropping a group that may restrict the user.
func TestMemberOfValueUnreadable(t *testing.T) {
	d := &Directory{o: Options{GroupAttribute: "memberOf", GroupNameAttribute: "cn"}}
	var err error
	if d.groupAttrBase, err = goldap.ParseDN(ldaptest.GroupsDN); err != nil {
		t.Fatal(err)
	}
	for dn, want := range map[string]string{
		"cn=staff," + ldaptest.GroupsDN:                "staff",
		"CN=Staff,OU=Groups,DC=Example,DC=Com":         "Staff",
		"cn=x,ou=sub," + ldaptest.GroupsDN:             "x",
		"cn=admins,ou=self-service," + ldaptest.BaseDN: "",
		ldaptest.GroupsDN:                              "",
	} {
		if got, err := d.groupName(dn); err != nil || got != want {
			t.Errorf("groupName(%q) = %q, %v; want %q", dn, got, err, want)
		}
	}
	for _, dn := range []string{
		"cn=admins+ou=x," + ldaptest.GroupsDN,
		"ou=admins," + ldaptest.GroupsDN,
		"cn=," + ldaptest.GroupsDN,
		"cn=admins,,ou=groups",
		"admins",
	} {
		if got, err := d.groupName(dn); err == nil {
			t.Errorf("groupName(%q) = %q, want an error", dn, got)
		}
	}
}
