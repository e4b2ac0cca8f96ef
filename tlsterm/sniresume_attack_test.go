package tlsterm

import (
	"crypto/tls"
	"sync"
	"testing"
)

// anyNameCache hands the last session it stored to every name: a client
// that resumes a ticket under another SNI than the one it was issued for.
type anyNameCache struct {
	mu sync.Mutex
	cs *tls.ClientSessionState
}

func (c *anyNameCache) Get(string) (*tls.ClientSessionState, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.cs, c.cs != nil
}

func (c *anyNameCache) Put(_ string, cs *tls.ClientSessionState) {
	if cs == nil {
		return
	}
	c.mu.Lock()
	c.cs = cs
	c.mu.Unlock()
}

// TestAttackStrictSNIBypassedByResumption: StrictSNI refuses a handshake
// whose SNI names no certificate (unrecognized_name, RFC 6066 §3), and a
// resumed handshake never looks at the SNI again: crypto/tls picks no
// certificate for a session it resumes, so GetCertificate, where the
// check is, is not called. A client that once connected under a served
// name resumes its ticket under any name, "unknown.test" here, and the
// session goes on with that SNI, which policy input (session.tls.sni)
// and the audit trail then carry as the name the client reached. RFC
// 6066 §3: a server "MUST NOT accept the request to resume the session if
// the server_name extension contains a different name"; RFC 8446 §4.6.1
// ties a ticket to the SNI it was issued under on the client side only,
// so the server has to hold the line itself. Both versions.
func TestAttackStrictSNIBypassedByResumption(t *testing.T) {
	ca, a, b := twoCerts(t)
	s := newServer(t, ServerOptions{Certificates: []CertFile{a, b}, StrictSNI: true})
	ts := serveTLS(t, s.TLSConfig(), echo)
	for _, v := range []uint16{tls.VersionTLS12, tls.VersionTLS13} {
		t.Run(versionName(v), func(t *testing.T) {
			cache := &anyNameCache{}
			cfg := clientCfg(ca.Pool(), "mail.example.com", "imap")
			cfg.MaxVersion = v
			cfg.ClientSessionCache = cache
			mustDial(t, ts.addr, cfg) // the round trip reads the TLS 1.3 ticket
			ts.result(t)

			// The same client, the same ticket, a name the server has no
			// certificate for (the client cannot verify a resumed session
			// against a name it never saw a certificate for).
			other := clientCfg(nil, "unknown.test", "imap")
			other.MaxVersion = v
			other.InsecureSkipVerify = true
			other.ClientSessionCache = cache
			c, err := dial(t, ts.addr, other)
			if err == nil {
				roundTrip(t, c)
			}
			r := ts.result(t)
			if r.err == nil {
				st := r.state
				t.Errorf("StrictSNI accepted SNI %q (resumed %v): the name it refuses on a full handshake", st.ServerName, st.DidResume)
			}
		})
	}
}
