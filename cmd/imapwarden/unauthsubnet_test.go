package main

import (
	"slices"
	"strings"
	"testing"

	"go.uber.org/zap"
)

// rate_limits.unauthenticated_connections_per_subnet: unset, it is the
// Limiter's default or a quarter of limits.max_preauth_connections when
// that is less, so that one subnet never holds every connection awaiting
// login; set to no less than them, it loads with a warning. The dump shows
// what is in force.
func TestUnauthenticatedPerSubnetConfig(t *testing.T) {
	base := oneBackendConfig(t)
	const key = "rate_limits.unauthenticated_connections_per_subnet"
	for _, tc := range []struct {
		conf       string
		want       int
		warn       bool
		dumpedWant string
	}{
		{"limits: {max_preauth_connections: 4096}\n", 1024, false, "unauthenticated_connections_per_subnet: 1024\n"},
		{"limits: {max_preauth_connections: 200}\n", 50, false, "unauthenticated_connections_per_subnet: 50\n"},
		{"limits: {max_preauth_connections: 2}\n", 1, false, "unauthenticated_connections_per_subnet: 1\n"},
		{"limits: {max_preauth_connections: 200}\nrate_limits: {unauthenticated_connections_per_subnet: 150}\n", 150, false, ""},
		{"limits: {max_preauth_connections: 200}\nrate_limits: {unauthenticated_connections_per_subnet: 200}\n", 200, true, ""},
		{"limits: {max_preauth_connections: 200}\nrate_limits: {unauthenticated_connections_per_subnet: -1}\n", -1, false, ""},
	} {
		cfg, err := parseConfig([]byte(base + tc.conf))
		if err != nil {
			t.Fatalf("%s: %v", tc.conf, err)
		}
		s, err := check(cfg, zap.NewNop())
		if err != nil {
			t.Fatalf("%s: %v", tc.conf, err)
		}
		if got := s.limiterOpts.MaxUnauthenticatedPerSubnet; got != tc.want {
			t.Errorf("%s: %d in force, want %d", tc.conf, got, tc.want)
		}
		warned := slices.ContainsFunc(s.warnings, func(w warning) bool { return w.Key == key })
		if warned != tc.warn {
			t.Errorf("%s: warned %v, want %v (%v)", tc.conf, warned, tc.warn, s.warnings)
		}
		if tc.dumpedWant == "" {
			continue
		}
		out, err := effectiveConfigYAML(cfg)
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(string(out), tc.dumpedWant) {
			t.Errorf("%s: dump lacks %q:\n%s", tc.conf, tc.dumpedWant, out)
		}
	}
}
