package acme

import (
	"testing"

	"github.com/imapwarden/imapwarden/internal/pebbletest"
	"github.com/imapwarden/imapwarden/tlsterm"
)

// TestAttackManagedSNIWhitespaceTwoReadings: certificate selection of a
// managed name (Manager.GetCertificate: normalize, and certmagic's own
// name) trims white space around the SNI, FoldSNI does not. A client
// sending " mail.managed.test" under StrictSNI gets mail.managed.test's
// certificate, while ConnInfo.ServerName, which policy input's tls.sni and
// the audit trail's SNI read, is " mail.managed.test": a connect rule on
// the name is bypassed, and the trail names a name no certificate covers.
func TestAttackManagedSNIWhitespaceTwoReadings(t *testing.T) {
	const name = "mail.managed.test"
	ln := listen(t)
	p := pebbletest.Start(t, pebbletest.Options{TLSPort: ln.port})
	in := start(t, p, Options{Names: []string{name}, TLSALPNPort: ln.port, DisableHTTP01: true}, tlsterm.ServerOptions{StrictSNI: true})
	srv := serve(t, ln, in.srv.TLSConfig(), false)
	in.events.await(t, tlsterm.CertObtained, name)
	dialServed(t, srv.addr, clientCfg(p, name))
	for drained := false; !drained; {
		select {
		case <-srv.results:
		default:
			drained = true
		}
	}

	cfg := clientCfg(p, " "+name)
	cfg.InsecureSkipVerify = true
	cfg.SessionTicketsDisabled = true
	c, err := dial(t, srv.addr, cfg, false)
	if err != nil {
		t.Logf("%q refused: %v (one reading: held)", cfg.ServerName, err)
		return
	}
	served := leafOf(c).DNSNames
	for r := range srv.results {
		if r.err != nil {
			continue
		}
		if got := tlsterm.Describe(r.state).ServerName; got != tlsterm.FoldSNI(name) {
			t.Errorf("SNI %q: served the certificate for %v, but ConnInfo.ServerName (policy input, audit) is %q", cfg.ServerName, served, got)
		}
		break
	}
}
