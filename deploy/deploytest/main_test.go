package deploytest

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/imapwarden/imapwarden/internal/testenv"
)

// Pinned tool versions, as the README and the scripts use them.
const (
	helmModule = "helm.sh/helm/v3/cmd/helm@v3.22.0"
	nfpmModule = "github.com/goreleaser/nfpm/v2/cmd/nfpm@v2.45.2"
)

// testVersion is stamped into the binary the tests build; the package
// test uses it as the package version too.
const testVersion = "0.0.0~deploytest"

// buildFlags are the flags of the release builds (deploy/Dockerfile,
// deploy/build-deb.sh), with ${VERSION} for the version. TestDockerfile and
// TestBuildScript check that the artifacts use exactly these.
const buildLDFlags = `-s -w -X main.version=${VERSION} -X main.commit=${REVISION} -X main.date=${REVISION_DATE}`

// The commit and date the test binary is stamped with.
const (
	testRevision     = "0123456789abcdef0123456789abcdef01234567"
	testRevisionDate = "2026-12-06T10:00:00Z"
)

var (
	repoRoot string // the module root, absolute
	toolDir  string // binaries built for the tests

	binary   string // imapwarden, built by TestMain
	binErr   error
	inCI     = testenv.CI()
	toolsMu  sync.Mutex
	goTools  = map[string]*goTool{}
	examples = []string{"courier.yaml", "cyrus.yaml", "dovecot.yaml", "exchange.yaml"}
)

func TestMain(m *testing.M) {
	os.Exit(run(m))
}

func run(m *testing.M) int {
	wd, err := os.Getwd()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	repoRoot = filepath.Clean(filepath.Join(wd, "..", ".."))
	if _, err := os.Stat(filepath.Join(repoRoot, "go.mod")); err != nil {
		fmt.Fprintf(os.Stderr, "deploytest: no go.mod at %s: %v\n", repoRoot, err)
		return 1
	}
	toolDir, err = os.MkdirTemp("", "deploytest-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(toolDir)

	// One build of imapwarden for every test, with the release flags: static,
	// trimmed, stripped, version stamped. A failure fails the tests that need
	// the binary, not the others.
	binary = filepath.Join(toolDir, "imapwarden")
	cmd := exec.Command("go", "build", "-trimpath",
		"-ldflags", strings.NewReplacer("${VERSION}", testVersion, "${REVISION}", testRevision, "${REVISION_DATE}", testRevisionDate).Replace(buildLDFlags),
		"-o", binary, "./cmd/imapwarden")
	cmd.Dir = repoRoot
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux")
	if out, err := cmd.CombinedOutput(); err != nil {
		binErr = fmt.Errorf("go build ./cmd/imapwarden: %v\n%s", err, out)
	}
	return m.Run()
}

// needBinary returns the imapwarden binary TestMain built.
func needBinary(t *testing.T) string {
	t.Helper()
	if binErr != nil {
		t.Fatal(binErr)
	}
	return binary
}

// goTool is a Go command built once with "go install module@version".
type goTool struct {
	once sync.Once
	path string
	err  error
}

// needGoTool builds (once per test binary) and returns a pinned Go tool.
// The first build of helm takes minutes; the build cache makes the next
// ones quick.
func needGoTool(t *testing.T, module string) string {
	t.Helper()
	toolsMu.Lock()
	gt := goTools[module]
	if gt == nil {
		gt = new(goTool)
		goTools[module] = gt
	}
	toolsMu.Unlock()
	gt.once.Do(func() {
		name := filepath.Base(strings.SplitN(module, "@", 2)[0])
		bin := filepath.Join(toolDir, "bin")
		cmd := exec.Command("go", "install", module)
		cmd.Dir = toolDir // outside the module: its go.mod plays no part
		cmd.Env = append(os.Environ(), "GOBIN="+bin, "CGO_ENABLED=0", "GOFLAGS=")
		start := time.Now()
		if out, err := cmd.CombinedOutput(); err != nil {
			gt.err = fmt.Errorf("go install %s: %v\n%s", module, err, out)
			return
		}
		t.Logf("built %s in %v", module, time.Since(start).Round(time.Second))
		gt.path = filepath.Join(bin, name)
	})
	if gt.err != nil {
		t.Fatal(gt.err)
	}
	return gt.path
}

// needCommand returns the path of a system command. Without it the test
// skips, except in CI, where .ci/install-deploy-tools.sh should have
// installed it.
func needCommand(t *testing.T, name, debPackage string) string {
	t.Helper()
	p, err := testenv.LookTool(name)
	testenv.Require(t, name, err, ".ci/install-deploy-tools.sh installs the Debian package "+debPackage)
	return p
}

// runCmd runs a command and returns its standard output; it fails the test
// with both outputs if the command fails.
func runCmd(t *testing.T, dir string, env []string, name string, args ...string) string {
	t.Helper()
	out, errOut, err := tryCmd(dir, env, name, args...)
	if err != nil {
		t.Fatalf("%s %s: %v\nstdout:\n%s\nstderr:\n%s", name, strings.Join(args, " "), err, out, errOut)
	}
	return out
}

func tryCmd(dir string, env []string, name string, args ...string) (stdout, stderr string, err error) {
	cmd := exec.Command(name, args...)
	cmd.Dir = dir
	if env != nil {
		cmd.Env = append(os.Environ(), env...)
	}
	var o, e bytes.Buffer
	cmd.Stdout, cmd.Stderr = &o, &e
	err = cmd.Run()
	return o.String(), e.String(), err
}

func readFile(t *testing.T, rel string) string {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(repoRoot, rel))
	if err != nil {
		t.Fatal(err)
	}
	return string(data)
}

