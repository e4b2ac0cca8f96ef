// Package oauth2 checks OAuth 2.0 bearer tokens (RFC 6750) sent with
// SASL OAUTHBEARER (RFC 7628) or XOAUTH2: JWT access tokens verified
// locally (RFC 9068, keys from the issuer's JWKS found by discovery,
// RFC 8414 / OpenID Connect Discovery), or any token by introspection
// (RFC 7662).
//
// Implementation notes:
//
//   - The algorithm comes from a configured allowlist of asymmetric ones
//     and must match the key's type: "none" and HMAC are never accepted,
//     so a token "signed" with HS256 and the issuer's public key as the
//     secret (alg confusion) fails like any forgery.
//   - A key is chosen by kid; a kid not in the cached set fetches the
//     JWKS again (key rotation), at most once per MinRefresh, so forged
//     kids cannot make the proxy hammer the issuer. A failed fetch is not
//     repeated before MinRefresh either, and concurrent logins share one
//     fetch in flight: while the issuer is down, a login that needs its
//     keys fails at once as the issuer being unavailable.
//   - iss must equal Issuer exactly, aud must contain Audience, exp is
//     required; exp, nbf and iat are checked with Leeway.
//   - The token is never logged, audited or kept; errors describe it only
//     by what was wrong ("token expired", "audience mismatch").
//   - A token is at most MaxTokenSize bytes: larger ones are refused
//     before anything is decoded.
//   - Discovery, JWKS and introspection need HTTPS, except to a loopback
//     address (an issuer on the same host, tests).
package oauth2

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/imapwarden/imapwarden/proxy"
	"github.com/imapwarden/imapwarden/proxy/authn"
)

// Options configure a Verifier.
type Options struct {
	// Issuer is the exact "iss" of the tokens, and where discovery looks
	// (Issuer + "/.well-known/openid-configuration", then
	// "/.well-known/oauth-authorization-server").
	Issuer string
	// Audience must be in the tokens' "aud": the JWT's, or the
	// introspection answer's, which must then have one. Optional with
	// introspection only.
	Audience string
	// JWKSURL skips discovery for the keys.
	JWKSURL string
	// Introspection checks every token at the issuer (RFC 7662) instead
	// of locally; IntrospectionURL (default from discovery),
	// ClientID and ClientSecret authenticate the proxy there (HTTP Basic;
	// optional for an issuer that asks for none).
	Introspection    bool
	IntrospectionURL string
	ClientID         string
	ClientSecret     string
	// UserClaim names the user (default "sub"; "email" or
	// "preferred_username" are common). GroupsClaim, when set, lists the
	// user's groups.
	//
	// Only "sub" (with "iss") is an identifier the issuer keeps unique and
	// stable (OpenID Connect Core 1.0 §5.7). "email" is the user's only
	// once the issuer checked it: a token naming an email is refused
	// unless its "email_verified" is true, since on an issuer where users
	// set their own address anyone could claim a victim's ("nOAuth").
	// AllowUnverifiedEmail turns that check off, for an issuer that only
	// ever issues addresses it assigned. "preferred_username" may be
	// anything the user chose, and not unique (§5.1): only for an issuer
	// where users cannot set it.
	UserClaim            string
	GroupsClaim          string
	AllowUnverifiedEmail bool
	// Scope, when set, must be among the token's scopes; it is also the
	// scope the error response tells the client to ask for.
	Scope string
	// Algorithms allowed (default RS256, RS384, RS512, PS256, PS384,
	// PS512, ES256, ES384, ES512, EdDSA). Only asymmetric ones.
	Algorithms []string
	// Leeway for exp, nbf and iat (default 60s).
	Leeway time.Duration
	// JWKSCacheTTL: keys are fetched again after this (default 1h);
	// MinRefresh bounds refetches for unknown kids, and retries after a
	// failed fetch (default 30s).
	JWKSCacheTTL time.Duration
	MinRefresh   time.Duration
	// Timeout bounds each HTTP request to the issuer (default 10s).
	Timeout time.Duration
	// MaxTokenSize refuses longer tokens (default 16 KiB).
	MaxTokenSize int
	// TLS verifies the issuer (RootCAs); nil means the system roots.
	TLS *tls.Config
	// Now is the clock (tests); default time.Now.
	Now func() time.Time
}

