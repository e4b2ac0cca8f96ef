package authn

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/crypto/bcrypt"

	"github.com/imapwarden/imapwarden/proxy"
)

type verifierFunc func(c *proxy.Credentials) (*proxy.Identity, error)

func (f verifierFunc) Verify(_ context.Context, c *proxy.Credentials) (*proxy.Identity, error) {
	return f(c)
}

var errDown = errors.New("directory down")

// TestChainOrder: the chain moves on only past authenticators that do not
// take the credentials or do not know the user; a refusal or an outage
// stops it, so a second authenticator never lets in a user the first
// refused (or could not check).
func TestChainOrder(t *testing.T) {
	dir := verifierFunc(func(c *proxy.Credentials) (*proxy.Identity, error) {
		switch {
		case c.IsToken():
			return nil, ErrNotApplicable
		case c.User == "down":
			return nil, errDown
		case c.User != "alice":
			return nil, ErrUnknownUser
		case c.Password != "pw":
			return nil, proxy.ErrAuthFailed
		}
		return &proxy.Identity{User: "alice", Groups: []string{"staff"}}, nil
	})
	ch, err := NewChain([]Named{{"dir", dir}, {"backend", nil}})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	for _, tc := range []struct {
		user, pw       string
		token          bool
		authenticator  string
		backend, unavl bool
		fails          bool
	}{
		{user: "alice", pw: "pw", authenticator: "dir"},
		{user: "alice", pw: "wrong", authenticator: "dir", fails: true},
		{user: "carol", pw: "x", authenticator: "backend", backend: true},
		{user: "down", pw: "x", authenticator: "dir", unavl: true},
		{user: "alice", token: true, authenticator: "backend", fails: true},
	} {
		cr := &proxy.Credentials{Mechanism: "LOGIN", User: tc.user, Password: tc.pw}
		if tc.token {
			cr = &proxy.Credentials{Mechanism: "XOAUTH2", User: tc.user, Token: "t"}
		}
		id, err := ch.Authenticate(ctx, nil, cr)
		var ae *proxy.AuthError
		name := ""
		if id != nil {
			name = id.Authenticator
		} else if errors.As(err, &ae) {
			name = ae.Authenticator
		}
		switch {
		case name != tc.authenticator:
			t.Errorf("%+v: authenticator %q", tc, name)
		case tc.backend != errors.Is(err, proxy.ErrBackendVerifies):
			t.Errorf("%+v: %v", tc, err)
		case tc.fails != errors.Is(err, proxy.ErrAuthFailed):
			t.Errorf("%+v: %v", tc, err)
		case tc.unavl && (err == nil || errors.Is(err, proxy.ErrAuthFailed)):
			t.Errorf("%+v: an outage must not read as a refusal: %v", tc, err)
		case err == nil && (id.User != "alice" || id.Groups[0] != "staff"):
			t.Errorf("%+v: identity %+v", tc, id)
		}
	}
	if _, err := NewChain([]Named{{"backend", nil}, {"dir", dir}}); err == nil {
		t.Error("backend before another authenticator accepted")
	}
	if _, err := NewChain([]Named{{"dir", dir}, {"dir", dir}}); err == nil {
		t.Error("duplicate names accepted")
	}
	if ch.VerifiesInProxy() != true {
		t.Error("VerifiesInProxy")
	}
	if only, _ := NewChain([]Named{{"backend", nil}}); only.VerifiesInProxy() {
		t.Error("backend alone verifies in the proxy")
	}
}

func TestFile(t *testing.T) {
	argon, err := HashPassword("alice-pw")
	if err != nil {
		t.Fatal(err)
	}
	bc, err := bcrypt.GenerateFromPassword([]byte("bob-pw"), 10)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "users")
	os.WriteFile(path, []byte("# users\n\nalice:"+argon+":staff, vpn\nBob:"+string(bc)+"\n"), 0o600)
	f, err := NewFile(FileOptions{Path: path})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	check := func(user, pw string) (*proxy.Identity, error) {
		return f.Verify(ctx, &proxy.Credentials{Mechanism: "PLAIN", User: user, Password: pw})
	}
	if id, err := check("alice", "alice-pw"); err != nil || id.User != "alice" || strings.Join(id.Groups, ",") != "staff,vpn" {
		t.Errorf("alice: %+v %v", id, err)
	}
	if id, err := check("bob", "bob-pw"); err != nil || id.User != "Bob" {
		t.Errorf("bob: %+v %v", id, err)
	}
	if _, err := check("alice", "bob-pw"); !errors.Is(err, proxy.ErrAuthFailed) || errors.Is(err, ErrUnknownUser) {
		t.Errorf("wrong password: %v", err)
	}
	if _, err := check("carol", "x"); !errors.Is(err, ErrUnknownUser) {
		t.Errorf("unknown user: %v", err)
	}
	if _, err := check("alice", ""); !errors.Is(err, proxy.ErrAuthFailed) {
		t.Errorf("empty password: %v", err)
	}
	if _, err := f.Verify(ctx, &proxy.Credentials{Mechanism: "XOAUTH2", Token: "x"}); !errors.Is(err, ErrNotApplicable) {
		t.Errorf("token: %v", err)
	}
	for name, content := range map[string]string{
		"plain":       "alice:secret\n",
		"md5":         "alice:$1$salt$hash\n",
		"weak bcrypt": "alice:$2a$04$abcdefghijklmnopqrstuu0123456789012345678901234567890\n",
		"weak argon":  "alice:$argon2id$v=19$m=16,t=1,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA\n",
		"duplicate":   "alice:" + argon + "\nALICE:" + argon + "\n",
		"fields":      "alice\n",
	} {
		p := filepath.Join(t.TempDir(), "users")
		os.WriteFile(p, []byte(content), 0o600)
		if _, err := NewFile(FileOptions{Path: p}); err == nil {
			t.Errorf("%s: loaded", name)
		} else if strings.Contains(err.Error(), "secret") {
			t.Errorf("%s: error quotes the file: %v", name, err)
		}
	}
}
