package main

import (
	"bufio"
	"crypto/tls"
	"io"
	"net/http"
	"os"
	"reflect"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/imapwarden/imapwarden/audit"
	"github.com/imapwarden/imapwarden/proxy"
)

// TestReloadKeysClassified: every key of the configuration file says what
// a reload does with it (reloadKeys), so that a key added later cannot be
// reported as reloaded while the running one stays (ARCHITECTURE.md §18).
func TestReloadKeysClassified(t *testing.T) {
	leaves := map[string]bool{}
	configLeaves(reflect.TypeFor[fileConfig](), "", func(k string) { leaves[k] = true })
	if len(leaves) < 100 {
		t.Fatalf("only %d keys found: the walk stopped early", len(leaves))
	}
	for _, k := range slices.Sorted(mapKeys(leaves)) {
		if c := reloadKeys[k]; c != reloadApplied && c != restartOnly {
			t.Errorf("%s: not in reloadKeys: say whether a reload applies it or refuses its change", k)
		}
	}
	for k := range reloadKeys {
		if !leaves[k] {
			t.Errorf("reloadKeys has %s, which is no key of the file", k)
		}
	}
}

// TestRestartChanges: a change to a restart-only key is found wherever it
// is (nested, in a list, a list that grows), a change to an applied one
// is not.
func TestRestartChanges(t *testing.T) {
	base := `
listeners: [{address: "127.0.0.1:993", mode: tls}]
tls: {certificates: [{cert: c.pem, key: k.pem}]}
backends: {main: {address: "127.0.0.1:143", security: plain}}
`
	for _, tc := range []struct {
		name, add string
		want      []string
	}{
		{"nothing", "", nil},
		{"applied", "limits: {max_inflight: 4}\nbackends: {main: {address: \"127.0.0.1:144\", security: plain}, other: {address: \"127.0.0.1:145\", security: plain}}\nadmin: {address: \"0.0.0.0:9143\", pprof: true}\npolicy: {dirs: [{path: /p}]}\nrate_limits: {enabled: false}\n", nil},
		{"hostname", "hostname: mx\n", []string{"hostname"}},
		{"listener address", "=993=994", []string{"listeners[0].address"}},
		{"listener added", "=mode: tls}]=mode: tls}, {address: \"127.0.0.1:143\", mode: starttls}]", []string{"listeners"}},
		{"nested", "audit: {syslog: {facility: mail}}\nrate_limits: {redis: {address: \"127.0.0.1:6379\"}}\n", []string{"audit.syslog.facility", "rate_limits.redis.address"}},
		{"acme", "=key: k.pem}]}=key: k.pem}], acme: {storage: /s}}", []string{"tls.acme.storage"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			old, err := parseConfig([]byte(base))
			if err != nil {
				t.Fatal(err)
			}
			text := base + tc.add
			if r, ok := strings.CutPrefix(tc.add, "="); ok { // =old=new: a replacement
				from, to, _ := strings.Cut(r, "=")
				text = strings.Replace(base, from, to, 1)
			}
			nw, err := parseConfig([]byte(text))
			if err != nil {
				t.Fatal(err)
			}
			if got := restartChanges(old, nw); !slices.Equal(got, tc.want) {
				t.Errorf("restartChanges = %q, want %q", got, tc.want)
			}
		})
	}
}

func mapKeys[V any](m map[string]V) func(func(string) bool) {
	return func(yield func(string) bool) {
		for k := range m {
			if !yield(k) {
				return
			}
		}
	}
}

