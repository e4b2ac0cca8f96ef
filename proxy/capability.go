package proxy

import (
	"github.com/imapwarden/imapwarden/proxy/imapwire"

	"bytes"
	"encoding/base64"
	"strings"
)

// dropCapability reports whether a backend capability must not reach the
// client: anything proxy/imapwire's table does not relay (ARCHITECTURE.md §7: never
// an extension the proxy cannot parse; STARTTLS, LOGINDISABLED, AUTH= and
// SASL-IR belong to the front end, COMPRESS= is the proxy's own, referrals
// would send the client around it).
func dropCapability(c []byte) bool {
	_, ok := imapwire.RelayCapability(c)
	return !ok
}

// filterCaps returns the capabilities of list the client may see.
func filterCaps(list []string) []string {
	out := make([]string, 0, len(list))
	for _, c := range list {
		if !dropCapability([]byte(c)) {
			out = append(out, c)
		}
	}
	return out
}

// parseCapabilities returns the list of a "* CAPABILITY ..." line or of a
// "[CAPABILITY ...]" response code, or nil.
func parseCapabilities(line []byte) []string {
	line = bytes.TrimRight(line, "\r\n")
	upper := bytes.ToUpper(line)
	var rest []byte
	if i := bytes.Index(upper, []byte("[CAPABILITY ")); i >= 0 {
		rest = line[i+len("[CAPABILITY "):]
		if j := bytes.IndexByte(rest, ']'); j >= 0 {
			rest = rest[:j]
		}
	} else if bytes.HasPrefix(upper, []byte("* CAPABILITY ")) {
		rest = line[len("* CAPABILITY "):]
	} else {
		return nil
	}
	return strings.Fields(string(rest))
}

// encodeB64 encodes a SASL response; empty is "=" (RFC 4959 §3).
func encodeB64(b []byte) string {
	if len(b) == 0 {
		return "="
	}
	return base64.StdEncoding.EncodeToString(b)
}

// appendCapability returns line with c added at the end of its capability
// list (before the CRLF), in dst's storage. line may alias dst.
func appendCapability(dst, line []byte, c string) []byte {
	body := bytes.TrimRight(line, "\r\n")
	out := make([]byte, 0, len(line)+len(c)+1)
	out = append(out, body...)
	out = append(out, ' ')
	out = append(out, c...)
	out = append(out, line[len(body):]...)
	return append(dst[:0], out...)
}
