package main

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapserver"
	"github.com/emersion/go-imap/v2/imapserver/imapmemserver"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/imapwarden/imapwarden/audit"
	"github.com/imapwarden/imapwarden/internal/dovecottest"
	"github.com/imapwarden/imapwarden/internal/testenv"
	"github.com/imapwarden/imapwarden/policy"
	"github.com/imapwarden/imapwarden/proxy"
	"github.com/imapwarden/imapwarden/proxy/imapwire"
	"github.com/imapwarden/imapwarden/tlsterm"
)

// audLogBuffer holds the operational log of a test proxy.
type audLogBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *audLogBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *audLogBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// audProxy is a proxy whose Auditor is the audit trail, logging
// operationally at debug level into a buffer.
type audProxy struct {
	srv   *proxy.Server
	addr  string
	file  string
	trail *audit.Trail
	logs  *audLogBuffer
}

func startAudProxy(t *testing.T, backend *proxy.Backend) *audProxy {
	t.Helper()
	return startAudProxyLog(t, backend, "")
}

// startAudProxyLog is startAudProxy with the operational log in a format
// of newLogger ("json", "console"); "" is zap's production JSON.
func startAudProxyLog(t *testing.T, backend *proxy.Backend, format string) *audProxy {
	t.Helper()
	certPEM, keyPEM, err := tlsterm.SelfSigned([]string{"localhost"}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	p := &audProxy{file: filepath.Join(t.TempDir(), "audit.jsonl"), logs: &audLogBuffer{}}
	enc := zapcore.NewJSONEncoder(zap.NewProductionEncoderConfig())
	log := zap.New(zapcore.NewCore(enc, zapcore.AddSync(p.logs), zapcore.DebugLevel))
	if format != "" {
		log = newLogger(p.logs, zapcore.DebugLevel, format)
	}
	fs, err := audit.OpenFile(audit.FileOptions{Path: p.file})
	if err != nil {
		t.Fatal(err)
	}
	if p.trail, err = audit.New(audit.Options{Sink: fs, Logger: log, Software: "test"}); err != nil {
		t.Fatal(err)
	}
	p.srv, err = proxy.NewServer(proxy.Options{
		Listeners: []proxy.ListenerOptions{{Name: "imaps", Addr: "127.0.0.1:0", Mode: proxy.ImplicitTLS,
			TLS: &tls.Config{Certificates: []tls.Certificate{cert}, NextProtos: []string{"imap"}}}},
		Router: &proxy.StaticRouter{Default: backend},
		// The proxy's own event log too, so that the operational log
		// carries session, auth and command lines for the secrets check.
		Auditor: audTee{newAuditWire(p.trail), proxy.NewLogAuditor(log)},
		Logger:  log,
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := p.srv.Start(); err != nil {
		t.Fatal(err)
	}
	p.addr = p.srv.Addrs()[0].String()
	t.Cleanup(p.stop)
	return p
}

// audTee sends every event to two auditors.
type audTee [2]proxy.Auditor

func (a audTee) SessionOpen(s *proxy.SessionInfo) { a[0].SessionOpen(s); a[1].SessionOpen(s) }
func (a audTee) TLSStarted(s *proxy.SessionInfo)  { a[0].TLSStarted(s); a[1].TLSStarted(s) }
func (a audTee) Auth(s *proxy.SessionInfo, e proxy.AuthEvent) {
	a[0].Auth(s, e)
	a[1].Auth(s, e)
}
func (a audTee) Command(s *proxy.SessionInfo, e proxy.CommandEvent) error {
	return errors.Join(a[0].Command(s, e), a[1].Command(s, e))
}
func (a audTee) Security(s *proxy.SessionInfo, kind, detail string) {
	a[0].Security(s, kind, detail)
	a[1].Security(s, kind, detail)
}
func (a audTee) Limit(s *proxy.SessionInfo, r proxy.LimitResult) { a[0].Limit(s, r); a[1].Limit(s, r) }
func (a audTee) Delivered(s *proxy.SessionInfo, e proxy.DeliveryEvent) {
	a[0].Delivered(s, e)
	a[1].Delivered(s, e)
}
func (a audTee) SessionClose(s *proxy.SessionInfo, e proxy.CloseEvent) {
	a[0].SessionClose(s, e)
	a[1].SessionClose(s, e)
}

// stop ends the sessions and closes the trail: the file is complete.
func (p *audProxy) stop() {
	if p.srv == nil {
		return
	}
	p.srv.Close()
	p.srv.Wait()
	p.srv = nil
	p.trail.Close()
}

func (p *audProxy) records(t *testing.T) []*audit.Record {
	t.Helper()
	var out []*audit.Record
	if _, err := audit.Scan([]string{p.file}, func(r *audit.Record, _ []byte) error {
		out = append(out, r)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return out
}

// audClient is an IMAP client over TLS that reads literals.
type audClient struct {
	t  *testing.T
	c  net.Conn
	br *bufio.Reader
}

func dialAud(t *testing.T, addr string) *audClient {
	t.Helper()
	c, err := tls.Dial("tcp", addr, &tls.Config{InsecureSkipVerify: true, NextProtos: []string{"imap"}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	ac := &audClient{t: t, c: c, br: bufio.NewReader(c)}
	if l := ac.line(); !strings.HasPrefix(l, "* OK") {
		t.Fatalf("greeting %q", l)
	}
	return ac
}

var audLiteral = regexp.MustCompile(`\{(\d+)\}\r\n$`)

// line reads one response line with its literals inlined.
func (c *audClient) line() string {
	c.t.Helper()
	c.c.SetReadDeadline(time.Now().Add(testenv.IOTimeout()))
	var b strings.Builder
	for {
		l, err := c.br.ReadString('\n')
		if err != nil {
			c.t.Fatalf("read: %v (%q)", err, b.String()+l)
		}
		b.WriteString(l)
		m := audLiteral.FindStringSubmatch(l)
		if m == nil {
			return strings.TrimRight(b.String(), "\r\n")
		}
		n, _ := strconv.Atoi(m[1])
		lit := make([]byte, n)
		if _, err := io.ReadFull(c.br, lit); err != nil {
			c.t.Fatal(err)
		}
		b.Write(lit)
	}
}

// do sends a command and returns the untagged lines; the tagged status
// must start with want.
func (c *audClient) do(tag, want, cmd string) string {
	c.t.Helper()
	c.c.SetWriteDeadline(time.Now().Add(testenv.IOTimeout()))
	if _, err := fmt.Fprintf(c.c, "%s %s\r\n", tag, cmd); err != nil {
		c.t.Fatal(err)
	}
	return c.expect(tag, want)
}

// expect reads up to tag's status, which must start with want, and
// returns the untagged lines.
func (c *audClient) expect(tag, want string) string {
	c.t.Helper()
	var un []string
	for {
		l := c.line()
		if strings.HasPrefix(l, tag+" ") {
			if !strings.HasPrefix(l, tag+" "+want) {
				c.t.Fatalf("%s: %q, want %s (untagged %q)", tag, l, want, un)
			}
			return strings.Join(un, "\n")
		}
		un = append(un, l)
	}
}

// literal sends "tag cmd {n}", waits for the continuation, then the
// literal and the rest of the line; expect reads the answer.
func (c *audClient) literal(tag, cmd, lit, rest string) {
	c.t.Helper()
	c.c.SetWriteDeadline(time.Now().Add(testenv.IOTimeout()))
	if _, err := fmt.Fprintf(c.c, "%s %s {%d}\r\n", tag, cmd, len(lit)); err != nil {
		c.t.Fatal(err)
	}
	if l := c.line(); !strings.HasPrefix(l, "+") {
		c.t.Fatalf("%s %s: %q, want a continuation", tag, cmd, l)
	}
	if _, err := fmt.Fprintf(c.c, "%s%s\r\n", lit, rest); err != nil {
		c.t.Fatal(err)
	}
}

func dovecotBackend(t *testing.T, dc *dovecottest.Server) *proxy.Backend {
	t.Helper()
	pem, err := os.ReadFile(dc.CAFile)
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(pem)
	return &proxy.Backend{Name: "dovecot", Addr: dc.Addr, Security: proxy.BackendStartTLS,
		TLS: &tls.Config{RootCAs: roots, ServerName: "localhost"}, SendID: true}
}

// Secrets that must appear in no record and no log line.
const (
	audSecretBody    = "The vault combination is 31-41-59-SECRETBODY"
	audSecretSubject = "Board minutes SECRETSUBJECT"
	audWrongPassword = "wrong-SECRETPASSWORD"
	audSearchText    = "SECRETSEARCHTERM"
)

// TestAuditEndToEndDovecot runs sessions through the proxy in front of a
// real Dovecot with the audit trail as Auditor, then checks the records,
// that no secret was written, and verify and query on the file.
func TestAuditEndToEndDovecot(t *testing.T) {
	dovecottest.Require(t)
	dc := dovecottest.Start(t, dovecottest.Options{})
	msg := "From: bob@example.com\r\nTo: alice@example.com\r\nSubject: " + audSecretSubject + "\r\n\r\n" + audSecretBody + "\r\n"
	dc.Deliver(t, "alice", "INBOX", []byte(msg))
	dc.Deliver(t, "alice", "INBOX", []byte(msg))
	p := startAudProxy(t, dovecotBackend(t, dc))

	c := dialAud(t, p.addr)
	c.do("a1", "NO [AUTHENTICATIONFAILED]", "LOGIN alice "+audWrongPassword)
	c.do("a2", "OK", "LOGIN alice alice-pw")
	c.do("a3", "OK", "SELECT INBOX")
	if un := c.do("a4", "OK", "UID FETCH 1:* (UID BODY.PEEK[])"); !strings.Contains(un, audSecretBody) {
		t.Fatalf("FETCH did not return the message: %q", un)
	}
	c.do("a5", "OK", "FETCH 1 (FLAGS ENVELOPE)")
	c.do("a6", "OK", `UID STORE 2 +FLAGS (\Flagged)`)
	c.do("a7", "OK", "CREATE Archive")
	c.do("a8", "OK [COPYUID", "UID COPY 1 Archive")
	c.do("a9", "OK", `UID SEARCH TEXT "`+audSearchText+`"`)
	c.do("a10", "OK", "LOGOUT")

	plainIR := base64.StdEncoding.EncodeToString([]byte("\x00alice\x00alice-pw"))
	c2 := dialAud(t, p.addr)
	c2.do("b1", "OK", "AUTHENTICATE PLAIN "+plainIR)
	c2.do("b2", "OK", "EXAMINE INBOX")
	if un := c2.do("b3", "OK", "FETCH 2 BODY[]"); !strings.Contains(un, audSecretBody) {
		t.Fatalf("FETCH did not return the message: %q", un)
	}
	c2.do("b4", "OK", "CLOSE")
	c2.do("b5", "OK", "LOGOUT")
	p.stop()

	// No secret anywhere.
	trailBytes, err := os.ReadFile(p.file)
	if err != nil {
		t.Fatal(err)
	}
	logs := p.logs.String()
	if !strings.Contains(logs, `"msg":"session open"`) || !strings.Contains(logs, `"msg":"command"`) {
		t.Fatalf("the operational log is empty: the check below would prove nothing:\n%s", logs)
	}
	for _, secret := range []string{"alice-pw", audWrongPassword, plainIR, audSecretBody, audSecretSubject, audSearchText,
		base64.StdEncoding.EncodeToString([]byte("alice-pw"))} {
		if bytes.Contains(trailBytes, []byte(secret)) {
			t.Errorf("audit trail contains %q", secret)
		}
		if strings.Contains(logs, secret) {
			t.Errorf("operational log contains %q", secret)
		}
	}

	// The records.
	recs := p.records(t)
	find := func(kind audit.Kind, ok func(r *audit.Record) bool) *audit.Record {
		t.Helper()
		for _, r := range recs {
			if r.Kind == kind && ok(r) {
				return r
			}
		}
		var b strings.Builder
		for _, r := range recs {
			fmt.Fprintf(&b, "%s %s\n", r.Kind, r.Summary())
		}
		t.Fatalf("no such %s record among:\n%s", kind, b.String())
		return nil
	}
	any := func(*audit.Record) bool { return true }
	open := find(audit.KindSessionOpen, any)
	if open.IP.String() != "127.0.0.1" || open.Port == 0 || open.Listener != "imaps" || open.Session == "" || open.Local == "" {
		t.Errorf("session.open %+v", open)
	}
	if r := find(audit.KindTLS, any); r.TLSVersion != "TLS1.3" || r.ALPN != "imap" || r.Cipher == "" {
		t.Errorf("tls %+v", r)
	}
	fail := find(audit.KindAuth, func(r *audit.Record) bool { return r.Result == audit.ResultFailure })
	if fail.User != "alice" || fail.Reason != "credentials" || fail.Attempt != 1 || fail.Mechanism != "LOGIN" || fail.IP.String() != "127.0.0.1" {
		t.Errorf("auth failure %+v", fail)
	}
	find(audit.KindAuth, func(r *audit.Record) bool {
		return r.Result == audit.ResultSuccess && r.Mechanism == "LOGIN" && r.Backend == "dovecot" && r.User == "alice" && r.Attempt == 2
	})
	find(audit.KindAuth, func(r *audit.Record) bool { return r.Result == audit.ResultSuccess && r.Mechanism == "PLAIN" })
	fetch := find(audit.KindCommand, func(r *audit.Record) bool { return r.Tag == "a4" })
	if fetch.Command != "FETCH" || !fetch.UID || fetch.Set != "1:*" || fetch.Fetch != audit.FetchBody || fetch.Selected != "INBOX" ||
		fetch.Result != "OK" || fetch.Duration <= 0 || fetch.User != "alice" || fetch.Messages != 2 || len(fetch.UIDs) != 2 || fetch.BytesOut < int64(2*len(msg)) {
		t.Errorf("UID FETCH %+v", fetch)
	}
	if r := find(audit.KindCommand, func(r *audit.Record) bool { return r.Tag == "a5" }); r.Fetch != audit.FetchHeader || r.Set != "1" || r.UID {
		t.Errorf("FETCH ENVELOPE %+v", r)
	}
	if r := find(audit.KindCommand, func(r *audit.Record) bool { return r.Tag == "a6" }); r.StoreOp != "+FLAGS" || len(r.Flags) != 1 || r.Flags[0] != `\Flagged` {
		t.Errorf("STORE %+v", r)
	}
	if r := find(audit.KindCommand, func(r *audit.Record) bool { return r.Tag == "a8" }); r.Destination != "Archive" || r.Code != "COPYUID" || r.CodeArgs == "" {
		t.Errorf("COPY %+v", r)
	}
	if r := find(audit.KindCommand, func(r *audit.Record) bool { return r.Tag == "b3" }); !r.ReadOnly || r.Fetch != audit.FetchBody || r.Messages != 1 {
		t.Errorf("FETCH in EXAMINE %+v", r)
	}
	// The mailbox a CLOSE closed, as the backend answered its selection:
	// not the session's state after it.
	if r := find(audit.KindCommand, func(r *audit.Record) bool { return r.Tag == "b4" }); !r.ReadOnly || r.Selected != "INBOX" || slices.Contains(r.Effects, "expunge") {
		t.Errorf("CLOSE after EXAMINE %+v", r)
	}
	cl := find(audit.KindSessionClose, func(r *audit.Record) bool { return r.Session == open.Session })
	if cl.Commands != 8 || cl.AuthFailures != 1 || cl.Duration <= 0 || cl.BytesOut == 0 || cl.Counts["FETCH"] != 2 || cl.Messages != 2 || cl.Reason == "" {
		t.Errorf("session.close %+v", cl)
	}

	// verify and query as an auditor runs them.
	var out, errOut bytes.Buffer
	if code := runAudit([]string{"verify", p.file}, &out, &errOut); code != 0 || !strings.HasPrefix(out.String(), "OK: ") {
		t.Fatalf("verify: %d\n%s%s", code, out.String(), errOut.String())
	}
	t.Logf("imapwarden audit verify %s\n%s", filepath.Base(p.file), out.String())
	out.Reset()
	if code := runAudit([]string{"query", p.file, "--user", "alice", "--fetch", "body"}, &out, &errOut); code != 0 {
		t.Fatalf("query: %d %s", code, errOut.String())
	}
	table := out.String()
	t.Logf("which messages did alice read? imapwarden audit query audit.jsonl --user alice --fetch body\n%s", table)
	if lines := strings.Split(strings.TrimSpace(table), "\n"); len(lines) != 3 ||
		!strings.Contains(lines[1], "a4 UID FETCH 1:* [body] in INBOX => OK") || !strings.Contains(lines[1], "uids 1,2") ||
		!strings.Contains(lines[2], "b3 FETCH 2 [body] in INBOX => OK") {
		t.Errorf("query table:\n%s", table)
	}

	// An auditor's colleague edits a line; verify finds it.
	edited := filepath.Join(t.TempDir(), "edited.jsonl")
	os.WriteFile(edited, bytes.Replace(trailBytes, []byte(`"tag":"a4","command":"FETCH"`), []byte(`"tag":"a4","command":"NOOP"`), 1), 0o600)
	out.Reset()
	code := runAudit([]string{"verify", edited}, &out, &errOut)
	t.Logf("imapwarden audit verify (one line edited): exit %d\n%s", code, out.String())
	if code != 1 || !strings.HasPrefix(out.String(), "BROKEN: ") || !strings.Contains(out.String(), "was changed after it was written") {
		t.Errorf("edited trail: exit %d\n%s", code, out.String())
	}
}

// memBackendAddr starts go-imap's in-memory server with alice/alice-pw.
func memBackendAddr(t *testing.T) string {
	t.Helper()
	mem := imapmemserver.New()
	u := imapmemserver.NewUser("alice", "alice-pw")
	if err := u.Create("INBOX", nil); err != nil {
		t.Fatal(err)
	}
	mem.AddUser(u)
	srv := imapserver.New(&imapserver.Options{
		NewSession: func(*imapserver.Conn) (imapserver.Session, *imapserver.GreetingData, error) {
			return mem.NewSession(), nil, nil
		},
		Caps:         imap.CapSet{imap.CapIMAP4rev1: {}},
		InsecureAuth: true,
	})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return ln.Addr().String()
}

// f2bFilter is a fail2ban filter translated to Go the way fail2ban reads
// it (fail2ban/server/failregex.py, datetemplate.py): "%%" is the
// configuration's escape of "%"; the date found by datepattern is cut
// from the line before failregex is applied; <HOST> is an IPv4 or IPv6
// address (optionally in brackets) or a host name.
type f2bFilter struct {
	date *regexp.Regexp
	fail []*regexp.Regexp // failregex, one per line
}

func loadF2BFilter(t *testing.T, path string) *f2bFilter {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	// INI values continue on indented lines; failregex takes one
	// expression per line.
	vals := map[string]string{}
	last := ""
	for _, l := range strings.Split(string(b), "\n") {
		switch {
		case strings.HasPrefix(l, "#") || strings.TrimSpace(l) == "":
			last = ""
		case (strings.HasPrefix(l, " ") || strings.HasPrefix(l, "\t")) && last != "":
			vals[last] += "\n" + strings.ReplaceAll(strings.TrimSpace(l), "%%", "%")
		default:
			if k, v, ok := strings.Cut(l, "="); ok {
				last = strings.TrimSpace(k)
				vals[last] = strings.ReplaceAll(strings.TrimSpace(v), "%%", "%")
			}
		}
	}
	if vals["failregex"] == "" || vals["datepattern"] == "" {
		t.Fatalf("%s: no failregex or datepattern", path)
	}
	date := strings.NewReplacer(
		"%Y", `\d{4}`, "%m", `\d{2}`, "%d", `\d{2}`, "%H", `\d{2}`, "%M", `\d{2}`, "%S", `\d{2}`,
		"%z", `(?:Z|UTC|GMT|[+-][01]\d(?::?\d{2})?)`,
	).Replace(vals["datepattern"])
	const (
		ip4 = `(?:\d{1,3}\.){3}\d{1,3}`
		// fail2ban's IPAddr.IP_6_RE ends in (?:…|(?<=:):); RE2 has no
		// look-behind, and the repeated group before always ends in ":",
		// so the look-behind always holds: plain ":".
		ip6 = `(?:[0-9a-fA-F]{1,4}::?|::){1,7}(?:[0-9a-fA-F]{1,4}|:)`
	)
	host := `(?:\[?(?:(?:::f{4,6}:)?(?P<ip4>` + ip4 + `)|(?P<ip6>` + ip6 + `))\]?|(?P<dns>[\w\-.^_]*\w))`
	f := &f2bFilter{date: regexp.MustCompile(date)}
	for _, re := range strings.Split(strings.TrimSpace(vals["failregex"]), "\n") {
		f.fail = append(f.fail, regexp.MustCompile(strings.ReplaceAll(re, "<HOST>", host)))
	}
	return f
}

// match returns the host a line would be banned for, or "".
func (f *f2bFilter) match(line string) string {
	loc := f.date.FindStringIndex(line)
	if loc == nil {
		return ""
	}
	rest := line[:loc[0]] + line[loc[1]:]
	for _, re := range f.fail {
		m := re.FindStringSubmatch(rest)
		if m == nil {
			continue
		}
		for _, g := range []string{"ip4", "ip6", "dns"} {
			if v := m[re.SubexpIndex(g)]; v != "" {
				return v
			}
		}
	}
	return ""
}

// TestFail2banFilter runs the shipped filter against auth records the
// proxy wrote: failed logins match with the client's address, successful
// ones and client-caused noise do not, and a hostile user name cannot
// name another address.
func TestFail2banFilter(t *testing.T) {
	p := startAudProxy(t, &proxy.Backend{Name: "mem", Addr: memBackendAddr(t), Security: proxy.BackendPlain, Login: proxy.LoginCommand})
	c := dialAud(t, p.addr)
	c.do("1", "NO", "LOGIN alice wrong")
	c.do("2", "NO", `LOGIN "x\",\"ip\":\"6.6.6.6\",\"result\":\"failure" wrong`)
	c.do("3", "OK", "LOGIN alice alice-pw")
	c.do("4", "OK", "LOGOUT")
	c = dialAud(t, p.addr)
	c.do("1", "NO", "AUTHENTICATE PLAIN "+base64.StdEncoding.EncodeToString([]byte("\x00bob\x00nope")))
	c.do("2", "OK", "LOGOUT")
	p.stop()

	filterPath := filepath.Join("..", "..", "deploy", "fail2ban", "filter.d", "imapwarden.conf")
	f := loadF2BFilter(t, filterPath)
	b, _ := os.ReadFile(p.file)
	var hosts []string
	failures := 0
	for _, l := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		r, err := audit.ParseRecord([]byte(l))
		if err != nil {
			t.Fatal(err)
		}
		if r.Kind == audit.KindAuth && r.Result == audit.ResultFailure {
			failures++
		}
		if h := f.match(l); h != "" {
			hosts = append(hosts, h)
			if r.Kind != audit.KindAuth || r.Result != audit.ResultFailure {
				t.Errorf("matched a %s %s record: %s", r.Kind, r.Result, l)
			}
		}
	}
	if failures != 3 || strings.Join(hosts, " ") != "127.0.0.1 127.0.0.1 127.0.0.1" {
		t.Errorf("%d failures, banned hosts %q", failures, hosts)
	}
	if f.match(`{"ts":"2026-01-02T03:04:05.123Z","kind":"auth","v":1,"seq":9,"prev":"`+strings.Repeat("a", 64)+`","session":"S","ip":"2001:db8::1","port":1,"listener":"imaps","user":"u","mechanism":"LOGIN","attempt":1,"result":"failure","reason":"no-route"}`) != "2001:db8::1" {
		t.Error("IPv6 client not matched")
	}

	// The real fail2ban, where it is installed, agrees.
	f2b, err := testenv.LookTool("fail2ban-regex")
	if err != nil {
		if testenv.CI() {
			t.Fatal("fail2ban-regex is required with CI=true (Debian package fail2ban)")
		}
		t.Log("fail2ban-regex not installed: checked with the Go translation only")
		return
	}
	out, err := exec.Command(f2b, "-o", "ip", p.file, filterPath).CombinedOutput()
	if err != nil {
		t.Fatalf("fail2ban-regex: %v\n%s", err, out)
	}
	if got := strings.Fields(string(out)); strings.Join(got, " ") != strings.Join(hosts, " ") {
		t.Errorf("fail2ban-regex found %q, the Go translation %q", got, hosts)
	}
}

// A login a shadow policy would refuse gets a policy.would_deny
// record naming the user the client gave, although Log may write and reuse
// the auth record before it returns (logDirect).
func TestAuthWouldDenyNamesTheLoginUser(t *testing.T) {
	path, tr := newFileTrail(t, nil)
	w := newAuditWire(tr)
	// The client logged in as bob*admin (a master login): the session's
	// user is bob, the name the client gave is the record's user.
	s := &proxy.SessionInfo{ID: "S1", User: "bob"}
	shadow := map[string]any{policy.AnnotationShadowDeny: map[string]any{"dir": "next", "reason": "no logins", "code": "NOPERM"}}
	w.Auth(s, proxy.AuthEvent{User: "bob*admin", Mechanism: "PLAIN", Success: true, Decision: &proxy.Decision{Allow: true, Annotations: shadow}})
	tr.Close()
	var recs []*audit.Record
	audit.Scan([]string{path}, func(r *audit.Record, _ []byte) error { recs = append(recs, r); return nil })
	var wd *audit.Record
	for _, r := range recs {
		if r.Kind == audit.KindPolicyWouldDeny {
			wd = r
		}
	}
	if wd == nil {
		t.Fatal("no policy.would_deny record")
	}
	if wd.User != "bob*admin" {
		t.Errorf("policy.would_deny for a login names user %q, want bob*admin (the auth record's)", wd.User)
	}
}

// A refusal that ended the session is recorded as answered by BYE, with
// the session's close reason (proxy.CloseRefusedMidCommand: the backend
// held part of the command); a delivery of headers only is fetch: header.
func TestRefusalByeAndHeaderDeliveryRecords(t *testing.T) {
	path, tr := newFileTrail(t, nil)
	w := newAuditWire(tr)
	s := &proxy.SessionInfo{ID: "S1", User: "alice", Selected: "INBOX"}
	cmd := &imapwire.Command{Tag: "s", Name: "SETMETADATA", Mailbox: "INBOX"}
	d := &proxy.Decision{Reason: "mailbox on hold", Code: "NOPERM", Disconnect: true}
	if err := w.Command(s, proxy.CommandEvent{Command: cmd, Result: "BYE", Close: proxy.CloseRefusedMidCommand, Code: "NOPERM", Denied: true, Decision: d}); err != nil {
		t.Fatal(err)
	}
	w.Delivered(s, proxy.DeliveryEvent{Mailbox: "INBOX", UIDValidity: 42, UIDs: []uint32{7}, Headers: true})
	w.Delivered(s, proxy.DeliveryEvent{Mailbox: "INBOX", UIDValidity: 42, Messages: 1, Bytes: 5, Seq: 4})
	tr.Close()
	var deny, dv, unnamed *audit.Record
	audit.Scan([]string{path}, func(r *audit.Record, _ []byte) error {
		switch {
		case r.Kind == audit.KindPolicyDeny:
			deny = r
		case r.Kind == audit.KindDelivery && dv == nil:
			dv = r
		case r.Kind == audit.KindDelivery:
			unnamed = r
		}
		return nil
	})
	// A push without UID is named by its sequence number, marked.
	if unnamed == nil || len(unnamed.UIDs) != 0 || unnamed.Unnamed != 1 || !slices.Equal(unnamed.UnnamedSeqs, []uint32{4}) || unnamed.UIDValidity != 42 {
		t.Errorf("delivery record without UID %+v", unnamed)
	}
	if deny == nil || deny.Result != "BYE" || deny.Event != "refused-mid-command" || !deny.Disconnect || deny.Code != "NOPERM" {
		t.Errorf("policy.deny record %+v", deny)
	}
	if dv == nil || dv.Fetch != audit.FetchHeader || len(dv.UIDs) != 1 || dv.Messages != 0 || dv.UIDValidity != 42 || dv.Unnamed != 0 {
		t.Errorf("delivery record %+v", dv)
	}
}
