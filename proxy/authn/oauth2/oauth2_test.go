package oauth2

import (
	"context"
	"crypto/hmac"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"math/big"
	"strings"
	"testing"
	"time"

	"github.com/imapwarden/imapwarden/internal/hydratest"
	"github.com/imapwarden/imapwarden/proxy"
	"github.com/imapwarden/imapwarden/proxy/authn"
)

var alice = hydratest.Client{ID: "alice", Secret: "alice-client-secret", Audience: []string{"imap", "other-api"}, Scope: "mail openid"}

func startHydra(t *testing.T) *hydratest.Server {
	t.Helper()
	// Each test its own: key rotation changes the server.
	s := hydratest.Start(t)
	s.CreateClient(t, alice)
	return s
}

func newVerifier(t *testing.T, o Options) *Verifier {
	t.Helper()
	v, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(v.Close)
	return v
}

func verify(v *Verifier, user, token string) (*proxy.Identity, error) {
	return v.Verify(context.Background(), &proxy.Credentials{Mechanism: "XOAUTH2", User: user, Token: token})
}

func TestHydraTokens(t *testing.T) {
	h := startHydra(t)
	v := newVerifier(t, Options{Issuer: h.Issuer, Audience: "imap", Scope: "mail"})
	tok := h.Token(t, alice, "imap", "mail")
	id, err := verify(v, "alice", tok)
	if err != nil {
		t.Fatal(err)
	}
	if id.User != "alice" || id.Issuer != h.Issuer || id.ClientID != "alice" || strings.Join(id.Scopes, " ") != "mail" {
		t.Errorf("identity %+v", id)
	}
	// OAUTHBEARER without a=: the token alone names the user.
	if id, err := v.Verify(context.Background(), &proxy.Credentials{Mechanism: "OAUTHBEARER", Token: tok}); err != nil || id.User != "alice" {
		t.Errorf("without a user: %+v %v", id, err)
	}
	if _, err := v.Verify(context.Background(), &proxy.Credentials{Mechanism: "PLAIN", User: "alice", Password: tok}); !errors.Is(err, authn.ErrNotApplicable) {
		t.Errorf("password: %v", err)
	}

	// Introspection (RFC 7662) of the same token at Hydra.
	in := newVerifier(t, Options{Issuer: h.Issuer, Introspection: true, IntrospectionURL: h.IntrospectionURL(), Audience: "imap"})
	if id, err := verify(in, "alice", tok); err != nil || id.User != "alice" || id.ClientID != "alice" {
		t.Errorf("introspection: %+v %v", id, err)
	}
	if _, err := verify(in, "alice", tok[:len(tok)-8]+"AAAAAAAA"); !errors.Is(err, proxy.ErrAuthFailed) {
		t.Errorf("introspection of a forged token: %v", err)
	}
}

// forge builds a JWS from header and payload JSON, signed by sign.
func forge(header, payload string, sign func(signed []byte) []byte) string {
	enc := base64.RawURLEncoding.EncodeToString
	signed := enc([]byte(header)) + "." + enc([]byte(payload))
	return signed + "." + enc(sign([]byte(signed)))
}

