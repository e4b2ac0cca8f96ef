package proxy

import (
	"context"
	"errors"
	"testing"
)

func TestStaticRouter(t *testing.T) {
	def, special, corp := &Backend{Name: "def"}, &Backend{Name: "special"}, &Backend{Name: "corp"}
	r := &StaticRouter{
		Default: def,
		Users:   map[string]*Backend{"ceo@corp.example": special},
		Domains: map[string]*Backend{"corp.example": corp},
	}
	for user, want := range map[string]*Backend{
		"ceo@corp.example":     special, // the user beats the domain
		"CEO@Corp.Example":     special, // case-insensitive
		"bob@corp.example":     corp,
		"x@y@corp.example":     corp, // the part after the last "@"
		"bob@other.example":    def,
		"local-user":           def,
		"bob@sub.corp.example": def, // domains match exactly
	} {
		got, err := r.Route(context.Background(), &SessionInfo{}, user)
		if err != nil || got != want {
			t.Errorf("Route(%q) = %v, %v; want %s", user, got, err, want.Name)
		}
	}
	r.Default = nil
	if _, err := r.Route(context.Background(), &SessionInfo{}, "bob@other.example"); !errors.Is(err, ErrNoRoute) {
		t.Errorf("no default: err = %v", err)
	}
}