// writeTLSFiles writes what the shipped configurations expect under
// /etc/imapwarden/tls/ into dir: cert.pem and key.pem (a self-signed leaf
// with the names the examples use), tls.crt and tls.key (the same pair, as a
// Kubernetes TLS Secret names them) and backend-ca.pem (a CA certificate).
func writeTLSFiles(t *testing.T, dir string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()),
		Subject:      pkix.Name{CommonName: "imap.example.com"},
		DNSNames:     []string{"imap.example.com", "localhost"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IsCA:         true,

		BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	certPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	keyPEM := pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER})
	for name, data := range map[string][]byte{
		"cert.pem": certPEM, "key.pem": keyPEM,
		"tls.crt": certPEM, "tls.key": keyPEM,
		"backend-ca.pem": certPEM,
	} {
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
}

// validateConfig runs "imapwarden validate" on a configuration whose
// /etc/imapwarden/tls/ and /etc/imapwarden/admin/ files and admin tokens
// are replaced by test files, /etc/imapwarden/policies by the repository's policies, the audit
// keys by test keys and /var/log/imapwarden and /var/lib/imapwarden by
// empty directories, and returns the exit error and standard error.
func validateConfig(t *testing.T, name, text string) (stderr string, err error) {
	t.Helper()
	bin := needBinary(t)
	dir := t.TempDir()
	writeTLSFiles(t, dir)
	if err := os.WriteFile(filepath.Join(dir, "token"), []byte("deploytest-admin-token-0123456789\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	text = strings.ReplaceAll(text, "/etc/imapwarden/tls/", dir+"/")
	text = strings.ReplaceAll(text, "/etc/imapwarden/admin/", dir+"/")
	// Each token file its own token: the loader refuses two alike.
	for _, tok := range []string{"/etc/imapwarden/metrics/token", "/etc/imapwarden/admin.token", "/etc/imapwarden/metrics.token"} {
		if strings.Contains(text, tok) {
			f := filepath.Join(dir, strings.ReplaceAll(strings.TrimPrefix(tok, "/etc/imapwarden/"), "/", "-"))
			if err := os.WriteFile(f, []byte("deploytest-"+filepath.Base(f)+"-0123456789\n"), 0o600); err != nil {
				t.Fatal(err)
			}
			text = strings.ReplaceAll(text, tok, f)
		}
	}
	text = strings.ReplaceAll(text, "/etc/imapwarden/policies", filepath.Join(repoRoot, "policies"))
	for _, key := range []string{"/etc/imapwarden/audit.key", "/etc/imapwarden/audit/key"} {
		if strings.Contains(text, key) {
			k := filepath.Join(dir, "audit-"+filepath.Base(key))
			if err := os.WriteFile(k, []byte("deploytest-audit-key-0123456789abcdef\n"), 0o600); err != nil {
				t.Fatal(err)
			}
			text = strings.ReplaceAll(text, key, k)
		}
	}
	for _, d := range []string{"/var/log/imapwarden/", "/var/lib/imapwarden/"} {
		sub := filepath.Join(dir, filepath.Base(d))
		if err := os.MkdirAll(sub, 0o755); err != nil {
			t.Fatal(err)
		}
		text = strings.ReplaceAll(text, d, sub+"/")
	}
	path := filepath.Join(dir, name)
	if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	out, errOut, err := tryCmd(dir, nil, bin, "validate", "-c", path)
	if err == nil && out != "ok\n" {
		err = fmt.Errorf("stdout %q, want \"ok\"", out)
	}
	return errOut, err
}
