// Package pebbletest starts a private Pebble, Let's Encrypt's ACME test
// server, for tests that obtain certificates for real: orders, challenges that
// Pebble actually validates by connecting back, issuance, renewal.
//
// Each Pebble is a separate process owned by the test, listening on 127.0.0.1
// ephemeral ports, with its configuration and its HTTPS certificate in the
// test's temporary directory. Install it with
//
//	go install github.com/letsencrypt/pebble/v2/cmd/pebble@v2.10.3
//
// (.ci/run does); Require looks in PATH and then in $GOPATH/bin.
//
// Implementation notes, the facts the fixture depends on:
//
//   - Validation is real: PEBBLE_VA_ALWAYS_VALID is removed from Pebble's
//     environment, so a challenge passes only if the client under test answers
//     it on Options.HTTPPort (http-01) or Options.TLSPort (tls-alpn-01) of
//     127.0.0.1. PEBBLE_VA_NOSLEEP=1 drops Pebble's random validation delay
//     (up to 15 s), PEBBLE_AUTHZREUSE=0 makes every order validate again, and
//     PEBBLE_WFE_NONCEREJECT=0 stops Pebble from rejecting 5% of good nonces,
//     so runs are deterministic.
//   - Names resolve without DNS: Pebble's validation authority is pointed
//     (-dnsserver) at a tiny DNS responder run by this package on loopback,
//     which answers A 127.0.0.1 for every name and no AAAA. Any name works,
//     localhost included; Pebble asks over TCP.
//   - Pebble's own HTTPS certificate (ACME and management endpoints) is
//     signed by a throwaway CA made here; RootsFile holds that CA for the
//     ACME client to trust. The CA that Pebble issues from is a different
//     one, created by Pebble at start and read from its management interface
//     (/roots/0): IssuerPool.
//   - No OCSP responder is configured (Pebble's certificates carry none).
//   - Pebble cannot report the ports it bound, so they are picked by binding
//     :0 and closing; if another process takes one first, Start retries.
package pebbletest

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"go/build"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/imapwarden/imapwarden/internal/testenv"
)

const (
	// startTimeout bounds the wait for Pebble's directory to answer; Pebble
	// is up in well under a second, the margin is for a loaded -race CI run.
	startTimeout = 30 * time.Second
	// startAttempts: see "ports are picked" in the package notes.
	startAttempts = 3
)

// Require returns the path of the pebble binary, or skips the test when it is
// not installed. With CI=true in the environment a missing Pebble fails the
// test instead: CI installs it (.ci/run), so a skip there would hide that the
// ACME tests never ran.
func Require(t testing.TB) string {
	t.Helper()
	path, err := findBinary()
	if err == nil {
		return path
	}
	if testenv.CI() {
		t.Fatalf("pebbletest: CI=true but Pebble is missing (%v); .ci/run must go install github.com/letsencrypt/pebble/v2/cmd/pebble", err)
	}
	t.Skipf("pebbletest: Pebble not installed (%v); go install github.com/letsencrypt/pebble/v2/cmd/pebble@v2.10.3 to run this test", err)
	return ""
}

// gopathBin is where `go install` puts binaries; a variable so a test can
// hide Pebble.
var gopathBin = func() string { return filepath.Join(build.Default.GOPATH, "bin") }

func findBinary() (string, error) {
	if p, err := exec.LookPath("pebble"); err == nil {
		return p, nil
	}
	p := filepath.Join(gopathBin(), "pebble")
	if fi, err := os.Stat(p); err == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0 {
		return p, nil
	}
	return "", fmt.Errorf("pebble not found in PATH or %s", gopathBin())
}

// Options configures a Pebble.
type Options struct {
	// HTTPPort and TLSPort are the ports on 127.0.0.1 where Pebble validates
	// http-01 and tls-alpn-01 challenges: the ports the code under test
	// answers challenges on. Zero means Pebble's defaults (5002 and 5001),
	// which nothing answers on, so challenges of that type fail.
	HTTPPort, TLSPort int
	// Validity is the lifetime of issued certificates, whole seconds; zero
	// means Pebble's default of 90 days. A few seconds make renewal testable.
	Validity time.Duration
}

