package ldap

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/imapwarden/imapwarden/internal/ldaptest"
	"github.com/imapwarden/imapwarden/proxy"
	"github.com/imapwarden/imapwarden/proxy/authn"
)

func caConfig(t testing.TB, s *ldaptest.Server) *tls.Config {
	t.Helper()
	pem, err := os.ReadFile(s.CAFile)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(pem)
	return &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
}

// searchOptions: search-then-bind over StartTLS, groups by search.
func searchOptions(t testing.TB, s *ldaptest.Server) Options {
	return Options{
		URL: s.URL, StartTLS: true, TLS: caConfig(t, s),
		SearchBase: ldaptest.PeopleDN, SearchFilter: "(&(objectClass=inetOrgPerson)(uid={user}))",
		ServiceDN: ldaptest.ServiceDN, ServicePassword: ldaptest.ServicePassword,
		GroupBase: ldaptest.GroupsDN, GroupFilter: "(&(objectClass=groupOfNames)(member={dn}))",
		RouteAttribute: "mailHost", Attributes: []string{"mail"},
		Timeout: 5 * time.Second,
	}
}

func newDir(t testing.TB, o Options) *Directory {
	t.Helper()
	d, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(d.Close)
	return d
}

func login(d *Directory, user, pw string) (*proxy.Identity, error) {
	return d.Verify(context.Background(), &proxy.Credentials{Mechanism: "LOGIN", User: user, Password: pw})
}

func TestSearchThenBind(t *testing.T) {
	s := ldaptest.Start(t, ldaptest.Options{})
	d := newDir(t, searchOptions(t, s))
	id, err := login(d, "bob", "bob-ldap-pw")
	if err != nil {
		t.Fatal(err)
	}
	if id.User != "bob" || strings.Join(id.Groups, ",") != "contractors" || id.Route != "imap2.example.com" || id.Attributes["mail"] != "bob@example.com" {
		t.Errorf("identity %+v", id)
	}
	// The directory's spelling of the user.
	if id, err := login(d, "CAROL", "carol-ldap-pw"); err != nil || id.User != "carol" || len(id.Groups) != 2 {
		t.Errorf("carol: %+v %v", id, err)
	}
	if _, err := login(d, "alice", "bob-ldap-pw"); !errors.Is(err, proxy.ErrAuthFailed) || errors.Is(err, authn.ErrUnknownUser) {
		t.Errorf("wrong password: %v", err)
	}
	if _, err := login(d, "nobody", "x"); !errors.Is(err, authn.ErrUnknownUser) {
		t.Errorf("unknown user: %v", err)
	}
	// RFC 4513 §5.1.2: no unauthenticated bind.
	if _, err := login(d, "alice", ""); !errors.Is(err, proxy.ErrAuthFailed) {
		t.Errorf("empty password: %v", err)
	}
	if _, err := d.Verify(context.Background(), &proxy.Credentials{Mechanism: "XOAUTH2", Token: "t"}); !errors.Is(err, authn.ErrNotApplicable) {
		t.Errorf("token: %v", err)
	}
}

