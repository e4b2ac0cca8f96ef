package deploytest

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"
)

const chartPath = "deploy/helm/imapwarden"

// kubeVersion is passed to helm: a "go install"ed helm defaults to
// Kubernetes v1.20, below the chart's kubeVersion.
const kubeVersion = "1.31.0"

type obj = map[string]any

// get walks a decoded YAML object along a dotted path; "" on a miss.
func get(o any, path string) any {
	for _, k := range strings.Split(path, ".") {
		m, ok := o.(obj)
		if !ok {
			return nil
		}
		o = m[k]
	}
	return o
}

func getString(o any, path string) string {
	s, _ := get(o, path).(string)
	return s
}

func getList(o any, path string) []any {
	l, _ := get(o, path).([]any)
	return l
}

// named finds the element of a list of objects with the given name.
func named(l []any, name string) obj {
	for _, e := range l {
		if m, ok := e.(obj); ok && m["name"] == name {
			return m
		}
	}
	return nil
}

// rendered is the output of helm template, by kind and name.
type rendered struct {
	docs []obj
}

func (r rendered) find(kind, name string) obj {
	for _, d := range r.docs {
		if d["kind"] == kind && getString(d, "metadata.name") == name {
			return d
		}
	}
	return nil
}

func (r rendered) kinds() []string {
	var out []string
	for _, d := range r.docs {
		out = append(out, fmt.Sprint(d["kind"], "/", getString(d, "metadata.name")))
	}
	slices.Sort(out)
	return out
}

// helmTemplate renders a chart; on an error it returns helm's message.
func helmTemplate(t *testing.T, chart string, args ...string) (rendered, error) {
	t.Helper()
	helm := needGoTool(t, helmModule)
	args = append([]string{"template", "rel", chart, "--namespace", "mail", "--kube-version", kubeVersion}, args...)
	out, errOut, err := tryCmd("", nil, helm, args...)
	if err != nil {
		return rendered{}, errors.New(strings.TrimSpace(errOut))
	}
	var r rendered
	dec := yaml.NewDecoder(strings.NewReader(out))
	for {
		var d obj
		err := dec.Decode(&d)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("helm template output does not parse: %v\n%s", err, out)
		}
		if d != nil {
			r.docs = append(r.docs, d)
		}
	}
	return r, nil
}

func mustTemplate(t *testing.T, chart string, args ...string) rendered {
	t.Helper()
	r, err := helmTemplate(t, chart, args...)
	if err != nil {
		t.Fatalf("helm template %v: %v", args, err)
	}
	return r
}

// TestHelmLint runs helm lint --strict on the chart.
func TestHelmLint(t *testing.T) {
	t.Parallel()
	helm := needGoTool(t, helmModule)
	out := runCmd(t, "", nil, helm, "lint", "--strict", "--kube-version", kubeVersion, filepath.Join(repoRoot, chartPath))
	if !strings.Contains(out, "0 chart(s) failed") {
		t.Errorf("helm lint:\n%s", out)
	}
}

