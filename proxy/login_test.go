package proxy

import (
	"context"
	"crypto/tls"
	"encoding/base64"
	"encoding/json"
	"strings"
	"testing"

	"github.com/imapwarden/imapwarden/internal/dovecottest"
)

// tokenAuth accepts the token "good-<user>" for that user.
type tokenAuth struct{}

func (tokenAuth) Authenticate(_ context.Context, _ *SessionInfo, c *Credentials) (*Identity, error) {
	if !c.IsToken() {
		return nil, &AuthError{Authenticator: "sso", Err: ErrAuthFailed}
	}
	user, ok := strings.CutPrefix(c.Token, "good-")
	if !ok || (c.User != "" && c.User != user) {
		return nil, &AuthError{Authenticator: "sso", Err: ErrAuthFailed}
	}
	return &Identity{Authenticator: "sso", User: user, Issuer: "https://sso.test/", ClientID: "mua", Scopes: []string{"mail"}}, nil
}

func (tokenAuth) Tokens() (TokenChallenge, bool) {
	return TokenChallenge{Scope: "mail", OpenIDConfiguration: "https://sso.test/.well-known/openid-configuration"}, true
}

// Bearer tokens (RFC 7628, XOAUTH2): offered only with a token
// authenticator; a refused or malformed one gets the RFC 7628 §3.2.2
// error challenge, then NO after the client's dummy response — the same
// whatever was wrong.
func TestTokenMechanisms(t *testing.T) {
	b64 := func(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }
	h := newDovecotHarness(t, func(dc *dovecottest.Server) *Backend {
		return &Backend{Name: "d", Addr: dc.Addr, Security: BackendStartTLS, TLS: &tls.Config{RootCAs: caPool(t, dc.CAFile), ServerName: "localhost"},
			Login: LoginMaster, MasterUser: dc.MasterUser, MasterPassword: dc.MasterPassword}
	}, func(o *Options) { o.Authenticator = tokenAuth{} })
	c := dialTLS(t, h.imaps)
	if g := c.expect("* OK [CAPABILITY"); !strings.Contains(g, "AUTH=OAUTHBEARER AUTH=XOAUTH2") {
		t.Fatalf("greeting without token mechanisms: %s", g)
	}
	wantErr := func(tag, reason string) {
		t.Helper()
		l := c.line()
		chal, ok := strings.CutPrefix(l, "+ ")
		if !ok {
			t.Fatalf("%s: got %q, want the error challenge", tag, l)
		}
		raw, err := base64.StdEncoding.DecodeString(strings.TrimSpace(chal))
		if err != nil {
			t.Fatal(err)
		}
		var e map[string]string
		if err := json.Unmarshal(raw, &e); err != nil || e["status"] != "invalid_token" || e["scope"] != "mail" ||
			!strings.HasSuffix(e["openid-configuration"], "/.well-known/openid-configuration") {
			t.Fatalf("%s: error challenge %s (%v)", tag, raw, err)
		}
		c.send(b64("\x01"))
		c.expectTagged(tag, tag+" NO [AUTHENTICATIONFAILED] Authentication failed")
		if ev := h.audit.lastAuth(t); ev.Reason != reason || ev.Success {
			t.Errorf("%s: audit %+v, want reason %s", tag, ev, reason)
		}
	}
	for i, m := range []string{
		"n,a=alice,\x01auth=Bearer bad\x01\x01",                // refused
		"n,a=bob,\x01auth=Bearer good-alice\x01\x01",           // another user's token
		"n,a=alice,\x01auth=Bearer good-alice\x01",             // truncated
		"p=tls-unique,,\x01auth=Bearer good-alice\x01\x01",     // channel binding
		"n,a=alice,\x01auth=Bearer good alice\x01\x01",         // not a b64token
		"n,a=alice,\x01auth=Basic Zm9vOmJhcg==\x01\x01",        // not Bearer
		"n,a=alice,\x01auth=Bearer a\x01auth=Bearer b\x01\x01", // two tokens
	} {
		tag := "o" + string(rune('0'+i))
		c = dialTLS(t, h.imaps)
		c.expect("* OK")
		c.send(tag + " AUTHENTICATE OAUTHBEARER " + b64(m))
		reason := "credentials"
		if i >= 2 {
			reason = "sasl-syntax"
		}
		wantErr(tag, reason)
	}
	// Without an initial response: an empty challenge first. An empty
	// dummy response (XOAUTH2 clients send one) ends the exchange too.
	c = dialTLS(t, h.imaps)
	c.expect("* OK")
	c.send("x1 AUTHENTICATE XOAUTH2")
	c.expect("+ ")
	c.send(b64("user=alice\x01auth=Bearer bad\x01\x01"))
	if l := c.line(); !strings.HasPrefix(l, "+ ") {
		t.Fatalf("got %q", l)
	}
	c.send("")
	c.expectTagged("x1", "x1 NO [AUTHENTICATIONFAILED]")
	if ev := h.audit.lastAuth(t); ev.Reason != "credentials" || ev.Authenticator != "sso" {
		t.Errorf("x1: audit %+v", ev)
	}
	c.send("x2 AUTHENTICATE XOAUTH2 " + b64("user=alice\x01auth=Bearer good-alice\x01\x01"))
	c.expectTagged("x2", "x2 OK")
	ev := h.audit.lastAuth(t)
	if !ev.Success || ev.Authenticator != "sso" || ev.Mechanism != "XOAUTH2" {
		t.Errorf("audit %+v", ev)
	}
	// OAUTHBEARER without a=: the token names the user.
	c = dialTLS(t, h.imaps)
	c.expect("* OK")
	c.transact("y1 AUTHENTICATE OAUTHBEARER "+b64("n,,\x01host=localhost\x01port=993\x01auth=Bearer good-bob\x01\x01"), "y1 OK")
}

// Without a token authenticator the mechanisms are neither offered nor
// accepted.
func TestTokenMechanismsOff(t *testing.T) {
	b64 := func(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }
	h := newHarness(t)
	c := dialTLS(t, h.imaps)
	if g := c.expect("* OK [CAPABILITY"); strings.Contains(g, "XOAUTH2") || strings.Contains(g, "OAUTHBEARER") {
		t.Fatalf("token mechanisms offered: %s", g)
	}
	c.transact("a1 AUTHENTICATE XOAUTH2 "+b64("user=alice\x01auth=Bearer x\x01\x01"), "a1 NO [CANNOT]")
}
