// Package hydratest starts a private ORY Hydra (v2.3.0, a real OAuth 2.0
// and OpenID Connect server) for tests of the OAuth2 authenticator.
//
// Hydra runs with DSN=memory (SQLite in memory: nothing on disk), on
// 127.0.0.1 ephemeral ports, in --dev mode so that its issuer may be
// http://127.0.0.1 (the proxy accepts plain HTTP only to loopback
// addresses). Access tokens are JWTs (strategies.access_token=jwt), which
// the proxy checks against Hydra's JWKS; Hydra's admin API also serves
// introspection (RFC 7662).
//
// The binary is built from the module proxy's github.com/ory/hydra/v2
// v2.3.0 by .ci/install-hydra.sh into $IMAPWARDEN_TOOLS (default
// /opt/imapwarden-tools); HYDRA_BIN names another.
package hydratest

import (
	"bytes"
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"math/big"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/imapwarden/imapwarden/internal/backendtest"
	"github.com/imapwarden/imapwarden/internal/testenv"
)

// Version is the Hydra the fixture runs.
const Version = "v2.3.0"

// Binary returns where the Hydra binary is expected.
func Binary() string {
	if b := os.Getenv("HYDRA_BIN"); b != "" {
		return b
	}
	root := os.Getenv("IMAPWARDEN_TOOLS")
	if root == "" {
		root = "/opt/imapwarden-tools"
	}
	return filepath.Join(root, "hydra-"+Version, "hydra")
}

// Require skips the test without Hydra; with CI=true it fails (.ci/run
// builds it).
func Require(t testing.TB) {
	t.Helper()
	var err error
	if _, serr := os.Stat(Binary()); serr != nil {
		err = fmt.Errorf("hydra not built (bash .ci/install-hydra.sh): %v", serr)
	}
	testenv.Require(t, "hydratest", err, ".ci/run builds it with .ci/install-hydra.sh")
}

// Server is a running Hydra.
type Server struct {
	// Issuer is the tokens' "iss" and the discovery base (ends in "/").
	Issuer   string
	AdminURL string
	key      *rsa.PrivateKey // Hydra's access-token signing key
	dir      string
	cmd      *exec.Cmd
	done     chan struct{}
}

// Start starts Hydra for t and stops it at t's end.
func Start(t testing.TB) *Server {
	t.Helper()
	Require(t)
	dir := t.TempDir()
	var lastErr error
	for range 3 { // a port may be taken between FreePorts and Hydra's bind
		ports, err := backendtest.FreePorts(2)
		if err != nil {
			t.Fatal(err)
		}
		s := &Server{dir: dir, Issuer: fmt.Sprintf("http://127.0.0.1:%d/", ports[0]), AdminURL: fmt.Sprintf("http://127.0.0.1:%d", ports[1])}
		if lastErr = s.launch(ports[0], ports[1]); lastErr == nil {
			t.Cleanup(s.stop)
			s.importSigningKey(t)
			return s
		}
	}
	t.Fatalf("hydratest: %v", lastErr)
	return nil
}

