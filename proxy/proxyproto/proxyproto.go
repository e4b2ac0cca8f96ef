// Package proxyproto reads and writes the PROXY protocol header (HAProxy's
// "The PROXY protocol", versions 1 and 2) that carries a client's address
// across a load balancer. Standard library only.
//
// ReadHeader never reads past the header, so what follows (a TLS
// ClientHello, an IMAP command) is left on the connection untouched.
package proxyproto

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"strconv"
	"strings"
)

// v2sig is the 12-byte signature of a version 2 header (spec §2.2).
var v2sig = []byte("\r\n\r\n\x00\r\nQUIT\n")

// Limits from the spec: a v1 line is at most 107 bytes (§2.1); v2 address
// blocks are bounded here to keep a trusted but broken peer from making us
// read much (TLVs are skipped).
const (
	maxV1Line = 107
	maxV2Len  = 4096
)

// ErrNoHeader: the stream does not start with a PROXY header.
var ErrNoHeader = errors.New("proxyproto: no PROXY header")

// Header is what a PROXY header says.
type Header struct {
	// Local is true for a v2 LOCAL command or a v1 "UNKNOWN" line: the
	// connection is the balancer's own (health checks); use the socket's
	// addresses.
	Local    bool
	Src, Dst netip.AddrPort
}

// ReadHeader reads one v1 or v2 header from r, reading exactly its bytes.
func ReadHeader(r io.Reader) (Header, error) {
	var b [16]byte
	if _, err := io.ReadFull(r, b[:6]); err != nil {
		return Header{}, fmt.Errorf("proxyproto: read header: %w", err)
	}
	switch {
	case string(b[:6]) == "PROXY ":
		return readV1(r)
	case bytes.Equal(b[:6], v2sig[:6]):
		if _, err := io.ReadFull(r, b[6:16]); err != nil {
			return Header{}, fmt.Errorf("proxyproto: read header: %w", err)
		}
		if !bytes.Equal(b[:12], v2sig) {
			return Header{}, ErrNoHeader
		}
		return readV2(r, b[12], b[13], binary.BigEndian.Uint16(b[14:16]))
	}
	return Header{}, ErrNoHeader
}

// readV1 reads the rest of "PROXY TCP4 1.2.3.4 5.6.7.8 111 222\r\n" one
// byte at a time: a line has no length prefix, and over-reading would eat
// the client's first bytes.
func readV1(r io.Reader) (Header, error) {
	line := make([]byte, 0, maxV1Line)
	var c [1]byte
	for {
		if _, err := io.ReadFull(r, c[:]); err != nil {
			return Header{}, fmt.Errorf("proxyproto: read v1: %w", err)
		}
		if c[0] == '\n' {
			break
		}
		if len(line) >= maxV1Line-len("PROXY ") {
			return Header{}, errors.New("proxyproto: v1 line too long")
		}
		line = append(line, c[0])
	}
	s, ok := strings.CutSuffix(string(line), "\r")
	if !ok {
		return Header{}, errors.New("proxyproto: v1 line without CRLF")
	}
	f := strings.Split(s, " ")
	if len(f) >= 1 && f[0] == "UNKNOWN" {
		return Header{Local: true}, nil
	}
	if len(f) != 5 || (f[0] != "TCP4" && f[0] != "TCP6") {
		return Header{}, fmt.Errorf("proxyproto: bad v1 line %q", s)
	}
	src, err := v1Addr(f[1], f[3], f[0] == "TCP4")
	if err != nil {
		return Header{}, err
	}
	dst, err := v1Addr(f[2], f[4], f[0] == "TCP4")
	if err != nil {
		return Header{}, err
	}
	return Header{Src: src, Dst: dst}, nil
}

