package proxy

import (
	"context"
	"encoding/base64"
	"fmt"
	"testing"
)

// A login name that a backend or directory reads as another user is
// refused before the Limiter, the authenticator or a backend is asked
// (ARCHITECTURE.md §17): a backend's user separator ("rouser*master" is
// a Dovecot master login as rouser), spaces LDAP ignores, control
// characters, invalid UTF-8; in the authzid too.
func TestLoginNameOneReading(t *testing.T) {
	fl := &fakeLimiter{failures: map[string]int{}}
	h := newHarness(t, func(o *Options) {
		o.Limiter = fl
		o.AllowAuthzid = true
		o.UserSeparators = append([]string{"%"}, DefaultUserSeparators...)
	})
	b64 := func(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }
	refused := func(name, cmd string) {
		t.Helper()
		c := dialTLS(t, h.imaps)
		c.expect("* OK")
		c.transact(cmd, "a NO [AUTHENTICATIONFAILED] User name has more than one reading")
		if e := h.audit.lastAuth(t); e.Reason != "ambiguous-name" || e.Success || e.Detail == "" {
			t.Errorf("%q: audited %+v, want ambiguous-name with a detail", name, e)
		}
	}
	for _, name := range []string{"alice*master", "alice%master", " alice", "alice ", "al  ice", "al\tice", "al\x7fice", "al\u0085ice"} {
		refused(name, fmt.Sprintf("a LOGIN {%d+}\r\n%s alice-pw", len(name), name))
		refused(name, "a AUTHENTICATE PLAIN "+b64("\x00"+name+"\x00alice-pw"))
		refused(name, "a AUTHENTICATE PLAIN "+b64(name+"\x00alice\x00alice-pw"))
	}
	refused("invalid UTF-8", "a LOGIN {5+}\r\nal\xffce alice-pw")
	fl.mu.Lock()
	if len(fl.failures) != 0 {
		t.Errorf("refused names reached the Limiter: %v", fl.failures)
	}
	fl.mu.Unlock()
	// An honest name with one inner space or 8-bit letters is a name.
	c := dialTLS(t, h.imaps)
	c.expect("* OK")
	c.transact("a LOGIN \"al ice\" pw", "a NO [AUTHENTICATIONFAILED] Authentication failed")
	c.transact("b LOGIN alice alice-pw", "b OK")
}

// With an authorization identity allowed, failed logins count against the
// authentication identity, whose password is guessed: a fresh authzid is
// no fresh counter.
func TestAuthzidLockoutKeyedOnAuthcid(t *testing.T) {
	fl := &fakeLimiter{failures: map[string]int{}}
	h := newHarness(t, func(o *Options) {
		o.Limiter = fl
		o.AllowAuthzid = true
		o.Authenticator = funcAuthenticator(func(user, pass string) error {
			if user == "alice" && pass == "alice-pw" {
				return nil
			}
			return &AuthError{Authenticator: "test", Err: ErrAuthFailed}
		})
	})
	b64 := func(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }
	c := dialTLS(t, h.imaps)
	c.expect("* OK")
	c.transact("a1 AUTHENTICATE PLAIN "+b64("bob\x00alice\x00wrong"), "a1 NO [AUTHENTICATIONFAILED]")
	c.transact("a2 AUTHENTICATE PLAIN "+b64("carol\x00alice\x00wrong"), "a2 NO [AUTHENTICATIONFAILED]")
	c = dialTLS(t, h.imaps)
	c.expect("* OK")
	c.transact("a3 AUTHENTICATE PLAIN "+b64("dave\x00alice\x00wrong"), "a3 NO [AUTHENTICATIONFAILED]")
	if e := h.audit.lastAuth(t); e.Reason != "limit" {
		t.Errorf("third guess of alice's password under a new authzid: reason %q, want limit", e.Reason)
	}
	fl.mu.Lock()
	defer fl.mu.Unlock()
	if fl.failures["alice"] != 2 || fl.failures["bob"]+fl.failures["carol"] != 0 {
		t.Errorf("failures %v: want 2 against alice, none against the authzids", fl.failures)
	}
}

// An authenticator that verified another spelling of the user than the
// one typed (a directory's wider matching, an alias) is refused like a
// wrong password: the lockout counted the name typed.
func TestIdentityOtherSpellingRefused(t *testing.T) {
	h := newHarness(t, func(o *Options) {
		o.Authenticator = authenticatorFunc(func(c *Credentials) (*Identity, error) {
			switch c.User {
			case "alias":
				return &Identity{Authenticator: "dir", User: "alice"}, nil
			case "alice":
				return &Identity{Authenticator: "dir", User: "Alice"}, nil
			case "evil":
				return &Identity{Authenticator: "dir", User: "alice*master"}, nil
			}
			return nil, &AuthError{Authenticator: "dir", Err: ErrAuthFailed}
		})
	})
	c := dialTLS(t, h.imaps)
	c.expect("* OK")
	c.transact("a1 LOGIN alias pw", "a1 NO [AUTHENTICATIONFAILED] Authentication failed")
	if e := h.audit.lastAuth(t); e.Reason != "identity-mismatch" {
		t.Errorf("alias: reason %q, want identity-mismatch", e.Reason)
	}
	c.transact("a2 LOGIN evil pw", "a2 NO [AUTHENTICATIONFAILED] Authentication failed")
	if e := h.audit.lastAuth(t); e.Reason != "ambiguous-identity" {
		t.Errorf("evil: reason %q, want ambiguous-identity", e.Reason)
	}
	c = dialTLS(t, h.imaps)
	c.expect("* OK")
	c.transact("a3 LOGIN alice alice-pw", "a3 OK")
	if e := h.audit.lastAuth(t); !e.Success || e.User != "Alice" {
		t.Errorf("alice: %+v, want a login as the directory's Alice", e)
	}
}

type authenticatorFunc func(c *Credentials) (*Identity, error)

func (f authenticatorFunc) Authenticate(_ context.Context, _ *SessionInfo, c *Credentials) (*Identity, error) {
	return f(c)
}

func TestFoldUser(t *testing.T) {
	for _, c := range [][2]string{{"alice", "alice"}, {"Alice", "alice"}, {"\u212Aate", "kate"}, {"JÖRG", "jörg"}, {"", ""}} {
		if got := FoldUser(c[0]); got != c[1] {
			t.Errorf("FoldUser(%q) = %q, want %q", c[0], got, c[1])
		}
	}
	if SameUser("sam", "\u017Fam") {
		t.Error("SameUser is wider than FoldUser: LONG S is not s to the Limiter")
	}
}
