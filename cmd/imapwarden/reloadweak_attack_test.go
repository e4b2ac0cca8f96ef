package main

import (
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// TestAttackReloadReportsProtectionItDidNotApply: a SIGHUP that turns a
// protection on is reported as a successful reload (log, trail,
// imapwarden_reload_success, /config shows the new file) while nothing of
// it is in force: applyReload keeps the running nil policy engine (a
// policy directory added) and nil limiter (rate limits enabled), and the
// admin listener and its handler are built once at start (admin.tls
// added: tokens and console cookies stay in clear; admin.pprof turned
// off: profiles stay on). The operator who reacts to an incident this way
// is told it worked. Either the protection applies or the reload fails.
func TestAttackReloadReportsProtectionItDidNotApply(t *testing.T) {
	const loopbackAdmin = "admin: {address: \"127.0.0.1:0\"}\n"
	repoPolicies, _ := filepath.Abs("../../policies")
	for _, tc := range []struct {
		name, before, after string
		probe               func(t *testing.T, srv *servedText) (enforced bool, what string)
	}{
		{
			name:   "policy added",
			before: loopbackAdmin + "rate_limits: {enabled: false}\n",
			after:  loopbackAdmin + fmt.Sprintf("rate_limits: {enabled: false}\npolicy: {dirs: [{path: %q}]}\n", repoPolicies),
			probe: func(t *testing.T, srv *servedText) (bool, string) {
				c := dialIMAPS(t, srv.imaps)
				c.cmd("a", "OK", `LOGIN demo "demo-password"`)
				l := c.cmd("b", "", "DELETE INBOX")
				last := l[len(l)-1]
				return strings.HasPrefix(last, "b NO [NOPERM]"), "DELETE INBOX: " + strings.TrimSpace(last)
			},
		},
		{
			name:   "rate limits enabled",
			before: loopbackAdmin + "rate_limits: {enabled: false}\n",
			after:  loopbackAdmin + "rate_limits: {enabled: true, login_failures_per_user: 2, lockout_base: 1m, login_failure_delay: 1ms}\n",
			probe: func(t *testing.T, srv *servedText) (bool, string) {
				c := dialIMAPS(t, srv.imaps)
				c.cmd("x", "NO", "LOGIN demo wrong")
				c.cmd("y", "NO", "LOGIN demo wrong")
				l := dialIMAPS(t, srv.imaps).cmd("z", "", `LOGIN demo "demo-password"`)
				last := l[len(l)-1]
				return !strings.HasPrefix(last, "z OK"), "the right password after 2 failures: " + strings.TrimSpace(last)
			},
		},
		{
			// The admin listener's tokens and console cookies go over
			// the network in clear.
			name:   "admin TLS added",
			before: loopbackAdmin,
			after:  "admin: {address: \"127.0.0.1:0\", tls: {cert: ADMIN_CERT, key: ADMIN_KEY}}\n",
			probe: func(t *testing.T, srv *servedText) (bool, string) {
				code, body := readyz(srv.admin.String())
				// 200 or 503 is an answer in clear; a TLS listener says 400.
				served := code == http.StatusOK || code == http.StatusServiceUnavailable
				return !served, fmt.Sprintf("plain HTTP /readyz: %d %s", code, strings.TrimSpace(body))
			},
		},
		{
			// Profiles show the program's internals and cost CPU.
			name:   "pprof turned off",
			before: "admin: {address: \"127.0.0.1:0\", pprof: true}\n",
			after:  loopbackAdmin,
			probe: func(t *testing.T, srv *servedText) (bool, string) {
				resp, err := http.Get("http://" + srv.admin.String() + "/debug/pprof/")
				if err != nil {
					t.Fatal(err)
				}
				resp.Body.Close()
				return resp.StatusCode == http.StatusNotFound, fmt.Sprintf("GET /debug/pprof/: %d", resp.StatusCode)
			},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir, auditPath, common := demoServeConfig(t)
			os.Mkdir(filepath.Join(dir, "admin"), 0o700)
			adm := tlsFiles(t, filepath.Join(dir, "admin"))
			r := strings.NewReplacer("ADMIN_CERT", adm.Cert, "ADMIN_KEY", adm.Key)
			tc.before, tc.after = r.Replace(tc.before), r.Replace(tc.after)
			srv := startServeText(t, dir, common+tc.before)
			if enforced, what := tc.probe(t, srv); enforced {
				t.Fatalf("enforced before the reload: %s", what)
			}
			os.WriteFile(srv.cfgFile, []byte(common+tc.after), 0o600)
			srv.hup <- syscall.SIGHUP
			waitReloadRecord(t, auditPath) // fails unless the reload says ok
			if enforced, what := tc.probe(t, srv); !enforced {
				t.Errorf("the reload was reported ok, but the protection it enabled is not enforced: %s", what)
			}
		})
	}
}