// Pebble is a running Pebble. Its fields are fixed for its life.
type Pebble struct {
	DirectoryURL string         // ACME directory, "https://127.0.0.1:port/dir"
	RootsFile    string         // PEM of the CA that signed Pebble's HTTPS certificate
	Roots        *x509.CertPool // the same, as a pool
	IssuerPEM    []byte         // PEM of Pebble's issuing root (/roots/0)
	IssuerPool   *x509.CertPool // the same, as a pool: issued chains verify against it
	DNSAddr      string         // the loopback DNS responder Pebble resolves names with

	mgmtURL string
	cmd     *exec.Cmd
	done    chan struct{} // closed when cmd.Wait has returned
	log     *syncBuffer
}

// Start starts a Pebble configured by opts, waits until its directory
// answers and reads its issuing root. The test's Cleanup stops it; if the test
// failed, Pebble's log is added to the test output. On failure Start ends the
// test.
func Start(t testing.TB, opts Options) *Pebble {
	t.Helper()
	bin := Require(t)
	dir := t.TempDir()

	dns, err := startDNS()
	if err != nil {
		t.Fatalf("pebbletest: %v", err)
	}
	t.Cleanup(dns.close)

	certFile, keyFile, rootsFile, roots, err := writeServerCert(dir)
	if err != nil {
		t.Fatalf("pebbletest: %v", err)
	}

	var lastErr error
	for attempt := 1; attempt <= startAttempts; attempt++ {
		ports, err := pickPorts(2)
		if err != nil {
			t.Fatalf("pebbletest: %v", err)
		}
		p := &Pebble{
			DirectoryURL: fmt.Sprintf("https://127.0.0.1:%d/dir", ports[0]),
			RootsFile:    rootsFile,
			Roots:        roots,
			DNSAddr:      dns.addr,
			mgmtURL:      fmt.Sprintf("https://127.0.0.1:%d", ports[1]),
			log:          &syncBuffer{},
		}
		confPath := filepath.Join(dir, "pebble-config.json")
		if err := writeConfig(confPath, opts, ports, certFile, keyFile); err != nil {
			t.Fatalf("pebbletest: %v", err)
		}
		if lastErr = p.launch(bin, confPath); lastErr == nil {
			t.Cleanup(func() {
				p.stop()
				if t.Failed() {
					t.Logf("pebble log:\n%s", p.Log())
				}
			})
			return p
		}
		p.stop()
		if !strings.Contains(p.Log(), "address already in use") {
			t.Fatalf("pebbletest: start: %v\n%s", lastErr, p.Log())
		}
		t.Logf("pebbletest: port taken before Pebble bound it, retrying (%d/%d)", attempt, startAttempts)
	}
	t.Fatalf("pebbletest: start: %v", lastErr)
	return nil
}

func writeConfig(path string, opts Options, ports []int, certFile, keyFile string) error {
	type profile struct {
		Description    string `json:"description"`
		ValidityPeriod uint64 `json:"validityPeriod,omitempty"`
	}
	conf := map[string]any{
		"listenAddress":           fmt.Sprintf("127.0.0.1:%d", ports[0]),
		"managementListenAddress": fmt.Sprintf("127.0.0.1:%d", ports[1]),
		"certificate":             certFile,
		"privateKey":              keyFile,
		"httpPort":                opts.HTTPPort,
		"tlsPort":                 opts.TLSPort,
		"ocspResponderURL":        "",
		"keyAlgorithm":            "ecdsa",
		// No Retry-After headers: the client polls at its own (fast) pace.
		"retryAfter": map[string]int{"authz": 0, "order": 0},
		"profiles": map[string]profile{
			"default": {Description: "pebbletest", ValidityPeriod: uint64(opts.Validity / time.Second)},
		},
	}
	if opts.HTTPPort == 0 {
		conf["httpPort"] = 5002
	}
	if opts.TLSPort == 0 {
		conf["tlsPort"] = 5001
	}
	data, err := json.MarshalIndent(map[string]any{"pebble": conf}, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(path, data, 0o600)
}

// launch starts the process and waits for the directory and the issuing root.
func (p *Pebble) launch(bin, confPath string) error {
	cmd := exec.Command(bin, "-config", confPath, "-dnsserver", p.DNSAddr)
	cmd.Env = pebbleEnv()
	cmd.Stdout = p.log
	cmd.Stderr = p.log
	// A test binary killed without its cleanups takes the server along.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return err
	}
	p.cmd = cmd
	p.done = make(chan struct{})
	go func() {
		_ = cmd.Wait()
		close(p.done)
	}()

	client := p.httpClient()
	ctx, cancel := context.WithTimeout(context.Background(), startTimeout)
	defer cancel()
	for {
		body, err := get(ctx, client, p.DirectoryURL)
		if err == nil && bytes.Contains(body, []byte("newOrder")) {
			break
		}
		select {
		case <-p.done:
			return fmt.Errorf("pebble exited: %v", cmd.ProcessState)
		case <-ctx.Done():
			return fmt.Errorf("directory %s not answering after %v: %v", p.DirectoryURL, startTimeout, err)
		case <-time.After(20 * time.Millisecond):
		}
	}
	root, err := get(ctx, client, p.mgmtURL+"/roots/0")
	if err != nil {
		return fmt.Errorf("issuing root: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(root) {
		return fmt.Errorf("issuing root: no PEM certificate in %q", root)
	}
	p.IssuerPEM, p.IssuerPool = root, pool
	return nil
}

// pebbleEnv is the test's environment with Pebble's switches set as the
// package notes say; PEBBLE_VA_ALWAYS_VALID in particular is dropped.
func pebbleEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "PEBBLE_") {
			env = append(env, kv)
		}
	}
	return append(env, "PEBBLE_VA_NOSLEEP=1", "PEBBLE_AUTHZREUSE=0", "PEBBLE_WFE_NONCEREJECT=0")
}

