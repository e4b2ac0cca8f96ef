package tlsterm

import (
	"crypto/tls"
	"fmt"
)

// ConnInfo is what policy and audit record about a TLS connection.
type ConnInfo struct {
	Version           string // "TLS1.2", "TLS1.3"
	Cipher            string // tls.CipherSuiteName, e.g. "TLS_AES_128_GCM_SHA256"
	ServerName        string // SNI sent by the client, "" if none
	ALPN              string // negotiated protocol, "" if none
	ClientCertSubject string // subject of the peer's leaf certificate, "" if none
	Resumed           bool   // the handshake resumed an earlier session
}

// Describe turns the server side of a connection's state into ConnInfo.
// On the client side ClientCertSubject would be the server's subject.
func Describe(cs tls.ConnectionState) ConnInfo {
	ci := ConnInfo{
		Version:    versionName(cs.Version),
		ServerName: cs.ServerName,
		ALPN:       cs.NegotiatedProtocol,
		Resumed:    cs.DidResume,
	}
	if cs.CipherSuite != 0 {
		ci.Cipher = tls.CipherSuiteName(cs.CipherSuite)
	}
	if len(cs.PeerCertificates) > 0 {
		ci.ClientCertSubject = cs.PeerCertificates[0].Subject.String()
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
