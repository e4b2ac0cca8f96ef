package policy

import (
	"context"
	"errors"
	"fmt"

	"github.com/imapwarden/imapwarden/proxy"
)

// ErrEvaluation reports a policy that could not be evaluated; routing then
// fails closed.
var ErrEvaluation = errors.New("policy evaluation failed")

// DeniedError is a route decision that refused the user.
type DeniedError struct {
	Code, Reason string
}

func (e *DeniedError) Error() string { return "policy denied the route: " + e.Reason }

// Unwrap makes a refused route a proxy.ErrNoRoute, which the proxy answers
// like a wrong password: no hint whether the user exists.
func (e *DeniedError) Unwrap() error { return proxy.ErrNoRoute }

// Route asks the policies at the route point (input.point "route", after
// the auth decision) which backend serves user. ok is false when no policy
// names one: the caller's own routing applies. A denial is a *DeniedError
// (a proxy.ErrNoRoute); a failed evaluation ErrEvaluation.
func (e *Engine) Route(ctx context.Context, s *proxy.SessionInfo, user string) (backend string, ok bool, err error) {
	if s == nil || s.User != user {
		// The proxy passes its session, whose User is the user; copy
		// rather than write to what it owns.
		var c proxy.SessionInfo
		if s != nil {
			c = *s
		}
		c.User, s = user, &c
	}
	o := e.decide(ctx, e.state.Load(), &proxy.DecisionInput{Point: PointRoute, Session: s})
	switch {
	case o.failed:
		return "", false, ErrEvaluation
	case !o.decision.Allow:
		return "", false, &DeniedError{Code: o.decision.Code, Reason: o.decision.Reason}
	case o.backend != "":
		return o.backend, true, nil
	}
	return "", false, nil
}

// Router is a proxy.Router that routes by policy first: the backend named
// by the route decision, looked up in Backends, else Fallback.
type Router struct {
	Engine *Engine
	// Backends by the names policies use (the configuration's).
	Backends map[string]*proxy.Backend
	// Fallback routes users no policy routes; nil means none
	// (proxy.ErrNoRoute).
	Fallback proxy.Router
}

var _ proxy.Router = (*Router)(nil)

// Route implements proxy.Router.
func (r *Router) Route(ctx context.Context, s *proxy.SessionInfo, user string) (*proxy.Backend, error) {
	name, ok, err := r.Engine.Route(ctx, s, user)
	if err != nil {
		return nil, err
	}
	if ok {
		b := r.Backends[name]
		if b == nil {
			// A policy naming a backend that is not configured is a
			// mistake to fix, not a user to turn away as unknown.
			return nil, fmt.Errorf("policy routes to unknown backend %q", name)
		}
		return b, nil
	}
	if r.Fallback == nil {
		return nil, proxy.ErrNoRoute
	}
	return r.Fallback.Route(ctx, s, user)
}
