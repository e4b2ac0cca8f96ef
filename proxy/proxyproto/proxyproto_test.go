package proxyproto

import (
	"bytes"
	"io"
	"net/netip"
	"testing"
)

func TestReadHeader(t *testing.T) {
	v4 := AppendV2(nil, netip.MustParseAddrPort("192.0.2.7:5555"), netip.MustParseAddrPort("198.51.100.1:993"))
	v6 := AppendV2(nil, netip.MustParseAddrPort("[2001:db8::7]:5555"), netip.MustParseAddrPort("[2001:db8::1]:993"))
	local := append(append([]byte{}, v2sig...), 0x20, 0x00, 0, 0)
	withTLV := append(append([]byte{}, v2sig...), 0x21, 0x11, 0, 15, 192, 0, 2, 9, 10, 0, 0, 1, 0x30, 0x39, 0x03, 0xe1, 0x04, 0x00, 0x00)
	for _, tc := range []struct {
		name string
		in   []byte
		want Header
		err  bool
	}{
		{"v1 tcp4", []byte("PROXY TCP4 192.0.2.7 198.51.100.1 5555 993\r\n"), Header{Src: netip.MustParseAddrPort("192.0.2.7:5555"), Dst: netip.MustParseAddrPort("198.51.100.1:993")}, false},
		{"v1 tcp6", []byte("PROXY TCP6 2001:db8::7 2001:db8::1 5555 993\r\n"), Header{Src: netip.MustParseAddrPort("[2001:db8::7]:5555"), Dst: netip.MustParseAddrPort("[2001:db8::1]:993")}, false},
		{"v1 unknown", []byte("PROXY UNKNOWN\r\n"), Header{Local: true}, false},
		{"v1 family mismatch", []byte("PROXY TCP4 2001:db8::7 198.51.100.1 5555 993\r\n"), Header{}, true},
		{"v1 leading zero port", []byte("PROXY TCP4 192.0.2.7 198.51.100.1 05555 993\r\n"), Header{}, true},
		{"v1 no CR", []byte("PROXY TCP4 192.0.2.7 198.51.100.1 5555 993\n"), Header{}, true},
		{"v1 too long", append([]byte("PROXY TCP4 "), bytes.Repeat([]byte("1"), 200)...), Header{}, true},
		{"v2 ipv4", v4, Header{Src: netip.MustParseAddrPort("192.0.2.7:5555"), Dst: netip.MustParseAddrPort("198.51.100.1:993")}, false},
		{"v2 ipv6", v6, Header{Src: netip.MustParseAddrPort("[2001:db8::7]:5555"), Dst: netip.MustParseAddrPort("[2001:db8::1]:993")}, false},
		{"v2 local", local, Header{Local: true}, false},
		{"v2 with TLV", withTLV, Header{Src: netip.MustParseAddrPort("192.0.2.9:12345"), Dst: netip.MustParseAddrPort("10.0.0.1:993")}, false},
		{"v2 bad version", append(append([]byte{}, v2sig...), 0x11, 0x11, 0, 0), Header{}, true},
		{"v2 udp", append(append([]byte{}, v2sig...), 0x21, 0x12, 0, 12, 1, 2, 3, 4, 5, 6, 7, 8, 0, 1, 0, 2), Header{}, true},
		{"v2 huge", append(append([]byte{}, v2sig...), 0x21, 0x11, 0xff, 0xff), Header{}, true},
		{"v2 short", v4[:20], Header{}, true},
		{"imap", []byte("a1 LOGIN alice secret\r\n"), Header{}, true},
		{"tls", []byte("\x16\x03\x01\x02\x00\x01\x00\x01"), Header{}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			// What follows the header must stay unread.
			r := bytes.NewReader(append(append([]byte{}, tc.in...), "NEXT"...))
			h, err := ReadHeader(r)
			if (err != nil) != tc.err {
				t.Fatalf("err = %v, want error %v", err, tc.err)
			}
			if err != nil {
				return
			}
			if h != tc.want {
				t.Errorf("got %+v, want %+v", h, tc.want)
			}
			rest, _ := io.ReadAll(r)
			if string(rest) != "NEXT" {
				t.Errorf("left %q after the header", rest)
			}
		})
	}
}

func FuzzReadHeader(f *testing.F) {
	f.Add([]byte("PROXY TCP4 192.0.2.7 198.51.100.1 5555 993\r\n"))
	f.Add(AppendV2(nil, netip.MustParseAddrPort("192.0.2.7:5555"), netip.MustParseAddrPort("198.51.100.1:993")))
	f.Fuzz(func(t *testing.T, in []byte) {
		r := bytes.NewReader(in)
		h, err := ReadHeader(r)
		if err == nil && !h.Local {
			// A valid header round-trips through AppendV2.
			h2, err := ReadHeader(bytes.NewReader(AppendV2(nil, h.Src, h.Dst)))
			if err != nil || h2.Src.Addr().Unmap() != h.Src.Addr().Unmap() || h2.Src.Port() != h.Src.Port() {
				t.Fatalf("round trip %+v → %+v, %v", h, h2, err)
			}
		}
	})
}
