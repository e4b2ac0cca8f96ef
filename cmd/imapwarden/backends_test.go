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
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"

	"github.com/imapwarden/imapwarden/audit"
	"github.com/imapwarden/imapwarden/internal/dovecottest"
	"github.com/imapwarden/imapwarden/internal/ldaptest"
	"github.com/imapwarden/imapwarden/internal/testenv"
	"github.com/imapwarden/imapwarden/proxy/pool"
)

// serveConfig writes cfgText to dir and serves it, without lame duck,
// until the returned stop (idempotent; also at cleanup). It returns the
// setup served, the listeners' and the admin listener's addresses.
func serveConfig(t *testing.T, dir, cfgText string) (s *setup, addrs []net.Addr, adminAddr net.Addr, stop func()) {
	t.Helper()
	cfgFile := filepath.Join(dir, "imapwarden.yaml")
	if err := os.WriteFile(cfgFile, []byte(cfgText), 0o600); err != nil {
		t.Fatal(err)
	}
	return startServe(t, cfgFile, zaptest.NewLogger(t), func(s *setup) { s.lameDuck = 0 })
}

// startServe builds cfgFile, lets adjust change the setup, and serves it
// until the returned stop (idempotent; also at cleanup, which reports a
// failed serve).
func startServe(t testing.TB, cfgFile string, log *zap.Logger, adjust func(*setup)) (s *setup, addrs []net.Addr, adminAddr net.Addr, stop func()) {
	t.Helper()
	cfg, err := loadConfigFile(cfgFile)
	if err != nil {
		t.Fatal(err)
	}
	s, err = build(cfg, log)
	if err != nil {
		t.Fatal(err)
	}
	if adjust != nil {
		adjust(s)
	}
	if _, port, _ := net.SplitHostPort(s.adminAddr); port != "" && port != "0" {
		// A fixed port (the default 9143 of a configuration without
		// admin.address) collides with any other test or process on it:
		// tests listen on ephemeral ports.
		host, _, _ := net.SplitHostPort(s.adminAddr)
		s.adminAddr = net.JoinHostPort(host, "0")
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	started := make(chan struct{})
	go func() {
		done <- runServe(ctx, s, log, nil, nil, func(a []net.Addr, adm net.Addr) { addrs, adminAddr = a, adm; close(started) })
	}()
	select {
	case <-started:
	case err := <-done:
		cancel()
		t.Fatalf("runServe: %v", err)
	}
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("runServe: %v", err)
			}
		})
	}
	t.Cleanup(stop)
	return s, addrs, adminAddr, stop
}

