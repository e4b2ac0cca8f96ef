package difftest

import (
	"crypto/tls"
	"strings"
	"testing"

	"github.com/imapwarden/imapwarden/internal/backendtest"
	"github.com/imapwarden/imapwarden/internal/dovecottest"
	"github.com/imapwarden/imapwarden/internal/testenv"
)

// TestMasterSeparatorLoginIsThePolicyUser: with the default (backend)
// authenticator the proxy replays the client's LOGIN name as is. Dovecot
// reads "rouser*proxymaster" as a master login (auth_master_user_
// separator) and would open rouser's mailbox, while the proxy's session
// user, which policies, limits and the audit read, would be
// "rouser*proxymaster": the readonly policy for rouser would not apply.
// The proxy refuses a name with a backend's user separator before
// anything else (ARCHITECTURE.md §17).
func TestMasterSeparatorLoginIsThePolicyUser(t *testing.T) {
	users := map[string]string{}
	for _, u := range Users {
		users[u] = u + "-pw"
	}
	srv := dovecottest.Start(t, dovecottest.Options{Users: users, Separator: "/"})
	b := &Backend{Name: "dovecot", TLSAddr: srv.TLSAddr, CAFile: srv.CAFile, Delim: '/'}
	b.tls = backendtest.TLSConfig(t, b.CAFile, "localhost")
	direct := b.Login(t, "rouser")
	if _, err := direct.OK("c", "CREATE Victim"); err != nil {
		t.Fatal(err)
	}
	direct.Close()

	p := StartProxy(t, ProxyFor(b))
	dial := func() *Conn {
		cn, _, err := Dial(p.Addr, &tls.Config{InsecureSkipVerify: true}, testenv.IOTimeout())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(cn.Close)
		return cn
	}
	// Control: rouser is read-only through the proxy.
	cn := dial()
	if _, err := cn.OK("l", "LOGIN rouser rouser-pw"); err != nil {
		t.Fatal(err)
	}
	answers(t, cn, [][2]string{{"DELETE Victim", "NO"}})

	master := "rouser*" + dovecottest.DefaultMasterUser
	cn = dial()
	rs, err := cn.Cmd("l", "LOGIN %s %s", Quote(master), Quote(dovecottest.DefaultMasterPassword))
	if err != nil {
		t.Fatal(err)
	}
	if last := rs[len(rs)-1]; last.Status != "NO" || !strings.Contains(last.Text, "[AUTHENTICATIONFAILED]") {
		t.Errorf("LOGIN %s: %q, want NO [AUTHENTICATIONFAILED]: the proxy judges one user, Dovecot opens another", master, last.Text)
		rs, err := cn.Cmd("a", "DELETE Victim")
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("DELETE Victim as %s: %q", master, rs[len(rs)-1].Text)
	}
	after := b.Login(t, "rouser")
	defer after.Close()
	lr, err := after.OK("c", `LIST "" Victim`)
	if err != nil {
		t.Fatal(err)
	}
	exists := false
	for _, r := range lr {
		exists = exists || strings.HasPrefix(r.Text, "* LIST")
	}
	if !exists {
		t.Errorf("read-only rouser's mailbox Victim was deleted through the proxy by LOGIN %s: the policy judged another user", master)
	}
}
