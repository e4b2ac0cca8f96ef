package deploytest

import (
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"
)

// The Debian package's admin listener had no token, so on 127.0.0.1 every
// local process (a webmail's PHP beside Dovecot, any user's shell, an SSRF
// in another service) got write scope: it read the whole audit trail (GET
// /audit: who read which mailbox, from where), listed sessions, ended them,
// and lifted brute-force lockouts (POST /ratelimit/unlock with
// Content-Type: application/json). As installed, the admin API should be
// worth no less than a root-readable secret: postinst makes the tokens (as
// it makes audit.key) and the shipped configuration names them
// (attack46e). TestDebInstall checks that the installed proxy answers only
// them.
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
	postinst := readFile(t, "deploy/deb/postinst")
	files := []string{getString(cfg, "admin.token_file")}
	for _, tok := range getList(cfg, "admin.tokens") {
		files = append(files, getString(tok, "file"))
	}
	for _, f := range files {
		if f != "" && !strings.Contains(postinst, "="+f+"\n") {
			t.Errorf("deploy/deb/postinst does not make the token file %s the configuration names", f)
		}
	}
}

// The chart's ServiceMonitor scraped /metrics with the chart's only token,
// admin.token_file, which has write scope (end sessions, lift lockouts,
// read the audit trail), over plain HTTP: whoever reads Prometheus's scrape
// configuration or the Secret it names, or the pod network, held the
// proxy's admin (attack46e). Scraping needs read scope: the Secret the
// ServiceMonitor sends must hold only a read token.
func TestHelmScrapeTokenReadScope(t *testing.T) {
	t.Parallel()
	r := mustTemplate(t, filepath.Join(repoRoot, chartPath), "--set", "serviceMonitor.enabled=true", "--api-versions", "monitoring.coreos.com/v1")
	cm, _ := get(r.find("ConfigMap", "rel-imapwarden"), "data").(obj)
	text, _ := cm["imapwarden.yaml"].(string)
	var cfg obj
	if err := yaml.Unmarshal([]byte(text), &cfg); err != nil {
		t.Fatal(err)
	}
	ep := getList(r.find("ServiceMonitor", "rel-imapwarden"), "spec.endpoints")
	if len(ep) != 1 {
		t.Fatalf("ServiceMonitor endpoints %v", ep)
	}
	secret := getString(ep[0], "authorization.credentials.name")
	key := getString(ep[0], "authorization.credentials.key")
	// The files of that Secret in the pod, and the files of every other
	// Secret volume: the one sent must not hold the write token too.
	dep := r.find("Deployment", "rel-imapwarden")
	spec := get(dep, "spec.template.spec")
	mounts := map[string]string{} // volume name -> mount path
	for _, c := range getList(spec, "containers") {
		for _, m := range getList(c, "volumeMounts") {
			mounts[getString(m, "name")] = getString(m, "mountPath")
		}
	}
	var sent []string  // the files of the Secret the ServiceMonitor sends
	var scraped string // the file of the key it sends
	for _, v := range getList(spec, "volumes") {
		if getString(v, "secret.secretName") != secret {
			continue
		}
		dir := mounts[getString(v, "name")]
		for _, it := range getList(v, "secret.items") {
			f := dir + "/" + getString(it, "path")
			sent = append(sent, f)
			if getString(it, "key") == key {
				scraped = f
			}
		}
	}
	if scraped == "" {
		t.Fatalf("the Secret %s (key %q) the ServiceMonitor sends is not mounted: volumes %v", secret, key, getList(spec, "volumes"))
	}
	for _, f := range sent {
		if f == getString(cfg, "admin.token_file") {
			t.Errorf("admin.token_file %s (write scope) is in the Secret %s the ServiceMonitor sends", f, secret)
		}
	}
	found := false
	for _, tok := range getList(cfg, "admin.tokens") {
		f := getString(tok, "file")
		for _, s := range sent {
			if f == s && getString(tok, "scope") != "read" {
				t.Errorf("admin.tokens %v: the Secret the ServiceMonitor sends holds a token of scope %q", tok, getString(tok, "scope"))
			}
		}
		found = found || f == scraped
	}
	if !found {
		t.Errorf("the ServiceMonitor sends %s, which no read token of admin.tokens names", scraped)
	}
}

// checkAdminTokens: the admin listener at addr answers nothing but the
// probes without a token, /metrics to the read token in readFile, and a
// write to the token in writeFile only.
func checkAdminTokens(t *testing.T, addr, writeFile, readFile string) {
	t.Helper()
	token := func(f string) string {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		return strings.TrimSpace(string(b))
	}
	status := func(method, path, tok string) int {
		req, err := http.NewRequest(method, "http://"+addr+path, strings.NewReader(`{"level":"info"}`))
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Content-Type", "application/json")
		if tok != "" {
			req.Header.Set("Authorization", "Bearer "+tok)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	w, r := token(writeFile), token(readFile)
	for _, c := range []struct {
		method, path, tok string
		want              int
	}{
		{"GET", "/healthz", "", 200},
		{"GET", "/metrics", "", 401},
		{"GET", "/audit", "", 401},
		{"POST", "/ratelimit/unlock", "", 401},
		{"GET", "/metrics", r, 200},
		{"PUT", "/loglevel", "", 401},
		{"PUT", "/loglevel", r, 403},
		{"PUT", "/loglevel", w, 200},
	} {
		if got := status(c.method, c.path, c.tok); got != c.want {
			t.Errorf("%s %s (token %v): %d, want %d", c.method, c.path, c.tok != "", got, c.want)
		}
	}
}