// eventually polls cond until it holds, or fails the test after
// testenv.IOTimeout.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(testenv.IOTimeout())
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not after %v", what, testenv.IOTimeout())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestServeBackendPool runs serve with one backend of two real Dovecot
// servers: the admin API lists them, drains one with kick (its session
// ends, new logins go to the other, all audited), enables it back;
// /readyz turns 503 with the reason when both are down and 200 when one
// returns; the health changes are in the trail.
func TestServeBackendPool(t *testing.T) {
	dovecottest.Require(t)
	one := dovecottest.Start(t, dovecottest.Options{})
	two := dovecottest.Start(t, dovecottest.Options{})
	dir := t.TempDir()
	cf := tlsFiles(t, dir)
	trail := filepath.Join(dir, "audit.jsonl")
	cfgText := fmt.Sprintf(`
listeners: [{address: "127.0.0.1:0", mode: tls}]
tls: {certificates: [{cert: %s, key: %s}]}
backends:
  main:
    servers: [{name: one, address: %q}, {name: two, address: %q}]
    security: plain
    health: {interval: 200ms, fast_interval: 100ms, timeout: 10s}
admin: {address: "127.0.0.1:0"}
audit: {path: %q, fsync: always}
rate_limits: {enabled: false}
`, cf.Cert, cf.Key, one.Addr, two.Addr, trail)
	_, addrs, adminAddr, stop := serveConfig(t, dir, cfgText)

	admin := func(method, path string) (int, string) {
		t.Helper()
		req, _ := http.NewRequest(method, "http://"+adminAddr.String()+path, nil)
		req.Header.Set("Content-Type", "application/json") // without tokens, what a write needs
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	backends := func() []pool.BackendStatus {
		t.Helper()
		code, body := admin("GET", "/backends")
		var bs []pool.BackendStatus
		if err := json.Unmarshal([]byte(body), &bs); code != 200 || err != nil {
			t.Fatalf("GET /backends: %d %v\n%s", code, err, body)
		}
		return bs
	}
	health := func() string {
		var hs []string
		for _, st := range backends()[0].Servers {
			hs = append(hs, st.Name+"="+st.Health)
		}
		return strings.Join(hs, " ")
	}
	eventually(t, "both servers up", func() bool { return health() == "one=up two=up" })

	session := func() (*imapConn, string) {
		tc, err := tls.Dial("tcp", addrs[0].String(), &tls.Config{InsecureSkipVerify: true})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { tc.Close() })
		c := &imapConn{t: t, c: tc, r: bufio.NewReader(tc)}
		c.line()
		c.cmd("l", "OK", "LOGIN alice alice-pw")
		code, body := admin("GET", "/sessions")
		var list struct {
			Sessions []struct {
				Client, Server, Backend string
			}
		}
		err = json.Unmarshal([]byte(body), &list)
		ss := list.Sessions
		if code != 200 || err != nil {
			t.Fatalf("GET /sessions: %d %v", code, err)
		}
		for _, s := range ss {
			if s.Client == tc.LocalAddr().String() {
				if s.Backend != "main" {
					t.Errorf("session backend %q", s.Backend)
				}
				return c, s.Server
			}
		}
		t.Fatalf("session not listed: %s", body)
		return nil, ""
	}
	c, home := session()
	other := map[string]string{"one": "two", "two": "one"}[home]

	code, body := admin("POST", "/backends/main/servers/"+home+"/drain?kick=true")
	if code != 200 || !strings.Contains(body, `"sessions_ended": 1`) || !strings.Contains(body, `"admin": "drain"`) {
		t.Fatalf("drain: %d %s", code, body)
	}
	// Kicked: the next command boundary ends the session.
	fmt.Fprintf(c.c, "n NOOP\r\n")
	if l := c.line(); !strings.HasPrefix(l, "* BYE [UNAVAILABLE] Backend server taken out of service") {
		t.Errorf("kicked session heard %q", l)
	}
	if _, on := session(); on != other {
		t.Errorf("login during the drain went to %s, want %s", on, other)
	}
	code, body = admin("POST", "/backends/main/servers/"+home+"/enable")
	if code != 200 || !strings.Contains(body, `"previous": "drain"`) {
		t.Fatalf("enable: %d %s", code, body)
	}
	if _, on := session(); on != home {
		t.Errorf("login after enable went to %s, want %s again", on, home)
	}
	for path, want := range map[string]int{
		"/backends/main/servers/" + home + "/reboot":           404,
		"/backends/main/servers/nope/drain":                    404,
		"/backends/nope/servers/one/drain":                     404,
		"/backends/main/servers/" + home + "/enable?kick=true": 400,
		"/backends/main/servers/" + home + "/drain?kick=maybe": 400,
	} {
		if code, body := admin("POST", path); code != want {
			t.Errorf("POST %s: %d %s, want %d", path, code, body, want)
		}
	}

	if code, body := admin("GET", "/readyz"); code != 200 {
		t.Fatalf("/readyz with both up: %d %s", code, body)
	}
	one.Kill()
	two.Kill()
	eventually(t, "readyz 503", func() bool { code, _ := admin("GET", "/readyz"); return code == 503 })
	_, body = admin("GET", "/readyz")
	if !strings.Contains(body, "backends: backend main has no server taking logins") {
		t.Errorf("/readyz reason: %s", body)
	}
	two.Restart(t)
	eventually(t, "readyz 200 again", func() bool { code, _ := admin("GET", "/readyz"); return code == 200 })
	_, metrics := admin("GET", "/metrics")
	for _, want := range []string{`imapwarden_backend_up{backend="main",server="one"} 0`, `imapwarden_backend_up{backend="main",server="two"} 1`,
		`imapwarden_backend_sessions{backend="main",server=`, `imapwarden_backend_admin_state{backend="main",server="one",state="enabled"} 1`} {
		if !strings.Contains(metrics, want) {
			t.Errorf("metrics lack %s", want)
		}
	}

	stop()
	var out, errOut strings.Builder
	if code := runAudit([]string{"verify", trail}, &out, &errOut); code != 0 {
		t.Fatalf("audit verify: %d\n%s%s", code, out.String(), errOut.String())
	}
	out.Reset()
	if code := runAudit([]string{"query", trail, "--kind", "admin,backend", "--format", "json"}, &out, &errOut); code != 0 {
		t.Fatalf("audit query: %d %s", code, errOut.String())
	}
	// Every record wanted, by its fields.
	type rec struct{ kind, backend, server, event, result, detail string }
	var got []rec
	for _, line := range strings.Split(strings.TrimSpace(out.String()), "\n") {
		r, err := audit.ParseRecord([]byte(line))
		if err != nil {
			t.Fatal(err)
		}
		if r.Kind == audit.KindAdmin && (!r.IP.IsLoopback() || r.Actor == "") {
			t.Errorf("admin record without its caller: %s", line)
		}
		got = append(got, rec{string(r.Kind), r.Backend, r.Server, r.Event, r.Result, r.Detail})
	}
	for _, want := range []rec{
		{"admin", "main", home, "backend.drain", "ok", "from enabled, kick: 1 sessions ended"},
		{"admin", "main", home, "backend.enable", "ok", "from drain"},
		{"admin", "main", home, "backend.reboot", "error", `unknown action "reboot": want drain, disable or enable`},
		{"admin", "main", "nope", "backend.drain", "error", `no such backend or server: server "nope" of backend "main"`},
		{"backend", "main", "one", "server-down", "", ""},
		{"backend", "main", "two", "server-up", "", ""},
	} {
		found := false
		for _, g := range got {
			if g.kind == want.kind && g.backend == want.backend && g.server == want.server && g.event == want.event &&
				g.result == want.result && (want.detail == "" || g.detail == want.detail) {
				found = true
			}
		}
		if !found {
			t.Errorf("trail lacks %+v:\n%s", want, out.String())
		}
	}
}

