package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// TestAttackReloadReportsProtectionItDidNotApply: a SIGHUP that turns a
// protection on (a policy directory where there was none; rate limits
// where they were off) is reported as a successful reload (log, trail,
// imapwarden_reload_success, /config shows the new file), while
// applyReload keeps the running nil policy engine and nil limiter: the
// operator who reacts to an incident by enabling lockouts or a deny
// policy and reloads is told it worked, and nothing is enforced. Either
// the protection applies or the reload fails.
func TestAttackReloadReportsProtectionItDidNotApply(t *testing.T) {
	repoPolicies, _ := filepath.Abs("../../policies")
	for _, tc := range []struct {
		name, before, after string
		probe               func(t *testing.T, imaps string) (enforced bool, what string)
	}{
		{
			name:   "policy added",
			before: "rate_limits: {enabled: false}\n",
			after:  fmt.Sprintf("rate_limits: {enabled: false}\npolicy: {dirs: [{path: %q}]}\n", repoPolicies),
			probe: func(t *testing.T, imaps string) (bool, string) {
				c := dialIMAPS(t, imaps)
				c.cmd("a", "OK", `LOGIN demo "demo-password"`)
				l := c.cmd("b", "", "DELETE INBOX")
				last := l[len(l)-1]
				return strings.HasPrefix(last, "b NO [NOPERM]"), "DELETE INBOX: " + strings.TrimSpace(last)
			},
		},
		{
			name:   "rate limits enabled",
			before: "rate_limits: {enabled: false}\n",
			after:  "rate_limits: {enabled: true, login_failures_per_user: 2, lockout_base: 1m, login_failure_delay: 1ms}\n",
			probe: func(t *testing.T, imaps string) (bool, string) {
				c := dialIMAPS(t, imaps)
				c.cmd("x", "NO", "LOGIN demo wrong")
				c.cmd("y", "NO", "LOGIN demo wrong")
				l := dialIMAPS(t, imaps).cmd("z", "", `LOGIN demo "demo-password"`)
				last := l[len(l)-1]
				return !strings.HasPrefix(last, "z OK"), "the right password after 2 failures: " + strings.TrimSpace(last)
			},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir, auditPath, common := demoServeConfig(t)
			common += "admin: {address: \"127.0.0.1:0\"}\n"
			srv := startServeText(t, dir, common+tc.before)
			if enforced, what := tc.probe(t, srv.imaps); enforced {
				t.Fatalf("enforced before the reload: %s", what)
			}
			os.WriteFile(srv.cfgFile, []byte(common+tc.after), 0o600)
			srv.hup <- syscall.SIGHUP
			waitReloadRecord(t, auditPath) // fails unless the reload says ok
			if enforced, what := tc.probe(t, srv.imaps); !enforced {
				t.Errorf("the reload was reported ok, but the protection it enabled is not enforced: %s", what)
			}
		})
	}
}
