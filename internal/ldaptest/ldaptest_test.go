package ldaptest

import (
	"os/exec"
	"strings"
	"testing"
)

// The fixture's directory answers ldapsearch over StartTLS and LDAPS, binds
// users with their passwords, and hides passwords from the service account.
func TestStart(t *testing.T) {
	s := Start(t, Options{})
	search := func(url, extra string, args ...string) string {
		t.Helper()
		cmd := exec.Command("ldapsearch", append([]string{"-x", "-H", url, "-D", ServiceDN, "-w", ServicePassword, "-b", BaseDN, "-LLL"}, args...)...)
		cmd.Env = append(cmd.Environ(), "LDAPTLS_CACERT="+s.CAFile)
		if extra != "" {
			cmd.Args = append(cmd.Args[:1], append([]string{extra}, cmd.Args[1:]...)...)
		}
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("ldapsearch %v: %v\n%s", args, err, out)
		}
		return string(out)
	}
	out := search(s.URL, "-ZZ", "(uid=bob)", "mailHost", "userPassword")
	if !strings.Contains(out, "mailHost: imap2.example.com") || strings.Contains(out, "userPassword") {
		t.Errorf("search over StartTLS:\n%s", out)
	}
	out = search(s.TLSURL, "", "(member="+UserDN("carol")+")", "cn")
	if !strings.Contains(out, "cn: admins") || !strings.Contains(out, "cn: staff") {
		t.Errorf("groups over LDAPS:\n%s", out)
	}
	bind := exec.Command("ldapwhoami", "-x", "-H", s.URL, "-D", UserDN("alice"), "-w", "wrong")
	if out, err := bind.CombinedOutput(); err == nil {
		t.Errorf("wrong password bound: %s", out)
	}
	s.Kill()
	s.Restart(t)
	search(s.URL, "-ZZ", "(uid=alice)", "uid")
}

// With MemberOf, a user's entry names its groups' DNs, wherever the group
// lives.
func TestMemberOf(t *testing.T) {
	other := "cn=admins,ou=self-service," + BaseDN
	s := Start(t, Options{MemberOf: true, Users: map[string]User{
		"alice": {Password: "pw", Groups: []string{"staff", other}},
	}})
	cmd := exec.Command("ldapsearch", "-x", "-H", s.URL, "-ZZ", "-D", ServiceDN, "-w", ServicePassword, "-b", PeopleDN, "-LLL", "(uid=alice)", "memberOf")
	cmd.Env = append(cmd.Environ(), "LDAPTLS_CACERT="+s.CAFile)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("ldapsearch: %v\n%s", err, out)
	}
	for _, dn := range []string{GroupDN("staff"), other} {
		if !strings.Contains(string(out), "memberOf: "+dn) {
			t.Errorf("no memberOf %s:\n%s", dn, out)
		}
	}
}