// validate --connect resolves and greets every server; a name that does
// not resolve, a port nobody listens on and a live server each get their
// line.
func TestValidateConnect(t *testing.T) {
	dovecottest.Require(t)
	live := dovecottest.Start(t, dovecottest.Options{})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := ln.Addr().String()
	ln.Close()
	dir := t.TempDir()
	cf := tlsFiles(t, dir)
	write := func(servers string) string {
		path := filepath.Join(dir, "imapwarden.yaml")
		os.WriteFile(path, []byte(fmt.Sprintf(`
listeners: [{address: "127.0.0.1:0", mode: tls}]
tls: {certificates: [{cert: %s, key: %s}]}
backends:
  main:
    servers: [%s]
    security: starttls
    tls: {ca_file: %s, server_name: localhost}
    health: {timeout: 20s}
`, cf.Cert, cf.Key, servers, live.CAFile)), 0o600)
		return path
	}
	path := write(fmt.Sprintf(`{address: %q}, {name: gone, address: %q}, {name: nowhere, address: "imap.nonexistent.invalid:143"}`, live.Addr, dead))
	code, out, errOut := runCLI("validate", "--connect", "-c", path)
	if code != 1 {
		t.Errorf("exit %d, want 1\n%s%s", code, out, errOut)
	}
	if !strings.Contains(out, "backends.main server "+live.Addr+": answers") {
		t.Errorf("stdout lacks the live server:\n%s", out)
	}
	for _, want := range []string{"backends.main server gone (" + dead + "): dial", "connection refused",
		"backends.main server nowhere (imap.nonexistent.invalid:143): resolve:"} {
		if !strings.Contains(errOut, want) {
			t.Errorf("stderr lacks %q:\n%s", want, errOut)
		}
	}
	path = write(fmt.Sprintf(`{address: %q}`, live.Addr))
	if code, out, errOut := runCLI("validate", "--connect", "-c", path); code != 0 || !strings.HasSuffix(out, "ok\n") {
		t.Errorf("live only: exit %d\n%s%s", code, out, errOut)
	}
	// Without --connect nothing is dialled: the dead server passes.
	path = write(fmt.Sprintf(`{address: %q}`, dead))
	if code, out, errOut := runCLI("validate", "-c", path); code != 0 || out != "ok\n" {
		t.Errorf("without --connect: exit %d\n%s%s", code, out, errOut)
	}
}

