package main

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"

	"github.com/imapwarden/imapwarden/audit"
)

// adminFixture is serve running from a configuration file in front of the
// in-memory backend, with the shipped policies, an audit trail, tight
// lockouts and a read and a write admin token.
type adminFixture struct {
	t         *testing.T
	imaps     string
	admin     string
	auditPath string
	dir       string
	cfgFile   string
	cfgText   string
	hup       chan os.Signal // reloads cfgFile
	// backendAddr is the one backend server's address.
	backendAddr string
}

// adminExtra is added to the admin section.
func startAdminFixture(t *testing.T, adminExtra string) *adminFixture {
	t.Helper()
	backendAddr, stopBackend, err := startDemoBackend(zap.NewNop())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(stopBackend)
	dir := t.TempDir()
	cf := tlsFiles(t, dir)
	repoPolicies, _ := filepath.Abs("../../policies")
	os.WriteFile(filepath.Join(dir, "read.token"), []byte(testReadToken+"\n"), 0o600)
	os.WriteFile(filepath.Join(dir, "write.token"), []byte(testWriteToken+"\n"), 0o600)
	f := &adminFixture{t: t, dir: dir, auditPath: filepath.Join(dir, "audit.jsonl"), backendAddr: backendAddr}
	cfgText := fmt.Sprintf(`
listeners: [{address: "127.0.0.1:0", mode: tls}]
tls: {certificates: [{cert: %s, key: %s}]}
backends: {mem: {address: %q, security: plain}}
admin:
  address: "127.0.0.1:0"
  tokens:
    - {name: soc, scope: read, file: %s}
    - {name: oncall, scope: write, file: %s}
%s
policy: {dirs: [{path: %q}]}
rate_limits: {login_failures_per_user: 2, lockout_base: 1m, login_failure_delay: 1ms}
audit: {path: %q, fsync: always}
drain_timeout: 5s
`, cf.Cert, cf.Key, backendAddr, filepath.Join(dir, "read.token"), filepath.Join(dir, "write.token"), adminExtra, repoPolicies, f.auditPath)
	st := startServeText(t, dir, cfgText)
	f.cfgFile, f.cfgText, f.hup = st.cfgFile, cfgText, st.hup
	f.imaps, f.admin = st.imaps, st.admin.String()
	return f
}

// servedText is serve running from a configuration file, reloaded by
// sending on hup.
type servedText struct {
	admin   net.Addr
	imaps   string
	cfgFile string
	hup     chan os.Signal
}

// startServeText runs serve from text, written to dir/imapwarden.yaml.
func startServeText(t *testing.T, dir, text string) *servedText {
	t.Helper()
	cfgFile := filepath.Join(dir, "imapwarden.yaml")
	os.WriteFile(cfgFile, []byte(text), 0o600)
	cfg, err := loadConfigFile(cfgFile)
	if err != nil {
		t.Fatal(err)
	}
	log := zaptest.NewLogger(t)
	s, err := build(cfg, log)
	if err != nil {
		t.Fatal(err)
	}
	s.lameDuck = 0
	ctx, cancel := context.WithCancel(context.Background())
	st := &servedText{cfgFile: cfgFile, hup: make(chan os.Signal, 1)}
	done := make(chan error, 1)
	started := make(chan struct{})
	go func() {
		reload := func() (*setup, error) {
			cfg, err := loadConfigFile(cfgFile)
			if err != nil {
				return nil, err
			}
			return check(cfg, log)
		}
		done <- runServe(ctx, s, log, st.hup, reload, func(a []net.Addr, adm net.Addr) {
			st.imaps, st.admin = a[0].String(), adm
			close(started)
		})
	}()
	select {
	case <-started:
	case err := <-done:
		cancel()
		t.Fatalf("runServe: %v", err)
	}
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("runServe: %v", err)
		}
	})
	return st
}

// session opens an IMAP session through the proxy and reads the greeting.
func (f *adminFixture) session() *imapConn {
	f.t.Helper()
	tc, err := tls.Dial("tcp", f.imaps, &tls.Config{InsecureSkipVerify: true})
	if err != nil {
		f.t.Fatal(err)
	}
	f.t.Cleanup(func() { tc.Close() })
	c := &imapConn{t: f.t, c: tc, r: bufio.NewReader(tc)}
	c.line()
	return c
}

