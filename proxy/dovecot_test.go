package proxy

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap/zaptest"

	"github.com/imapwarden/imapwarden/internal/dovecottest"
	"github.com/imapwarden/imapwarden/internal/testenv"
	"github.com/imapwarden/imapwarden/proxy/proxyproto"
	"github.com/imapwarden/imapwarden/tlsterm"
)

// dovecotHarness is the proxy in front of a private, real Dovecot.
type dovecotHarness struct {
	*harness
	dc *dovecottest.Server
}

func caPool(t testing.TB, file string) *x509.CertPool {
	pem, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	p := x509.NewCertPool()
	if !p.AppendCertsFromPEM(pem) {
		t.Fatal("no CA in", file)
	}
	return p
}

type funcAuthenticator func(user, pass string) error

func (f funcAuthenticator) Authenticate(_ context.Context, _ *SessionInfo, c *Credentials) (*Identity, error) {
	if err := f(c.User, c.Password); err != nil {
		return nil, err
	}
	return &Identity{Authenticator: "test", User: c.User}, nil
}

func newDovecotHarness(t testing.TB, backend func(dc *dovecottest.Server) *Backend, opts ...harnessOption) *dovecotHarness {
	t.Helper()
	dovecottest.Require(t)
	dc := dovecottest.Start(t, dovecottest.Options{})
	if backend == nil {
		backend = func(dc *dovecottest.Server) *Backend {
			return &Backend{Name: "dovecot", Addr: dc.Addr, Security: BackendStartTLS,
				TLS: &tls.Config{RootCAs: caPool(t, dc.CAFile), ServerName: "localhost"}, SendID: true}
		}
	}
	b := backend(dc)
	h := newHarness(t, append([]harnessOption{func(o *Options) {
		o.Router = &StaticRouter{Default: b}
		o.Logger = zaptest.NewLogger(t)
	}}, opts...)...)
	return &dovecotHarness{harness: h, dc: dc}
}

// bigMessage is a deterministic message of about n bytes.
func bigMessage(n int) []byte {
	var b bytes.Buffer
	b.WriteString("From: bob@example.com\r\nTo: alice@example.com\r\nSubject: big\r\nMessage-ID: <big@example.com>\r\nContent-Type: text/plain\r\n\r\n")
	raw := make([]byte, n*3/4)
	rand.Read(raw)
	enc := base64.StdEncoding.EncodeToString(raw)
	for len(enc) > 76 {
		b.WriteString(enc[:76])
		b.WriteString("\r\n")
		enc = enc[76:]
	}
	b.WriteString(enc + "\r\n")
	return b.Bytes()
}

// fetchBody fetches BODY.PEEK[] of message seq and returns it.
func (c *tconn) fetchBody(tag string, seq int) []byte {
	c.t.Helper()
	c.send(fmt.Sprintf("%s FETCH %d (BODY.PEEK[])", tag, seq))
	first := c.expect(fmt.Sprintf("* %d FETCH", seq))
	var size int
	if i := strings.LastIndexByte(first, '{'); i < 0 {
		c.t.Fatalf("no literal in %q", first)
	} else {
		fmt.Sscanf(first[i:], "{%d}", &size)
	}
	body := make([]byte, size)
	c.c.SetReadDeadline(time.Now().Add(testenv.IOTimeout()))
	if _, err := io.ReadFull(c.br, body); err != nil {
		c.t.Fatal(err)
	}
	// ")" ends the response; Courier sends the UID the proxy added
	// (imapwire.FetchEdit) after the body: " UID 1)".
	if rest := c.expect(""); !strings.HasSuffix(rest, ")") {
		c.t.Fatalf("FETCH response ends with %q", rest)
	}
	c.expect(tag + " OK")
	return body
}