// TestHelmDefaults renders the chart with its default values and checks
// the objects an operator relies on.
func TestHelmDefaults(t *testing.T) {
	t.Parallel()
	r := mustTemplate(t, filepath.Join(repoRoot, chartPath))
	want := []string{
		"ConfigMap/rel-imapwarden",
		"Deployment/rel-imapwarden",
		"NetworkPolicy/rel-imapwarden",
		"PodDisruptionBudget/rel-imapwarden",
		"Secret/rel-imapwarden-admin-token",
		"Secret/rel-imapwarden-audit-key",
		"Secret/rel-imapwarden-metrics-token",
		"Service/rel-imapwarden",
		"Service/rel-imapwarden-admin",
		"ServiceAccount/rel-imapwarden",
	}
	if got := r.kinds(); !slices.Equal(got, want) {
		t.Errorf("objects %v, want %v", got, want)
	}
	dep := r.find("Deployment", "rel-imapwarden")
	if dep == nil {
		t.Fatal("no Deployment")
	}
	pod := get(dep, "spec.template").(obj)
	podLabels := get(pod, "metadata.labels").(obj)
	spec := pod["spec"].(obj)
	containers := getList(spec, "containers")
	if len(containers) != 1 {
		t.Fatalf("%d containers", len(containers))
	}
	c := containers[0].(obj)

	// Security: non-root by number, read-only root, no privilege at all.
	for path, want := range map[string]any{
		"securityContext.runAsNonRoot": true,
		"securityContext.runAsUser":    65532,
	} {
		if got := get(spec, path); got != want {
			t.Errorf("pod %s = %v, want %v", path, got, want)
		}
	}
	for path, want := range map[string]any{
		"securityContext.runAsNonRoot":             true,
		"securityContext.runAsUser":                65532,
		"securityContext.readOnlyRootFilesystem":   true,
		"securityContext.allowPrivilegeEscalation": false,
	} {
		if got := get(c, path); got != want {
			t.Errorf("container %s = %v, want %v", path, got, want)
		}
	}
	if drop := getList(c, "securityContext.capabilities.drop"); !slices.Equal(drop, []any{"ALL"}) {
		t.Errorf("capabilities.drop = %v, want [ALL]", drop)
	}
	if add := get(c, "securityContext.capabilities.add"); add != nil {
		t.Errorf("capabilities.add = %v", add)
	}
	if image := getString(c, "image"); !strings.HasPrefix(image, "ghcr.io/imapwarden/imapwarden:") || strings.HasSuffix(image, ":latest") || strings.HasSuffix(image, ":") {
		t.Errorf("image %q", image)
	}

	// Ports and probes: the admin port serves /healthz and /readyz.
	ports := map[string]int{}
	for _, p := range getList(c, "ports") {
		ports[getString(p, "name")] = get(p, "containerPort").(int)
	}
	if ports["admin"] != 9143 || ports["imaps"] == 0 || ports["imap"] == 0 {
		t.Errorf("container ports %v", ports)
	}
	for probe, path := range map[string]string{"livenessProbe": "/healthz", "readinessProbe": "/readyz", "startupProbe": "/healthz"} {
		if got := getString(c, probe+".httpGet.path"); got != path {
			t.Errorf("%s path %q, want %s", probe, got, path)
		}
		if got := getString(c, probe+".httpGet.port"); got != "admin" {
			t.Errorf("%s port %q, want admin", probe, got)
		}
	}

	// Checksums roll the pods on a configuration or policy change.
	hex64 := regexp.MustCompile(`^[0-9a-f]{64}$`)
	for _, a := range []string{"checksum/config", "checksum/policies"} {
		if v := getString(pod, "metadata.annotations."+a); !hex64.MatchString(v) {
			t.Errorf("pod annotation %s = %q", a, v)
		}
	}

	// The configuration: mounted where args say, valid for the real loader,
	// listeners on the container ports, certificates on the TLS volume.
	cm := r.find("ConfigMap", "rel-imapwarden")
	cmData, _ := get(cm, "data").(obj)
	cfgText, _ := cmData["imapwarden.yaml"].(string)
	var cfg obj
	if err := yaml.Unmarshal([]byte(cfgText), &cfg); err != nil {
		t.Fatalf("ConfigMap imapwarden.yaml: %v", err)
	}
	args := getList(c, "args")
	if len(args) != 3 || args[0] != "serve" || args[1] != "-c" {
		t.Fatalf("args %v", args)
	}
	mounts := map[string]obj{}
	for _, m := range getList(c, "volumeMounts") {
		mounts[getString(m, "mountPath")] = m.(obj)
	}
	cfgMount := mounts[filepath.Dir(args[2].(string))]
	if cfgMount == nil || getString(named(getList(spec, "volumes"), getString(cfgMount, "name")), "configMap.name") != "rel-imapwarden" {
		t.Errorf("%s is not on the config ConfigMap (mounts %v)", args[2], mounts)
	}
	for _, dir := range []string{"/var/lib/imapwarden", "/var/log/imapwarden", "/tmp"} {
		if m := mounts[dir]; m == nil || m["readOnly"] == true {
			t.Errorf("%s is not a writable volume (the root file system is read-only)", dir)
		}
	}
	if m := mounts["/etc/imapwarden/tls"]; m == nil || getString(named(getList(spec, "volumes"), getString(m, "name")), "secret.secretName") != "rel-imapwarden-tls" {
		t.Errorf("/etc/imapwarden/tls is not the TLS Secret")
	}
	for _, l := range getList(cfg, "listeners") {
		addr := getString(l, "address")
		port := addr[strings.LastIndex(addr, ":")+1:]
		if port != fmt.Sprint(ports["imaps"]) && port != fmt.Sprint(ports["imap"]) {
			t.Errorf("listener %s is on no container port (%v)", addr, ports)
		}
	}
	if addr := getString(cfg, "admin.address"); addr != fmt.Sprintf("0.0.0.0:%d", ports["admin"]) {
		t.Errorf("admin.address %q: probes reach the pod address on %d", addr, ports["admin"])
	}
	// The admin token: config.admin.token_file is a file of the Secret.
	tokenFile := getString(cfg, "admin.token_file")
	tokenVol := named(getList(spec, "volumes"), getString(mounts[filepath.Dir(tokenFile)], "name"))
	item := getList(tokenVol, "secret.items")
	if getString(tokenVol, "secret.secretName") != "rel-imapwarden-admin-token" || len(item) != 1 || getString(item[0], "path") != filepath.Base(tokenFile) {
		t.Errorf("admin.token_file %s is not the admin token Secret (volume %v)", tokenFile, tokenVol)
	} else if tok, _ := get(r.find("Secret", "rel-imapwarden-admin-token"), "data").(obj)[getString(item[0], "key")].(string); len(tok) < 24 {
		t.Errorf("admin token %q: want at least 16 characters, base64", tok)
	}
	checkChartConfig(t, cfgText)

	// Drain: the grace period outlasts drain_timeout.
	drain, err := time.ParseDuration(getString(cfg, "drain_timeout"))
	if err != nil {
		t.Fatalf("drain_timeout: %v", err)
	}
	if grace := time.Duration(get(spec, "terminationGracePeriodSeconds").(int)) * time.Second; grace <= drain {
		t.Errorf("terminationGracePeriodSeconds %v <= drain_timeout %v", grace, drain)
	}

	// Services: clients on a LoadBalancer that keeps their address; admin
	// inside the cluster only.
	svc := r.find("Service", "rel-imapwarden")
	if getString(svc, "spec.type") != "LoadBalancer" || getString(svc, "spec.externalTrafficPolicy") != "Local" {
		t.Errorf("client Service type %v externalTrafficPolicy %v", get(svc, "spec.type"), get(svc, "spec.externalTrafficPolicy"))
	}
	svcPorts := map[int]string{}
	for _, p := range getList(svc, "spec.ports") {
		svcPorts[get(p, "port").(int)] = getString(p, "targetPort")
	}
	if !maps2Equal(svcPorts, map[int]string{993: "imaps", 143: "imap"}) {
		t.Errorf("client Service ports %v", svcPorts)
	}
	checkSelects(t, "client Service", get(svc, "spec.selector"), podLabels)
	admin := r.find("Service", "rel-imapwarden-admin")
	if getString(admin, "spec.type") != "ClusterIP" {
		t.Errorf("admin Service type %v", get(admin, "spec.type"))
	}
	if p := getList(admin, "spec.ports"); len(p) != 1 || get(p[0], "port") != 9143 || getString(p[0], "targetPort") != "admin" {
		t.Errorf("admin Service ports %v", p)
	}
	checkSelects(t, "admin Service", get(admin, "spec.selector"), podLabels)

	pdb := r.find("PodDisruptionBudget", "rel-imapwarden")
	if getString(pdb, "apiVersion") != "policy/v1" {
		t.Errorf("PodDisruptionBudget apiVersion %v", pdb["apiVersion"])
	}
	checkSelects(t, "PodDisruptionBudget", get(pdb, "spec.selector.matchLabels"), podLabels)
	if rep := get(dep, "spec.replicas").(int); rep < 2 {
		t.Errorf("replicas %d: a PodDisruptionBudget needs more than one", rep)
	}
}

