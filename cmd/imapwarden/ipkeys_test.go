package main

import (
	"fmt"
	"regexp"
	"strings"
	"testing"

	"go.uber.org/zap"
)

// oneBackendConfig is a configuration of one TLS listener and one
// backend, for tests to add sections to.
func oneBackendConfig(t *testing.T) string {
	cf := tlsFiles(t, t.TempDir())
	return fmt.Sprintf("listeners: [{address: \"127.0.0.1:0\", mode: tls}]\ntls: {certificates: [{cert: %s, key: %s}]}\n"+
		"backends: {b: {address: \"127.0.0.1:143\", security: plain}}\n", cf.Cert, cf.Key)
}

// rate_limits.ipv4_translators and the subnet bits load, dump with their
// defaults, and are checked: a translator prefix of an RFC 6052 length,
// a subnet no longer than a host.
func TestRateLimitIPKeyConfig(t *testing.T) {
	base := oneBackendConfig(t)
	load := func(rl string) error {
		t.Helper()
		cfg, err := parseConfig([]byte(base + "rate_limits: {" + rl + "}\n"))
		if err != nil {
			t.Fatalf("%s: %v", rl, err)
		}
		_, err = check(cfg, zap.NewNop())
		return err
	}
	for _, rl := range []string{"", "ipv4_translators: []", `ipv4_translators: ["64:ff9b::/96", "64:ff9b:1:abcd::/64", "::ffff:0:0:0/96"]`,
		"subnet_bits_v6: 64", "ip_bits_v6: 48"} {
		if err := load(rl); err != nil {
			t.Errorf("%s: %v", rl, err)
		}
	}
	for rl, want := range map[string]string{
		`ipv4_translators: ["2002::/16"]`:     "ipv4_translators: 2002::/16: an RFC 6052 prefix is",
		`ipv4_translators: ["64:ff9b::1/96"]`: "did you mean 64:ff9b::/96",
		`ipv4_translators: ["64:ff9b::"]`:     "rate_limits.ipv4_translators[0]",
		`ipv4_translators: ["10.0.0.0/8"]`:    "not an IPv6 prefix",
		"ip_bits_v6: 40":                      "subnet_bits_v6 48 is longer than ip_bits_v6 40",
		"subnet_bits_v4: 28, ip_bits_v4: 24":  "subnet_bits_v4 28 is longer than ip_bits_v4 24",
	} {
		if err := load(rl); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: %v, want %q", rl, err, want)
		}
	}

	dump := func(rl string) string {
		t.Helper()
		cfg, err := parseConfig([]byte(base + "rate_limits: {" + rl + "}\n"))
		if err != nil {
			t.Fatal(err)
		}
		out, err := effectiveConfigYAML(cfg)
		if err != nil {
			t.Fatal(err)
		}
		return string(out)
	}
	if out := dump(""); !strings.Contains(out, "subnet_bits_v6: 48\n") || !regexp.MustCompile(`ipv4_translators:\n\s+- 64:ff9b::/96\n`).MatchString(out) {
		t.Errorf("defaults not dumped:\n%s", out)
	}
	if out := dump("ipv4_translators: []"); !strings.Contains(out, "ipv4_translators: []\n") {
		t.Errorf("no translators not dumped:\n%s", out)
	}
}
