package main

import (
	"context"
	"crypto/tls"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/imapwarden/imapwarden/proxy"
	"github.com/imapwarden/imapwarden/proxy/imapwire"
	"github.com/imapwarden/imapwarden/proxy/pool"
	"github.com/imapwarden/imapwarden/proxy/ratelimit"
	"github.com/imapwarden/imapwarden/tlsterm"
)

// tlsFiles writes, into dir, what the example configuration names under
// /etc/imapwarden/tls: cert.pem and key.pem (self-signed for
// imap.example.com) and backend-ca.pem.
func tlsFiles(t testing.TB, dir string) tlsterm.CertFile {
	t.Helper()
	cf, err := tlsterm.WriteSelfSigned(dir, []string{"imap.example.com", "localhost", "127.0.0.1"})
	if err != nil {
		t.Fatal(err)
	}
	ca, err := tlsterm.NewCA()
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "backend-ca.pem"), ca.CertPEM, 0o644); err != nil {
		t.Fatal(err)
	}
	return cf
}

// exampleConfig copies testdata/example.yaml into a temporary directory with
// its /etc/imapwarden/tls/ files created there, and returns its path.
func exampleConfig(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	tlsFiles(t, dir)
	data, err := os.ReadFile("testdata/example.yaml")
	if err != nil {
		t.Fatal(err)
	}
	text := strings.ReplaceAll(string(data), "/etc/imapwarden/tls/", dir+"/")
	// The admin.tokens example's token file.
	if err := os.WriteFile(filepath.Join(dir, "admin-soc.token"), []byte("soc-token-0123456789\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	text = strings.ReplaceAll(text, "/etc/imapwarden/admin-soc.token", filepath.Join(dir, "admin-soc.token"))
	path := filepath.Join(dir, "imapwarden.yaml")
	if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestExampleConfigOptions(t *testing.T) {
	cfg, err := loadConfigFile(exampleConfig(t))
	if err != nil {
		t.Fatal(err)
	}
	s, err := build(cfg, zap.NewNop())
	if err != nil {
		t.Fatal(err)
	}
	o := s.opts
	if o.Hostname != "imap.example.com" || o.AllowAuthzid || !slices.Equal(o.UserSeparators, proxy.DefaultUserSeparators) {
		t.Errorf("Hostname %q AllowAuthzid %v UserSeparators %q", o.Hostname, o.AllowAuthzid, o.UserSeparators)
	}
	if s.drainTimeout != 30*time.Second || s.reloadInterval != time.Minute {
		t.Errorf("drain %v reload %v", s.drainTimeout, s.reloadInterval)
	}
	wantLimits := proxy.Limits{
		MaxLine:                proxy.DefaultMaxLine,
		MaxBufferedLiteral:     proxy.DefaultMaxBufferedLiteral,
		MaxAppendLiteral:       proxy.DefaultMaxAppendLiteral,
		MaxCommandBytes:        proxy.DefaultMaxCommandBytes,
		MaxPreAuthCommandBytes: proxy.DefaultMaxPreAuthCommandBytes,
		MaxPreAuthCommands:     proxy.DefaultMaxPreAuthCommands,
		PreAuthIdle:            proxy.DefaultPreAuthIdle,
		AuthIdle:               proxy.DefaultAuthIdle,
		IdleTimeout:            proxy.DefaultIdleTimeout,
		WriteTimeout:           proxy.DefaultWriteTimeout,
		MaxAuthFailures:        proxy.DefaultMaxAuthFailures,
		MaxCredentialBytes:     proxy.DefaultMaxCredentialBytes,
		MaxCompressSessions:    proxy.DefaultMaxCompressSessions,
		// The example shows the default under the shipped systemd unit;
		// here it depends on the open-file limit.
		MaxPreAuthConnections: 4096,
		MaxInflight:           proxy.DefaultMaxInflight,
		MaxInflightBytes:      proxy.DefaultMaxInflightBytes,
		BackendTimeout:        proxy.DefaultBackendTimeout,
		MaxResponseLine:       proxy.DefaultMaxResponseLine,
		ParkAfter:             proxy.DefaultParkAfter,
		MaxAuditUIDs:          proxy.DefaultMaxAuditUIDs,
		MaxAuditSharedWith:    proxy.DefaultMaxAuditSharedWith,
		MaxAuditMailboxNames:  proxy.DefaultMaxAuditMailboxNames,
		MaxAuditNameBytes:     proxy.DefaultMaxAuditNameBytes,
		MaxTag:                imapwire.DefaultMaxTag,
		MaxListDepth:          imapwire.DefaultMaxListDepth,
		MaxArguments:          imapwire.DefaultMaxArguments,
		MaxSearchDepth:        imapwire.DefaultMaxSearchDepth,
	}
	if o.Limits != wantLimits {
		t.Errorf("Limits\n got %+v\nwant %+v", o.Limits, wantLimits)
	}
	if len(o.Listeners) != 2 {
		t.Fatalf("%d listeners, want 2", len(o.Listeners))
	}
	for i, want := range []proxy.ListenerOptions{
		{Name: "imaps", Addr: "0.0.0.0:993", Mode: proxy.ImplicitTLS},
		{Name: "imap", Addr: "0.0.0.0:143", Mode: proxy.StartTLS},
	} {
		got := o.Listeners[i]
		if got.Name != want.Name || got.Addr != want.Addr || got.Mode != want.Mode || len(got.PlaintextAuthFrom) != 0 {
			t.Errorf("listener %d: got %+v, want %+v", i, got, want)
		}
		if got.TLS != s.tls.TLSConfig() {
			t.Errorf("listener %d: TLS is not the tlsterm server's config", i)
		}
	}
	if _, ok := o.Router.(*pool.Router); !ok {
		t.Fatalf("Router is %T", o.Router)
	}
	r, ok := s.static.(*proxy.StaticRouter)
	if !ok {
		t.Fatalf("static routes are %T", s.static)
	}
	mainB, legacy := r.Default, r.Domains["legacy.example.com"]
	if mainB == nil || legacy == nil || r.Users["ceo@example.com"] != mainB || len(r.Users) != 1 || len(r.Domains) != 1 {
		t.Fatalf("routes: %+v", r)
	}
	// One name per login (ARCHITECTURE.md §17): any spelling of the key.
	if b, err := r.Route(context.Background(), nil, "CEO@Example.com"); err != nil || b != mainB {
		t.Fatalf("routes.users by another spelling: %v, %v", b, err)
	}
	if mainB.TLS == nil || mainB.TLS.ServerName != "mail.internal.example.com" || mainB.TLS.RootCAs == nil ||
		mainB.TLS.InsecureSkipVerify || mainB.TLS.MinVersion != tls.VersionTLS12 {
		t.Errorf("main TLS: %+v", mainB.TLS)
	}
	mainB = poolTemplate(t, mainB, "10.0.0.5:143", "imap2=10.0.0.6:143/2")
	wantMain := proxy.Backend{Name: "main", Security: proxy.BackendStartTLS, Login: proxy.LoginAuto,
		ConnectTimeout: 10 * time.Second, LoginTimeout: 30 * time.Second, SendID: true}
	if *mainB != wantMain {
		t.Errorf("main backend\n got %+v\nwant %+v", *mainB, wantMain)
	}
	if legacy.TLS == nil || !legacy.TLS.InsecureSkipVerify {
		t.Errorf("legacy TLS: %+v", legacy.TLS)
	}
	legacy = poolTemplate(t, legacy, "192.0.2.20:993")
	wantLegacy := proxy.Backend{Name: "legacy", Security: proxy.BackendTLS, Login: proxy.LoginAuto,
		ConnectTimeout: proxy.DefaultConnectTimeout, LoginTimeout: proxy.DefaultLoginTimeout}
	if *legacy != wantLegacy {
		t.Errorf("legacy backend\n got %+v\nwant %+v", *legacy, wantLegacy)
	}
	if len(s.warnings) != 1 || s.warnings[0].Key != "backends.legacy.tls.insecure" {
		t.Errorf("warnings: %v", s.warnings)
	}
}

// poolTemplate checks that b is a pool's backend with the servers
// "name=address/weight" (name = address when equal), and returns a copy
// without its pool and TLS, to compare.
func poolTemplate(t *testing.T, b *proxy.Backend, servers ...string) *proxy.Backend {
	t.Helper()
	p, ok := b.Servers.(*pool.Pool)
	if !ok {
		t.Fatalf("backend %s has no pool: %T", b.Name, b.Servers)
	}
	set, err := pool.NewSet(p)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, st := range set.Status()[0].Servers {
		got = append(got, fmt.Sprintf("%s=%s/%v", st.Name, st.Address, st.Weight))
	}
	var want []string
	for _, s := range servers {
		if !strings.Contains(s, "=") {
			s = s + "=" + s
		}
		if !strings.Contains(s, "/") {
			s += "/1"
		}
		want = append(want, s)
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("backend %s: servers %q, want %q", b.Name, got, want)
	}
	c := *b
	c.Servers, c.TLS = nil, nil
	return &c
}

// testConfig is a small valid configuration with every non-default value,
// its certificate files in dir.
func testConfig(dir string) string {
	return `
hostname: mx.example.net
log: {level: debug, format: console}
drain_timeout: 5s
listeners:
  - {address: "127.0.0.1:0", mode: tls}
  - {name: inner, address: "127.0.0.1:1143", mode: starttls, plaintext_auth_from: ["10.0.0.0/8", "192.0.2.7", "2001:db8::/32"]}
tls:
  certificates: [{cert: ` + dir + `/cert.pem, key: ` + dir + `/key.pem}]
  min_version: "1.3"
  strict_sni: true
  reload_interval: 10s
backends:
  only:
    address: "127.0.0.1:143"
    security: plain
    login: login
    connect_timeout: 2s
    login_timeout: 3s
limits: {max_line: 8KiB, max_buffered_literal: 1024, max_append_literal: 1GiB, max_command_bytes: 300KiB, max_preauth_command_bytes: 20KiB, max_preauth_commands: 5,
  preauth_idle: 10s, auth_idle: 45m, idle_timeout: 31m, write_timeout: 5s, max_auth_failures: 1, max_credential_bytes: 2KiB, max_compress_sessions: 7,
  max_preauth_connections: 9, max_inflight: 11, max_inflight_bytes: 64KiB, backend_timeout: 90s, max_response_line: 1MiB, park_after: 0s,
  max_audit_uids: 50, max_audit_shared_with: 4,
  max_tag: 20, max_list_depth: 9, max_arguments: 500, max_search_depth: 5}
auth: {allow_authzid: true}
`
}

func TestConfigNonDefaults(t *testing.T) {
	dir := t.TempDir()
	tlsFiles(t, dir)
	cfg, err := parseConfig([]byte(testConfig(dir)))
	if err != nil {
		t.Fatal(err)
	}
	s, err := build(cfg, zap.NewNop())
	if err != nil {
		t.Fatal(err)
	}
	o := s.opts
	if level, format, _ := logSettings(cfg.Log); level != zap.DebugLevel || format != "console" {
		t.Errorf("log %v %v", level, format)
	}
	if o.Hostname != "mx.example.net" || !o.AllowAuthzid || s.drainTimeout != 5*time.Second || s.reloadInterval != 10*time.Second {
		t.Errorf("options %+v drain %v reload %v", o, s.drainTimeout, s.reloadInterval)
	}
	if got := s.tls.TLSConfig().MinVersion; got != tls.VersionTLS13 {
		t.Errorf("MinVersion %#x", got)
	}
	want := proxy.Limits{MaxLine: 8192, MaxBufferedLiteral: 1024, MaxAppendLiteral: 1 << 30, MaxCommandBytes: 300 << 10, MaxPreAuthCommandBytes: 20 << 10, MaxPreAuthCommands: 5,
		PreAuthIdle: 10 * time.Second, AuthIdle: 45 * time.Minute, IdleTimeout: 31 * time.Minute, WriteTimeout: 5 * time.Second, MaxAuthFailures: 1, MaxCredentialBytes: 2048, MaxCompressSessions: 7,
		MaxPreAuthConnections: 9, MaxInflight: 11, MaxInflightBytes: 64 << 10, BackendTimeout: 90 * time.Second, MaxResponseLine: 1 << 20, ParkAfter: -1,
		MaxAuditUIDs: 50, MaxAuditSharedWith: 4, MaxAuditMailboxNames: proxy.DefaultMaxAuditMailboxNames,
		MaxAuditNameBytes: proxy.DefaultMaxAuditNameBytes, MaxTag: 20, MaxListDepth: 9, MaxArguments: 500, MaxSearchDepth: 5}
	if o.Limits != want {
		t.Errorf("Limits\n got %+v\nwant %+v", o.Limits, want)
	}
	if o.Listeners[0].Name != "imaps" || o.Listeners[1].Name != "inner" {
		t.Errorf("listener names %q %q", o.Listeners[0].Name, o.Listeners[1].Name)
	}
	wantNets := []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("192.0.2.7/32"), netip.MustParsePrefix("2001:db8::/32")}
	if !reflect.DeepEqual(o.Listeners[1].PlaintextAuthFrom, wantNets) {
		t.Errorf("PlaintextAuthFrom %v", o.Listeners[1].PlaintextAuthFrom)
	}
	// One backend and no routes: it is the default.
	b := s.static.(*proxy.StaticRouter).Default
	wantB := proxy.Backend{Name: "only", Security: proxy.BackendPlain, Login: proxy.LoginCommand,
		ConnectTimeout: 2 * time.Second, LoginTimeout: 3 * time.Second}
	if b == nil || *poolTemplate(t, b, "127.0.0.1:143") != wantB {
		t.Errorf("backend\n got %+v\nwant %+v", b, wantB)
	}
	if len(s.warnings) != 1 || s.warnings[0].Key != "listeners[1].plaintext_auth_from" {
		t.Errorf("warnings %v", s.warnings)
	}
}

func TestConfigErrors(t *testing.T) {
	dir := t.TempDir()
	tlsFiles(t, dir)
	secret := filepath.Join(dir, "master.secret")
	if err := os.WriteFile(secret, []byte("s3cret-master\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	certs := "tls: {certificates: [{cert: " + dir + "/cert.pem, key: " + dir + "/key.pem}]}\n"
	listener := "listeners: [{address: \":993\", mode: tls}]\n"
	longToken := filepath.Join(dir, "admin.token")
	if err := os.WriteFile(longToken, []byte("0123456789abcdef-token\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	backend := "backends: {main: {address: \"10.0.0.5:993\", security: tls}}\n"
	base := listener + certs + backend

	for _, tc := range []struct {
		name string
		yaml string
		want []string // substrings of the error
	}{
		{"empty file", "", []string{"empty configuration"}},
		{"only comments", "# nothing\n", []string{"empty configuration"}},
		{"negative eval timeout", base + "policy: {dirs: [{path: " + dir + "}], eval_timeout: -1s}\n", []string{"policy.eval_timeout: must not be negative"}},
		{"two documents", base + "---\nhostname: x\n", []string{"second YAML document"}},
		{"syntax", "listeners: [\n", []string{"line 1: YAML syntax:"}},
		{"unknown top key", "hostname: a\nlisten: []\n", []string{`line 2: listen: unknown key`}},
		{"unknown nested key", base + "limits:\n  max_lines: 10\n", []string{`line 5: limits.max_lines: unknown key (did you mean "max_line"?)`}},
		{"unknown backend key", "backends:\n  main:\n    address: \"h:1\"\n    securty: tls\n", []string{`line 4: backends.main.securty: unknown key (did you mean "security"?)`}},
		{"bad duration", base + "drain_timeout: 30x\n", []string{`line 4: drain_timeout: invalid duration "30x"`}},
		{"duration without unit", base + "limits: {auth_idle: 1800}\n", []string{"line 4: limits.auth_idle:", "add a unit, as in 1800s"}},
		{"bad size", base + "limits: {max_line: 12 bytes}\n", []string{`line 4: limits.max_line: invalid size "12 bytes"`}},
		{"wrong type", base + "limits: {max_auth_failures: many}\n", []string{`line 4: limits.max_auth_failures: want a whole number, got "many"`}},
		{"no listeners", certs + backend, []string{"listeners: at least one listener"}},
		{"no certificates", listener + backend, []string{"tls.certificates: at least one"}},
		{"missing cert file", listener + backend + "tls: {certificates: [{cert: /nonexistent/c.pem, key: /nonexistent/k.pem}]}\n", []string{"/nonexistent/c.pem"}},
		{"client tls 1.1", listener + backend + "tls: {min_version: \"1.1\", certificates: [{cert: " + dir + "/cert.pem, key: " + dir + "/key.pem}]}\n",
			[]string{"tls.min_version: TLS 1.1 is not allowed toward clients (RFC 8996)"}},
		{"duplicate key", base + "tls: {strict_sni: true}\n", []string{`line 4: tls: written twice (first at line 2)`}},
		{"bad mode", "listeners: [{address: \":993\", mode: ssl}]\n" + certs + backend, []string{`listeners[0].mode: unknown mode "ssl"`}},
		{"bad listener address", "listeners: [{address: \"993\", mode: tls}]\n" + certs + backend, []string{"listeners[0].address"}},
		{"duplicate listener names", "listeners: [{address: \":993\", mode: tls}, {address: \":994\", mode: tls}]\n" + certs + backend, []string{`listeners[1].name: "imaps" is already`}},
		{"plaintext auth on tls", "listeners: [{address: \":993\", mode: tls, plaintext_auth_from: [10.0.0.0/8]}]\n" + certs + backend, []string{"only meaningful on a starttls listener"}},
		{"bad cidr", "listeners: [{address: \":143\", mode: starttls, plaintext_auth_from: [10.0.0.1/8]}]\n" + certs + backend, []string{"host bits set"}},
		{"no backends", listener + certs, []string{"backends: at least one backend"}},
		{"cert login without client auth", "listeners: [{address: \":993\", mode: tls, cert_login: true}]\n" + certs + backend, []string{"listeners[0].cert_login: needs client_auth"}},
		{"bad proxy protocol network", "listeners: [{address: \":993\", mode: tls, proxy_protocol_from: [lb]}]\n" + certs + backend, []string{"listeners[0].proxy_protocol_from[0]"}},
		{"admin off loopback without token", base + "admin: {address: \"0.0.0.0:9143\"}\n", []string{"admin.address: 0.0.0.0:9143 is not loopback: set admin.tokens"}},
		{"admin short token", base + "admin: {address: \"0.0.0.0:9143\", token_file: " + secret + "}\n", []string{"admin.token_file: the token is shorter than 16 characters"}},
		{"admin tokens", base + "admin: {tokens: [{name: a, scope: read, file: " + longToken + "}, {name: a, scope: admin, file: " + longToken + "}, {name: \"b c\", scope: write}]}\n", []string{
			`admin.tokens[1].scope: unknown scope "admin" (want read or write)`, `admin.tokens[1].name: "a" is used twice`,
			`admin.tokens[1]: the same token as "a"`, `admin.tokens[2].name: "b c": want letters`, "admin.tokens[2].file: required"}},
		{"admin timeouts", base + "admin: {read_timeout: 0s, idle_timeout: -1s, console_session_ttl: 0s, console_max_sessions: 0, audit_searches: -1, recent_events: 0}\n", []string{
			"admin.read_timeout: must be positive, got 0s", "admin.idle_timeout: must be positive, got -1s", "admin.console_session_ttl: must be positive, got 0s",
			"admin.console_max_sessions: must be positive, got 0", "admin.audit_searches: must be positive, got -1", "admin.recent_events: must be positive, got 0"}},
		{"bad security", listener + certs + "backends: {main: {address: \"h:143\", security: ssl}}\n", []string{`backends.main.security: unknown value "ssl"`}},
		{"missing security", listener + certs + "backends: {main: {address: \"h:143\"}}\n", []string{"backends.main.security: required"}},
		{"backend without port", listener + certs + "backends: {main: {address: \"h\", security: tls}}\n", []string{"backends.main.address"}},
		{"tls on plain", listener + certs + "backends: {main: {address: \"127.0.0.1:143\", security: plain, tls: {insecure: true}}}\n", []string{"backends.main.tls: set, but security is plain"}},
		{"insecure and ca", listener + certs + "backends: {main: {address: \"h:993\", security: tls, tls: {insecure: true, ca_file: " + dir + "/backend-ca.pem}}}\n", []string{"insecure and ca_file contradict"}},
		{"missing ca file", listener + certs + "backends: {main: {address: \"h:993\", security: tls, tls: {ca_file: /nonexistent/ca.pem}}}\n", []string{"backends.main.tls:", "/nonexistent/ca.pem"}},
		{"bad login", listener + certs + "backends: {main: {address: \"h:993\", security: tls, login: cram}}\n", []string{`backends.main.login: unknown value "cram"`}},
		{"master without password file", listener + certs + "backends: {main: {address: \"h:993\", security: tls, login: master, master_user: proxy}}\n",
			[]string{"backends.main.master_password_file: required"}},
		{"master without user", listener + certs + "backends: {main: {address: \"h:993\", security: tls, login: master, master_password_file: " + secret + "}}\n",
			[]string{"backends.main.master_user: required"}},
		{"master needs authenticator", listener + certs + "backends: {main: {address: \"h:993\", security: tls, login: master, master_user: proxy, master_password_file: " + secret + "}}\n",
			[]string{"master needs auth.authenticators with one that is not backend"}},
		{"master with backend authenticator only", listener + certs + "auth: {authenticators: [{type: backend}]}\nbackends: {main: {address: \"h:993\", security: tls, login: master, master_user: proxy, master_password_file: " + secret + "}}\n",
			[]string{"master needs auth.authenticators with one that is not backend"}},
		{"authenticators", base + `auth:
  authenticators:
    - {name: a, type: backend}
    - {name: a, type: file, file: {path: /nonexistent}}
    - {type: ldap, ldap: {url: "ldap://ldap.example.com", bind_dn: "uid={user},dc=x"}}
    - {name: x, type: ldap, oauth2: {issuer: x}}
    - {type: kerberos}
    - {name: b, type: backend}
`, []string{
			"auth.authenticators[0].type: backend hands the password to the backend's login, so it must be the last authenticator",
			`auth.authenticators[1].name: "a" is also the name of auth.authenticators[0]`,
			"auth.authenticators[2].ldap.start_tls: ldap:// to ldap.example.com without start_tls",
			`auth.authenticators[3].oauth2: set, but type is "ldap"`,
			"auth.authenticators[3].ldap.url: required",
			`auth.authenticators[4].type: unknown type "kerberos"`}},
		{"oauth2 checks", base + `auth:
  authenticators:
    - {name: o1, type: oauth2, oauth2: {issuer: "http://sso.example.com/", audience: imap}}
    - {name: o2, type: oauth2, oauth2: {issuer: "https://sso.example.com/"}}
    - {name: o3, type: oauth2, oauth2: {issuer: "https://sso.example.com/", audience: imap, algorithms: [HS256]}}
    - {name: f, type: file}
`, []string{
			"auth.authenticators[0].oauth2: http://sso.example.com/: want https",
			"auth.authenticators[1].oauth2: audience is required",
			`auth.authenticators[2].oauth2: algorithm "HS256" is not allowed`,
			"auth.authenticators[3].file.path: required"}},
		{"master separator without master", listener + certs + "backends: {main: {address: \"h:993\", security: tls, master_separator: \"*\"}}\n",
			[]string{"only used with login: master"}},
		{"bad namespaces", listener + certs + `backends: {main: {address: "h:993", security: tls, namespaces: [
  {prefix: "mail/", delimiter: "/", kind: alias}, {prefix: "mail/", delimiter: "/", kind: other},
  {prefix: "x/", delimiter: "/", kind: hidden}, {prefix: "x", delimiter: "/", kind: alias},
  {prefix: "x//", delimiter: "//", kind: shared}, {prefix: "/", delimiter: "/", kind: other},
  {prefix: "a\tb/", delimiter: "/", kind: other}]}}
`, []string{`backends.main.namespaces[1].prefix: "mail/" is declared twice`, `backends.main.namespaces[2].kind: "hidden"`,
			`backends.main.namespaces[3].prefix: "x" must name a hierarchy level and end in the delimiter "/"`,
			`backends.main.namespaces[4].delimiter`, `backends.main.namespaces[5].prefix`, `backends.main.namespaces[6].prefix`}},
		{"master fields without master", listener + certs + "backends: {main: {address: \"h:993\", security: tls, master_user: proxy}}\n",
			[]string{"only used with login: master"}},
		{"unknown default backend", base + "routes: {default: nope}\n", []string{`routes.default: no backend named "nope" (have main)`}},
		{"unknown user backend", base + "routes: {default: main, users: {bob@example.com: other}}\n", []string{`routes.users.bob@example.com: no backend named "other"`}},
		{"unknown domain backend", base + "routes: {domains: {example.com: other}}\n", []string{`routes.domains.example.com: no backend named "other"`}},
		{"duplicate user case", base + "routes: {users: {Bob: main, bob: main}}\n", []string{"keys are case-insensitive"}},
		{"address and servers", listener + certs + "backends: {main: {address: \"h:993\", servers: [{address: \"h:994\"}], security: tls}}\n", []string{"backends.main: address and servers exclude each other"}},
		{"server without port", listener + certs + "backends: {main: {servers: [{address: \"h:993\"}, {address: \"h\"}], security: tls}}\n", []string{"backends.main.servers[1].address"}},
		{"server without address", listener + certs + "backends: {main: {servers: [{name: a}], security: tls}}\n", []string{"backends.main.servers[0].address: required"}},
		{"duplicate server", listener + certs + "backends: {main: {servers: [{address: \"h:993\"}, {address: \"h:993\"}], security: tls}}\n", []string{`backends.main.servers[1]: "h:993" is also servers[0]`}},
		{"server name with slash", listener + certs + "backends: {main: {servers: [{name: a/b, address: \"h:993\"}], security: tls}}\n", []string{"backends.main.servers[0].name"}},
		{"bad weight", listener + certs + "backends: {main: {servers: [{address: \"h:993\", weight: 0}], security: tls}}\n", []string{"backends.main.servers[0].weight: 0: want 1 to 1000"}},
		{"bad max_load", listener + certs + "backends: {main: {address: \"h:993\", security: tls, max_load: 0.5}}\n", []string{"backends.main.max_load"}},
		{"bad health", listener + certs + "backends: {main: {address: \"h:993\", security: tls, health: {interval: -1s, fall: 0}}}\n", []string{"backends.main.health.interval: must be positive", "backends.main.health.fall: 0: want 1 to 100"}},
		{"bad lookup url", base + "routes: {lookup: {url: \"ftp://x/auth\"}}\n", []string{"routes.lookup.url:"}},
		{"lookup ca_file", base + "routes: {lookup: {url: \"https://auth.example.net/auth\", ca_file: " + dir + "/missing.pem}}\n", []string{"line 4: routes.lookup.ca_file:", "missing.pem"}},
		{"lookup password in clear", base + "routes: {lookup: {url: \"http://192.0.2.10:9000/auth\", send_password: true}}\n", []string{"line 4: routes.lookup.url:", "in clear to 192.0.2.10:9000"}},
		{"lookup sets auth headers", base + "routes: {lookup: {url: \"http://127.0.0.1:1/auth\", headers: {Auth-User: x}}}\n", []string{"routes.lookup.headers.Auth-User"}},
		{"several backends no route", listener + certs + "backends: {a: {address: \"h:993\", security: tls}, b: {address: \"h:994\", security: tls}}\n", []string{"routes.default: required"}},
		{"auth_idle below 30m", base + "limits: {auth_idle: 29m}\n", []string{"limits.auth_idle: 29m0s is below the 30m minimum of RFC 9051 §5.4"}},
		{"idle_timeout below 29m", base + "limits: {idle_timeout: 10m}\n", []string{"limits.idle_timeout"}},
		{"zero limit", base + "limits: {max_preauth_commands: 0}\n", []string{"limits.max_preauth_commands: must be positive"}},
		{"negative park_after", base + "limits: {park_after: -1s}\n", []string{"limits.park_after: must not be negative, got -1s"}},
		{"negative duration", base + "drain_timeout: -1s\n", []string{"drain_timeout: must be positive"}},
		{"bad log level", base + "log: {level: loud}\n", []string{`log.level: unknown level "loud"`}},
		{"bad log format", base + "log: {format: xml}\n", []string{`log.format: unknown format "xml"`}},
		{"several problems", "listeners: [{address: \":993\", mode: ssl}]\n" + certs + "backends: {main: {address: \"h:993\", security: ssl}}\nlimits: {auth_idle: 1m}\n",
			[]string{"3 problems", "listeners[0].mode", "backends.main.security", "limits.auth_idle"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg, err := parseConfig([]byte(tc.yaml))
			if err == nil {
				_, err = build(cfg, zap.NewNop())
			}
			if err == nil {
				t.Fatalf("no error; want %q", tc.want)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q\ndoes not contain %q", err, w)
				}
			}
		})
	}
}

func TestSecretsStayOut(t *testing.T) {
	dir := t.TempDir()
	secret := filepath.Join(dir, "master.secret")
	if err := os.WriteFile(secret, []byte("s3cret-master\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	pw, err := readSecretFile(secret)
	if err != nil || pw != "s3cret-master" {
		t.Fatalf("readSecretFile = %q, %v", pw, err)
	}
	if err := os.WriteFile(secret, []byte("line1\nline2\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := readSecretFile(secret); err == nil || strings.Contains(err.Error(), "line1") {
		t.Errorf("two-line secret: %v", err)
	}
	_, err = parseBackendURL("imaps://user:hunter2@h:993")
	if err == nil || strings.Contains(err.Error(), "hunter2") {
		t.Errorf("URL with credentials: %v", err)
	}
}

func TestParseBackendURL(t *testing.T) {
	for _, tc := range []struct {
		url     string
		want    *backendConfig
		wantErr string
	}{
		{url: "imap://127.0.0.1:143", want: &backendConfig{Address: "127.0.0.1:143", Security: "plain"}},
		{url: "imap://127.0.0.1:143/", want: &backendConfig{Address: "127.0.0.1:143", Security: "plain"}},
		{url: "imap+starttls://mail.example.com:143", want: &backendConfig{Address: "mail.example.com:143", Security: "starttls"}},
		{url: "IMAPS://mail.example.com:993", want: &backendConfig{Address: "mail.example.com:993", Security: "tls"}},
		{url: "imaps://[2001:db8::5]:993", want: &backendConfig{Address: "[2001:db8::5]:993", Security: "tls"}},
		{url: "imaps://10.0.0.5:993?insecure=1", want: &backendConfig{Address: "10.0.0.5:993", Security: "tls", TLS: &backendTLSConfig{Insecure: true}}},
		{url: "imap+starttls://10.0.0.5:143?insecure=true", want: &backendConfig{Address: "10.0.0.5:143", Security: "starttls", TLS: &backendTLSConfig{Insecure: true}}},
		{url: "imaps://10.0.0.5:993?ca=/etc/ca.pem&server_name=mail.internal", want: &backendConfig{Address: "10.0.0.5:993", Security: "tls", TLS: &backendTLSConfig{CAFile: "/etc/ca.pem", ServerName: "mail.internal"}}},
		{url: "imaps://10.0.0.5:993?insecure=0", want: &backendConfig{Address: "10.0.0.5:993", Security: "tls", TLS: &backendTLSConfig{}}},
		{url: "http://10.0.0.5:143", wantErr: `unknown scheme "http"`},
		{url: "imap+ssl://10.0.0.5:143", wantErr: "unknown scheme"},
		{url: "10.0.0.5:143", wantErr: "not a backend URL"},
		{url: "imaps://10.0.0.5", wantErr: "the port is missing, as in imaps://10.0.0.5:993"},
		{url: "imap://mail.example.com", wantErr: "the port is missing"},
		{url: "imaps://10.0.0.5:0", wantErr: "port"},
		{url: "imaps://10.0.0.5:99999", wantErr: "port"},
		{url: "imaps://:993", wantErr: "host is missing"},
		{url: "imaps:10.0.0.5:993", wantErr: "not a backend URL"},
		{url: "imaps:///INBOX", wantErr: "want imaps://host:port"},
		{url: "imaps://10.0.0.5:993/INBOX", wantErr: "no path"},
		{url: "imap://10.0.0.5:143?insecure=1", wantErr: "applies to TLS only"},
		{url: "imaps://10.0.0.5:993?insecure=maybe", wantErr: "want 1 or 0"},
		{url: "imaps://10.0.0.5:993?verify=0", wantErr: `unknown parameter "verify"`},
		{url: "imaps://10.0.0.5:993?ca=a&ca=b", wantErr: "ca given 2 times"},
		{url: "imaps://u:p@10.0.0.5:993", wantErr: "credentials do not belong"},
	} {
		t.Run(tc.url, func(t *testing.T) {
			got, err := parseBackendURL(tc.url)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("error %v, want one containing %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("got %+v (tls %+v), want %+v (tls %+v)", got, got.TLS, tc.want, tc.want.TLS)
			}
		})
	}
}

func TestQuickConfig(t *testing.T) {
	dir := t.TempDir()
	cf := tlsFiles(t, dir)
	q := quickFlags{imaps: "127.0.0.1:0", starttls: "127.0.0.1:0", backend: "imaps://10.0.0.5:993?insecure=1", cert: cf.Cert, key: cf.Key, sendID: true}
	cfg, err := q.config()
	if err != nil {
		t.Fatal(err)
	}
	s, err := build(cfg, zap.NewNop())
	if err != nil {
		t.Fatal(err)
	}
	if len(s.opts.Listeners) != 2 || s.opts.Listeners[0].Mode != proxy.ImplicitTLS || s.opts.Listeners[1].Mode != proxy.StartTLS {
		t.Errorf("listeners %+v", s.opts.Listeners)
	}
	b := s.static.(*proxy.StaticRouter).Default
	poolTemplate(t, b, "10.0.0.5:993")
	if b.Security != proxy.BackendTLS || !b.SendID || !b.TLS.InsecureSkipVerify {
		t.Errorf("backend %+v", b)
	}
	if len(s.warnings) != 1 || !strings.Contains(s.warnings[0].Msg, "not verified") {
		t.Errorf("warnings %v", s.warnings)
	}

	// --admin: loopback (the host defaults to 127.0.0.1), "" off, and
	// anything else refused, as quick mode has no token.
	for _, tc := range []struct {
		admin, want string
		wantErr     bool
	}{{":0", "127.0.0.1:0", false}, {"127.0.0.1:19180", "127.0.0.1:19180", false}, {"", "", false}, {"0.0.0.0:9143", "", true}} {
		q := q
		q.admin = optionalString{set: true, v: tc.admin}
		cfg, err := q.config()
		if err != nil {
			t.Fatal(err)
		}
		s, err := build(cfg, zap.NewNop())
		if tc.wantErr {
			if err == nil || !strings.Contains(err.Error(), "admin.address") {
				t.Errorf("--admin %q: %v, want refused", tc.admin, err)
			}
			continue
		}
		if err != nil {
			t.Fatalf("--admin %q: %v", tc.admin, err)
		}
		if s.adminAddr != tc.want {
			t.Errorf("--admin %q: admin address %q, want %q", tc.admin, s.adminAddr, tc.want)
		}
		s.close()
	}

	for _, tc := range []struct {
		q    quickFlags
		want string
	}{
		{quickFlags{backend: "imap://127.0.0.1:143", cert: cf.Cert, key: cf.Key}, "--imaps ADDR or --starttls ADDR"},
		{quickFlags{imaps: ":993", cert: cf.Cert, key: cf.Key}, "--backend URL is required"},
		{quickFlags{imaps: ":993", backend: "imap://127.0.0.1:143"}, "--cert FILE and --key FILE"},
		{quickFlags{imaps: ":993", backend: "pop3://127.0.0.1:110", cert: cf.Cert, key: cf.Key}, "--backend:"},
	} {
		if _, err := tc.q.config(); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%+v: error %v, want %q", tc.q, err, tc.want)
		}
	}
}

// TestConfigErrorsAllAtOnce: one run reports decoding problems (types,
// unknown and duplicate keys, values an unmarshaler refuses) and meaning
// problems together, each as FILE:LINE: KEY: message, in file order.
func TestConfigErrorsAllAtOnce(t *testing.T) {
	dir := t.TempDir()
	tlsFiles(t, dir)
	path := filepath.Join(dir, "imapwarden.yaml")
	text := `hostname: a b
listeners:
  - {address: ":993", mode: ssl}
  - address: ":143"
    mode: starttls
    plaintext_auth_from: 10.0.0.0/8
tls:
  certificates: [{cert: ` + dir + `/cert.pem, key: ` + dir + `/key.pem}]
  reload_interval: 30
backends:
  main:
    address: "h:993"
    security: tls
    sendid: true
rate_limits:
  connections_per_ip: 60 per minute
  lockout_base: 1s
  lockout_base: 2s
  commands_per_user: [1]
limits: {max_auth_failures: many}
routes: {default: other}
`
	if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	want := []string{
		path + `:1: hostname: "a b" contains white space`,
		path + `:3: listeners[0].mode: unknown mode "ssl" (want tls or starttls)`,
		path + `:6: listeners[1].plaintext_auth_from: want a list, got "10.0.0.0/8"`,
		path + `:9: tls.reload_interval: invalid duration "30": add a unit, as in 30s`,
		path + `:14: backends.main.sendid: unknown key (did you mean "send_id"?)`,
		path + `:16: rate_limits.connections_per_ip: rate "60 per minute": want N/DURATION`,
		path + `:18: rate_limits.lockout_base: written twice (first at line 17)`,
		path + `:19: rate_limits.commands_per_user: want a single value, got a list`,
		path + `:20: limits.max_auth_failures: want a whole number, got "many"`,
		path + `:21: routes.default: no backend named "other" (have main)`,
	}
	code, out, errOut := runCLI("validate", "-c", path)
	if code != exitError || out != "" {
		t.Errorf("validate: code %d, stdout %q", code, out)
	}
	lines := strings.Split(strings.TrimSpace(errOut), "\n")
	if len(lines) == 0 || lines[0] != path+": 10 problems:" {
		t.Fatalf("first line %q, want the count; stderr:\n%s", lines[0], errOut)
	}
	got := lines[1:]
	for i := range got {
		got[i] = strings.TrimSpace(got[i])
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("problems\n got %s\nwant %s", strings.Join(got, "\n     "), strings.Join(want, "\n     "))
	}

	// serve reports the same list, with the file, and exits 1.
	code, _, errOut = runCLI("serve", "-c", path)
	if code != exitError || !strings.Contains(errOut, want[5]) || !strings.Contains(errOut, want[9]) {
		t.Errorf("serve: code %d, stderr:\n%s", code, errOut)
	}

	// A missing key is reported at its nearest written parent.
	if err := os.WriteFile(path, []byte("listeners: [{address: \":993\", mode: tls}]\ntls:\n  strict_sni: true\nbackends: {main: {address: \"h:993\", security: tls}}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, _, errOut = runCLI("validate", "-c", path); !strings.Contains(errOut, path+":2: tls.certificates: at least one certificate") {
		t.Errorf("missing certificates: %s", errOut)
	}
}

// Every limit has a default and a configuration key (ARCHITECTURE.md
// §12): each field of proxy.Limits is a key of limits: (the field's name
// in snake case), shown in the example configuration, and a value set
// there reaches the proxy. The audit record's lists were bounded by
// constants no configuration reached (MaxAuditUIDs, MaxAuditSharedWith).
func TestEveryLimitHasAKey(t *testing.T) {
	path := exampleConfig(t)
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	example := string(data)
	keys := map[string]bool{}
	lt := reflect.TypeFor[limitsConfig]()
	for i := range lt.NumField() {
		keys[strings.Split(lt.Field(i).Tag.Get("yaml"), ",")[0]] = true
	}
	snake := func(name string) string {
		name = strings.NewReplacer("PreAuth", "Preauth", "UIDs", "Uids").Replace(name)
		var b strings.Builder
		for i, r := range name {
			if 'A' <= r && r <= 'Z' {
				if i > 0 {
					b.WriteByte('_')
				}
				r += 'a' - 'A'
			}
			b.WriteRune(r)
		}
		return b.String()
	}
	pt := reflect.TypeFor[proxy.Limits]()
	for i := range pt.NumField() {
		key := snake(pt.Field(i).Name)
		if !keys[key] {
			t.Errorf("proxy.Limits.%s has no key limits.%s", pt.Field(i).Name, key)
		}
		if !strings.Contains(example, "\n  "+key+": ") {
			t.Errorf("the example configuration does not show limits.%s", key)
		}
	}

	// The admin listener's bounds: each has a key of admin: and is shown.
	at := reflect.TypeFor[adminConfig]()
	adminKeys := map[string]bool{}
	for i := range at.NumField() {
		adminKeys[strings.Split(at.Field(i).Tag.Get("yaml"), ",")[0]] = true
	}
	for _, typ := range []reflect.Type{reflect.TypeFor[adminTimeouts](), reflect.TypeFor[adminLimits]()} {
		for i := range typ.NumField() {
			f := typ.Field(i)
			if f.Type == reflect.TypeFor[ratelimit.Hosts]() {
				continue // rate_limits.ip_bits_v4/v6, not a bound of its own
			}
			key := snake(strings.NewReplacer("TTL", "Ttl", "PerIP", "PerIp").Replace(f.Name))
			if f.Type == reflect.TypeFor[time.Duration]() && !strings.HasSuffix(key, "_ttl") && !strings.HasSuffix(key, "_window") {
				key += "_timeout"
			}
			if !adminKeys[key] {
				t.Errorf("%s.%s has no key admin.%s", typ.Name(), f.Name, key)
			}
			if !strings.Contains(example, "\n  "+key+": ") {
				t.Errorf("the example configuration does not show admin.%s", key)
			}
		}
	}

	// The audit record's caps, set in the configuration, reach the proxy.
	set := map[string]int{"MaxAuditUIDs": 3, "MaxAuditSharedWith": 2}
	for name, v := range set {
		key := snake(name)
		lines := strings.Split(example, "\n")
		lines = slices.DeleteFunc(lines, func(l string) bool { return strings.HasPrefix(l, "  "+key+":") })
		example = strings.Replace(strings.Join(lines, "\n"), "\nlimits:\n", fmt.Sprintf("\nlimits:\n  %s: %d\n", key, v), 1)
	}
	if err := os.WriteFile(path, []byte(example), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg, err := loadConfigFile(path)
	if err != nil {
		t.Fatal(err)
	}
	s, err := build(cfg, zap.NewNop())
	if err != nil {
		t.Fatal(err)
	}
	defer s.close()
	l := reflect.ValueOf(s.opts.Limits)
	for name, v := range set {
		f := l.FieldByName(name)
		if !f.IsValid() {
			t.Errorf("proxy.Limits has no field %s: the limit has no configuration key", name)
			continue
		}
		if got := f.Int(); got != int64(v) {
			t.Errorf("limits.%s: %d set, %d reached the proxy", snake(name), v, got)
		}
	}
}

// Admin tokens are bearer secrets with write scope (end sessions, lift
// lockouts, read the whole audit trail): an admin listener off loopback
// without admin.tls sends them, and the console's sign-in and cookie, in
// clear. Like a plain backend, that is said at start.
func TestAdminInClearWarned(t *testing.T) {
	dir := t.TempDir()
	tlsFiles(t, dir)
	token := filepath.Join(dir, "admin.token")
	if err := os.WriteFile(token, []byte("0123456789abcdef-token\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	base := "listeners: [{address: \"127.0.0.1:0\", mode: tls}]\ntls: {certificates: [{cert: " + dir + "/cert.pem, key: " + dir + "/key.pem}]}\n" +
		"backends: {main: {address: \"127.0.0.1:143\", security: plain}}\n"
	for _, tc := range []struct {
		admin string
		warn  bool
	}{
		{"admin: {address: \"0.0.0.0:9143\", token_file: " + token + "}\n", true},
		{"admin: {address: \"192.0.2.1:9143\", tokens: [{name: prom, scope: read, file: " + token + "}]}\n", true},
		{"admin: {address: \"0.0.0.0:9143\", token_file: " + token + ", tls: {cert: " + dir + "/cert.pem, key: " + dir + "/key.pem}}\n", false},
		{"admin: {address: \"127.0.0.1:9143\", token_file: " + token + "}\n", false},
		{"admin: {address: \"[::1]:9143\"}\n", false},
		{"", false}, // the default, 127.0.0.1:9143
	} {
		cfg, err := parseConfig([]byte(base + tc.admin))
		if err != nil {
			t.Fatal(err)
		}
		s, err := check(cfg, zap.NewNop())
		if err != nil {
			t.Fatalf("%s: %v", tc.admin, err)
		}
		got := slices.ContainsFunc(s.warnings, func(w warning) bool {
			return w.Key == "admin.tls" && strings.Contains(w.Msg, "in clear")
		})
		if got != tc.warn {
			t.Errorf("%q: warned %v, want %v (warnings %v)", tc.admin, got, tc.warn, s.warnings)
		}
	}
}