func maps2Equal(a, b map[int]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

// checkSelects checks that a selector is non-empty and matches labels.
func checkSelects(t *testing.T, what string, selector any, labels obj) {
	t.Helper()
	sel, _ := selector.(obj)
	if len(sel) == 0 {
		t.Errorf("%s has an empty selector", what)
	}
	for k, v := range sel {
		if labels[k] != v {
			t.Errorf("%s selects %s=%v, pods have %v", what, k, v, labels[k])
		}
	}
}

// checkChartConfig runs imapwarden validate on the chart's configuration.
func checkChartConfig(t *testing.T, text string) {
	t.Helper()
	if stderr, err := validateConfig(t, "imapwarden.yaml", text); err != nil {
		t.Errorf("imapwarden validate on the chart's configuration: %v\n%s", err, stderr)
	}
}

// TestHelmServiceMonitor renders the ServiceMonitor: only when enabled and
// only when the cluster has the Prometheus Operator API.
func TestHelmServiceMonitor(t *testing.T) {
	t.Parallel()
	chart := filepath.Join(repoRoot, chartPath)
	r := mustTemplate(t, chart, "--set", "serviceMonitor.enabled=true", "--api-versions", "monitoring.coreos.com/v1")
	sm := r.find("ServiceMonitor", "rel-imapwarden")
	if sm == nil {
		t.Fatalf("no ServiceMonitor: %v", r.kinds())
	}
	if getString(sm, "apiVersion") != "monitoring.coreos.com/v1" || getString(sm, "metadata.namespace") != "mail" {
		t.Errorf("ServiceMonitor %v in %v", sm["apiVersion"], get(sm, "metadata.namespace"))
	}
	ep := getList(sm, "spec.endpoints")
	if len(ep) != 1 || getString(ep[0], "port") != "admin" || getString(ep[0], "path") != "/metrics" {
		t.Fatalf("endpoints %v", ep)
	}
	if cred := get(ep[0], "authorization.credentials"); getString(cred, "name") != "rel-imapwarden-metrics-token" || getString(cred, "key") != "token" || getString(ep[0], "authorization.type") != "Bearer" {
		t.Errorf("ServiceMonitor does not send the metrics token: %v", get(ep[0], "authorization"))
	}
	if ns := getList(sm, "spec.namespaceSelector.matchNames"); !slices.Equal(ns, []any{"mail"}) {
		t.Errorf("namespaceSelector %v", ns)
	}
	// It selects the admin Service and not the client one.
	sel := get(sm, "spec.selector.matchLabels")
	checkSelects(t, "ServiceMonitor", sel, get(r.find("Service", "rel-imapwarden-admin"), "metadata.labels").(obj))
	clientLabels := get(r.find("Service", "rel-imapwarden"), "metadata.labels").(obj)
	matchesClient := true
	for k, v := range sel.(obj) {
		if clientLabels[k] != v {
			matchesClient = false
		}
	}
	if matchesClient {
		t.Error("the ServiceMonitor selects the client Service too")
	}

	r = mustTemplate(t, chart, "--set", "serviceMonitor.enabled=true")
	if r.find("ServiceMonitor", "rel-imapwarden") != nil {
		t.Error("a ServiceMonitor without the monitoring.coreos.com/v1 API")
	}
	r = mustTemplate(t, chart, "--api-versions", "monitoring.coreos.com/v1")
	if r.find("ServiceMonitor", "rel-imapwarden") != nil {
		t.Error("a ServiceMonitor while serviceMonitor.enabled is false")
	}
}

// TestHelmChecksums checks that a configuration change changes only
// checksum/config and a policy change only checksum/policies.
func TestHelmChecksums(t *testing.T) {
	t.Parallel()
	chart := filepath.Join(repoRoot, chartPath)
	sums := func(args ...string) (string, string) {
		r := mustTemplate(t, chart, args...)
		a := get(r.find("Deployment", "rel-imapwarden"), "spec.template.metadata.annotations").(obj)
		return a["checksum/config"].(string), a["checksum/policies"].(string)
	}
	cfg0, pol0 := sums()
	cfg1, pol1 := sums("--set", "config.hostname=imap2.example.com")
	if cfg1 == cfg0 || pol1 != pol0 {
		t.Errorf("config change: checksum/config %s→%s, checksum/policies %s→%s", cfg0, cfg1, pol0, pol1)
	}
	values := filepath.Join(t.TempDir(), "values.yaml")
	os.WriteFile(values, []byte("policies:\n  files:\n    extra/extra.rego: |\n      package imapwarden.extra\n"), 0o644)
	cfg2, pol2 := sums("-f", values)
	if cfg2 != cfg0 || pol2 == pol0 {
		t.Errorf("policy change: checksum/config %s→%s, checksum/policies %s→%s", cfg0, cfg2, pol0, pol2)
	}
}

// TestHelmPolicies renders the chart with the repository's policies/ copied
// into it (as the README says to before packaging) plus one from values:
// every file reaches /etc/imapwarden/policies at its relative path, Rego
// tests are left out.
func TestHelmPolicies(t *testing.T) {
	t.Parallel()
	chart := filepath.Join(t.TempDir(), "imapwarden")
	copyTree(t, filepath.Join(repoRoot, chartPath), chart)
	wantPaths := []string{"extra/extra.rego"}
	for _, p := range repoPolicies(t) {
		copyFile(t, filepath.Join(repoRoot, "policies", p), filepath.Join(chart, "policies", p))
		if !strings.HasSuffix(p, "_test.rego") {
			wantPaths = append(wantPaths, p)
		}
	}
	slices.Sort(wantPaths)
	values := filepath.Join(t.TempDir(), "values.yaml")
	os.WriteFile(values, []byte("policies:\n  files:\n    extra/extra.rego: |\n      package imapwarden.extra\n"), 0o644)

	r := mustTemplate(t, chart, "-f", values)
	cm := r.find("ConfigMap", "rel-imapwarden-policies")
	if cm == nil {
		t.Fatalf("no policies ConfigMap: %v", r.kinds())
	}
	spec := get(r.find("Deployment", "rel-imapwarden"), "spec.template.spec")
	vol := named(getList(spec, "volumes"), "policies")
	if getString(vol, "configMap.name") != "rel-imapwarden-policies" {
		t.Fatalf("policies volume %v", vol)
	}
	var paths []string
	data := get(cm, "data").(obj)
	for _, it := range getList(vol, "configMap.items") {
		key, path := getString(it, "key"), getString(it, "path")
		paths = append(paths, path)
		if _, ok := data[key]; !ok {
			t.Errorf("item %s → %s: no such key in the ConfigMap", key, path)
		}
		if src := filepath.Join(chart, "policies", path); path != "extra/extra.rego" && string(mustRead(t, src)) != data[key] {
			t.Errorf("%s differs from policies/%s", key, path)
		}
	}
	slices.Sort(paths)
	if !slices.Equal(paths, wantPaths) {
		t.Errorf("policy files %v, want %v", paths, wantPaths)
	}
	if len(data) != len(paths) {
		t.Errorf("ConfigMap has %d keys, volume %d items", len(data), len(paths))
	}
	var mounted bool
	for _, m := range getList(getList(spec, "containers")[0], "volumeMounts") {
		if getString(m, "name") == "policies" && getString(m, "mountPath") == "/etc/imapwarden/policies" {
			mounted = true
		}
	}
	if !mounted {
		t.Error("policies are not mounted at /etc/imapwarden/policies")
	}
}

// TestHelmVariants renders the TLS and storage switches.
func TestHelmVariants(t *testing.T) {
	t.Parallel()
	chart := filepath.Join(repoRoot, chartPath)

	r := mustTemplate(t, chart, "--set", "tls.source=pvc", "--set", "persistence.state.enabled=true", "--set", "persistence.audit.enabled=true")
	spec := get(r.find("Deployment", "rel-imapwarden"), "spec.template.spec")
	for vol, claim := range map[string]string{"tls": "rel-imapwarden-tls", "state": "rel-imapwarden-state", "audit": "rel-imapwarden-audit"} {
		if got := getString(named(getList(spec, "volumes"), vol), "persistentVolumeClaim.claimName"); got != claim {
			t.Errorf("volume %s claim %q, want %s", vol, got, claim)
		}
		pvc := r.find("PersistentVolumeClaim", claim)
		if pvc == nil {
			t.Errorf("no PersistentVolumeClaim %s", claim)
		} else if a, _ := get(pvc, "metadata.annotations").(obj); a["helm.sh/resource-policy"] != "keep" {
			t.Errorf("%s is deleted with the release (no helm.sh/resource-policy: keep)", claim)
		}
	}

	r = mustTemplate(t, chart, "--set", "tls.secret.create=true", "--set", "tls.secret.cert=CERT", "--set", "tls.secret.key=KEY")
	sec := r.find("Secret", "rel-imapwarden-tls")
	if getString(sec, "type") != "kubernetes.io/tls" {
		t.Errorf("TLS Secret %v", sec)
	}
	if d, _ := get(sec, "data").(obj); d["tls.crt"] != "Q0VSVA==" || d["tls.key"] != "S0VZ" {
		t.Errorf("TLS Secret data %v", d)
	}

	r = mustTemplate(t, chart, "--set", "tls.certManager.enabled=true", "--set", "tls.certManager.issuerRef.name=letsencrypt", "--set", "tls.certManager.dnsNames={imap.example.com}")
	if c := r.find("Certificate", "rel-imapwarden"); getString(c, "spec.secretName") != "rel-imapwarden-tls" {
		t.Errorf("cert-manager Certificate %v", c)
	}

	r = mustTemplate(t, chart, "--set", "tls.source=none", "--set", "service.ports.imap=0", "--set", "lifecycle.preStopSleepSeconds=5")
	spec = get(r.find("Deployment", "rel-imapwarden"), "spec.template.spec")
	if named(getList(spec, "volumes"), "tls") != nil {
		t.Error("tls.source=none still mounts a TLS volume")
	}
	if p := getList(r.find("Service", "rel-imapwarden"), "spec.ports"); len(p) != 1 {
		t.Errorf("service.ports.imap=0 leaves ports %v", p)
	}
	if s := get(getList(spec, "containers")[0], "lifecycle.preStop.sleep.seconds"); s != 5 {
		t.Errorf("preStop sleep %v", s)
	}
}

// TestHelmRefuses checks the chart's own checks: settings that would deploy
// but never become ready, or cut the drain short, fail the render.
func TestHelmRefuses(t *testing.T) {
	t.Parallel()
	chart := filepath.Join(repoRoot, chartPath)
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--set", "terminationGracePeriodSeconds=30"}, "terminationGracePeriodSeconds (30) must exceed config.drain_timeout (30s)"},
		{[]string{"--set", "config.drain_timeout=1m"}, "must exceed config.drain_timeout (60s)"},
		{[]string{"--set", "lifecycle.preStopSleepSeconds=20"}, "plus lifecycle.preStopSleepSeconds (20)"},
		// 30s drain + 12s lame duck + 5s preStop > 45s: the drain would be cut.
		{[]string{"--set", "config.lame_duck=12s"}, "plus config.lame_duck (12s)"},
		{[]string{"--set", "containerPorts.imaps=2993"}, `config.listeners[0].address "0.0.0.0:1993"`},
		{[]string{"--set", "containerPorts.admin=9999"}, `config.admin.address "0.0.0.0:9143"`},
		{[]string{"--set", "tls.source=file"}, `tls.source "file"`},
		{[]string{"--set", "tls.secret.create=true"}, "tls.secret.create needs tls.secret.cert and tls.secret.key"},
		{[]string{"--set", "tls.certManager.enabled=true"}, "tls.certManager.enabled needs tls.certManager.issuerRef.name"},
		// The ServiceMonitor's token must be known to the proxy, as read scope.
		{[]string{"--set", "serviceMonitor.enabled=true", "--set", "config.admin.tokens=null"}, "config.admin.tokens has no entry for /etc/imapwarden/metrics/token"},
		{[]string{"--set", "config.admin.tokens[0].name=metrics,config.admin.tokens[0].scope=write,config.admin.tokens[0].file=/etc/imapwarden/metrics/token"}, "config.admin.tokens: metrics is the token the ServiceMonitor sends: its scope must be read"},
	} {
		_, err := helmTemplate(t, chart, tc.args...)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("helm template %v: error %v, want %q", tc.args, err, tc.want)
		}
	}
	// A drain_timeout the chart cannot read is not checked, not refused.
	if _, err := helmTemplate(t, chart, "--set", "config.drain_timeout=1m30s"); err != nil {
		t.Errorf("drain_timeout 1m30s: %v", err)
	}
}

