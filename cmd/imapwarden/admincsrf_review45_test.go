package main

import (
	"fmt"
	"net/http"
	"testing"
)

// review45: the profiles need write scope (needs: they cost CPU and show
// internals) but are GETs, which changes() lets through from any site:
// without tokens, <img src="http://127.0.0.1:9143/debug/pprof/trace?seconds=60">
// on any page the operator visits starts a trace (or a CPU profile) in the
// proxy. What needs write scope should be refused cross-site as a write is.
func TestAdminRefusesCrossSiteProfiles(t *testing.T) {
	dir := t.TempDir()
	cf := tlsFiles(t, dir)
	cfgText := fmt.Sprintf(`
listeners: [{address: "127.0.0.1:0", mode: tls}]
tls: {certificates: [{cert: %s, key: %s}]}
backends:
  main:
    servers: [{name: one, address: "127.0.0.1:1"}]
    security: plain
admin: {address: "127.0.0.1:0", pprof: true}
`, cf.Cert, cf.Key)
	_, _, adminAddr, _ := serveConfig(t, dir, cfgText)
	req, _ := http.NewRequest("GET", "http://"+adminAddr.String()+"/debug/pprof/cmdline", nil)
	req.Header.Set("Sec-Fetch-Site", "cross-site")
	req.Header.Set("Sec-Fetch-Mode", "no-cors")
	req.Header.Set("Sec-Fetch-Dest", "image")
	req.Header.Set("Referer", "https://evil.example/page")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusForbidden {
		t.Errorf("a cross-site GET of a write-scope profile endpoint: %d, want 403", resp.StatusCode)
	}
}