// LDAP injection (RFC 4515, RFC 4514): the user name is a value, never
// filter or DN syntax. Each of these would match alice or every user
// unescaped; escaped they match nobody.
func TestInjection(t *testing.T) {
	s := ldaptest.Start(t, ldaptest.Options{})
	injected := []string{"*", "*)(uid=*", "alice)(uid=*", "*)(|(uid=*", "alice)(objectClass=*", "al*", `alice\2a`, "alice\x00", "alice,ou=people"}
	search := newDir(t, searchOptions(t, s))
	for _, u := range injected {
		// With alice's own password: an injection that matched her entry
		// would log in.
		if id, err := login(search, u, "alice-ldap-pw"); !errors.Is(err, authn.ErrUnknownUser) {
			t.Errorf("search mode, user %q matched: %+v %v", u, id, err)
		}
	}
	o := searchOptions(t, s)
	o.BindDN, o.SearchBase, o.SearchFilter = "uid={user},"+ldaptest.PeopleDN, "", ""
	o.URL, o.StartTLS = s.TLSURL, false
	direct := newDir(t, o)
	if id, err := login(direct, "alice", "alice-ldap-pw"); err != nil || id.User != "alice" || strings.Join(id.Groups, ",") != "staff" {
		t.Fatalf("direct bind: %+v %v", id, err)
	}
	for _, u := range append(injected, "alice+cn=x", "cn=admin,dc=example,dc=com", `alice\`) {
		if id, err := login(direct, u, "alice-ldap-pw"); err == nil || !errors.Is(err, proxy.ErrAuthFailed) {
			t.Errorf("direct mode, user %q: %+v %v", u, id, err)
		}
	}
}

// A login name must be the entry's own (UserAttribute, any case): the
// directory's equality rule ignores insignificant spaces (RFC 4518
// §2.6.1) and a filter may match other attributes, and each such
// spelling would be a fresh lockout counter for the same password
// (ARCHITECTURE.md §17). With her own password, none of them logs in.
func TestOnlyTheEntrysOwnName(t *testing.T) {
	s := ldaptest.Start(t, ldaptest.Options{})
	o := searchOptions(t, s)
	o.SearchFilter = "(&(objectClass=inetOrgPerson)(|(uid={user})(mail={user})))"
	search := newDir(t, o)
	for _, u := range []string{" alice", "alice ", "  alice", "alice@example.com", "ALICE@example.com"} {
		if id, err := login(search, u, "alice-ldap-pw"); !errors.Is(err, proxy.ErrAuthFailed) || errors.Is(err, authn.ErrUnknownUser) {
			t.Errorf("search mode, %q: %+v %v, want a refusal of the known user", u, id, err)
		}
	}
	if id, err := login(search, "Alice", "alice-ldap-pw"); err != nil || id.User != "alice" {
		t.Errorf("search mode, Alice: %+v %v", id, err)
	}
	o = searchOptions(t, s)
	o.BindDN, o.SearchBase, o.SearchFilter = "uid={user},"+ldaptest.PeopleDN, "", ""
	direct := newDir(t, o)
	for _, u := range []string{" alice", "alice "} {
		if id, err := login(direct, u, "alice-ldap-pw"); !errors.Is(err, proxy.ErrAuthFailed) {
			t.Errorf("direct mode, %q: %+v %v", u, id, err)
		}
	}
}

// A directory that is down or hangs is an outage, never a refusal and
// never a login; the pool recovers when it is back.
func TestDirectoryDown(t *testing.T) {
	s := ldaptest.Start(t, ldaptest.Options{})
	d := newDir(t, searchOptions(t, s))
	if _, err := login(d, "alice", "alice-ldap-pw"); err != nil {
		t.Fatal(err)
	}
	s.Kill()
	if _, err := login(d, "alice", "alice-ldap-pw"); err == nil || errors.Is(err, proxy.ErrAuthFailed) {
		t.Errorf("directory down: %v", err)
	}
	s.Restart(t)
	if _, err := login(d, "alice", "alice-ldap-pw"); err != nil {
		t.Errorf("after restart: %v", err)
	}

	for _, mode := range []string{"ldaps", "starttls"} {
		t.Run("hang-"+mode, func(t *testing.T) {
			o := searchOptions(t, s)
			addr := ldaptest.HangingListener(t)
			o.URL, o.StartTLS, o.Timeout = "ldap://"+addr, true, 300*time.Millisecond
			if mode == "ldaps" {
				o.URL, o.StartTLS = "ldaps://"+addr, false
			}
			d := newDir(t, o)
			start := time.Now()
			_, err := login(d, "alice", "alice-ldap-pw")
			if err == nil || errors.Is(err, proxy.ErrAuthFailed) {
				t.Errorf("hanging directory: %v", err)
			}
			// Bounded by a few Timeouts, whatever the machine's load.
			if el := time.Since(start); el > time.Minute {
				t.Errorf("took %v", el)
			}
		})
	}
}

// A certificate the configured roots do not vouch for is an outage too.
func TestUnverifiedDirectory(t *testing.T) {
	s := ldaptest.Start(t, ldaptest.Options{})
	o := searchOptions(t, s)
	o.TLS = nil // system roots: the fixture's CA is not among them
	d := newDir(t, o)
	if _, err := login(d, "alice", "alice-ldap-pw"); err == nil || errors.Is(err, proxy.ErrAuthFailed) || !strings.Contains(err.Error(), "certificate") {
		t.Errorf("unverified directory: %v", err)
	}
	if _, err := New(Options{URL: s.URL, BindDN: "uid={user},dc=x"}); err == nil {
		t.Error("ldap:// without StartTLS accepted")
	}
}

// Logins in parallel share a small pool.
func TestPool(t *testing.T) {
	s := ldaptest.Start(t, ldaptest.Options{})
	o := searchOptions(t, s)
	o.PoolSize = 2
	d := newDir(t, o)
	var wg sync.WaitGroup
	errs := make(chan error, 40)
	for i := range 40 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			user, pw := "alice", "alice-ldap-pw"
			if i%2 == 1 {
				pw = "wrong"
			}
			_, err := login(d, user, pw)
			if (i%2 == 0) != (err == nil) {
				errs <- err
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Errorf("parallel login: %v", err)
	}
	if n := len(d.svc.slots) + len(d.binds.slots); n > 4 {
		t.Errorf("%d connections open, pool size 2 each", n)
	}
}
