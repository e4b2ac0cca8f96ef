// Package archtest enforces the import rules of ARCHITECTURE.md §4.
package archtest

import (
	"os/exec"
	"strings"
	"testing"
)

const module = "github.com/imapwarden/imapwarden"

func deps(t *testing.T, pkg string) []string {
	t.Helper()
	out, err := exec.Command("go", "list", "-deps", module+"/"+pkg).Output()
	if err != nil {
		if ee, ok := err.(*exec.ExitError); ok {
			t.Fatalf("go list %s: %v\n%s", pkg, err, ee.Stderr)
		}
		t.Fatalf("go list %s: %v", pkg, err)
	}
	return strings.Fields(string(out))
}

func TestImportRules(t *testing.T) {
	for _, rule := range []struct {
		pkg       string
		forbidden []string // prefixes
		ownOK     []string // packages of ours it may import
	}{
		// proxy sees interfaces: neither OPA nor certmagic.
		{"proxy", []string{"github.com/open-policy-agent/", "github.com/caddyserver/"}, []string{"proxy", "proxy/imapwire", "proxy/proxyproto", "proxy/internal/inflate", "tlsterm"}},
		// The wire scanner is the standard library only.
		{"proxy/imapwire", []string{"github.com/", "go.uber.org/", "golang.org/x/"}, []string{"proxy/imapwire"}},
		{"proxy/proxyproto", []string{"github.com/", "go.uber.org/", "golang.org/x/"}, []string{"proxy/proxyproto"}},
		// Limits live in Go, beside the proxy, not in the policy engine.
		{"proxy/ratelimit", []string{"github.com/open-policy-agent/", "github.com/caddyserver/"}, []string{"proxy", "proxy/imapwire", "proxy/proxyproto", "proxy/internal/inflate", "proxy/ratelimit", "tlsterm"}},
		// Pools, health checks and the routing lookup: beside the proxy,
		// neither the policy engine nor the configuration format.
		{"proxy/pool", []string{"github.com/open-policy-agent/", "github.com/caddyserver/", "go.yaml.in/", "gopkg.in/yaml"}, []string{"proxy", "proxy/imapwire", "proxy/proxyproto", "proxy/internal/inflate", "proxy/pool", "tlsterm"}},
		// The policy engine sees the proxy's types, never TLS machinery.
		{"policy", []string{"github.com/caddyserver/"}, []string{"policy", "policies", "proxy", "proxy/imapwire", "proxy/proxyproto", "proxy/internal/inflate", "tlsterm"}},
		// audit imports no other package of ours (ARCHITECTURE.md §4).
		{"audit", nil, []string{"audit"}},
		// tlsterm imports no other package of ours.
		{"tlsterm", nil, []string{"tlsterm"}},
	} {
		for _, d := range deps(t, rule.pkg) {
			if own, ok := strings.CutPrefix(d, module+"/"); ok {
				allowed := false
				for _, a := range rule.ownOK {
					allowed = allowed || own == a
				}
				if !allowed {
					t.Errorf("%s imports %s", rule.pkg, d)
				}
				continue
			}
			for _, f := range rule.forbidden {
				if strings.HasPrefix(d, f) {
					t.Errorf("%s depends on %s", rule.pkg, d)
				}
			}
		}
	}
}
