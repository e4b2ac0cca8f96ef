package ldap

import (
	"errors"
	"slices"
	"testing"

	goldap "github.com/go-ldap/ldap/v3"

	"github.com/imapwarden/imapwarden/internal/ldaptest"
	"github.com/imapwarden/imapwarden/proxy"
)

// addPosixGroup adds an RFC 2307 group (memberUid: the members' login
// names) as the fixture's root DN: the fixture writes groupOfNames only.
func addPosixGroup(t *testing.T, s *ldaptest.Server, cn string, members ...string) {
	t.Helper()
	c, err := goldap.DialURL(s.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	// The fixture's rootdn (internal/ldaptest renderConf).
	if err := c.Bind("cn=admin,"+ldaptest.BaseDN, "admin-pw"); err != nil {
		t.Fatal(err)
	}
	req := goldap.NewAddRequest("cn="+cn+","+ldaptest.GroupsDN, nil)
	req.Attribute("objectClass", []string{"posixGroup"})
	req.Attribute("cn", []string{cn})
	req.Attribute("gidNumber", []string{"5000"})
	req.Attribute("memberUid", members)
	if err := c.Add(req); err != nil {
		t.Fatal(err)
	}
}

// TestAttackGroupFilterReadsTypedSpelling: a group filter with {user}
// (documented on Options) gets the name as the client typed it, not the
// entry's own. "CAROL" passes ownName (SameUser) and binds, but RFC 2307's
// memberUid is caseExactIA5Match: (memberUid=CAROL) matches no group, so
// carol logs in with no groups and escapes every group policy (network
// allowlists, readonly groups) by typing her name in upper case. The
// groups must be those of the entry, whatever the spelling.
func TestAttackGroupFilterReadsTypedSpelling(t *testing.T) {
	s := ldaptest.Start(t, ldaptest.Options{})
	addPosixGroup(t, s, "restricted", "carol")
	o := searchOptions(t, s)
	o.GroupFilter = "(&(objectClass=posixGroup)(memberUid={user}))"
	d := newDir(t, o)

	id, err := login(d, "carol", "carol-ldap-pw")
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(id.Groups, "restricted") {
		t.Fatalf("carol: groups %v, want restricted (fixture)", id.Groups)
	}
	id, err = login(d, "CAROL", "carol-ldap-pw")
	if err != nil {
		t.Fatal(err)
	}
	if id.User != "carol" || !slices.Contains(id.Groups, "restricted") {
		t.Errorf("CAROL logged in as %q with groups %v: the group filter read the typed spelling, not the entry's uid", id.User, id.Groups)
	}

	// The same through a bind DN template.
	o = searchOptions(t, s)
	o.SearchBase, o.SearchFilter = "", ""
	o.BindDN = "uid={user}," + ldaptest.PeopleDN
	o.GroupFilter = "(&(objectClass=posixGroup)(memberUid={user}))"
	d = newDir(t, o)
	id, err = login(d, "Carol", "carol-ldap-pw")
	if err != nil {
		t.Fatal(err)
	}
	if id.User != "carol" || !slices.Contains(id.Groups, "restricted") {
		t.Errorf("bind DN: Carol logged in as %q with groups %v", id.User, id.Groups)
	}
}

// TestGroupsUnknownFailClosed: with a group filter configured, a login
// whose groups cannot be read is no login (a user with too few groups
// would escape a group's policy): a group search the directory refuses
// (a group base that does not exist), and an entry without the user
// attribute the filter's {user} stands for (its groups would be searched
// by the typed spelling). Neither is a wrong password: the directory is
// misconfigured, NO [UNAVAILABLE].
func TestGroupsUnknownFailClosed(t *testing.T) {
	s := ldaptest.Start(t, ldaptest.Options{})
	addPosixGroup(t, s, "restricted", "carol")
	for _, tc := range []struct {
		name string
		set  func(o *Options)
	}{
		{"group search refused", func(o *Options) { o.GroupBase = "ou=nowhere," + ldaptest.BaseDN }},
		{"no user attribute", func(o *Options) {
			o.GroupFilter = "(&(objectClass=posixGroup)(memberUid={user}))"
			o.UserAttribute = "employeeNumber"
		}},
	} {
		o := searchOptions(t, s)
		tc.set(&o)
		d := newDir(t, o)
		id, err := login(d, "carol", "carol-ldap-pw")
		if err == nil || errors.Is(err, proxy.ErrAuthFailed) {
			t.Errorf("%s: %+v %v, want an error that is not a failed login", tc.name, id, err)
		}
	}
}