func (p *Pebble) httpClient() *http.Client {
	return &http.Client{
		Timeout:   10 * time.Second,
		Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: p.Roots}},
	}
}

func get(ctx context.Context, c *http.Client, url string) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	resp, err := c.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	return body, nil
}

// stop kills the process (SIGKILL: Pebble keeps nothing worth flushing) and
// waits for it.
func (p *Pebble) stop() {
	if p.cmd == nil || p.cmd.Process == nil {
		return
	}
	_ = p.cmd.Process.Kill()
	<-p.done
}

// Log returns what Pebble printed so far.
func (p *Pebble) Log() string { return p.log.String() }

// Orders counts the orders Pebble created so far: each newOrder that it
// accepted logs "Added order". A client that reuses a stored certificate
// places none.
func (p *Pebble) Orders() int { return strings.Count(p.Log(), "Added order ") }

// Verify checks that chain (leaf first, as served in a handshake) verifies
// against Pebble's issuing root for name.
func (p *Pebble) Verify(chain []*x509.Certificate, name string) error {
	if len(chain) == 0 {
		return errors.New("pebbletest: empty chain")
	}
	inter := x509.NewCertPool()
	for _, c := range chain[1:] {
		inter.AddCert(c)
	}
	_, err := chain[0].Verify(x509.VerifyOptions{DNSName: name, Roots: p.IssuerPool, Intermediates: inter})
	return err
}

// syncBuffer collects the process output; read while Pebble writes.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// pickPorts returns n distinct free ports on 127.0.0.1.
func pickPorts(n int) ([]int, error) {
	var lns []net.Listener
	defer func() {
		for _, ln := range lns {
			ln.Close()
		}
	}()
	ports := make([]int, 0, n)
	for range n {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		lns = append(lns, ln)
		ports = append(ports, ln.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}

// writeServerCert makes a throwaway CA (the minica layout Pebble's own test
// certificates use) and a leaf for localhost and 127.0.0.1, and writes the
// leaf, its key and the CA ("roots.pem") into dir.
func writeServerCert(dir string) (certFile, keyFile, rootsFile string, roots *x509.CertPool, err error) {
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return
	}
	now := time.Now()
	caTmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "pebbletest HTTPS CA"},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(7 * 24 * time.Hour),
		KeyUsage:              x509.KeyUsageCertSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, caKey.Public(), caKey)
	if err != nil {
		return
	}
	caCert, err := x509.ParseCertificate(caDER)
	if err != nil {
		return
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2),
		Subject:      pkix.Name{CommonName: "localhost"},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.Add(7 * 24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		DNSNames:     []string{"localhost"},
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, caCert, key.Public(), caKey)
	if err != nil {
		return
	}
	pkcs8, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return
	}
	certFile = filepath.Join(dir, "cert.pem")
	keyFile = filepath.Join(dir, "key.pem")
	rootsFile = filepath.Join(dir, "roots.pem")
	for _, f := range []struct {
		path, typ string
		der       []byte
	}{{certFile, "CERTIFICATE", der}, {keyFile, "PRIVATE KEY", pkcs8}, {rootsFile, "CERTIFICATE", caDER}} {
		if err = os.WriteFile(f.path, pem.EncodeToMemory(&pem.Block{Type: f.typ, Bytes: f.der}), 0o600); err != nil {
			return
		}
	}
	roots = x509.NewCertPool()
	roots.AddCert(caCert)
	return certFile, keyFile, rootsFile, roots, nil
}
