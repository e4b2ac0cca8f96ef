package pool

import (
	"context"
	"fmt"

	"github.com/imapwarden/imapwarden/proxy"
)

// Router routes a login by, in this order: the directory's hint
// (SessionInfo.Identity.Route, from an Authenticator), the lookup service
// when there is one, then Next (the configured routes, or the policy).
// Every place a hint or the lookup names is resolved against Set (a
// backend, or a server of one): anything else is refused, never dialled.
type Router struct {
	Set    *Set
	Lookup *Lookup // nil: no lookup
	Next   proxy.Router
}

var _ proxy.LoginRouter = (*Router)(nil)

// Route implements proxy.Router for logins without a password.
func (r *Router) Route(ctx context.Context, s *proxy.SessionInfo, user string) (*proxy.Backend, error) {
	return r.RouteLogin(ctx, s, user, "")
}

// RouteLogin implements proxy.LoginRouter. A refusal by the lookup
// service wraps proxy.ErrNoRoute (the client hears a failed login, after
// the service's Auth-Wait); a service that cannot be asked, a garbled
// answer, or a hint naming an unlisted place is another error (the client
// hears NO [UNAVAILABLE]).
func (r *Router) RouteLogin(ctx context.Context, s *proxy.SessionInfo, user, pass string) (*proxy.Backend, error) {
	if id := s.Identity; id != nil && id.Route != "" {
		b, err := r.Set.Resolve(id.Route)
		if err != nil {
			return nil, fmt.Errorf("directory route of %s: %w", id.Authenticator, err)
		}
		return b, nil
	}
	if r.Lookup != nil {
		a, err := r.Lookup.ask(ctx, s, user, pass)
		if err != nil {
			return nil, err
		}
		if !a.ok {
			if err := sleep(ctx, a.wait); err != nil {
				return nil, err
			}
			return nil, &RefusedError{Status: a.status}
		}
		if a.server != "" {
			b, err := r.Set.Resolve(a.server)
			if err != nil {
				return nil, fmt.Errorf("%w: answer: %w", ErrLookup, err)
			}
			return b, nil
		}
	}
	if r.Next == nil {
		return nil, proxy.ErrNoRoute
	}
	return r.Next.Route(ctx, s, user)
}

// RefusedError is a login the lookup service refused; it wraps
// proxy.ErrNoRoute. Status is the service's Auth-Status text, for the log
// (never shown to the client, who hears the same as for a wrong password).
type RefusedError struct{ Status string }

func (e *RefusedError) Error() string { return "lookup refused the login: " + e.Status }
func (e *RefusedError) Unwrap() error { return proxy.ErrNoRoute }