// Defaults.
const (
	DefaultLeeway       = 60 * time.Second
	DefaultJWKSCacheTTL = time.Hour
	DefaultMinRefresh   = 30 * time.Second
	DefaultTimeout      = 10 * time.Second
	DefaultMaxTokenSize = 16 << 10
	maxDocument         = 1 << 20 // discovery, JWKS, introspection responses
)

// DefaultAlgorithms are the asymmetric JWS algorithms of RFC 7518 and
// RFC 8037.
var DefaultAlgorithms = []string{"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"}

// Verifier is an authn.TokenVerifier.
type Verifier struct {
	o      Options
	algs   map[string]bool
	client *http.Client

	mu        sync.Mutex
	discovery *discoveryDoc // nil until fetched
	keys      map[string]*jwk
	anon      []*jwk // keys without a kid
	fetched   time.Time
	refreshed time.Time // last fetch for an unknown kid
	// The JWKS fetch in flight, the number of fetches completed, and the
	// last one's error with the time before which none is tried again
	// (refresh).
	inflight *keyFetch
	gen      uint64
	fetchErr error
	retryAt  time.Time
	fetches  atomic.Int64
}

var _ authn.TokenVerifier = (*Verifier)(nil)

// New checks o; it does not contact the issuer.
func New(o Options) (*Verifier, error) {
	if o.Issuer == "" {
		return nil, errors.New("oauth2: issuer is required")
	}
	for _, u := range []string{o.Issuer, o.JWKSURL, o.IntrospectionURL} {
		if u != "" {
			if err := checkURL(u); err != nil {
				return nil, err
			}
		}
	}
	if !o.Introspection && o.Audience == "" {
		return nil, errors.New("oauth2: audience is required to accept JWT access tokens (a token for another service must not log in)")
	}
	if o.UserClaim == "" {
		o.UserClaim = "sub"
	}
	if len(o.Algorithms) == 0 {
		o.Algorithms = DefaultAlgorithms
	}
	algs := map[string]bool{}
	for _, a := range o.Algorithms {
		if _, ok := algorithms[a]; !ok {
			return nil, fmt.Errorf("oauth2: algorithm %q is not allowed (want asymmetric ones: %s)", a, strings.Join(DefaultAlgorithms, ", "))
		}
		algs[a] = true
	}
	orDefault(&o.Leeway, DefaultLeeway)
	orDefault(&o.JWKSCacheTTL, DefaultJWKSCacheTTL)
	orDefault(&o.MinRefresh, DefaultMinRefresh)
	orDefault(&o.Timeout, DefaultTimeout)
	if o.MaxTokenSize <= 0 {
		o.MaxTokenSize = DefaultMaxTokenSize
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	tr := &http.Transport{
		Proxy:               nil, // the issuer is reached directly
		TLSClientConfig:     o.TLS,
		MaxIdleConnsPerHost: 16,
		IdleConnTimeout:     90 * time.Second,
		ForceAttemptHTTP2:   true,
	}
	c := &http.Client{Transport: tr, Timeout: o.Timeout,
		// A redirect could lead to an address that checkURL refused.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	return &Verifier{o: o, algs: algs, client: c}, nil
}

func orDefault(d *time.Duration, def time.Duration) {
	if *d <= 0 {
		*d = def
	}
}

// checkURL wants https, or http to a loopback address.
func checkURL(s string) error {
	u, err := url.Parse(s)
	if err != nil || u.Host == "" {
		return fmt.Errorf("oauth2: %q is not a URL", s)
	}
	switch u.Scheme {
	case "https":
		return nil
	case "http":
		h := u.Hostname()
		if ip := net.ParseIP(h); (ip != nil && ip.IsLoopback()) || h == "localhost" {
			return nil
		}
	}
	return fmt.Errorf("oauth2: %s: want https (http only to a loopback address)", s)
}

// TokenChallenge implements authn.TokenVerifier.
func (v *Verifier) TokenChallenge() proxy.TokenChallenge {
	return proxy.TokenChallenge{Scope: v.o.Scope, OpenIDConfiguration: strings.TrimSuffix(v.o.Issuer, "/") + "/.well-known/openid-configuration"}
}

// Close drops idle connections to the issuer.
func (v *Verifier) Close() { v.client.CloseIdleConnections() }

// refused wraps a reason as a refusal.
func refused(format string, args ...any) error {
	return fmt.Errorf("%s: %w", fmt.Sprintf(format, args...), proxy.ErrAuthFailed)
}

// Verify implements authn.Verifier.
func (v *Verifier) Verify(ctx context.Context, c *proxy.Credentials) (*proxy.Identity, error) {
	if !c.IsToken() {
		return nil, authn.ErrNotApplicable
	}
	if len(c.Token) > v.o.MaxTokenSize {
		return nil, refused("token of %d bytes, over the %d allowed", len(c.Token), v.o.MaxTokenSize)
	}
	var cl *claims
	var err error
	if v.o.Introspection {
		cl, err = v.introspect(ctx, c.Token)
	} else {
		cl, err = v.verifyJWT(ctx, c.Token)
	}
	if err != nil {
		return nil, err
	}
	id, err := v.identity(cl)
	if err != nil {
		return nil, err
	}
	// The user the client named (XOAUTH2 user=, OAUTHBEARER a=) must be
	// the token's: a token is no licence to read someone else's mail. The
	// proxy's one equivalence (ARCHITECTURE.md §17), not EqualFold, which
	// is wider ("\u017F" is "s" to it, not to the Limiter).
	if c.User != "" && !proxy.SameUser(c.User, id.User) {
		return nil, refused("token is for another user than the one named")
	}
	return id, nil
}

// identity takes the user and the rest from checked claims.
func (v *Verifier) identity(cl *claims) (*proxy.Identity, error) {
	user, _ := cl.raw[v.o.UserClaim].(string)
	if user == "" || strings.ContainsAny(user, "\x00\r\n") {
		return nil, refused("token has no %q claim", v.o.UserClaim)
	}
	// OpenID Connect Core 1.0 §5.1: email_verified is a boolean; anything
	// else (absent, "true" as a string) is not the issuer saying so.
	if verified, _ := cl.raw["email_verified"].(bool); v.o.UserClaim == "email" && !v.o.AllowUnverifiedEmail && !verified {
		return nil, refused("token's email is not verified (email_verified)")
	}
	scopes := cl.scopes()
	if v.o.Scope != "" && !contains(scopes, v.o.Scope) {
		return nil, refused("token lacks scope %q", v.o.Scope)
	}
	id := &proxy.Identity{User: user, Issuer: cl.str("iss"), ClientID: cl.clientID(), Scopes: scopes}
	if id.Issuer == "" {
		id.Issuer = v.o.Issuer
	}
	if g := v.o.GroupsClaim; g != "" {
		id.Groups = stringList(cl.raw[g])
	}
	return id, nil
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// discoveryDoc is what the proxy reads of RFC 8414 / OIDC discovery.
type discoveryDoc struct {
	Issuer                string `json:"issuer"`
	JWKSURI               string `json:"jwks_uri"`
	IntrospectionEndpoint string `json:"introspection_endpoint"`
}

// discover fetches the issuer's metadata once (RFC 8414 §3).
func (v *Verifier) discover(ctx context.Context) (*discoveryDoc, error) {
	v.mu.Lock()
	d := v.discovery
	v.mu.Unlock()
	if d != nil {
		return d, nil
	}
	base := strings.TrimSuffix(v.o.Issuer, "/")
	var lastErr error
	for _, path := range []string{"/.well-known/openid-configuration", "/.well-known/oauth-authorization-server"} {
		var doc discoveryDoc
		if err := v.getJSON(ctx, base+path, &doc); err != nil {
			lastErr = err
			continue
		}
		// RFC 8414 §3.3: the document must be the issuer's own.
		if doc.Issuer != v.o.Issuer {
			return nil, fmt.Errorf("oauth2: discovery at %s names issuer %q, not %q", base+path, doc.Issuer, v.o.Issuer)
		}
		for _, u := range []string{doc.JWKSURI, doc.IntrospectionEndpoint} {
			if u != "" {
				if err := checkURL(u); err != nil {
					return nil, err
				}
			}
		}
		v.mu.Lock()
		v.discovery = &doc
		v.mu.Unlock()
		return &doc, nil
	}
	return nil, fmt.Errorf("oauth2: discovery: %w", lastErr)
}

func (v *Verifier) getJSON(ctx context.Context, u string, into any) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return err
	}
	req.Header.Set("Accept", "application/json")
	return v.doJSON(req, into)
}

func (v *Verifier) doJSON(req *http.Request, into any) error {
	resp, err := v.client.Do(req)
	if err != nil {
		return fmt.Errorf("%s %s: %w", req.Method, req.URL.Redacted(), err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		io.Copy(io.Discard, io.LimitReader(resp.Body, maxDocument))
		return fmt.Errorf("%s %s: %s", req.Method, req.URL.Redacted(), resp.Status)
	}
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxDocument+1))
	if err != nil {
		return fmt.Errorf("%s %s: %w", req.Method, req.URL.Redacted(), err)
	}
	if len(data) > maxDocument {
		return fmt.Errorf("%s %s: response over %d bytes", req.Method, req.URL.Redacted(), maxDocument)
	}
	if err := json.Unmarshal(data, into); err != nil {
		return fmt.Errorf("%s %s: %w", req.Method, req.URL.Redacted(), err)
	}
	return nil
}

