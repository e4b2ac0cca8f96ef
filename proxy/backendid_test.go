package proxy

import (
	"net/netip"
	"testing"
)

// The ID command sent to a backend: each value quoted, IPv4-mapped
// addresses unmapped, quotes and backslashes escaped; built in one buffer
// (a handful of allocations for the address texts, not one per argument).
func TestBackendIDLine(t *testing.T) {
	info := &SessionInfo{
		ID:         `s"1\`,
		ClientAddr: netip.MustParseAddrPort("[::ffff:192.0.2.7]:40123"),
		LocalAddr:  netip.MustParseAddrPort("[2001:db8::1]:993"),
	}
	want := `ID ("x-originating-ip" "192.0.2.7" "x-originating-port" "40123" "x-connected-ip" "2001:db8::1" "x-connected-port" "993" "x-session-id" "s\"1\\")`
	if got := string(appendBackendID(nil, info)); got != want {
		t.Errorf("ID line\n%s\nwant\n%s", got, want)
	}
	var buf [256]byte
	if n := testing.AllocsPerRun(100, func() { appendBackendID(buf[:0], info) }); n > 4 {
		t.Errorf("appendBackendID allocates %.0f times, want at most 4 (two addresses, two ports)", n)
	}
}
