package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"go.uber.org/zap"
)

// TestEverySecretFileModeChecked: each secret file the configuration can
// name (tokens, passwords, private keys, the audit key, password hashes)
// is refused when others may read it, naming the file and the fix, and
// accepted group-readable (0640, the Debian package's mode).
func TestEverySecretFileModeChecked(t *testing.T) {
	dir := t.TempDir()
	tlsFiles(t, dir)
	ca := filepath.Join(dir, "backend-ca.pem")
	secret := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	keyPEM, err := os.ReadFile(filepath.Join(dir, "key.pem"))
	if err != nil {
		t.Fatal(err)
	}
	listener := "listeners: [{address: \"127.0.0.1:0\", mode: tls}]\n"
	certs := func(key string) string {
		return "tls: {certificates: [{cert: " + dir + "/cert.pem, key: " + key + "}]}\n"
	}
	backend := "backends: {main: {address: \"127.0.0.1:143\", security: plain}}\n"
	base := listener + certs(dir+"/key.pem") + backend
	for _, tc := range []struct {
		name string
		yaml func(f string) string
		file string
	}{
		{"tls.certificates key", func(f string) string { return listener + certs(f) + backend }, secret("listener-key.pem", string(keyPEM))},
		{"admin.token_file", func(f string) string { return base + "admin: {token_file: " + f + "}\n" }, secret("admin.token", "0123456789abcdef-token\n")},
		{"admin.tokens file", func(f string) string {
			return base + "admin: {tokens: [{name: soc, scope: read, file: " + f + "}]}\n"
		}, secret("soc.token", "0123456789abcdef-soc\n")},
		{"admin.tls key", func(f string) string {
			return base + "admin: {tls: {cert: " + dir + "/cert.pem, key: " + f + "}}\n"
		}, secret("admin-key.pem", string(keyPEM))},
		{"audit.key_file", func(f string) string {
			return base + "audit: {path: " + filepath.Join(dir, "audit.jsonl") + ", key_file: " + f + "}\n"
		}, secret("audit.key", "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef\n")},
		{"master_password_file", func(f string) string {
			return listener + certs(dir+"/key.pem") + "auth: {authenticators: [{type: file, file: {path: " + dir + "/users}}]}\n" +
				"backends: {main: {address: \"h:993\", security: tls, tls: {ca_file: " + ca + "}, login: master, master_user: proxy, master_password_file: " + f + "}}\n"
		}, secret("master.pw", "master-password\n")},
		{"backend client_cert key", func(f string) string {
			return listener + certs(dir+"/key.pem") + "backends: {main: {address: \"h:993\", security: tls, tls: {ca_file: " + ca +
				", client_cert: {cert: " + dir + "/cert.pem, key: " + f + "}}}}\n"
		}, secret("client-key.pem", string(keyPEM))},
		{"auth file path", func(f string) string {
			return base + "auth: {authenticators: [{type: file, file: {path: " + f + "}}]}\n"
		}, secret("users.hashes", "alice:$2a$10$0123456789012345678901uJ0OaZ0aSHkFyeH2zIxr3cv9pEy0nu\n")},
		{"ldap service_password_file", func(f string) string {
			return base + "auth: {authenticators: [{type: ldap, ldap: {url: \"ldaps://ldap.example.com\", search_base: \"dc=x\", search_filter: \"(uid={user})\", service_dn: \"cn=svc,dc=x\", service_password_file: " + f + "}}]}\n"
		}, secret("ldap.pw", "ldap-password\n")},
		{"oauth2 client_secret_file", func(f string) string {
			return base + "auth: {authenticators: [{type: oauth2, oauth2: {issuer: \"https://sso.example.com\", introspection: true, introspection_url: \"https://sso.example.com/introspect\", client_id: imap, client_secret_file: " + f + "}}]}\n"
		}, secret("oauth2.secret", "client-secret\n")},
		{"redis password_file", func(f string) string {
			return base + "rate_limits: {redis: {address: \"127.0.0.1:1\", password_file: " + f + "}}\n"
		}, secret("redis.pw", "redis-password\n")},
		{"redis sentinel_password_file", func(f string) string {
			return base + "rate_limits: {redis: {addresses: [\"127.0.0.1:1\"], sentinel_master: m, sentinel_password_file: " + f + "}}\n"
		}, secret("sentinel.pw", "sentinel-password\n")},
		{"redis client_cert key", func(f string) string {
			return base + "rate_limits: {redis: {address: \"127.0.0.1:1\", tls: {ca_file: " + ca + ", client_cert: {cert: " + dir + "/cert.pem, key: " + f + "}}}}\n"
		}, secret("redis-key.pem", string(keyPEM))},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for _, mode := range []os.FileMode{0o644, 0o602, 0o640} {
				if err := os.Chmod(tc.file, mode); err != nil {
					t.Fatal(err)
				}
				cfg, err := parseConfig([]byte(tc.yaml(tc.file)))
				if err != nil {
					t.Fatal(err)
				}
				s, err := check(cfg, zap.NewNop())
				if s != nil {
					s.close()
				}
				refused := err != nil && strings.Contains(err.Error(), tc.file+" is mode") && strings.Contains(err.Error(), "chmod 600")
				if want := mode&0o007 != 0; refused != want {
					t.Errorf("mode %04o: refused %v, want %v (err %v)", mode, refused, want, err)
				}
			}
		})
	}
}