func TestDovecotEndToEnd(t *testing.T) {
	h := newDovecotHarness(t, nil)
	big := bigMessage(1 << 20)
	h.dc.Deliver(t, "alice", "INBOX", big)

	c := dialPlain(t, h.starttls)
	c.expect("* OK")
	c.transact("a0 LOGIN alice alice-pw", "a0 NO [PRIVACYREQUIRED]")
	c.starttls()
	c.transact("a1 LOGIN alice alice-pw", "a1 OK [CAPABILITY")
	un := c.transact("a2 CAPABILITY", "a2 OK")
	for _, bad := range []string{"STARTTLS", "AUTH=", "LOGINDISABLED", "LOGIN-REFERRALS"} {
		if strings.Contains(un[0], bad) {
			t.Errorf("capabilities %q contain %s", un[0], bad)
		}
	}
	if !strings.Contains(un[0], "IDLE") || !strings.Contains(un[0], "LITERAL+") {
		t.Errorf("capabilities %q lack IDLE or LITERAL+", un[0])
	}
	// The backend's ID reply (its name, version) is replaced by ours.
	un = c.transact(`i1 ID ("name" "test")`, "i1 OK")
	if len(un) != 1 || un[0] != `* ID ("name" "imapwarden")` {
		t.Errorf("ID after login: %q", un)
	}
	un = c.transact(`a3 LIST "" "*"`, "a3 OK")
	if !contains(un, "INBOX") {
		t.Errorf("LIST %q", un)
	}
	un = c.transact("a4 SELECT INBOX", "a4 OK [READ-WRITE]")
	if !contains(un, "* 1 EXISTS") {
		t.Errorf("SELECT %q", un)
	}
	got := c.fetchBody("a5", 1)
	if sha256.Sum256(got) != sha256.Sum256(big) {
		t.Fatalf("1 MB FETCH differs: got %d bytes, want %d", len(got), len(big))
	}

	// APPEND of 5 MB, synchronizing then LITERAL+.
	five := bigMessage(5 << 20)
	c.send(fmt.Sprintf("a6 APPEND INBOX {%d}", len(five)))
	c.expect("+")
	c.sendRaw(string(five) + "\r\n")
	c.expectTagged("a6", "a6 OK")
	c.sendRaw(fmt.Sprintf("a7 APPEND INBOX {%d+}\r\n%s\r\n", len(five), five))
	c.expectTagged("a7", "a7 OK")
	c.transact("a8 NOOP", "a8 OK")
	got = c.fetchBody("a9", 3)
	if sha256.Sum256(got) != sha256.Sum256(five) {
		t.Fatalf("5 MB round trip differs")
	}

	// IDLE sees an APPEND made by a second session.
	c.send("b1 IDLE")
	c.expect("+")
	other := dialTLS(t, h.imaps)
	other.expect("* OK")
	other.transact("o1 AUTHENTICATE PLAIN "+base64.StdEncoding.EncodeToString([]byte("\x00alice\x00alice-pw")), "o1 OK")
	small := testMessage(7)
	other.sendRaw(fmt.Sprintf("o2 APPEND INBOX {%d+}\r\n%s\r\n", len(small), small))
	other.expectTagged("o2", "o2 OK")
	for {
		l := c.line()
		if strings.HasPrefix(l, "* 4 EXISTS") {
			break
		}
		if !strings.HasPrefix(l, "* ") {
			t.Fatalf("in IDLE: %q", l)
		}
	}
	c.send("DONE")
	c.expectTagged("b1", "b1 OK")
	c.transact("b2 LOGOUT", "b2 OK")

	// Dovecot saw the real client through ID (login_trusted_networks).
	if log := h.dc.Log(); !strings.Contains(log, "rip=127.0.0.1") {
		t.Errorf("dovecot log lacks the client's address:\n%s", log)
	}
}

