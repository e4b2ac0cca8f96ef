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
	proxyTree := []string{"proxy", "proxy/imapwire", "proxy/proxyproto", "proxy/internal/inflate", "tlsterm", "internal/termsafe"}
	noEngines := []string{"github.com/open-policy-agent/", "github.com/caddyserver/", "go.yaml.in/", "gopkg.in/yaml"}
	for _, rule := range []struct {
		pkg       string
		forbidden []string // prefixes
		ownOK     []string // packages of ours it may import
		stdOnly   bool     // nothing outside the standard library but ownOK
	}{
		// proxy sees interfaces: neither OPA nor certmagic.
		{"proxy", []string{"github.com/open-policy-agent/", "github.com/caddyserver/"}, []string{"proxy", "proxy/imapwire", "proxy/proxyproto", "proxy/internal/inflate", "tlsterm", "internal/termsafe"}, false},
		// The wire scanner is the standard library only.
		{"proxy/imapwire", nil, []string{"proxy/imapwire"}, true},
		{"proxy/proxyproto", nil, []string{"proxy/proxyproto"}, true},
		// Limits live in Go, beside the proxy, not in the policy engine.
		{"proxy/ratelimit", []string{"github.com/open-policy-agent/", "github.com/caddyserver/"}, []string{"proxy", "proxy/imapwire", "proxy/proxyproto", "proxy/internal/inflate", "proxy/ratelimit", "tlsterm", "internal/termsafe"}, false},
		// Pools, health checks and the routing lookup: beside the proxy,
		// neither the policy engine nor the configuration format.
		{"proxy/pool", []string{"github.com/open-policy-agent/", "github.com/caddyserver/", "go.yaml.in/", "gopkg.in/yaml"}, []string{"proxy", "proxy/imapwire", "proxy/proxyproto", "proxy/internal/inflate", "proxy/pool", "tlsterm", "internal/termsafe"}, false},
		// The policy engine sees the proxy's types, never TLS machinery.
		{"policy", []string{"github.com/caddyserver/"}, []string{"policy", "policies", "internal/filemode", "proxy", "proxy/imapwire", "proxy/proxyproto", "proxy/internal/inflate", "tlsterm", "internal/termsafe"}, false},
		// audit imports no other package of ours (ARCHITECTURE.md §4).
		{"audit", nil, []string{"audit"}, false},
		// tlsterm imports no other package of ours.
		{"tlsterm", nil, []string{"tlsterm"}, false},
		// ACME stays behind tlsterm.Manager.
		{"tlsterm/acme", nil, []string{"tlsterm", "tlsterm/acme"}, false},
		// Authenticators are the proxy's, beside it: no policy engine, no
		// certmagic, no configuration format, none of the other hooks.
		{"proxy/authn", noEngines, append([]string{"proxy/authn", "internal/filemode"}, proxyTree...), false},
		{"proxy/authn/ldap", noEngines, append([]string{"proxy/authn", "proxy/authn/ldap", "internal/filemode"}, proxyTree...), false},
		{"proxy/authn/oauth2", noEngines, append([]string{"proxy/authn", "proxy/authn/oauth2", "internal/filemode"}, proxyTree...), false},
		// Standard library only.
		{"proxy/internal/inflate", nil, []string{"proxy/internal/inflate"}, true},
		{"internal/termsafe", nil, []string{"internal/termsafe"}, true},
		{"internal/filemode", nil, []string{"internal/filemode"}, true},
	} {
		for _, d := range deps(t, rule.pkg) {
			if rule.stdOnly && !isStandard(d) && !strings.HasPrefix(d, module+"/") {
				t.Errorf("%s depends on %s, outside the standard library", rule.pkg, d)
			}
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

// isStandard reports whether an import path is the standard library's:
// its first element has no dot.
func isStandard(path string) bool {
	first, _, _ := strings.Cut(path, "/")
	return !strings.Contains(first, ".")
}

// TestFixturesOnlyInTests: the test fixtures (internal/*test,
// internal/testenv) are imported by tests only, never by a package the
// binary is built from (ARCHITECTURE.md §4).
func TestFixturesOnlyInTests(t *testing.T) {
	out, err := exec.Command("go", "list", "-f", "{{.ImportPath}} {{join .Deps \" \"}}", module+"/...").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	fixture := func(p string) bool {
		rel, ok := strings.CutPrefix(p, module+"/internal/")
		return ok && !strings.Contains(rel, "/") && (strings.HasSuffix(rel, "test") || rel == "testenv")
	}
	checked := 0
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		f := strings.Fields(line)
		if len(f) == 0 || fixture(f[0]) {
			continue
		}
		checked++
		for _, d := range f[1:] {
			if fixture(d) {
				t.Errorf("%s imports the test fixture %s", f[0], d)
			}
		}
	}
	if checked == 0 {
		t.Fatal("no package checked")
	}
}
