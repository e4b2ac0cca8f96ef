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