func TestDovecotBackendModes(t *testing.T) {
	dovecottest.Require(t)
	for _, mode := range []string{"plain", "starttls", "tls", "tls-insecure", "master", "master-separator"} {
		t.Run(mode, func(t *testing.T) {
			var auth []harnessOption
			if strings.HasPrefix(mode, "master") {
				auth = append(auth, func(o *Options) {
					o.Authenticator = funcAuthenticator(func(user, pass string) error {
						if user == "alice" && pass == "proxy-side-pw" {
							return nil
						}
						return ErrAuthFailed
					})
				})
			}
			h := newDovecotHarness(t, func(dc *dovecottest.Server) *Backend {
				roots := caPool(t, dc.CAFile)
				switch mode {
				case "plain":
					return &Backend{Name: "d", Addr: dc.Addr, Security: BackendPlain, Login: LoginCommand}
				case "starttls":
					return &Backend{Name: "d", Addr: dc.Addr, Security: BackendStartTLS, TLS: &tls.Config{RootCAs: roots, ServerName: "localhost"}, Login: LoginPlain}
				case "tls":
					return &Backend{Name: "d", Addr: dc.TLSAddr, Security: BackendTLS, TLS: &tls.Config{RootCAs: roots, ServerName: "localhost"}}
				case "tls-insecure":
					return &Backend{Name: "d", Addr: dc.TLSAddr, Security: BackendTLS, TLS: &tls.Config{InsecureSkipVerify: true}}
				case "master-separator":
					// Dovecot's "alice*proxymaster" (auth_master_user_separator).
					return &Backend{Name: "d", Addr: dc.Addr, Security: BackendStartTLS, TLS: &tls.Config{RootCAs: roots, ServerName: "localhost"},
						Login: LoginMaster, MasterUser: dc.MasterUser, MasterPassword: dc.MasterPassword, MasterSeparator: "*"}
				default:
					return &Backend{Name: "d", Addr: dc.Addr, Security: BackendStartTLS, TLS: &tls.Config{RootCAs: roots, ServerName: "localhost"},
						Login: LoginMaster, MasterUser: dc.MasterUser, MasterPassword: dc.MasterPassword}
				}
			}, auth...)
			c := dialTLS(t, h.imaps)
			c.expect("* OK")
			if strings.HasPrefix(mode, "master") {
				// The proxy's Authenticator checks the password; the
				// backend accepts the master login for alice.
				c.transact("a0 LOGIN alice alice-pw", "a0 NO [AUTHENTICATIONFAILED]")
				c.transact("a1 LOGIN alice proxy-side-pw", "a1 OK")
			} else {
				c.transact("a0 LOGIN alice wrong", "a0 NO [AUTHENTICATIONFAILED]")
				c.transact("a1 LOGIN alice alice-pw", "a1 OK")
			}
			c.transact("a2 SELECT INBOX", "a2 OK")
		})
	}
	// Verification is on by default: a backend certificate from an unknown
	// CA makes the login unavailable, not insecure.
	t.Run("untrusted", func(t *testing.T) {
		h := newDovecotHarness(t, func(dc *dovecottest.Server) *Backend {
			return &Backend{Name: "d", Addr: dc.TLSAddr, Security: BackendTLS, TLS: &tls.Config{ServerName: "localhost"}}
		})
		c := dialTLS(t, h.imaps)
		c.expect("* OK")
		c.transact("a1 LOGIN alice alice-pw", "a1 NO [UNAVAILABLE]")
	})
}

func TestDovecotKilledMidSession(t *testing.T) {
	h := newDovecotHarness(t, nil)
	c := h.login()
	c.transact("a1 SELECT INBOX", "a1 OK")
	h.dc.Kill()
	c.expectClosed("* BYE [UNAVAILABLE]")
	c = dialTLS(t, h.imaps)
	c.expect("* OK")
	c.transact("a2 LOGIN alice alice-pw", "a2 NO [UNAVAILABLE]")
}

func TestDovecotCurl(t *testing.T) {
	curl := testenv.NeedTool(t, "curl")
	h := newDovecotHarness(t, nil)
	h.dc.Deliver(t, "alice", "INBOX", []byte(testMessage(1)))
	for _, url := range []string{
		"imap://" + h.starttls + "/INBOX;UID=1",
		"imaps://" + h.imaps + "/INBOX;UID=1",
	} {
		out, err := exec.Command(curl, "--silent", "--show-error", "--insecure", "--ssl-reqd", "--max-time", "20",
			"--user", "alice:alice-pw", url).CombinedOutput()
		if err != nil {
			t.Fatalf("curl %s: %v\n%s", url, err, out)
		}
		if !strings.Contains(string(out), "Hello number 1.") {
			t.Errorf("curl %s: %s", url, out)
		}
	}
	// Without --ssl-reqd curl would log in in plaintext; the proxy refuses.
	out, err := exec.Command(curl, "--silent", "--max-time", "20", "--user", "alice:alice-pw",
		"imap://"+h.starttls+"/INBOX;UID=1").CombinedOutput()
	if err == nil && strings.Contains(string(out), "Hello number 1.") {
		t.Errorf("plaintext login succeeded: %s", out)
	}
}

func TestDovecotPythonImaplib(t *testing.T) {
	py := testenv.NeedTool(t, "python3")
	h := newDovecotHarness(t, nil)
	h.dc.Deliver(t, "alice", "INBOX", []byte(testMessage(1)))
	script := `
import imaplib, ssl, sys
host, imaps, plain = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
ctx = ssl.create_default_context(); ctx.check_hostname = False; ctx.verify_mode = ssl.CERT_NONE
for mode in ("imaps", "starttls"):
    if mode == "imaps":
        m = imaplib.IMAP4_SSL(host, imaps, ssl_context=ctx)
    else:
        m = imaplib.IMAP4(host, plain)
        assert "LOGINDISABLED" in m.capabilities, m.capabilities
        m.starttls(ssl_context=ctx)
    m.login("alice", "alice-pw")
    typ, data = m.select("INBOX")
    assert typ == "OK", data
    typ, data = m.fetch("1", "(RFC822)")
    assert typ == "OK" and b"Hello number 1." in data[0][1], data
    typ, data = m.append("INBOX", None, None, b"Subject: from python\r\n\r\nhi\r\n")
    assert typ == "OK", data
    m.logout()
print("python ok")
`
	dir := t.TempDir()
	f := filepath.Join(dir, "t.py")
	os.WriteFile(f, []byte(script), 0o600)
	host, imapsPort := splitHostPort(t, h.imaps)
	_, plainPort := splitHostPort(t, h.starttls)
	out, err := exec.Command(py, f, host, imapsPort, plainPort).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "python ok") {
		t.Fatalf("imaplib: %v\n%s", err, out)
	}
}