func (s *Server) launch(public, admin int) error {
	log, err := os.OpenFile(filepath.Join(s.dir, "hydra.log"), os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	defer log.Close()
	cmd := exec.Command(Binary(), "serve", "all", "--dev", "--sqa-opt-out")
	cmd.Env = append(backendtest.ChildEnv(),
		"DSN=memory",
		fmt.Sprintf("SERVE_PUBLIC_PORT=%d", public), "SERVE_PUBLIC_HOST=127.0.0.1",
		fmt.Sprintf("SERVE_ADMIN_PORT=%d", admin), "SERVE_ADMIN_HOST=127.0.0.1",
		"URLS_SELF_ISSUER="+s.Issuer,
		"STRATEGIES_ACCESS_TOKEN=jwt",
		"SECRETS_SYSTEM=imapwarden-hydratest-secret-0123456789",
		"LOG_LEVEL=warn", "SQA_OPT_OUT=true",
	)
	cmd.Stdout, cmd.Stderr = log, log
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL, Setpgid: true}
	if err := cmd.Start(); err != nil {
		return err
	}
	s.cmd, s.done = cmd, make(chan struct{})
	go func() { cmd.Wait(); close(s.done) }()
	// Hydra migrates its in-memory database first: seconds on a busy
	// machine.
	deadline := time.Now().Add(60 * time.Second)
	for {
		select {
		case <-s.done:
			return fmt.Errorf("hydra exited: %s", s.logTail())
		default:
		}
		if ready(s.AdminURL+"/health/ready") && ready(s.Issuer+".well-known/openid-configuration") {
			return nil
		}
		if time.Now().After(deadline) {
			s.stop()
			return fmt.Errorf("hydra not ready after 60s: %s", s.logTail())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// ready reports a 200 from u.
func ready(u string) bool {
	resp, err := http.Get(u)
	if err != nil {
		return false
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode == http.StatusOK
}

func (s *Server) logTail() string {
	data, _ := os.ReadFile(filepath.Join(s.dir, "hydra.log"))
	return backendtest.Tail(string(data), 20)
}

func (s *Server) stop() {
	if s.cmd == nil {
		return
	}
	syscall.Kill(-s.cmd.Process.Pid, syscall.SIGTERM)
	select {
	case <-s.done:
	case <-time.After(5 * time.Second):
		syscall.Kill(-s.cmd.Process.Pid, syscall.SIGKILL)
		<-s.done
	}
	s.cmd = nil
}

// Pid is Hydra's process ID (its CPU time is in /proc/PID/stat).
func (s *Server) Pid() int { return s.cmd.Process.Pid }

// IntrospectionURL is Hydra's RFC 7662 endpoint (admin API, no client
// authentication).
func (s *Server) IntrospectionURL() string { return s.AdminURL + "/admin/oauth2/introspect" }

// Client is an OAuth 2.0 client allowed the client credentials grant.
type Client struct {
	ID, Secret string
	Audience   []string
	Scope      string // space-separated
}

// CreateClient registers c with JWT access tokens.
func (s *Server) CreateClient(t testing.TB, c Client) {
	t.Helper()
	body := map[string]any{
		"client_id": c.ID, "client_secret": c.Secret, "grant_types": []string{"client_credentials"},
		"audience": c.Audience, "scope": c.Scope, "access_token_strategy": "jwt",
		"token_endpoint_auth_method": "client_secret_basic",
	}
	s.admin(t, http.MethodPost, "/admin/clients", body, nil)
}

// Token gets an access token by the client credentials grant (RFC 6749
// §4.4) for audience and scope.
func (s *Server) Token(t testing.TB, c Client, audience, scope string) string {
	t.Helper()
	form := url.Values{"grant_type": {"client_credentials"}, "scope": {scope}}
	if audience != "" {
		form.Set("audience", audience)
	}
	req, err := http.NewRequest(http.MethodPost, s.Issuer+"oauth2/token", strings.NewReader(form.Encode()))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth(url.QueryEscape(c.ID), url.QueryEscape(c.Secret))
	var out struct {
		AccessToken string `json:"access_token"`
	}
	s.do(t, req, &out)
	if out.AccessToken == "" {
		t.Fatal("hydratest: no access token")
	}
	return out.AccessToken
}

// RotateKeys adds a new ES256 key to the set Hydra signs access tokens
// with; later tokens carry its kid (and another algorithm). Not RSA: Hydra
// makes 4096-bit RSA keys, which on a busy machine outlast its 10 s
// handler deadline (ory/graceful) and the request ends in EOF.
func (s *Server) RotateKeys(t testing.TB) {
	t.Helper()
	s.admin(t, http.MethodPost, "/admin/keys/hydra.jwt.access-token",
		map[string]any{"alg": "ES256", "use": "sig", "kid": fmt.Sprintf("rotated-%d", time.Now().UnixNano())}, nil)
}

// JWKS returns Hydra's public keys, as served to the proxy.
func (s *Server) JWKS(t testing.TB) []byte {
	t.Helper()
	resp, err := http.Get(s.Issuer + ".well-known/jwks.json")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// importSigningKey gives Hydra the RS256 key it signs access tokens with,
// made here: left to itself Hydra makes a 4096-bit RSA key inside the first
// token request, which on a busy machine outlasts its 10 s handler deadline
// (ory/graceful) and the request ends in EOF.
func (s *Server) importSigningKey(t testing.TB) {
	t.Helper()
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	s.key = k
	b64 := func(i *big.Int) string { return base64.RawURLEncoding.EncodeToString(i.Bytes()) }
	k.Precompute()
	jwk := map[string]any{
		"kty": "RSA", "alg": "RS256", "use": "sig", "kid": "hydratest-rs256",
		"n": b64(k.N), "e": b64(big.NewInt(int64(k.E))), "d": b64(k.D),
		"p": b64(k.Primes[0]), "q": b64(k.Primes[1]),
		"dp": b64(k.Precomputed.Dp), "dq": b64(k.Precomputed.Dq), "qi": b64(k.Precomputed.Qinv),
	}
	s.admin(t, http.MethodPut, "/admin/keys/hydra.jwt.access-token", map[string]any{"keys": []any{jwk}}, nil)
}

func (s *Server) admin(t testing.TB, method, path string, body, out any) {
	t.Helper()
	b, err := json.Marshal(body)
	if err != nil {
		t.Fatal(err)
	}
	req, err := http.NewRequest(method, s.AdminURL+path, bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	s.do(t, req, out)
}

func (s *Server) do(t testing.TB, req *http.Request, out any) {
	t.Helper()
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("hydratest: %s %s: %v", req.Method, req.URL, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode/100 != 2 {
		t.Fatalf("hydratest: %s %s: %s: %s", req.Method, req.URL, resp.Status, b)
	}
	if out != nil {
		if err := json.Unmarshal(b, out); err != nil {
			t.Fatalf("hydratest: %s %s: %v", req.Method, req.URL, err)
		}
	}
}

// SignedToken returns a JWT access token with Hydra's issuer and signing
// key (the kid Hydra's JWKS publishes), carrying claims over the usual
// ones: what Hydra issues for a user whose login or token hook adds
// claims (email, email_verified), which the client credentials grant of
// Token cannot.
func (s *Server) SignedToken(t testing.TB, audience string, claims map[string]any) string {
	t.Helper()
	now := time.Now().Unix()
	body := map[string]any{"iss": s.Issuer, "aud": []string{audience}, "iat": now, "nbf": now, "exp": now + 3600,
		"jti": fmt.Sprint(now, len(claims)), "client_id": "hydratest"}
	for k, v := range claims {
		body[k] = v
	}
	enc := base64.RawURLEncoding.EncodeToString
	p, err := json.Marshal(body)
	if err != nil {
		t.Fatal(err)
	}
	signed := enc([]byte(`{"alg":"RS256","kid":"hydratest-rs256","typ":"JWT"}`)) + "." + enc(p)
	sum := sha256.Sum256([]byte(signed))
	sig, err := rsa.SignPKCS1v15(rand.Reader, s.key, crypto.SHA256, sum[:])
	if err != nil {
		t.Fatal(err)
	}
	return signed + "." + enc(sig)
}
