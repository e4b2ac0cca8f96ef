package tlsterm

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/imapwarden/imapwarden/internal/testenv"
)

// eventLog collects events from OnEvent.
type eventLog struct {
	mu  sync.Mutex
	evs []CertEvent
}

func (l *eventLog) add(ev CertEvent) {
	l.mu.Lock()
	l.evs = append(l.evs, ev)
	l.mu.Unlock()
}

func (l *eventLog) of(kind CertEventKind) []CertEvent {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []CertEvent
	for _, ev := range l.evs {
		if ev.Kind == kind {
			out = append(out, ev)
		}
	}
	return out
}

func TestCertificatesAndExpiring(t *testing.T) {
	ca := newCA(t)
	dir := t.TempDir()
	long := writeFiles(t, ca, dir, "long", "mail.example.com") // a year
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	certPEM, keyPEM, err := ca.issue([]string{"soon.example.com"}, 10*24*time.Hour, key)
	if err != nil {
		t.Fatal(err)
	}
	soon := CertFile{Cert: dir + "/soon.pem", Key: dir + "/soon-key.pem"}
	if err := writePair(soon, certPEM, keyPEM); err != nil {
		t.Fatal(err)
	}
	events := &eventLog{}
	s := newServer(t, ServerOptions{Certificates: []CertFile{long, soon}, OnEvent: events.add, ExpiryWarning: 20 * 24 * time.Hour})

	certs := s.Certificates()
	if len(certs) != 2 || certs[0].File != long.Cert || certs[1].File != soon.Cert || certs[1].Source != SourceFile ||
		certs[1].Names[0] != "soon.example.com" || certs[1].Issuer != ca.Cert.Subject.CommonName {
		t.Fatalf("Certificates() = %+v", certs)
	}
	if left := certs[1].ExpiresIn; left < 10*24*time.Hour-2*time.Minute || left > 10*24*time.Hour {
		t.Errorf("ExpiresIn %v, want about 10 days", left)
	}

	// Only "soon" is within the 20 days: it warns, once, however often
	// Watch looks (each of its ticks is a checkExpiry).
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan struct{})
	go func() { defer close(done); s.Watch(ctx, time.Hour) }() // checks at once
	deadline := time.Now().Add(testenv.IOTimeout())
	for len(events.of(CertExpiring)) == 0 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	cancel()
	<-done
	for range 3 {
		s.checkExpiry()
	}
	exp := events.of(CertExpiring)
	if len(exp) != 1 || exp[0].Name != "soon.example.com" || exp[0].File != soon.Cert || !exp[0].NotAfter.Equal(certs[1].NotAfter) {
		t.Errorf("expiring events %+v, want one for soon.example.com", exp)
	}

	// A replaced file is reported renewed, and its new certificate may warn again.
	writeFiles(t, ca, dir, "soon", "soon.example.com") // now valid for a year
	if err := s.Reload(); err != nil {
		t.Fatal(err)
	}
	if ren := events.of(CertRenewed); len(ren) != 1 || ren[0].File != soon.Cert || ren[0].Source != SourceFile {
		t.Errorf("renewed events %+v, want one for %s", ren, soon.Cert)
	}
	// A broken reload is a failure event naming the file.
	if err := os.WriteFile(long.Cert, []byte("garbage"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := s.Reload(); err == nil {
		t.Fatal("broken reload succeeded")
	}
	if f := events.of(CertFailed); len(f) != 1 || f[0].File != long.Cert || !strings.Contains(f[0].Err.Error(), long.Cert) {
		t.Errorf("failed events %+v, want one naming %s", f, long.Cert)
	}
}

func TestExpiryThreshold(t *testing.T) {
	s := &Server{}
	day := 24 * time.Hour
	for _, tc := range []struct {
		lifetime, warning, want time.Duration
	}{
		{365 * day, 0, 14 * day},
		{90 * day, 0, 14 * day},
		{6 * day, 0, 6 * day / 5},
		{90 * day, time.Hour, time.Hour},
	} {
		s.opts.ExpiryWarning = tc.warning
		now := time.Now()
		if got := s.expiryThreshold(CertStatus{NotBefore: now, NotAfter: now.Add(tc.lifetime)}); got != tc.want {
			t.Errorf("lifetime %v, warning %v: threshold %v, want %v", tc.lifetime, tc.warning, got, tc.want)
		}
	}
}
