package deploytest

import (
	"fmt"
	"path/filepath"
	"strings"
	"testing"
)

// TestAttackHelmAdminPortOpenToEveryPod: the chart binds the admin
// listener to the pod address (0.0.0.0:9143, plain HTTP) and renders no
// NetworkPolicy, so every pod of every namespace reaches it: the probes
// and their reasons without a token, max_connections to fill (the
// kubelet's probes then fail), tokens to guess with no bound and no
// record, and the read token Prometheus sends in clear to observe. The
// admin port should be open by default only to what needs it (the
// kubelet reaches a pod whatever a policy says; Prometheus by a
// namespace or pod selector the values name).
func TestAttackHelmAdminPortOpenToEveryPod(t *testing.T) {
	t.Parallel()
	r := mustTemplate(t, filepath.Join(repoRoot, chartPath))
	port := fmt.Sprint(get(named(getList(r.find("Deployment", "rel-imapwarden"), "spec.template.spec.containers"), "imapwarden"), "ports"))
	t.Logf("container ports: %s", port)
	var policies []obj
	for _, d := range r.docs {
		if d["kind"] == "NetworkPolicy" {
			policies = append(policies, d)
		}
	}
	if len(policies) == 0 {
		t.Fatalf("the chart renders no NetworkPolicy: the admin port 9143 (plain HTTP) is open to every pod of the cluster (rendered %v)", r.kinds())
	}
	restricted := false
	for _, np := range policies {
		for _, rule := range getList(np, "spec.ingress") {
			opensAdmin := len(getList(rule, "ports")) == 0
			for _, p := range getList(rule, "ports") {
				if v := fmt.Sprint(get(p, "port")); v == "admin" || v == "9143" {
					opensAdmin = true
				}
			}
			if opensAdmin && len(getList(rule, "from")) == 0 {
				t.Errorf("NetworkPolicy %s opens the admin port to every peer", getString(np, "metadata.name"))
			}
			if opensAdmin {
				restricted = true
			}
		}
	}
	if !restricted {
		t.Error("no NetworkPolicy names who may reach the admin port")
	}
}

// TestHelmNetworkPolicyValues: the policy selects the chart's pods, opens
// the IMAP ports to every peer and the admin port to adminFrom only: none
// with adminFrom empty (the node's probes pass whatever a policy says),
// and no policy at all with networkPolicy.enabled false.
func TestHelmNetworkPolicyValues(t *testing.T) {
	t.Parallel()
	chart := filepath.Join(repoRoot, chartPath)
	rules := func(args ...string) (obj, []string) {
		r := mustTemplate(t, chart, args...)
		np := r.find("NetworkPolicy", "rel-imapwarden")
		if np == nil {
			return nil, nil
		}
		var out []string
		for _, rule := range getList(np, "spec.ingress") {
			var ports []string
			for _, p := range getList(rule, "ports") {
				ports = append(ports, fmt.Sprint(get(p, "port")))
			}
			out = append(out, fmt.Sprintf("%v from %d peers", ports, len(getList(rule, "from"))))
		}
		return np, out
	}
	np, got := rules()
	if want := []string{"[imaps imap] from 0 peers", "[admin] from 1 peers"}; fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("default rules %v, want %v", got, want)
	}
	if sel := fmt.Sprint(get(np, "spec.podSelector.matchLabels")); !strings.Contains(sel, "app.kubernetes.io/instance:rel") {
		t.Errorf("podSelector %s does not select the release's pods", sel)
	}
	if _, got := rules("--set", "networkPolicy.adminFrom=null"); fmt.Sprint(got) != "[[imaps imap] from 0 peers]" {
		t.Errorf("adminFrom empty: rules %v, want the IMAP ports only", got)
	}
	if np, _ := rules("--set", "networkPolicy.enabled=false"); np != nil {
		t.Error("networkPolicy.enabled=false still renders a NetworkPolicy")
	}
}
