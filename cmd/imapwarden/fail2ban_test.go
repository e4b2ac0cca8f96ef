package main

import (
	"bufio"
	"crypto/tls"
	"encoding/base64"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/imapwarden/imapwarden/audit"
	"github.com/imapwarden/imapwarden/internal/testenv"
)

// TestFail2banEveryRefusal drives a proxy built from a configuration file
// (routes, rate limits with lockouts, an audit trail) through every kind of
// refused login, then runs the shipped filter, with fail2ban-regex itself,
// over the trail it wrote: the refusals a client causes match, with its
// address, including those refused during a lockout; those it cannot help
// (LOGIN before STARTTLS) and successes do not.
func TestFail2banEveryRefusal(t *testing.T) {
	env := newServeEnv(t)
	trail := filepath.Join(env.dir, "audit.jsonl")
	s, _, log, _ := env.buildFile(t, fmt.Sprintf(`
listeners: [{name: imaps, address: "127.0.0.1:0", mode: tls}, {name: imap, address: "127.0.0.1:0", mode: starttls}]
tls: {certificates: [{cert: %s, key: %s}]}
backends: {mem: {address: %q, security: plain}, frail: {address: %q, security: plain}}
routes: {users: {demo: mem, frail: frail}}
limits: {max_auth_failures: 20}
admin: {address: ""}
rate_limits: {login_failures_per_user_ip: 3, lockout_base: 1h, lockout_max: 2h, login_failure_delay: 1ms}
audit: {path: %q, fsync: always}
lame_duck: 0s
`, env.cert.Cert, env.cert.Key, env.backend, droppingBackend(t), trail))
	addrs, _, cancel, done := serve(t, s, log, nil, nil)

	tc, err := tls.Dial("tcp", addrs[0].String(), &tls.Config{InsecureSkipVerify: true})
	if err != nil {
		t.Fatal(err)
	}
	c := &imapConn{t: t, c: tc, r: bufio.NewReader(tc)}
	c.line()
	plain := func(authz, user, pw string) string {
		return base64.StdEncoding.EncodeToString([]byte(authz + "\x00" + user + "\x00" + pw))
	}
	c.cmd("a", "OK", `LOGIN demo "demo-password"`) // success: never matched
	c.cmd("b", "OK", "LOGOUT")
	tc.Close()
	tc, err = tls.Dial("tcp", addrs[0].String(), &tls.Config{InsecureSkipVerify: true})
	if err != nil {
		t.Fatal(err)
	}
	c = &imapConn{t: t, c: tc, r: bufio.NewReader(tc)}
	c.line()
	c.cmd("a", "NO", "LOGIN nobody secret")                                                            // no-route
	c.cmd("b", "NO", "AUTHENTICATE PLAIN "+base64.StdEncoding.EncodeToString([]byte("no separators"))) // sasl-syntax
	c.cmd("c", "NO", "AUTHENTICATE PLAIN "+plain("", "demo", "a\nb"))                                  // invalid-characters
	c.cmd("d", "NO", "AUTHENTICATE PLAIN "+plain("ceo", "demo", "x"))                                  // authzid-refused
	c.cmd("d2", "NO", `LOGIN other "`+strings.Repeat("p", 600)+`"`)                                    // credentials-too-long
	c.cmd("d3", "NO", "LOGIN frail secret")                                                            // backend-dropped
	c.cmd("e", "NO", "LOGIN demo wrong1")                                                              // credentials
	c.cmd("f", "NO", "LOGIN demo wrong2")                                                              // credentials
	c.cmd("g", "NO", "LOGIN demo wrong3")                                                              // credentials: demo is now locked out here
	c.cmd("h", "NO", `LOGIN demo "demo-password"`)                                                     // refused during the lockout
	c.cmd("i", "NO", "LOGIN demo wrong4")                                                              // refused during the lockout
	tc.Close()
	pc, err := net.Dial("tcp", addrs[1].String())
	if err != nil {
		t.Fatal(err)
	}
	p := &imapConn{t: t, c: pc, r: bufio.NewReader(pc)}
	p.line()
	p.cmd("a", "NO [PRIVACYREQUIRED]", "LOGIN demo wrong") // a misconfigured client: not banned
	pc.Close()
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}

	data, err := os.ReadFile(trail)
	if err != nil {
		t.Fatal(err)
	}
	f := loadF2BFilter(t, filepath.Join("..", "..", "deploy", "fail2ban", "filter.d", "imapwarden.conf"))
	seen := map[string]int{}
	var matched []string
	for _, l := range strings.Split(strings.TrimSpace(string(data)), "\n") {
		r, err := audit.ParseRecord([]byte(l))
		if err != nil {
			t.Fatal(err)
		}
		what := ""
		switch {
		case r.Kind == audit.KindAuth && r.Result == audit.ResultFailure:
			what = "auth " + r.Reason
		case r.Kind == audit.KindLimit:
			what = "limit " + r.Limit + " " + r.Event
		}
		if what == "" {
			if f.match(l) != "" {
				t.Errorf("matched a %s record: %s", r.Kind, l)
			}
			continue
		}
		seen[what]++
		if h := f.match(l); h != "" {
			matched = append(matched, what)
			if h != "127.0.0.1" {
				t.Errorf("%s matched for %q", what, h)
			}
		}
	}
	t.Logf("refusals in the trail: %v", seen)
	want := map[string]int{"auth no-route": 1, "auth sasl-syntax": 1, "auth invalid-characters": 1, "auth authzid-refused": 1,
		"auth credentials-too-long": 1, "auth backend-dropped": 1, "auth credentials": 3, "limit login_failures_per_user_ip exceeded": 2}
	got := map[string]int{}
	for _, m := range matched {
		got[m]++
	}
	for k, n := range want {
		if seen[k] != n {
			t.Errorf("the trail holds %d %q records, want %d (the proxy changed: update the test)", seen[k], k, n)
		}
		if got[k] != n {
			t.Errorf("the filter matched %d of the %q records, want %d", got[k], k, n)
		}
	}
	if got["auth privacy-required"] != 0 || got["auth limit"] != 0 {
		t.Errorf("matched %v: privacy-required is not the client's doing, and a lockout refusal counts once (its limit record)", got)
	}

	// fail2ban's own regex engine agrees, line for line.
	// Without it, checked with the Go translation only (Debian package fail2ban).
	f2b := testenv.NeedTool(t, "fail2ban-regex")
	out, err := exec.Command(f2b, "-o", "ip", trail, filepath.Join("..", "..", "deploy", "fail2ban", "filter.d", "imapwarden.conf")).CombinedOutput()
	if err != nil {
		t.Fatalf("fail2ban-regex: %v\n%s", err, out)
	}
	if n := len(strings.Fields(string(out))); n != len(matched) {
		t.Errorf("fail2ban-regex matched %d lines, the Go translation %d (%v):\n%s", n, len(matched), matched, out)
	}
	for _, ip := range strings.Fields(string(out)) {
		if ip != "127.0.0.1" {
			t.Errorf("fail2ban-regex found %q", ip)
		}
	}
}

