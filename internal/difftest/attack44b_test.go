package difftest

import (
	"crypto/tls"
	"strings"
	"testing"

	"github.com/imapwarden/imapwarden/internal/backendtest"
	"github.com/imapwarden/imapwarden/internal/dovecottest"
	"github.com/imapwarden/imapwarden/internal/testenv"
)

// TestMasterSeparatorLoginIsThePolicyUser (attack44b): with the default
// (backend) authenticator the proxy replays the client's LOGIN name as is.
// Dovecot reads "rouser*proxymaster" as a master login (auth_master_user_
// separator) and opens rouser's mailbox, while the proxy's session user,
// which policies, limits and the audit read, is "rouser*proxymaster": the
// readonly policy for rouser does not apply and the trail names nobody
// real.
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
	login := func(user, pw string) *Conn {
		cn, _, err := Dial(p.Addr, &tls.Config{InsecureSkipVerify: true}, testenv.IOTimeout())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(cn.Close)
		if _, err := cn.OK("l", "LOGIN %s %s", Quote(user), Quote(pw)); err != nil {
			t.Fatalf("LOGIN %s: %v", user, err)
		}
		return cn
	}
	// Control: rouser is read-only through the proxy.
	answers(t, login("rouser", "rouser-pw"), [][2]string{{"DELETE Victim", "NO"}})

	cn := login("rouser*"+dovecottest.DefaultMasterUser, dovecottest.DefaultMasterPassword)
	rs, err := cn.Cmd("a", "DELETE Victim")
	if err != nil {
		t.Fatal(err)
	}
	got := rs[len(rs)-1].Text
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
		t.Errorf("read-only rouser's mailbox Victim was deleted through the proxy by LOGIN rouser*%s (DELETE answered %q): the policy judged another user", dovecottest.DefaultMasterUser, got)
	}
}