// introspect asks the issuer (RFC 7662 §2).
func (v *Verifier) introspect(ctx context.Context, token string) (*claims, error) {
	endpoint := v.o.IntrospectionURL
	if endpoint == "" {
		d, err := v.discover(ctx)
		if err != nil {
			return nil, err
		}
		if endpoint = d.IntrospectionEndpoint; endpoint == "" {
			return nil, errors.New("oauth2: the issuer publishes no introspection_endpoint")
		}
	}
	form := url.Values{"token": {token}, "token_type_hint": {"access_token"}}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, endpoint, strings.NewReader(form.Encode()))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Accept", "application/json")
	if v.o.ClientID != "" {
		// RFC 6749 §2.3.1: form-encoded, then Basic.
		req.SetBasicAuth(url.QueryEscape(v.o.ClientID), url.QueryEscape(v.o.ClientSecret))
	}
	var raw map[string]any
	if err := v.doJSON(req, &raw); err != nil {
		return nil, fmt.Errorf("oauth2: introspection: %w", err)
	}
	cl := &claims{raw: raw}
	if active, _ := raw["active"].(bool); !active {
		return nil, refused("token is not active")
	}
	if iss := cl.str("iss"); iss != "" && iss != v.o.Issuer {
		return nil, refused("issuer mismatch")
	}
	// aud is optional in an introspection answer (RFC 7662 §2.2), but a
	// configured audience is required as for a JWT: an issuer that leaves
	// it out (Keycloak without an audience mapper) would let a token
	// issued to any client of the realm log in.
	if v.o.Audience != "" && !contains(stringList(raw["aud"]), v.o.Audience) {
		if raw["aud"] == nil {
			return nil, refused("token names no audience")
		}
		return nil, refused("audience mismatch")
	}
	if err := v.checkTimes(cl, false); err != nil {
		return nil, err
	}
	if v.o.UserClaim == "sub" && cl.str("sub") == "" {
		// RFC 7662 §2.2 names the user "username" when there is no sub.
		raw["sub"] = raw["username"]
	}
	return cl, nil
}
