package main

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"net/http"
	"os"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/imapwarden/imapwarden/internal/testenv"

	"github.com/imapwarden/imapwarden/tlsterm"
)

// renewWorldReadable writes a fresh self-signed pair over cf, the key
// mode 0644: a renewal hook that copies the key under umask 022 (a
// certbot deploy hook's cp, an Ansible copy without mode). It returns
// the new certificate's serial.
func renewWorldReadable(t *testing.T, cf tlsterm.CertFile, hosts []string) string {
	t.Helper()
	fresh, err := tlsterm.WriteSelfSigned(t.TempDir(), hosts)
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range []struct {
		from, to string
		mode     os.FileMode
	}{{fresh.Key, cf.Key, 0o644}, {fresh.Cert, cf.Cert, 0o644}} {
		b, err := os.ReadFile(f.from)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(f.to, b, f.mode); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(f.to, f.mode); err != nil {
			t.Fatal(err)
		}
	}
	pair, err := tls.LoadX509KeyPair(cf.Cert, cf.Key)
	if err != nil {
		t.Fatal(err)
	}
	return pair.Leaf.SerialNumber.String()
}

// servedSerial is the serial of the certificate addr serves.
func servedSerial(t *testing.T, addr string) string {
	t.Helper()
	c, err := tls.Dial("tcp", addr, &tls.Config{InsecureSkipVerify: true, ServerName: "localhost", NextProtos: []string{"imap"}})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	return c.ConnectionState().PeerCertificates[0].SerialNumber.String()
}

// TestAttackWorldReadableKeyLoadedOnReload: a TLS private key other users
// may read is refused at start, naming the file and chmod 600
// (ARCHITECTURE.md §6, TestEverySecretFileModeChecked), as users files
// are refused at every re-read. The certificate files are re-read live
// (tls.reload_interval, SIGHUP; admin.tls at the next handshake), and
// there the mode is never looked at: a renewal that lands the key 0644
// is loaded and served, nothing says the key is open to every local
// account, and the next restart refuses to start at all. The check
// must hold wherever a key is loaded: the re-read keeps the pair in
// force (as for a pair that does not load) and says why.
func TestAttackWorldReadableKeyLoadedOnReload(t *testing.T) {
	t.Run("listener certificate at SIGHUP", func(t *testing.T) {
		env := newServeEnv(t)
		s, cfgFile, log, logs := env.buildFile(t, fmt.Sprintf(`
listeners: [{name: imaps, address: "127.0.0.1:0", mode: tls}]
tls: {certificates: [{cert: %s, key: %s}], reload_interval: 1h}
backends: {mem: {address: %q, security: plain}}
admin: {address: ""}
lame_duck: 0s
`, env.cert.Cert, env.cert.Key, env.backend))
		addrs, hup := serveReloading(t, s, cfgFile, log)
		first := servedSerial(t, addrs[0].String())

		renewed := renewWorldReadable(t, env.cert, []string{"imap.example.com", "localhost", "127.0.0.1"})
		hup <- os.Interrupt
		// reloadAll's last word, whichever way the certificates went.
		waitAnyLog(t, logs, "tls certificates reloaded", "tls certificate reload failed, keeping the current certificates")
		if got := servedSerial(t, addrs[0].String()); got != first {
			if got == renewed {
				t.Errorf("SIGHUP loaded %s, mode 0644 (other users may read the private key), and serves its certificate (serial %s); at start the same file is refused", env.cert.Key, got)
			} else {
				t.Errorf("serial %s served, neither the first %s nor the renewed %s", got, first, renewed)
			}
		}
	})

	t.Run("admin.tls at the next handshake", func(t *testing.T) {
		dir := t.TempDir()
		tlsFiles(t, dir)
		admin, err := tlsterm.WriteSelfSigned(t.TempDir(), []string{"localhost", "127.0.0.1"})
		if err != nil {
			t.Fatal(err)
		}
		cfg, err := parseConfig([]byte("listeners: [{address: \"127.0.0.1:0\", mode: tls}]\ntls: {certificates: [{cert: " + dir + "/cert.pem, key: " + dir + "/key.pem}]}\n" +
			"backends: {main: {address: \"127.0.0.1:143\", security: plain}}\n" +
			"admin: {address: \"127.0.0.1:0\", tls: {cert: " + admin.Cert + ", key: " + admin.Key + "}}\n"))
		if err != nil {
			t.Fatal(err)
		}
		s, err := check(cfg, zap.NewNop())
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		addr, wait, err := serveAdminWith(ctx, "127.0.0.1:0", s.adminTLS, http.NotFoundHandler(), defaultAdminTimeouts, zap.NewNop())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { cancel(); wait() })
		first := servedSerial(t, addr.String())
		renewed := renewWorldReadable(t, admin, []string{"localhost", "127.0.0.1"})
		if got := servedSerial(t, addr.String()); got == renewed {
			t.Errorf("admin.tls re-read %s, mode 0644 (other users may read the private key), and serves its certificate (serial %s, was %s); at start the same file is refused", admin.Key, got, first)
		}
	})
}

// serveReloading serves s until the test ends; a send on hup is a
// SIGHUP, which reloads cfgFile.
func serveReloading(t *testing.T, s *setup, cfgFile string, log *zap.Logger) ([]net.Addr, chan<- os.Signal) {
	t.Helper()
	reload := func() (*setup, error) {
		cfg, err := loadConfigFile(cfgFile)
		if err != nil {
			return nil, err
		}
		return check(cfg, log)
	}
	hup := make(chan os.Signal)
	addrs, _, cancel, done := serve(t, s, log, hup, reload)
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	})
	return addrs, hup
}

// waitAnyLog waits until one of msgs is logged.
func waitAnyLog(t *testing.T, logs *observer.ObservedLogs, msgs ...string) {
	t.Helper()
	deadline := time.Now().Add(testenv.IOTimeout())
	for {
		for _, m := range msgs {
			if logs.FilterMessage(m).Len() > 0 {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("none of %q logged", msgs)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