func payloadOf(t *testing.T, tok string) string {
	parts := strings.Split(tok, ".")
	b, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// Every bad token is refused with a reason for the audit, and never
// reads as the issuer being unavailable.
func TestBadTokens(t *testing.T) {
	h := startHydra(t)
	good := h.Token(t, alice, "imap", "mail")
	v := newVerifier(t, Options{Issuer: h.Issuer, Audience: "imap", Scope: "mail"})
	if _, err := verify(v, "alice", good); err != nil {
		t.Fatal(err)
	}
	payload := payloadOf(t, good)
	var hdr struct {
		Kid string `json:"kid"`
	}
	hb, _ := base64.RawURLEncoding.DecodeString(strings.Split(good, ".")[0])
	json.Unmarshal(hb, &hdr)

	// The issuer's public key, as an attacker would fetch it.
	var set struct {
		Keys []struct{ Kid, N, E string }
	}
	if err := json.Unmarshal(h.JWKS(t), &set); err != nil || len(set.Keys) == 0 {
		t.Fatalf("jwks: %v", err)
	}
	n, _ := base64.RawURLEncoding.DecodeString(set.Keys[0].N)
	e, _ := base64.RawURLEncoding.DecodeString(set.Keys[0].E)
	pub := &rsa.PublicKey{N: new(big.Int).SetBytes(n), E: int(new(big.Int).SetBytes(e).Int64())}
	der, _ := x509.MarshalPKIXPublicKey(pub)
	pubPEM := pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
	hs256 := func(key []byte) func([]byte) []byte {
		return func(b []byte) []byte { m := hmac.New(sha256.New, key); m.Write(b); return m.Sum(nil) }
	}

	cases := map[string]struct {
		v     *Verifier
		user  string
		token string
		why   string
	}{
		"wrong audience": {v, "alice", h.Token(t, alice, "other-api", "mail"), "audience mismatch"},
		"no scope":       {v, "alice", h.Token(t, alice, "imap", "openid"), "lacks scope"},
		"expired": {newVerifier(t, Options{Issuer: h.Issuer, Audience: "imap", Leeway: time.Second,
			Now: func() time.Time { return time.Now().Add(2 * time.Hour) }}), "alice", good, "expired"},
		"not yet valid": {newVerifier(t, Options{Issuer: h.Issuer, Audience: "imap", Leeway: time.Second,
			Now: func() time.Time { return time.Now().Add(-time.Hour) }}), "alice", good, "not valid yet"},
		"wrong issuer": {newVerifier(t, Options{Issuer: "https://sso.example.com/", JWKSURL: h.Issuer + ".well-known/jwks.json", Audience: "imap"}),
			"alice", good, "issuer mismatch"},
		"another user":       {v, "bob", good, "another user"},
		"alg none":           {v, "alice", forge(`{"alg":"none","typ":"JWT"}`, payload, func([]byte) []byte { return nil }), `algorithm "none"`},
		"alg none signed":    {v, "alice", forge(`{"alg":"none","typ":"JWT"}`, payload, func([]byte) []byte { return []byte("x") }), `algorithm "none"`},
		"alg None":           {v, "alice", forge(`{"alg":"None","kid":"`+hdr.Kid+`"}`, payload, func([]byte) []byte { return []byte("x") }), "not allowed"},
		"HS256 with the PEM": {v, "alice", forge(`{"alg":"HS256","typ":"JWT","kid":"`+hdr.Kid+`"}`, payload, hs256(pubPEM)), `algorithm "HS256"`},
		"HS256 with the DER": {v, "alice", forge(`{"alg":"HS256","typ":"JWT","kid":"`+hdr.Kid+`"}`, payload, hs256(der)), `algorithm "HS256"`},
		"RS256 re-signed":    {v, "alice", forge(`{"alg":"RS256","typ":"JWT","kid":"`+hdr.Kid+`"}`, strings.Replace(payload, `"alice"`, `"admin"`, -1), hs256(der)), "bad signature"},
		"unknown kid":        {v, "alice", forge(`{"alg":"RS256","typ":"JWT","kid":"nope"}`, payload, hs256(der)), "no key"},
		"truncated":          {v, "alice", good[:len(good)-10], "signature"},
		"truncated payload":  {v, "alice", truncatePayload(good), "bad signature"},
		"two parts":          {v, "alice", good[:strings.LastIndexByte(good, '.')], "not a JWT"},
		"oversized":          {v, "alice", good + strings.Repeat("A", DefaultMaxTokenSize), "over the"},
		"garbage":            {v, "alice", "not-a-token", "not a JWT"},
		"crit":               {v, "alice", forge(`{"alg":"RS256","kid":"`+hdr.Kid+`","crit":["exp"]}`, payload, hs256(der)), "critical"},
		"id token type":      {v, "alice", forge(`{"alg":"RS256","kid":"`+hdr.Kid+`","typ":"id_token+jwt"}`, payload, hs256(der)), "not an access token"},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			id, err := verify(c.v, c.user, c.token)
			if !errors.Is(err, proxy.ErrAuthFailed) || !strings.Contains(err.Error(), c.why) {
				t.Errorf("got %+v, %v; want a refusal saying %q", id, err, c.why)
			}
			if err != nil && strings.Contains(err.Error(), good[20:40]) {
				t.Errorf("the error quotes the token: %v", err)
			}
		})
	}
	if _, err := New(Options{Issuer: h.Issuer, Audience: "imap", Algorithms: []string{"HS256"}}); err == nil {
		t.Error("HS256 accepted in the allowlist")
	}
	if _, err := New(Options{Issuer: "http://sso.example.com/", Audience: "imap"}); err == nil {
		t.Error("plain HTTP to a remote issuer accepted")
	}
	if _, err := New(Options{Issuer: h.Issuer}); err == nil {
		t.Error("JWT without an audience accepted")
	}
}