func splitHostPort(t testing.TB, addr string) (string, string) {
	i := strings.LastIndexByte(addr, ':')
	return addr[:i], addr[i+1:]
}

// PROXY protocol in from a trusted balancer and out to Dovecot: Dovecot's
// log shows the client's address as the balancer saw it.
func TestDovecotProxyProtocol(t *testing.T) {
	dovecottest.Require(t)
	dc := dovecottest.Start(t, dovecottest.Options{HAProxyTrusted: "127.0.0.0/8"})
	b := &Backend{Name: "dovecot", Addr: dc.Addr, Security: BackendStartTLS, SendProxy: true,
		TLS: &tls.Config{RootCAs: caPool(t, dc.CAFile), ServerName: "localhost"}}
	h := newHarness(t, func(o *Options) {
		o.Router = &StaticRouter{Default: b}
		// Only 127.0.0.3 is a trusted balancer.
		for i := range o.Listeners {
			o.Listeners[i].ProxyProtocolFrom = []netip.Prefix{netip.MustParsePrefix("127.0.0.3/32")}
		}
	})
	dialFrom := func(local, addr string) net.Conn {
		d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(local)}}
		c, err := d.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c
	}

	// A client not behind the balancer: its own address reaches Dovecot.
	c := &tconn{t: t, c: tls.Client(dialFrom("127.0.0.2", h.imaps), clientTLS("imap"))}
	c.br = bufioReader(c.c)
	c.expect("* OK")
	c.transact("a1 LOGIN alice alice-pw", "a1 OK")
	dc.WaitLog(t, "rip=127.0.0.2", 5*time.Second)

	// Through the balancer, implicit TLS: the header comes before the
	// ClientHello.
	raw := dialFrom("127.0.0.3", h.imaps)
	raw.Write(proxyproto.AppendV2(nil, netip.MustParseAddrPort("192.0.2.33:40000"), netip.MustParseAddrPort("198.51.100.1:993")))
	c = &tconn{t: t, c: tls.Client(raw, clientTLS("imap"))}
	c.br = bufioReader(c.c)
	c.expect("* OK")
	c.transact("b1 LOGIN alice alice-pw", "b1 OK")
	dc.WaitLog(t, "rip=192.0.2.33", 5*time.Second)

	// Through the balancer, STARTTLS port, v1.
	raw = dialFrom("127.0.0.3", h.starttls)
	raw.Write([]byte("PROXY TCP4 192.0.2.44 198.51.100.1 40001 143\r\n"))
	c = &tconn{t: t, c: raw, br: bufioReader(raw)}
	c.expect("* OK")
	c.starttls()
	c.transact("c1 LOGIN alice alice-pw", "c1 OK")
	dc.WaitLog(t, "rip=192.0.2.44", 5*time.Second)

	// A header from an untrusted address is not a header: it is a
	// non-IMAP first line.
	raw = dialFrom("127.0.0.2", h.starttls)
	c = &tconn{t: t, c: raw, br: bufioReader(raw)}
	c.expect("* OK")
	c.sendRaw("PROXY TCP4 192.0.2.55 198.51.100.1 40002 143\r\n")
	c.expectClosed("* BYE")
	// A trusted balancer that sends garbage is dropped.
	raw = dialFrom("127.0.0.3", h.starttls)
	raw.Write([]byte("a1 NOOP\r\n"))
	c = &tconn{t: t, c: raw, br: bufioReader(raw)}
	c.expectClosed()
}