// TestReloadRefusesRestartOnlyChange: a SIGHUP whose file changes a key
// bound at start is refused as a whole: the trail records the failure
// naming the key, imapwarden_reload_success is 0, /config shows the
// configuration that runs, and nothing else of the file is applied.
func TestReloadRefusesRestartOnlyChange(t *testing.T) {
	dir, auditPath, common := demoServeConfig(t)
	before := common + "admin: {address: \"127.0.0.1:0\"}\nlame_duck: 0s\n"
	srv := startServeText(t, dir, before)
	// hostname is bound at start; the rate limits would be applied.
	after := strings.Replace(before, "lame_duck: 0s", "lame_duck: 0s\nhostname: renamed\nrate_limits: {enabled: false}", 1)
	os.WriteFile(srv.cfgFile, []byte(after), 0o600)
	srv.hup <- syscall.SIGHUP
	rec := reloadRecord(t, auditPath)
	if rec.Result == "ok" || !strings.Contains(rec.Detail, "hostname") || !strings.Contains(rec.Detail, "restart required") {
		t.Errorf("reload record: %s %q, want a failure naming hostname", rec.Result, rec.Detail)
	}
	get := func(path string) string {
		t.Helper()
		resp, err := http.Get("http://" + srv.admin.String() + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return string(b)
	}
	if m := get("/metrics"); !strings.Contains(m, `imapwarden_reload_success{component="config"} 0`) {
		t.Error("imapwarden_reload_success{config} is not 0 after a refused reload")
	}
	if c := get("/config"); strings.Contains(c, "renamed") || strings.Contains(c, "enabled: false") {
		t.Errorf("/config shows the refused file:\n%s", c)
	}
	// The limiter stays: the lockouts' API answers.
	if l := get("/ratelimit/lockouts"); strings.Contains(l, "404") {
		t.Errorf("/ratelimit/lockouts after a refused reload: %s", l)
	}
	tc, err := tls.Dial("tcp", srv.imaps, &tls.Config{InsecureSkipVerify: true})
	if err != nil {
		t.Fatal(err)
	}
	defer tc.Close()
	if g, _ := bufio.NewReader(tc).ReadString('\n'); !strings.Contains(g, "imapwarden ready") {
		t.Errorf("greeting %q after a refused reload of hostname", g)
	}
}

// reloadRecord waits for a configuration reload record in the trail
// (written after the reload was applied or refused) and returns the last.
func reloadRecord(t *testing.T, path string) *audit.Record {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for {
		files, err := audit.Files(path)
		if err != nil {
			t.Fatal(err)
		}
		var rec *audit.Record
		audit.Query(files, &audit.Filter{Kinds: []string{string(audit.KindReload)}}, func(r *audit.Record, _ []byte) error {
			rec = r
			return nil
		})
		if rec != nil {
			return rec
		}
		if time.Now().After(deadline) {
			t.Fatal("no reload record")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// reloadTarget is what applyReload changes besides s: a server (not
// listening) and an admin server, closed at the test's end.
func reloadTarget(t *testing.T, s *setup, log *zap.Logger) (*proxy.Server, *admin, *adminServer) {
	t.Helper()
	srv, err := proxy.NewServer(s.opts)
	if err != nil {
		t.Fatal(err)
	}
	adm := newAdmin(srv, s.reg, s.level, &s.adminView, s.adminLimits, log)
	as, err := newAdminServer(adm, s.adminServing(), log)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(as.close)
	return srv, adm, as
}

// TestApplyReloadAllOrNothing: a refused reload changes nothing and
// closes what the new configuration opened (its authenticators'
// connections); an accepted one applies the scalars the command keeps
// (log.level, lame_duck, drain_timeout) and turns the limiter on or off.
func TestApplyReloadAllOrNothing(t *testing.T) {
	_, _, common := demoServeConfig(t)
	log := zap.NewNop()
	buildMain := build
	drain := "5s"
	mk := func(text string, start bool) *setup {
		t.Helper()
		cfg, err := parseConfig([]byte(strings.Replace(common, "drain_timeout: 5s", "drain_timeout: "+drain, 1) + text))
		if err != nil {
			t.Fatal(err)
		}
		build := check
		if start {
			build = buildMain
		}
		s, err := build(cfg, log)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	s := mk("admin: {address: \"\"}\nlame_duck: 1s\nrate_limits: {enabled: false}\n", true)
	t.Cleanup(s.close)
	srv, adm, as := reloadTarget(t, s, log)

	ns := mk("admin: {address: \"\"}\nlame_duck: 2s\nrate_limits: {enabled: false}\nhostname: other\n", false)
	closed := false
	ns.authClose = append(ns.authClose, func() { closed = true })
	err := applyReload(s, ns, srv, as, log)
	if err == nil || !strings.Contains(err.Error(), "hostname") {
		t.Fatalf("applyReload = %v, want hostname refused", err)
	}
	if !closed {
		t.Error("the refused configuration's authenticators were left open")
	}
	if s.lameDuck != time.Second {
		t.Errorf("lame_duck %v after a refused reload", s.lameDuck)
	}

	drain = "7s"
	ns = mk("admin: {address: \"\"}\nlame_duck: 2s\nlog: {level: debug}\n", false)
	if err := applyReload(s, ns, srv, as, log); err != nil {
		t.Fatal(err)
	}
	if s.lameDuck != 2*time.Second || s.drainTimeout != 7*time.Second || s.level.Level() != zapcore.DebugLevel {
		t.Errorf("lame_duck %v drain_timeout %v level %v: not applied", s.lameDuck, s.drainTimeout, s.level.Level())
	}
	if s.limiter == nil || adm.limiter.Load() != s.limiter {
		t.Error("rate limits enabled by a reload: no limiter")
	}
	ns = mk("admin: {address: \"\"}\nlame_duck: 2s\nlog: {level: debug}\nrate_limits: {enabled: false}\n", false)
	if err := applyReload(s, ns, srv, as, log); err != nil {
		t.Fatal(err)
	}
	if s.limiter != nil || adm.limiter.Load() != nil {
		t.Error("rate limits disabled by a reload: the limiter stays")
	}
}