// Key rotation: a token signed with a key published after the JWKS was
// cached is accepted once the new set is fetched.
func TestKeyRotation(t *testing.T) {
	h := startHydra(t)
	v := newVerifier(t, Options{Issuer: h.Issuer, Audience: "imap", MinRefresh: time.Nanosecond})
	first := h.Token(t, alice, "imap", "mail")
	if !strings.Contains(string(mustHeader(t, first)), "hydratest-rs256") {
		t.Fatalf("hydra did not sign with the key hydratest imported: %s", mustHeader(t, first))
	}
	if _, err := verify(v, "alice", first); err != nil {
		t.Fatal(err)
	}
	h.RotateKeys(t)
	rotated := h.Token(t, alice, "imap", "mail")
	if !strings.Contains(string(mustHeader(t, rotated)), "rotated-") {
		t.Fatalf("hydra did not sign with the new key: %s", mustHeader(t, rotated))
	}
	if _, err := verify(v, "alice", rotated); err != nil {
		t.Fatalf("after rotation: %v", err)
	}
	// Unknown kids refetch at most once per MinRefresh.
	slow := newVerifier(t, Options{Issuer: h.Issuer, Audience: "imap", MinRefresh: time.Hour})
	if _, err := verify(slow, "alice", rotated); err != nil {
		t.Fatal(err)
	}
	before := slow.fetches.Load()
	for range 3 {
		verify(slow, "alice", forge(`{"alg":"RS256","kid":"forged"}`, payloadOf(t, rotated), func([]byte) []byte { return []byte("x") }))
	}
	if n := slow.fetches.Load() - before; n > 1 {
		t.Errorf("%d JWKS fetches for 3 forged kids, want at most 1", n)
	}
}

func mustHeader(t *testing.T, tok string) []byte {
	b, err := base64.RawURLEncoding.DecodeString(strings.Split(tok, ".")[0])
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// truncatePayload cuts the middle part of a JWS in half.
func truncatePayload(tok string) string {
	p := strings.Split(tok, ".")
	return p[0] + "." + p[1][:len(p[1])/2] + "." + p[2]
}

// TestEmailClaimNeedsVerifiedEmail: with user_claim email, a token names
// its email's owner only if the issuer verified the address
// (email_verified true, OpenID Connect Core 1.0 §5.1): on an issuer
// where users set their own email, anyone could otherwise log in as
// any mailbox by claiming its address ("nOAuth").
func TestEmailClaimNeedsVerifiedEmail(t *testing.T) {
	h := startHydra(t)
	v := newVerifier(t, Options{Issuer: h.Issuer, Audience: "imap", UserClaim: "email"})
	tok := func(claims map[string]any) string {
		return h.SignedToken(t, "imap", claims)
	}
	if id, err := verify(v, "alice@example.com", tok(map[string]any{"sub": "u1", "email": "alice@example.com", "email_verified": true})); err != nil || id.User != "alice@example.com" {
		t.Fatalf("verified email: %+v %v", id, err)
	}
	for name, claims := range map[string]map[string]any{
		"unverified":        {"sub": "u2", "email": "alice@example.com", "email_verified": false},
		"no email_verified": {"sub": "u2", "email": "alice@example.com"},
		"a string":          {"sub": "u2", "email": "alice@example.com", "email_verified": "true"},
	} {
		if id, err := verify(v, "alice@example.com", tok(claims)); !errors.Is(err, proxy.ErrAuthFailed) || !strings.Contains(err.Error(), "not verified") {
			t.Errorf("%s: %+v %v, want a refusal", name, id, err)
		}
	}
	// Turned off explicitly, for an issuer that assigns the addresses.
	off := newVerifier(t, Options{Issuer: h.Issuer, Audience: "imap", UserClaim: "email", AllowUnverifiedEmail: true})
	if id, err := verify(off, "alice@example.com", tok(map[string]any{"sub": "u2", "email": "alice@example.com"})); err != nil || id.User != "alice@example.com" {
		t.Errorf("allow_unverified_email: %+v %v", id, err)
	}
	// Other claims are not the email's.
	sub := newVerifier(t, Options{Issuer: h.Issuer, Audience: "imap"})
	if id, err := verify(sub, "u3", tok(map[string]any{"sub": "u3", "email": "x@example.com", "email_verified": false})); err != nil || id.User != "u3" {
		t.Errorf("user_claim sub: %+v %v", id, err)
	}
}