// Every message of a MULTIAPPEND is judged (RFC 3502): a refused later
// message aborts the whole command, nothing is appended, the client hears
// BYE, and the trail says so (one record: the refusal, answered by BYE).
func TestDovecotMultiAppendEachMessageDecided(t *testing.T) {
	var sizes []int64
	h := newDovecotHarness(t, nil, func(o *Options) {
		o.Decider = funcDecider(func(in *DecisionInput) Decision {
			if in.Point == PointCommand && in.Command.Name == "APPEND" && in.Literal != nil {
				sizes = append(sizes, in.Literal.Size)
				if in.Literal.Size > 500 {
					return Decision{Reason: "message too big", Code: "TOOBIG"}
				}
			}
			return Decision{Allow: true}
		})
	})
	c := h.login()
	small, big := testMessage(1), testMessage(2)+strings.Repeat("x", 600)
	c.sendRaw(fmt.Sprintf("a1 APPEND INBOX {%d+}\r\n%s {%d+}\r\n%s\r\n", len(small), small, len(small), small))
	c.expectTagged("a1", "a1 OK")
	c.sendRaw(fmt.Sprintf("a2 APPEND INBOX {%d+}\r\n%s {%d+}\r\n%s\r\n", len(small), small, len(big), big))
	c.expectClosed("* BYE [TOOBIG] message too big")
	// The trail: a2 refused, answered by BYE (refused-mid-command), and
	// no other record of it.
	waitClosed(t, h.audit, 1)
	h.audit.mu.Lock()
	var a2 []CommandEvent
	for _, e := range h.audit.commands {
		if e.Command.Tag == "a2" {
			a2 = append(a2, e)
		}
	}
	if len(a2) != 1 || a2[0].Result != "BYE" || a2[0].Close != CloseRefusedMidCommand || h.audit.closes[0].Reason != CloseRefusedMidCommand {
		t.Errorf("records of a2 %+v, session closed as %q", a2, h.audit.closes[0].Reason)
	}
	h.audit.mu.Unlock()
	if fmt.Sprint(sizes) != fmt.Sprintf("[%d %d %d %d]", len(small), len(small), len(small), len(big)) {
		t.Errorf("decided sizes %v", sizes)
	}
	// Nothing of a2 was appended: the two messages of a1.
	c = h.login()
	if un := c.transact("b1 STATUS INBOX (MESSAGES)", "b1 OK"); !contains(un, "MESSAGES 2") {
		t.Errorf("STATUS %q", un)
	}
}

// SASL EXTERNAL (RFC 4422 App. A): a verified client certificate logs the
// user in, and the proxy logs in to Dovecot as its master user. Without a
// certificate there is no EXTERNAL; password logins to the master backend
// fail for want of an Authenticator to check them.
func TestDovecotCertificateLogin(t *testing.T) {
	dovecottest.Require(t)
	ca, err := tlsterm.NewCA()
	if err != nil {
		t.Fatal(err)
	}
	h := newDovecotHarness(t, func(dc *dovecottest.Server) *Backend {
		return &Backend{Name: "d", Addr: dc.Addr, Security: BackendStartTLS, TLS: &tls.Config{RootCAs: caPool(t, dc.CAFile), ServerName: "localhost"},
			Login: LoginMaster, MasterUser: dc.MasterUser, MasterPassword: dc.MasterPassword}
	}, func(o *Options) {
		cfg := serverTLS()
		cfg.ClientAuth, cfg.ClientCAs = tls.VerifyClientCertIfGiven, ca.Pool()
		o.Listeners[0].TLS, o.Listeners[0].CertLogin = cfg, true
	})
	certPEM, keyPEM, err := ca.Issue([]string{"alice"}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	withCert := clientTLS("imap")
	withCert.Certificates = []tls.Certificate{cert}
	tc, err := tls.Dial("tcp", h.imaps, withCert)
	if err != nil {
		t.Fatal(err)
	}
	c := &tconn{t: t, c: tc, br: bufioReader(tc)}
	if g := c.expect("* OK [CAPABILITY"); !strings.Contains(g, "AUTH=EXTERNAL") {
		t.Errorf("greeting without AUTH=EXTERNAL: %s", g)
	}
	// Another identity than the certificate's is an authzid: refused.
	c.transact("a0 AUTHENTICATE EXTERNAL "+base64.StdEncoding.EncodeToString([]byte("bob")), "a0 NO [AUTHORIZATIONFAILED]")
	c.transact("a1 AUTHENTICATE EXTERNAL =", "a1 OK")
	c.transact("a2 SELECT INBOX", "a2 OK")
	h.dc.WaitLog(t, "user=<alice>", 5*time.Second)

	// No certificate: no EXTERNAL, and passwords cannot use the master
	// backend (nobody would check them).
	c = dialTLS(t, h.imaps)
	if g := c.expect("* OK [CAPABILITY"); strings.Contains(g, "AUTH=EXTERNAL") {
		t.Errorf("AUTH=EXTERNAL offered without a certificate: %s", g)
	}
	c.transact("b1 AUTHENTICATE EXTERNAL =", "b1 NO [AUTHENTICATIONFAILED]")
	c.transact("b2 LOGIN alice anything", "b2 NO [AUTHENTICATIONFAILED]")
}
