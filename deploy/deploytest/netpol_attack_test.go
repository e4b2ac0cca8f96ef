package deploytest

import (
	"fmt"
	"path/filepath"
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
