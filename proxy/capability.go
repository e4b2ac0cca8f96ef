package proxy

import (
	"bytes"
	"encoding/base64"
	"strings"
)

// relayedCaps are the capabilities the relay can parse and pass through
// safely. Anything else the backend offers is dropped, never passed blind
// (DESIGN §3). Names ending in "=" match any value.
var relayedCaps = map[string]bool{
	"IMAP4REV1": true, "IMAP4REV2": true, "IDLE": true, "NAMESPACE": true, "UIDPLUS": true,
	"LITERAL+": true, "LITERAL-": true, "BINARY": true, "MOVE": true, "UNSELECT": true,
	"CHILDREN": true, "ID": true, "ENABLE": true, "CONDSTORE": true, "QRESYNC": true,
	"ESEARCH": true, "ESORT": true, "SEARCHRES": true, "WITHIN": true, "SORT": true,
	"LIST-EXTENDED": true, "LIST-STATUS": true, "SPECIAL-USE": true, "CREATE-SPECIAL-USE": true,
	"MULTIAPPEND": true, "CATENATE": true, "ACL": true, "QUOTA": true, "NOTIFY": true,
	"METADATA": true, "METADATA-SERVER": true, "SAVEDATE": true, "OBJECTID": true,
	"PREVIEW": true, "LIST-MYRIGHTS": true, "STATUS=SIZE": true, "URL-PARTIAL": true,
	"UTF8=ACCEPT": true, "UTF8=ONLY": true, "CONTEXT=SEARCH": true, "CONTEXT=SORT": true,
	"MAILBOX-REFERRALS": false, "LOGIN-REFERRALS": false,
	// Prefixes (value varies).
	"SORT=": true, "THREAD=": true, "I18NLEVEL=": true, "RIGHTS=": true, "QUOTA=": true,
	"APPENDLIMIT=": true, "SNIPPET=": true, "PREVIEW=": true, "CONTEXT=": true,
}

// dropCapability reports whether a backend capability must not reach the
// client: STARTTLS, LOGINDISABLED, AUTH= and SASL-IR belong to the front
// end; COMPRESS= would change the framing under the scanner; referrals
// would send the client around the proxy (RFC 2221, RFC 2193).
func dropCapability(c []byte) bool {
	var buf [64]byte
	if len(c) == 0 || len(c) > len(buf) {
		return true
	}
	u := buf[:len(c)]
	for i, b := range c {
		if 'a' <= b && b <= 'z' {
			b -= 'a' - 'A'
		}
		u[i] = b
	}
	if ok, found := relayedCaps[string(u)]; found { // no allocation: map lookup by []byte conversion
		return !ok
	}
	if i := bytes.IndexByte(u, '='); i > 0 {
		return !relayedCaps[string(u[:i+1])]
	}
	return true
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
