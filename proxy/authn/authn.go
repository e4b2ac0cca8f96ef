// Package authn checks client credentials in the proxy: a chain of named
// authenticators (a directory, an identity provider, a password file, or
// the backend itself), tried in order. It implements proxy.Authenticator;
// the kinds live in their own packages (proxy/authn/ldap,
// proxy/authn/oauth2) and in File here.
//
// Order and safety, which the chain keeps whatever its members say:
//
//   - The first authenticator that verifies the credentials wins; its
//     name goes to the Identity, so policy and audit know who vouched.
//   - The next one is tried only when this one does not take the kind of
//     credentials (a password for oauth2, a token for ldap) or does not
//     know the user (ErrUnknownUser). A known user with a wrong password
//     is refused there: a second authenticator must not let the same
//     user in without the first one's groups and attributes.
//   - An authenticator that cannot answer (directory down, timeout) stops
//     the chain with an error that is not ErrAuthFailed: the client gets
//     NO [UNAVAILABLE], never a login (no fail-open), and no lockout.
//   - "backend" (a nil Verifier) must be last: it hands the password to
//     the backend's login.
package authn

import (
	"context"
	"errors"
	"fmt"

	"github.com/imapwarden/imapwarden/proxy"
)

// Verifier is one kind of authenticator.
type Verifier interface {
	// Verify checks c. It returns the identity (Authenticator is set by
	// the Chain), or an error wrapping ErrNotApplicable, ErrUnknownUser
	// or proxy.ErrAuthFailed, or another error when it cannot tell.
	Verify(ctx context.Context, c *proxy.Credentials) (*proxy.Identity, error)
}

// TokenVerifier is a Verifier that takes bearer tokens: the proxy offers
// OAUTHBEARER and XOAUTH2, and its challenge goes in the RFC 7628 error.
type TokenVerifier interface {
	Verifier
	TokenChallenge() proxy.TokenChallenge
}

var (
	// ErrNotApplicable: the Verifier does not take this kind of
	// credentials; the next one is asked.
	ErrNotApplicable = errors.New("credentials of a kind this authenticator does not take")
	// ErrUnknownUser: the Verifier does not know the user; the next one is
	// asked. It is a failure like any other if none verifies.
	ErrUnknownUser = fmt.Errorf("unknown user: %w", proxy.ErrAuthFailed)
)

// Named is one authenticator of the chain. A nil Verifier is the backend
// authenticator.
type Named struct {
	Name     string
	Verifier Verifier
}

// Chain tries its authenticators in order (see the package comment).
type Chain struct {
	list  []Named
	token *proxy.TokenChallenge
}

var _ proxy.TokenAuthenticator = (*Chain)(nil)

// NewChain checks list: names non-empty and distinct, the backend
// authenticator (nil Verifier) last if present.
func NewChain(list []Named) (*Chain, error) {
	if len(list) == 0 {
		return nil, errors.New("authn: no authenticators")
	}
	c := &Chain{list: list}
	seen := map[string]bool{}
	for i, n := range list {
		if n.Name == "" {
			return nil, fmt.Errorf("authn: authenticator %d has no name", i)
		}
		if seen[n.Name] {
			return nil, fmt.Errorf("authn: two authenticators are named %q", n.Name)
		}
		seen[n.Name] = true
		if n.Verifier == nil && i != len(list)-1 {
			return nil, fmt.Errorf("authn: the backend authenticator %q must be the last", n.Name)
		}
		if tv, ok := n.Verifier.(TokenVerifier); ok && c.token == nil {
			tc := tv.TokenChallenge()
			c.token = &tc
		}
	}
	return c, nil
}

// VerifiesInProxy reports whether some authenticator other than the
// backend checks credentials: master-user backends need one.
func (c *Chain) VerifiesInProxy() bool {
	for _, n := range c.list {
		if n.Verifier != nil {
			return true
		}
	}
	return false
}

// Tokens reports whether an authenticator takes bearer tokens.
func (c *Chain) Tokens() (proxy.TokenChallenge, bool) {
	if c.token == nil {
		return proxy.TokenChallenge{}, false
	}
	return *c.token, true
}

// Authenticate implements proxy.Authenticator.
func (c *Chain) Authenticate(ctx context.Context, _ *proxy.SessionInfo, cr *proxy.Credentials) (*proxy.Identity, error) {
	var last error
	for _, n := range c.list {
		if n.Verifier == nil {
			if cr.IsToken() {
				continue
			}
			return &proxy.Identity{Authenticator: n.Name, User: cr.User}, proxy.ErrBackendVerifies
		}
		id, err := n.Verifier.Verify(ctx, cr)
		switch {
		case err == nil:
			id.Authenticator = n.Name
			return id, nil
		case errors.Is(err, ErrNotApplicable):
			continue
		case errors.Is(err, ErrUnknownUser):
			last = &proxy.AuthError{Authenticator: n.Name, Err: err}
			continue
		}
		// A refusal of a known user, or no answer: the chain stops.
		return nil, &proxy.AuthError{Authenticator: n.Name, Err: err}
	}
	if last == nil {
		last = &proxy.AuthError{Authenticator: c.list[len(c.list)-1].Name, Err: fmt.Errorf("no authenticator takes %s: %w", cr.Mechanism, proxy.ErrAuthFailed)}
	}
	return nil, last
}