func v1Addr(ip, port string, v4 bool) (netip.AddrPort, error) {
	a, err := netip.ParseAddr(ip)
	if err != nil || a.Is4() != v4 || a.Zone() != "" {
		return netip.AddrPort{}, fmt.Errorf("proxyproto: bad v1 address %q", ip)
	}
	// Ports are decimal without leading zeros (spec §2.1).
	p, err := strconv.ParseUint(port, 10, 16)
	if err != nil || (len(port) > 1 && port[0] == '0') {
		return netip.AddrPort{}, fmt.Errorf("proxyproto: bad v1 port %q", port)
	}
	return netip.AddrPortFrom(a, uint16(p)), nil
}

func readV2(r io.Reader, verCmd, famProto byte, n uint16) (Header, error) {
	if verCmd>>4 != 2 {
		return Header{}, fmt.Errorf("proxyproto: v2 version %d", verCmd>>4)
	}
	if n > maxV2Len {
		return Header{}, fmt.Errorf("proxyproto: v2 header of %d bytes", n)
	}
	body := make([]byte, n)
	if _, err := io.ReadFull(r, body); err != nil {
		return Header{}, fmt.Errorf("proxyproto: read v2: %w", err)
	}
	switch verCmd & 0x0f {
	case 0x0: // LOCAL: ignore the address block (spec §2.2)
		return Header{Local: true}, nil
	case 0x1: // PROXY
	default:
		return Header{}, fmt.Errorf("proxyproto: v2 command %d", verCmd&0x0f)
	}
	switch famProto {
	case 0x11: // TCP over IPv4
		if len(body) < 12 {
			return Header{}, errors.New("proxyproto: short v2 IPv4 block")
		}
		src := netip.AddrFrom4([4]byte(body[0:4]))
		dst := netip.AddrFrom4([4]byte(body[4:8]))
		return Header{
			Src: netip.AddrPortFrom(src, binary.BigEndian.Uint16(body[8:10])),
			Dst: netip.AddrPortFrom(dst, binary.BigEndian.Uint16(body[10:12])),
		}, nil
	case 0x21: // TCP over IPv6
		if len(body) < 36 {
			return Header{}, errors.New("proxyproto: short v2 IPv6 block")
		}
		src := netip.AddrFrom16([16]byte(body[0:16]))
		dst := netip.AddrFrom16([16]byte(body[16:32]))
		return Header{
			Src: netip.AddrPortFrom(src, binary.BigEndian.Uint16(body[32:34])),
			Dst: netip.AddrPortFrom(dst, binary.BigEndian.Uint16(body[34:36])),
		}, nil
	case 0x00: // UNSPEC with PROXY: unknown addresses, like LOCAL
		return Header{Local: true}, nil
	}
	return Header{}, fmt.Errorf("proxyproto: v2 family/protocol 0x%02x not TCP", famProto)
}

// AppendV2Local appends a v2 header with the LOCAL command: the
// connection is the sender's own (a health check), with no addresses
// (PROXY protocol §2.2).
func AppendV2Local(b []byte) []byte {
	b = append(b, v2sig...)
	return append(b, 0x20, 0x00, 0, 0) // version 2, LOCAL; UNSPEC; no address block
}

// AppendV2 appends a v2 PROXY header for a TCP connection from src to dst.
// Mixed families are sent as IPv6 (IPv4-mapped).
func AppendV2(b []byte, src, dst netip.AddrPort) []byte {
	b = append(b, v2sig...)
	b = append(b, 0x21) // version 2, PROXY
	sa, da := src.Addr().Unmap(), dst.Addr().Unmap()
	if sa.Is4() && da.Is4() {
		b = append(b, 0x11, 0, 12)
		b = append(b, sa.AsSlice()...)
		b = append(b, da.AsSlice()...)
	} else {
		s16, d16 := src.Addr().As16(), dst.Addr().As16()
		b = append(b, 0x21, 0, 36)
		b = append(b, s16[:]...)
		b = append(b, d16[:]...)
	}
	b = binary.BigEndian.AppendUint16(b, src.Port())
	return binary.BigEndian.AppendUint16(b, dst.Port())
}
