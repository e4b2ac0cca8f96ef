package main

import (
	"bufio"
	"crypto/tls"
	"encoding/base64"
	"fmt"
	"maps"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
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

// dialFrom opens an implicit-TLS IMAP connection to addr from the local
// address from (any 127/8 address on loopback) and reads the greeting.
func dialFrom(t *testing.T, addr, from string) (*imapConn, func()) {
	t.Helper()
	d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(from)}}
	tc, err := tls.DialWithDialer(d, "tcp", addr, &tls.Config{InsecureSkipVerify: true})
	if err != nil {
		t.Fatal(err)
	}
	c := &imapConn{t: t, c: tc, r: bufio.NewReader(tc)}
	c.line()
	return c, func() { tc.Close() }
}

// TestFail2banCountsOnlyAnAddresssOwnDoing drives every kind of lockout
// and runs the shipped filter, with fail2ban-regex too, over the trail:
// an address is matched for its own failed logins and for refusals
// during a lockout of its own (its ip key, or its user_ip pair, counting
// that address alone, or a user's lockout most of whose failures are
// the address's own), never for a refusal it got because of what
// another address did: a user's lockout others caused
// (user_lockout_all_ips or not), or an ip or user_ip lockout of a prefix
// (ip_bits_v4 24 here, as the default ip_bits_v6 64 makes a /64).
func TestFail2banCountsOnlyAnAddresssOwnDoing(t *testing.T) {
	const attacker, victim = "127.0.0.1", "127.0.0.2"
	type step struct {
		from, login, want string
		n                 int
	}
	for _, c := range []struct {
		name string
		// limits override the generous defaults of the case's rate_limits.
		limits map[string]string
		steps  []step
		// matches wanted per address
		attacker, victim int
	}{
		{"per_ip", map[string]string{"login_failures_per_ip": "3"}, []step{
			{attacker, "nobody wrong", "NO", 3}, {attacker, `demo "demo-password"`, "NO", 2}, {victim, `demo "demo-password"`, "OK", 1},
		}, 3 + 2, 0},
		{"per_ip of a prefix", map[string]string{"login_failures_per_ip": "3", "ip_bits_v4": "24"}, []step{
			{attacker, "nobody wrong", "NO", 3}, {attacker, `demo "demo-password"`, "NO", 2}, {victim, `demo "demo-password"`, "NO", 4},
		}, 3, 0},
		{"per_user_ip", map[string]string{"login_failures_per_user_ip": "3"}, []step{
			{attacker, "demo wrong", "NO", 3}, {attacker, `demo "demo-password"`, "NO", 2}, {victim, `demo "demo-password"`, "OK", 1},
		}, 3 + 2, 0},
		{"per_user_ip of a prefix", map[string]string{"login_failures_per_user_ip": "3", "ip_bits_v4": "24"}, []step{
			{attacker, "demo wrong", "NO", 3}, {victim, `demo "demo-password"`, "NO", 4},
		}, 3, 0},
		{"per_user the victim failed once", map[string]string{"login_failures_per_user": "3"}, []step{
			{victim, "demo typo", "NO", 1}, {attacker, "demo wrong", "NO", 3}, {attacker, "demo wrong", "NO", 2}, {victim, `demo "demo-password"`, "NO", 4},
		}, 2 + 3, 1}, // the lockout holds from the attacker's 2nd failure: 2 of the user's 3 are its own
		{"per_user all addresses", map[string]string{"login_failures_per_user": "3", "user_lockout_all_ips": "true"}, []step{
			{attacker, "demo wrong", "NO", 3}, {attacker, "demo wrong", "NO", 2}, {victim, `demo "demo-password"`, "NO", 4},
		}, 3 + 2, 0},
	} {
		t.Run(c.name, func(t *testing.T) {
			limits := map[string]string{"login_failures_per_ip": "50", "login_failures_per_user": "50", "login_failures_per_user_ip": "50",
				"lockout_base": "1h", "lockout_max": "2h", "login_failure_delay": "1ms"}
			maps.Copy(limits, c.limits)
			var rl []string
			for _, k := range slices.Sorted(maps.Keys(limits)) {
				rl = append(rl, k+": "+limits[k])
			}
			env := newServeEnv(t)
			trail := filepath.Join(env.dir, "audit.jsonl")
			s, _, log, _ := env.buildFile(t, fmt.Sprintf(`
listeners: [{name: imaps, address: "127.0.0.1:0", mode: tls}]
tls: {certificates: [{cert: %s, key: %s}]}
backends: {mem: {address: %q, security: plain}}
routes: {default: mem}
limits: {max_auth_failures: 50}
admin: {address: ""}
rate_limits: {%s}
audit: {path: %q, fsync: always}
lame_duck: 0s
`, env.cert.Cert, env.cert.Key, env.backend, strings.Join(rl, ", "), trail))
			addrs, _, cancel, done := serve(t, s, log, nil, nil)
			for i, st := range c.steps {
				conn, end := dialFrom(t, addrs[0].String(), st.from)
				for j := range st.n {
					conn.cmd(fmt.Sprintf("s%d.%d", i, j), st.want, "LOGIN "+st.login)
				}
				end()
			}
			cancel()
			if err := <-done; err != nil {
				t.Fatal(err)
			}
			hits := shippedFilterHits(t, trail)
			want := map[string]int{attacker: c.attacker}
			if c.victim > 0 {
				want[victim] = c.victim
			}
			if !maps.Equal(hits, want) {
				t.Errorf("the filter matched %v, want %v (the attacker %s, the victim %s)", hits, want, attacker, victim)
			}
			if got := fail2banRegexHits(t, trail); !maps.Equal(got, hits) {
				t.Errorf("fail2ban-regex matched %v, the Go translation %v", got, hits)
			}
		})
	}
}

// shippedFilterFile is the fail2ban filter the packages ship.
var shippedFilterFile = filepath.Join("..", "..", "deploy", "fail2ban", "filter.d", "imapwarden.conf")

// shippedFilterHits runs the shipped filter's Go translation over the
// trail: how many records it matched for each address.
func shippedFilterHits(t *testing.T, trail string) map[string]int {
	t.Helper()
	data, err := os.ReadFile(trail)
	if err != nil {
		t.Fatal(err)
	}
	f := loadF2BFilter(t, shippedFilterFile)
	hits := map[string]int{}
	for _, l := range strings.Split(strings.TrimSpace(string(data)), "\n") {
		if h := f.match(l); h != "" {
			hits[h]++
		}
	}
	return hits
}

// fail2banRegexHits runs fail2ban's own engine with the shipped filter
// over the trail: how many records it matched for each address.
func fail2banRegexHits(t *testing.T, trail string) map[string]int {
	t.Helper()
	f2b := testenv.NeedTool(t, "fail2ban-regex")
	out, err := exec.Command(f2b, "-o", "ip", trail, shippedFilterFile).CombinedOutput()
	if err != nil {
		t.Fatalf("fail2ban-regex: %v\n%s", err, out)
	}
	hits := map[string]int{}
	for _, ip := range strings.Fields(string(out)) {
		hits[ip]++
	}
	return hits
}