// TestFail2banJail: the shipped jail is off until enabled, reads the file
// audit.path names, and uses the filter.
func TestFail2banJail(t *testing.T) {
	b, err := os.ReadFile(filepath.Join("..", "..", "deploy", "fail2ban", "jail.d", "imapwarden.conf"))
	if err != nil {
		t.Fatal(err)
	}
	jail := string(b)
	vals := map[string]string{}
	for _, l := range strings.Split(jail, "\n") {
		if k, v, ok := strings.Cut(l, "="); ok && !strings.HasPrefix(l, "#") {
			vals[strings.TrimSpace(k)] = strings.TrimSpace(v)
		}
	}
	if vals["enabled"] != "false" {
		t.Errorf("enabled = %q: the jail must be off until the operator turns it on", vals["enabled"])
	}
	if vals["filter"] != "imapwarden" || vals["logpath"] != "/var/log/imapwarden/audit.jsonl" {
		t.Errorf("filter %q logpath %q", vals["filter"], vals["logpath"])
	}
	if strings.Contains(jail, "audit.file.path") || !strings.Contains(jail, "audit.path") {
		t.Error("the jail must name the configuration key audit.path")
	}
}

// droppingBackend is a server that greets and ends the connection on a
// login command, as Dovecot does to a login line over its buffer: the
// login is refused ("backend-dropped") and counted like a wrong password
// (ARCHITECTURE.md §13). It returns the listener's address.
func droppingBackend(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				c.Write([]byte("* OK [CAPABILITY IMAP4rev1] hi\r\n"))
				r := bufio.NewReader(c)
				for {
					l, err := r.ReadString('\n')
					if err != nil || strings.Contains(strings.ToUpper(l), "LOGIN") {
						return
					}
				}
			}()
		}
	}()
	return ln.Addr().String()
}
