package main

import (
	"bufio"
	"context"
	"crypto/tls"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"go.uber.org/zap"
	"golang.org/x/crypto/bcrypt"

	"github.com/imapwarden/imapwarden/internal/dovecottest"
	"github.com/imapwarden/imapwarden/internal/hydratest"
	"github.com/imapwarden/imapwarden/internal/ldaptest"
	"github.com/imapwarden/imapwarden/proxy"
	"github.com/imapwarden/imapwarden/proxy/authn"
)

// BenchmarkAuthenticators measures logins through the proxy (a new TLS
// connection, greeting, LOGIN or AUTHENTICATE, LOGOUT) with each
// authenticator, in one run, against the same Dovecot: "backend" (the
// default: Dovecot checks the password) beside ldap (slapd, search then
// bind over StartTLS, groups by search), oauth2 with a JWT checked
// locally, oauth2 by introspection at Hydra, and file (Argon2id and
// bcrypt). The proxy logs in as Dovecot's master user except for
// "backend". Rate limits are off; the audit trail is on.
//
//	go test -run '^$' -bench BenchmarkAuthenticators -benchtime 400x ./cmd/imapwarden/
//
// Reported per login: logins/s (8 clients at once), cpu-µs/login (this
// process: the proxy and the test clients' TLS, the same for every case),
// and ext-cpu-µs/login (slapd's or Hydra's own CPU, from /proc). The
// login/ cases go all the way to Dovecot, whose own login (an imap process
// per session) bounds the rate; the verify/ cases call the authenticator
// alone, as the proxy does before it contacts any backend.
func BenchmarkAuthenticators(b *testing.B) {
	dovecottest.Require(b)
	dc := dovecottest.Start(b, dovecottest.Options{})
	dir := ldaptest.Start(b, ldaptest.Options{})
	h := hydratest.Start(b)
	alice := hydratest.Client{ID: "alice", Secret: "alice-client-secret", Audience: []string{"imap"}, Scope: "mail"}
	h.CreateClient(b, alice)
	token := h.Token(b, alice, "imap", "mail")

	tmp := b.TempDir()
	cf := tlsFiles(b, tmp)
	write := func(name, content string) string {
		p := filepath.Join(tmp, name)
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			b.Fatal(err)
		}
		return p
	}
	masterPW := write("master.pw", dc.MasterPassword+"\n")
	svcPW := write("ldap.pw", ldaptest.ServicePassword+"\n")
	argon, err := authn.HashPassword("alice-file-pw")
	if err != nil {
		b.Fatal(err)
	}
	argonFile := write("users-argon2", "alice:"+argon+"\n")
	bc, err := bcrypt.GenerateFromPassword([]byte("alice-file-pw"), 10)
	if err != nil {
		b.Fatal(err)
	}
	bcryptFile := write("users-bcrypt", "alice:"+string(bc)+"\n")

	backend := func(master bool) string {
		s := fmt.Sprintf("backends: {dovecot: {address: %q, security: plain", dc.Addr)
		if master {
			s += fmt.Sprintf(", login: master, master_user: %s, master_password_file: %s", dc.MasterUser, masterPW)
		}
		return s + "}}\n"
	}
	cases := []struct {
		name, auth, login string
		master            bool
		ext               int // the process doing the authenticator's work, if another
	}{
		{"backend", "", "LOGIN alice alice-pw", false, 0},
		{"ldap", fmt.Sprintf(`[{name: corp, type: ldap, ldap: {url: %q, start_tls: true, ca_file: %s, search_base: %q, search_filter: "(uid={user})", service_dn: %q, service_password_file: %s, group_base: %q, group_filter: "(member={dn})"}}]`,
			dir.URL, dir.CAFile, ldaptest.PeopleDN, ldaptest.ServiceDN, svcPW, ldaptest.GroupsDN), "LOGIN alice alice-ldap-pw", true, dir.Pid()},
		{"oauth2-jwt", fmt.Sprintf(`[{name: sso, type: oauth2, oauth2: {issuer: %q, audience: imap, scope: mail}}]`, h.Issuer),
			"AUTHENTICATE XOAUTH2 " + xoauth2("alice", token), true, h.Pid()},
		{"oauth2-introspection", fmt.Sprintf(`[{name: sso, type: oauth2, oauth2: {issuer: %q, introspection: true, introspection_url: %q, audience: imap}}]`, h.Issuer, h.IntrospectionURL()),
			"AUTHENTICATE XOAUTH2 " + xoauth2("alice", token), true, h.Pid()},
		{"file-argon2id", fmt.Sprintf(`[{type: file, file: {path: %s}}]`, argonFile), "LOGIN alice alice-file-pw", true, 0},
		{"file-bcrypt", fmt.Sprintf(`[{type: file, file: {path: %s}}]`, bcryptFile), "LOGIN alice alice-file-pw", true, 0},
	}
	for _, c := range cases {
		b.Run("login/"+c.name, func(b *testing.B) {
			cfg := fmt.Sprintf("listeners: [{address: \"127.0.0.1:0\", mode: tls}]\ntls: {certificates: [{cert: %s, key: %s}]}\n%s", cf.Cert, cf.Key, backend(c.master))
			if c.auth != "" {
				cfg += "auth: {authenticators: " + c.auth + "}\n"
			}
			cfg += fmt.Sprintf("rate_limits: {enabled: false}\naudit: {path: %s}\nadmin: {address: \"\"}\nlog: {level: error}\ndrain_timeout: 5s\n",
				filepath.Join(b.TempDir(), "audit.jsonl"))
			addrs, _ := serveConfigFile(b, write("bench-"+c.name+".yaml", cfg), zap.NewNop())
			addr := addrs[0].String()
			login := func() error { return benchLogin(addr, c.login) }
			if err := login(); err != nil { // warm: JWKS, pools
				b.Fatal(err)
			}
			cpu0, ext0 := processCPU(os.Getpid()), processCPU(c.ext)
			start := time.Now()
			b.ResetTimer()
			b.SetParallelism(4) // 8 clients on 2 cores
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if err := login(); err != nil {
						b.Error(err)
						return
					}
				}
			})
			b.StopTimer()
			el := time.Since(start)
			n := float64(b.N)
			b.ReportMetric(n/el.Seconds(), "logins/s")
			b.ReportMetric(float64((processCPU(os.Getpid())-cpu0).Microseconds())/n, "cpu-µs/login")
			if c.ext != 0 {
				b.ReportMetric(float64((processCPU(c.ext)-ext0).Microseconds())/n, "ext-cpu-µs/login")
			}
			b.ReportMetric(0, "ns/op") // meaningless with parallel clients
		})
	}

	// The authenticators alone, called as the proxy calls them: what a
	// login costs the proxy before any backend is involved.
	for _, c := range cases[1:] {
		b.Run("verify/"+c.name, func(b *testing.B) {
			cfg, err := parseConfig([]byte("auth: {authenticators: " + c.auth + "}\n"))
			if err != nil {
				b.Fatal(err)
			}
			var p problems
			a, closers, _ := buildAuthenticators(&p, cfg.Auth.Authenticators, func(string, string, ...any) {})
			if len(p) > 0 {
				b.Fatal(p.err(nil))
			}
			defer closers.close()
			cr := &proxy.Credentials{Mechanism: "LOGIN", User: "alice", Password: strings.Fields(c.login)[2]}
			if strings.HasPrefix(c.login, "AUTHENTICATE") {
				cr = &proxy.Credentials{Mechanism: "XOAUTH2", User: "alice", Token: token}
			}
			ctx := context.Background()
			if _, err := a.Authenticate(ctx, nil, cr); err != nil {
				b.Fatal(err)
			}
			cpu0, ext0 := processCPU(os.Getpid()), processCPU(c.ext)
			start := time.Now()
			b.ResetTimer()
			b.SetParallelism(4)
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if _, err := a.Authenticate(ctx, nil, cr); err != nil {
						b.Error(err)
						return
					}
				}
			})
			b.StopTimer()
			n := float64(b.N)
			b.ReportMetric(n/time.Since(start).Seconds(), "logins/s")
			b.ReportMetric(float64((processCPU(os.Getpid())-cpu0).Microseconds())/n, "cpu-µs/login")
			if c.ext != 0 {
				b.ReportMetric(float64((processCPU(c.ext)-ext0).Microseconds())/n, "ext-cpu-µs/login")
			}
			b.ReportMetric(0, "ns/op")
		})
	}
}