func copyFile(t *testing.T, src, dst string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(dst, mustRead(t, src), 0o644); err != nil {
		t.Fatal(err)
	}
}

func copyTree(t *testing.T, src, dst string) {
	t.Helper()
	err := filepath.WalkDir(src, func(p string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		copyFile(t, p, filepath.Join(dst, rel))
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// TestHelmPrometheusRule renders the alert rules: only when enabled and
// the cluster has the Prometheus Operator API, and the same rules as
// deploy/prometheus/imapwarden-rules.yaml.
func TestHelmPrometheusRule(t *testing.T) {
	t.Parallel()
	chart := filepath.Join(repoRoot, chartPath)
	if r := mustTemplate(t, chart, "--set", "prometheusRule.enabled=true"); r.find("PrometheusRule", "rel-imapwarden") != nil {
		t.Error("PrometheusRule without the monitoring.coreos.com/v1 API")
	}
	r := mustTemplate(t, chart, "--set", "prometheusRule.enabled=true", "--api-versions", "monitoring.coreos.com/v1")
	pr := r.find("PrometheusRule", "rel-imapwarden")
	if pr == nil {
		t.Fatalf("no PrometheusRule: %v", r.kinds())
	}
	if readFile(t, chartPath+"/files/imapwarden-rules.yaml") != readFile(t, "deploy/prometheus/imapwarden-rules.yaml") {
		t.Error("the chart's files/imapwarden-rules.yaml differs from deploy/prometheus/imapwarden-rules.yaml: copy it")
	}
	var want obj
	if err := yaml.Unmarshal([]byte(readFile(t, "deploy/prometheus/imapwarden-rules.yaml")), &want); err != nil {
		t.Fatal(err)
	}
	if len(getList(pr, "spec.groups")) != len(getList(want, "groups")) || len(getList(getList(pr, "spec.groups")[0], "rules")) < 4 {
		t.Errorf("PrometheusRule spec %v", pr["spec"])
	}
	if got := getString(getList(getList(pr, "spec.groups")[0], "rules")[0], "annotations.summary"); !strings.Contains(got, "{{ $labels.component }}") {
		t.Errorf("alert templates were rendered by helm: %q", got)
	}
}
