package policy

import (
	"context"
	"errors"
	"testing"

	"github.com/imapwarden/imapwarden/proxy"
)

func TestRouter(t *testing.T) {
	dir := policySubset(t, map[string]string{"routing": "users: {alice: archive, bob: nowhere}\ngroups: {legacy: old}\n"}, "baseline", "routing")
	e, _ := newTestEngine(t, Options{Dirs: []Dir{{Path: dir}}, Groups: map[string][]string{"carol": {"legacy"}}})
	archive, old, def := &proxy.Backend{Name: "archive"}, &proxy.Backend{Name: "old"}, &proxy.Backend{Name: "default"}
	r := &Router{Engine: e, Backends: map[string]*proxy.Backend{"archive": archive, "old": old},
		Fallback: &proxy.StaticRouter{Default: def}}
	ctx := context.Background()
	for user, want := range map[string]*proxy.Backend{"alice": archive, "ALICE": archive, "carol": old, "dave": def} {
		s := testSession(user)
		if b, err := r.Route(ctx, s, user); err != nil || b != want {
			t.Errorf("%s: %v %v, want %s", user, b, err, want.Name)
		}
	}
	if _, err := r.Route(ctx, testSession("bob"), "bob"); err == nil || errors.Is(err, proxy.ErrNoRoute) {
		t.Errorf("unknown backend: %v", err)
	}
	// Without TLS the baseline denies the route: like an unknown user.
	s := testSession("alice")
	s.TLS = nil
	_, err := r.Route(ctx, s, "alice")
	var de *DeniedError
	if !errors.Is(err, proxy.ErrNoRoute) || !errors.As(err, &de) || de.Code != "PRIVACYREQUIRED" {
		t.Errorf("denied route: %v", err)
	}
	// The user may differ from the session's (nil session: a copy is made).
	if name, ok, err := e.Route(ctx, nil, "alice"); err == nil || ok || name != "" {
		t.Errorf("no session (no TLS): %q %v %v", name, ok, err)
	}
	r.Fallback = nil
	if _, err := r.Route(ctx, testSession("dave"), "dave"); !errors.Is(err, proxy.ErrNoRoute) {
		t.Errorf("no fallback: %v", err)
	}
}

func TestRouteFailsClosed(t *testing.T) {
	e, _ := newTestEngine(t, Options{Dirs: []Dir{{Path: regoDir(t, map[string]string{"p.rego": "package imapwarden\ndecision := {\"allow\": 1}\n"})}}})
	if _, _, err := e.Route(context.Background(), testSession("alice"), "alice"); !errors.Is(err, ErrEvaluation) {
		t.Fatalf("error %v", err)
	}
}