// benchLogin logs in once and out again.
func benchLogin(addr, login string) error {
	c, err := tls.Dial("tcp", addr, &tls.Config{InsecureSkipVerify: true, NextProtos: []string{"imap"}})
	if err != nil {
		return err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(30 * time.Second))
	r := bufio.NewReader(c)
	if l, err := r.ReadString('\n'); err != nil || !strings.HasPrefix(l, "* OK") {
		return fmt.Errorf("greeting %q: %v", l, err)
	}
	fmt.Fprintf(c, "a %s\r\nb LOGOUT\r\n", login)
	for {
		l, err := r.ReadString('\n')
		if err != nil {
			return err
		}
		if strings.HasPrefix(l, "a ") && !strings.HasPrefix(l, "a OK") {
			return fmt.Errorf("login: %q", l)
		}
		if strings.HasPrefix(l, "b ") {
			return nil
		}
	}
}

// processCPU is the user and system time of pid (0: none).
func processCPU(pid int) time.Duration {
	if pid == 0 {
		return 0
	}
	if pid == os.Getpid() {
		var ru syscall.Rusage
		syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
		return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
	}
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	// Fields after the command name, which may hold spaces: utime and
	// stime are the 14th and 15th fields, in clock ticks (100 a second).
	rest := string(data[strings.LastIndexByte(string(data), ')')+2:])
	f := strings.Fields(rest)
	ut, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(ut+st) * 10 * time.Millisecond
}
