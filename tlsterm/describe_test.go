package tlsterm

import (
	"crypto/tls"
	"reflect"
	"slices"
	"testing"
)

func TestDescribe(t *testing.T) {
	ca, a, _ := twoCerts(t)
	s := newServer(t, ServerOptions{Certificates: []CertFile{a}})
	ts := serveTLS(t, s.TLSConfig(), echo)

	t.Run("TLS1.3", func(t *testing.T) {
		mustDial(t, ts.addr, clientCfg(ca.Pool(), "mail.example.com", "imap"))
		got := Describe(ts.result(t).state)
		if got.Version != "TLS1.3" || got.ServerName != "mail.example.com" || got.ALPN != "imap" ||
			got.ClientCertSubject != "" || got.Resumed {
			t.Errorf("Describe = %+v", got)
		}
		tls13 := []string{"TLS_AES_128_GCM_SHA256", "TLS_AES_256_GCM_SHA384", "TLS_CHACHA20_POLY1305_SHA256"}
		if !slices.Contains(tls13, got.Cipher) {
			t.Errorf("Cipher %q, want a TLS 1.3 suite", got.Cipher)
		}
	})
	t.Run("TLS1.2 without SNI or ALPN", func(t *testing.T) {
		cfg := clientCfg(nil, "")
		cfg.InsecureSkipVerify = true
		cfg.MaxVersion = tls.VersionTLS12
		mustDial(t, ts.addr, cfg)
		got := Describe(ts.result(t).state)
		if got.Version != "TLS1.2" || got.ServerName != "" || got.ALPN != "" {
			t.Errorf("Describe = %+v", got)
		}
		var names []string
		for _, id := range tls12Suites {
			names = append(names, tls.CipherSuiteName(id))
		}
		if !slices.Contains(names, got.Cipher) {
			t.Errorf("Cipher %q, want one of %v", got.Cipher, names)
		}
	})
	// ClientCertSubject and Resumed: TestBackendClientCert, TestResumption.

	if got := Describe(tls.ConnectionState{}); !reflect.DeepEqual(got, ConnInfo{}) {
		t.Errorf("Describe(zero) = %+v, want zero", got)
	}
	for v, want := range map[uint16]string{
		tls.VersionTLS10: "TLS1.0", tls.VersionTLS11: "TLS1.1",
		tls.VersionTLS12: "TLS1.2", tls.VersionTLS13: "TLS1.3", 0x0305: "0x0305",
	} {
		if got := versionName(v); got != want {
			t.Errorf("versionName(%#x) = %q, want %q", v, got, want)
		}
	}
}

// cipherName agrees with tls.CipherSuiteName on every 16-bit suite ID,
// known or not.
func TestCipherNameAgrees(t *testing.T) {
	for id := range 1 << 16 {
		if got, want := cipherName(uint16(id)), tls.CipherSuiteName(uint16(id)); got != want {
			t.Fatalf("cipherName(%#04x) = %q, want %q", id, got, want)
		}
	}
}

// Describe of a plain server-side TLS 1.3 state (no client certificate)
// allocates nothing: it runs on every handshake.
func TestDescribeNoAllocs(t *testing.T) {
	cs := tls.ConnectionState{Version: tls.VersionTLS13, CipherSuite: tls.TLS_AES_128_GCM_SHA256, NegotiatedProtocol: "imap", ServerName: "localhost"}
	var ci ConnInfo
	if n := testing.AllocsPerRun(100, func() { ci = Describe(cs) }); n != 0 {
		t.Errorf("Describe allocates %.0f times", n)
	}
	if ci.Cipher != "TLS_AES_128_GCM_SHA256" || ci.Version != "TLS1.3" {
		t.Errorf("Describe = %+v", ci)
	}
}
