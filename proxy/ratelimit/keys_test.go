package ratelimit

import (
	"net/netip"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"
)

func TestKeysFoldCaseAndSeparate(t *testing.T) {
	h := newHasher()
	ip := netip.MustParseAddr("192.0.2.1")
	long := strings.Repeat("Alice.Example-", 40) // past the stack buffer
	// Unicode too, as the file authenticator and the policy fold
	// (proxy.FoldUser): KELVIN SIGN is k (ARCHITECTURE.md §17).
	for _, pair := range [][2]string{{"alice", "ALICE"}, {"Alice@Example.com", "alice@example.com"}, {long, strings.ToLower(long)},
		{"\u212Aate", "kate"}, {"JÖRG", "jörg"}, {"\u212A" + long, "k" + strings.ToLower(long)}} {
		if h.sum(kindFailUserIP, pair[0], ip) != h.sum(kindFailUserIP, pair[1], ip) {
			t.Errorf("%q and %q differ", pair[0], pair[1])
		}
		if userID(pair[0]) != userID(pair[1]) {
			t.Errorf("userID of %q and %q differ", pair[0], pair[1])
		}
	}
	seen := map[uint64]string{}
	add := func(name string, k uint64) {
		if other, ok := seen[k]; ok {
			t.Errorf("%s and %s share a key", name, other)
		}
		seen[k] = name
	}
	add("ip", h.sum(kindFailIP, "", ip))
	add("user", h.sum(kindFailUser, "alice", netip.Addr{}))
	add("user_ip", h.sum(kindFailUserIP, "alice", ip))
	add("conn ip", h.sum(kindConnIP, "", ip))
	add("other ip", h.sum(kindFailIP, "", netip.MustParseAddr("192.0.2.2")))
	add("other user", h.sum(kindFailUser, "alicf", netip.Addr{}))
	if other := newHasher(); other.sum(kindFailIP, "", ip) == h.sum(kindFailIP, "", ip) {
		t.Error("two seeds gave the same key")
	}
	if got := label(strings.Repeat("X", 300)); len(got) != maxLabel || got[0] != 'x' {
		t.Errorf("label %q", got)
	}
}

// The lead decodes configuration with yaml.v3: Rate, Action and
// GroupLimits decode from their text forms as they are.
func TestYAMLDecoding(t *testing.T) {
	var cfg struct {
		Fetch  Rate                   `yaml:"fetch_bytes_per_user"`
		Action Action                 `yaml:"fetch_action"`
		Mode   FailureMode            `yaml:"redis_failure_mode"`
		Groups map[string]GroupLimits `yaml:"group_limits"`
	}
	in := "fetch_bytes_per_user: 10GiB/24h\nfetch_action: delay\nredis_failure_mode: closed\ngroup_limits:\n  staff:\n    fetch_bytes_per_user: off\n    sessions_per_user: 50\n    commands_per_session: 100/1s burst 1000\n"
	if err := yaml.Unmarshal([]byte(in), &cfg); err != nil {
		t.Fatal(err)
	}
	if cfg.Fetch != (Rate{N: 10 << 30, Per: 24 * time.Hour}) || cfg.Action != ActionDelay || cfg.Mode != FailClosed {
		t.Errorf("decoded %+v", cfg)
	}
	if g := cfg.Groups["staff"]; g.FetchBytesPerUser != Off || g.MaxSessionsPerUser != 50 || g.CommandsPerSession != (Rate{N: 100, Per: time.Second, Burst: 1000}) {
		t.Errorf("group %+v", g)
	}
	if err := yaml.Unmarshal([]byte("fetch_action: block\n"), &cfg); err == nil {
		t.Error("bad action accepted")
	}
}
