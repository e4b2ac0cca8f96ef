package deploytest

import (
	"path/filepath"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"
)

// FAILING (attack46e, not fixed): the Debian package's admin listener has
// no token, so on 127.0.0.1 every local process (a webmail's PHP beside
// Dovecot, any user's shell, an SSRF in another service) gets write scope:
// it reads the whole audit trail (GET /audit: who read which mailbox, from
// where), lists sessions, ends them, and lifts brute-force lockouts
// (POST /ratelimit/unlock with Content-Type: application/json). As
// installed, the admin API should be worth no less than a root-readable
// secret: postinst makes a token (as it makes audit.key) and the shipped
// configuration names it.
func TestDebAdminNeedsToken(t *testing.T) {
	var cfg obj
	if err := yaml.Unmarshal([]byte(readFile(t, "deploy/deb/imapwarden.yaml")), &cfg); err != nil {
		t.Fatal(err)
	}
	if getString(cfg, "admin.address") == "" && get(cfg, "admin.address") != nil {
		return // off
	}
	if getString(cfg, "admin.token_file") == "" && len(getList(cfg, "admin.tokens")) == 0 {
		t.Errorf("deploy/deb/imapwarden.yaml: admin on %q with no token: every local process has write scope", getString(cfg, "admin.address"))
	}
}

// FAILING (attack46e, not fixed): the chart's ServiceMonitor scrapes
// /metrics with the chart's only token, admin.token_file, which has write
// scope (end sessions, lift lockouts, read the audit trail), over plain
// HTTP: whoever reads Prometheus's scrape configuration or its Secret, or
// the pod network, holds the proxy's admin. Scraping needs read scope.
func TestHelmScrapeTokenReadScope(t *testing.T) {
	t.Parallel()
	r := mustTemplate(t, filepath.Join(repoRoot, chartPath), "--set", "serviceMonitor.enabled=true", "--api-versions", "monitoring.coreos.com/v1")
	cm, _ := get(r.find("ConfigMap", "rel-imapwarden"), "data").(obj)
	text, _ := cm["imapwarden.yaml"].(string)
	var cfg obj
	if err := yaml.Unmarshal([]byte(text), &cfg); err != nil {
		t.Fatal(err)
	}
	// Where the Secret the ServiceMonitor sends is mounted.
	dep := r.find("Deployment", "rel-imapwarden")
	spec := get(dep, "spec.template.spec")
	vol := ""
	for _, v := range getList(spec, "volumes") {
		if getString(v, "secret.secretName") == "rel-imapwarden-admin-token" {
			vol = getString(v, "name")
		}
	}
	dir := ""
	for _, c := range getList(spec, "containers") {
		for _, m := range getList(c, "volumeMounts") {
			if getString(m, "name") == vol {
				dir = getString(m, "mountPath")
			}
		}
	}
	if dir == "" {
		t.Fatal("the admin token Secret is not mounted")
	}
	under := func(f string) bool { return f != "" && strings.HasPrefix(f, dir+"/") }
	if f := getString(cfg, "admin.token_file"); under(f) {
		t.Errorf("admin.token_file %s (write scope) is the token the ServiceMonitor sends", f)
	}
	for _, tok := range getList(cfg, "admin.tokens") {
		if under(getString(tok, "file")) && getString(tok, "scope") != "read" {
			t.Errorf("admin.tokens %v: the ServiceMonitor's token has scope %q", tok, getString(tok, "scope"))
		}
	}
}