// do sends an admin request with the token (none when empty).
func (f *adminFixture) do(method, path, token, ctype, body string) (int, string) {
	f.t.Helper()
	req, err := http.NewRequest(method, "http://"+f.admin+path, strings.NewReader(body))
	if err != nil {
		f.t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	if ctype != "" {
		req.Header.Set("Content-Type", ctype)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		f.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// adminRecords waits until the trail holds n admin records (it writes
// asynchronously) and returns them.
func (f *adminFixture) adminRecords(n int) []*audit.Record {
	f.t.Helper()
	deadline := time.Now().Add(time.Minute)
	for {
		recs := f.readAdminRecords()
		if len(recs) >= n || time.Now().After(deadline) {
			return recs
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func (f *adminFixture) readAdminRecords() []*audit.Record {
	f.t.Helper()
	files, err := audit.Files(f.auditPath)
	if err != nil {
		f.t.Fatal(err)
	}
	var out []*audit.Record
	if _, err := audit.Query(files, &audit.Filter{Kinds: []string{string(audit.KindAdmin)}}, func(r *audit.Record, _ []byte) error {
		out = append(out, r)
		return nil
	}); err != nil {
		f.t.Fatal(err)
	}
	return out
}

// TestAdminAPIEndToEnd: kick by user ends every session of the user, a
// read token may look but not act, each write action lands in the trail
// with who, from where and what, /audit searches the trail, and /config
// shows no token.
func TestAdminAPIEndToEnd(t *testing.T) {
	f := startAdminFixture(t, "")
	c1, c2, other := f.session(), f.session(), f.session()
	c1.cmd("a", "OK", `LOGIN demo "demo-password"`)
	c2.cmd("a", "OK", `LOGIN demo "demo-password"`)
	c1.cmd("b", "OK", "SELECT INBOX")
	c1.cmd("c", "NO [NOPERM]", "DELETE INBOX")

	if code, body := f.do("DELETE", "/sessions?user=demo", testReadToken, "", ""); code != http.StatusForbidden {
		t.Fatalf("kick with the read token: %d %s", code, body)
	}
	code, body := f.do("DELETE", "/sessions?user=Demo", testWriteToken, "", "")
	var kicked struct{ Ended []string }
	json.Unmarshal([]byte(body), &kicked)
	if code != 200 || len(kicked.Ended) != 2 {
		t.Fatalf("kick demo: %d %s", code, body)
	}
	// Both sessions end at their next command boundary with BYE.
	for _, c := range []*imapConn{c1, c2} {
		fmt.Fprintf(c.c, "z NOOP\r\n")
		for l := c.line(); !strings.HasPrefix(l, "* BYE"); l = c.line() {
		}
	}
	// The unauthenticated session is not the user's.
	other.cmd("n", "OK", "NOOP")

	// Lock demo out, then unlock with the documented body.
	other.cmd("x", "NO", "LOGIN demo wrong")
	other.cmd("y", "NO", "LOGIN demo wrong")
	f.session().cmd("z", "NO", `LOGIN demo "demo-password"`) // locked out: a limit hit
	if code, body := f.do("GET", "/ratelimit/lockouts", testReadToken, "", ""); code != 200 || !strings.Contains(body, `"demo"`) {
		t.Fatalf("lockouts: %d %s", code, body)
	}
	if code, _ := f.do("POST", "/ratelimit/unlock", testReadToken, "application/json", `{"user":"demo"}`); code != http.StatusForbidden {
		t.Errorf("unlock with the read token: %d", code)
	}
	if code, body := f.do("POST", "/ratelimit/unlock", testWriteToken, "application/json", `{"user":"demo"}`); code != 200 || !strings.Contains(body, `"removed"`) {
		t.Fatalf("unlock: %d %s", code, body)
	}
	if code, body := f.do("PUT", "/loglevel", testWriteToken, "application/json", `{"level":"debug"}`); code != 200 {
		t.Fatalf("loglevel: %d %s", code, body)
	}

	want := []struct{ event, user, detail string }{
		{"session.end-user", "Demo", "2 sessions ended"},
		{"unlock", "demo", "user demo"},
		{"loglevel", "", "info -> debug"},
	}
	recs := f.adminRecords(len(want))
	if len(recs) != len(want) {
		t.Fatalf("admin records: %d, want %d (read-token refusals are not actions)", len(recs), len(want))
	}
	for i, w := range want {
		r := recs[i]
		if r.Event != w.event || r.User != w.user || r.Detail != w.detail || r.Actor != "oncall" || r.Scope != "write" ||
			r.IP.String() != "127.0.0.1" || r.Port == 0 || r.Result != "ok" || r.Code != "200" {
			t.Errorf("record %d: %+v, want %+v by oncall (write) from 127.0.0.1", i, r, w)
		}
	}

	// /audit is the query of "audit query".
	code, body = f.do("GET", "/audit?user=demo&kind=policy&limit=10", testReadToken, "", "")
	var res struct {
		Records []map[string]any
		Matched int
	}
	json.Unmarshal([]byte(body), &res)
	if code != 200 || res.Matched != 1 || res.Records[0]["command"] != "DELETE" || res.Records[0]["kind"] != "policy.deny" {
		t.Errorf("/audit: %d %s", code, body)
	}
	if code, body := f.do("GET", "/audit?since=yesterday", testReadToken, "", ""); code != 400 || !strings.Contains(body, "since") {
		t.Errorf("/audit with a bad time: %d %s", code, body)
	}
	// The newest records, oldest first, when more match than asked for.
	code, body = f.do("GET", "/audit?kind=admin&limit=2", testReadToken, "", "")
	json.Unmarshal([]byte(body), &res)
	if code != 200 || res.Matched != 3 || len(res.Records) != 2 || res.Records[0]["event"] != "unlock" || res.Records[1]["event"] != "loglevel" {
		t.Errorf("/audit limit 2: %d %s", code, body)
	}
	if code, body := f.do("GET", "/recent", testReadToken, "", ""); code != 200 || !strings.Contains(body, `"command": "DELETE"`) ||
		!strings.Contains(body, `"limit": "login_failures_per_user"`) {
		t.Errorf("/recent: %d %s", code, body)
	}

	code, body = f.do("GET", "/config", testReadToken, "", "")
	if code != 200 || strings.Contains(body, testReadToken) || strings.Contains(body, testWriteToken) ||
		!strings.Contains(body, "name: oncall") || !strings.Contains(body, "drain_timeout: 5s") {
		t.Errorf("/config: %d\n%s", code, body)
	}
}

// admin.read_header_timeout reaches the server: a client that never ends
// its header is disconnected well before the 10s default.
func TestAdminReadHeaderTimeout(t *testing.T) {
	f := startAdminFixture(t, "  read_header_timeout: 200ms")
	c, err := net.Dial("tcp", f.admin)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	start := time.Now()
	fmt.Fprintf(c, "GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\n")
	io.ReadAll(c) // until the server closes
	if d := time.Since(start); d >= defaultAdminTimeouts.ReadHeader {
		t.Errorf("closed after %v: the configured 200ms was not applied", d)
	}
}

// admin.idle_timeout and admin.read_timeout reach the server (issue 17):
// a kept-alive connection left idle, and a request whose body never comes,
// are closed after the configured 200ms, not held open.
func TestAdminReadAndIdleTimeouts(t *testing.T) {
	f := startAdminFixture(t, "  read_timeout: 200ms\n  idle_timeout: 200ms")
	for name, req := range map[string]string{
		"idle": "GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n",
		"read": "POST /loglevel HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer " + testWriteToken +
			"\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"level\"",
	} {
		t.Run(name, func(t *testing.T) {
			c, err := net.Dial("tcp", f.admin)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			start := time.Now()
			// The bound is the default: without the keys the server
			// would hold the connection at least that long (forever
			// for an idle one before issue 17).
			c.SetDeadline(start.Add(defaultAdminTimeouts.Read))
			fmt.Fprint(c, req)
			_, err = io.ReadAll(c) // until the server closes
			if d := time.Since(start); err != nil || d >= defaultAdminTimeouts.Read {
				t.Errorf("open after %v (%v): the configured 200ms was not applied", d, err)
			}
		})
	}
}

// A reload that drops a token revokes it at once: for the API and for the
// console sessions opened with it.
func TestAdminTokenRevokedOnReload(t *testing.T) {
	f := startAdminFixture(t, "")
	c := newConsoleClient(t, f.admin)
	if resp, _ := c.post("/console/login", url.Values{"token": {testWriteToken}}, c.base); resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("console login: %d", resp.StatusCode)
	}
	if resp, _ := c.get("/console/"); resp.StatusCode != 200 {
		t.Fatalf("console: %d", resp.StatusCode)
	}
	text := strings.Replace(f.cfgText, "    - {name: oncall, scope: write, file: "+filepath.Join(f.dir, "write.token")+"}\n", "", 1)
	if text == f.cfgText {
		t.Fatal("the write token is not in the fixture's configuration")
	}
	os.WriteFile(f.cfgFile, []byte(text), 0o600)
	f.hup <- syscall.SIGHUP
	deadline := time.Now().Add(time.Minute)
	for {
		code, _ := f.do("GET", "/sessions", testWriteToken, "", "")
		if code == http.StatusUnauthorized {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the removed token still works after the reload: %d", code)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if resp, _ := c.get("/console/"); resp.StatusCode != http.StatusSeeOther {
		t.Errorf("console session of a removed token: %d", resp.StatusCode)
	}
	if code, _ := f.do("GET", "/sessions", testReadToken, "", ""); code != 200 {
		t.Errorf("the read token after the reload: %d", code)
	}
}