// A directory's mailHost routes the login (Identity.Route): to the pool's
// server of that name, never elsewhere; a mailHost no backend lists is
// refused with NO [UNAVAILABLE], and so is one whose server is drained
// (the mailbox lives there: no failover).
func TestLDAPMailHostRoutes(t *testing.T) {
	dovecottest.Require(t)
	ldaptest.Require(t)
	dir := ldaptest.Start(t, ldaptest.Options{Users: map[string]ldaptest.User{
		"alice": {Password: "alice-ldap-pw"},
		// imap1: not the server rendezvous hashing gives bob (imap2).
		"bob":   {Password: "bob-ldap-pw", MailHost: "imap1.example.com"},
		"carol": {Password: "carol-ldap-pw", MailHost: "imap9.example.com"},
	}})
	one := dovecottest.Start(t, dovecottest.Options{})
	two := dovecottest.Start(t, dovecottest.Options{})
	tmp := t.TempDir()
	cf := tlsFiles(t, tmp)
	svcPW := filepath.Join(tmp, "ldap.pw")
	os.WriteFile(svcPW, []byte(ldaptest.ServicePassword+"\n"), 0o600)
	masterPW := filepath.Join(tmp, "master.pw")
	os.WriteFile(masterPW, []byte(one.MasterPassword+"\n"), 0o600)
	_, addrs, adminAddr, _ := serveConfig(t, tmp, fmt.Sprintf(`
listeners: [{address: "127.0.0.1:0", mode: tls}]
tls: {certificates: [{cert: %s, key: %s}]}
backends:
  mail:
    servers: [{name: imap1.example.com, address: %q}, {name: imap2.example.com, address: %q}]
    security: plain
    login: master
    master_user: %s
    master_password_file: %s
auth:
  authenticators:
    - name: corp
      type: ldap
      ldap:
        url: %s
        start_tls: true
        ca_file: %s
        search_base: "%s"
        search_filter: "(&(objectClass=inetOrgPerson)(uid={user}))"
        service_dn: "%s"
        service_password_file: %s
        route_attribute: mailHost
admin: {address: "127.0.0.1:0"}
rate_limits: {enabled: false}
`, cf.Cert, cf.Key, one.Addr, two.Addr, one.MasterUser, masterPW, dir.URL, dir.CAFile, ldaptest.PeopleDN, ldaptest.ServiceDN, svcPW))
	login := func(user, pw, want string) string {
		t.Helper()
		tc, err := tls.Dial("tcp", addrs[0].String(), &tls.Config{InsecureSkipVerify: true})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { tc.Close() })
		c := &imapConn{t: t, c: tc, r: bufio.NewReader(tc)}
		c.line()
		c.cmd("l", want, fmt.Sprintf("LOGIN %s %s", user, pw))
		if want != "OK" {
			return ""
		}
		resp, err := http.Get("http://" + adminAddr.String() + "/sessions")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var list struct {
			Sessions []struct{ Client, Server string }
		}
		json.NewDecoder(resp.Body).Decode(&list)
		for _, s := range list.Sessions {
			if s.Client == tc.LocalAddr().String() {
				return s.Server
			}
		}
		t.Fatalf("%s's session not listed", user)
		return ""
	}
	for range 3 {
		if on := login("bob", "bob-ldap-pw", "OK"); on != "imap1.example.com" {
			t.Fatalf("bob (mailHost imap1.example.com) on %q", on)
		}
	}
	if on := login("alice", "alice-ldap-pw", "OK"); on == "" {
		t.Error("alice (no mailHost) has no server")
	}
	login("carol", "carol-ldap-pw", "NO [UNAVAILABLE]")
	post, err := http.Post("http://"+adminAddr.String()+"/backends/mail/servers/imap1.example.com/drain", "application/json", nil)
	if err != nil || post.StatusCode != 200 {
		t.Fatalf("drain: %v %v", post, err)
	}
	post.Body.Close()
	login("bob", "bob-ldap-pw", "NO [UNAVAILABLE]")
}
