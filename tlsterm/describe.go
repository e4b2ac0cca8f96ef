package tlsterm

import (
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"fmt"
)

// ConnInfo is what policy and audit record about a TLS connection.
type ConnInfo struct {
	Version           string // "TLS1.2", "TLS1.3"
	Cipher            string // tls.CipherSuiteName, e.g. "TLS_AES_128_GCM_SHA256"
	ServerName        string // SNI sent by the client as certificate selection reads it (FoldSNI), "" if none
	ALPN              string // negotiated protocol, "" if none
	ClientCertSubject string // subject of the peer's leaf certificate (RFC 2253 form), "" if none
	// ClientCertSANs are the leaf's subject alternative names, each with
	// its type as OpenSSL prints them: "DNS:host", "email:user@example.com",
	// "URI:...", "IP:192.0.2.1". Empty if no certificate.
	ClientCertSANs []string
	// ClientCertSHA256 is the hex SHA-256 of the leaf's DER, for pinning a
	// certificate to a user (SASL EXTERNAL); "" if no certificate.
	ClientCertSHA256 string
	// ClientCertVerified: the certificate chained to the listener's client
	// CA. Always true for a certificate on a listener made by
	// Server.ListenerConfig (unverified ones are refused there).
	ClientCertVerified bool
	Resumed            bool // the handshake resumed an earlier session
}

// Describe turns the server side of a connection's state into ConnInfo.
// On the client side the ClientCert fields would describe the server.
func Describe(cs tls.ConnectionState) ConnInfo {
	ci := ConnInfo{
		Version:    versionName(cs.Version),
		ServerName: FoldSNI(cs.ServerName),
		ALPN:       cs.NegotiatedProtocol,
		Resumed:    cs.DidResume,
	}
	if cs.CipherSuite != 0 {
		ci.Cipher = cipherName(cs.CipherSuite)
	}
	if len(cs.PeerCertificates) > 0 {
		leaf := cs.PeerCertificates[0]
		ci.ClientCertSubject = leaf.Subject.String()
		for _, n := range leaf.DNSNames {
			ci.ClientCertSANs = append(ci.ClientCertSANs, "DNS:"+n)
		}
		for _, e := range leaf.EmailAddresses {
			ci.ClientCertSANs = append(ci.ClientCertSANs, "email:"+e)
		}
		for _, u := range leaf.URIs {
			ci.ClientCertSANs = append(ci.ClientCertSANs, "URI:"+u.String())
		}
		for _, ip := range leaf.IPAddresses {
			ci.ClientCertSANs = append(ci.ClientCertSANs, "IP:"+ip.String())
		}
		sum := sha256.Sum256(leaf.Raw)
		ci.ClientCertSHA256 = hex.EncodeToString(sum[:])
		ci.ClientCertVerified = len(cs.VerifiedChains) > 0
	}
	return ci
}

// versionName spells versions without a space, unlike tls.VersionName, so
// that policy can compare them as single tokens.
func versionName(v uint16) string {
	switch v {
	case 0:
		return ""
	case tls.VersionTLS10:
		return "TLS1.0"
	case tls.VersionTLS11:
		return "TLS1.1"
	case tls.VersionTLS12:
		return "TLS1.2"
	case tls.VersionTLS13:
		return "TLS1.3"
	}
	return fmt.Sprintf("0x%04X", v)
}

// cipherNames are tls.CipherSuiteName's answers for every suite crypto/tls
// knows, taken once: CipherSuiteName builds the whole suite list on each
// call, about 15 allocations per handshake.
var cipherNames = func() map[uint16]string {
	m := map[uint16]string{}
	for _, list := range [][]*tls.CipherSuite{tls.CipherSuites(), tls.InsecureCipherSuites()} {
		for _, c := range list {
			m[c.ID] = tls.CipherSuiteName(c.ID)
		}
	}
	return m
}()

// cipherName is tls.CipherSuiteName without its allocations for a known
// suite.
func cipherName(id uint16) string {
	if n, ok := cipherNames[id]; ok {
		return n
	}
	return tls.CipherSuiteName(id)
}
