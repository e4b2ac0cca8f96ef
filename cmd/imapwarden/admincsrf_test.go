package main

import (
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
)

// With the default admin section (no tokens, loopback only) every request
// addressed to 127.0.0.1 has write scope. A web page the operator visits
// must not be able to use it: a write from another site (Sec-Fetch-Site,
// Origin, Referer) is refused, and so is a write a page could send without
// a CORS preflight (no Authorization, no JSON Content-Type), whatever
// headers a browser leaves out. A write that is neither passes. What needs
// write scope though it is a GET (a profile) is refused cross-site too.
func TestAdminRefusesCrossSiteWrites(t *testing.T) {
	dir := t.TempDir()
	cf := tlsFiles(t, dir)
	// The servers need not answer: drain and disable only change the pool.
	cfgText := fmt.Sprintf(`
listeners: [{address: "127.0.0.1:0", mode: tls}]
tls: {certificates: [{cert: %s, key: %s}]}
backends:
  main:
    servers: [{name: one, address: "127.0.0.1:1"}, {name: two, address: "127.0.0.1:2"}]
    security: plain
admin: {address: "127.0.0.1:0", pprof: true}
`, cf.Cert, cf.Key)
	_, _, adminAddr, _ := serveConfig(t, dir, cfgText)
	do := func(method, path string, header map[string]string) (int, string) {
		t.Helper()
		// A body as a page would send it; one that is JSON where the
		// type says so (a body has one reading, adminArgs).
		reqBody := "x"
		if header["Content-Type"] == "application/json" {
			reqBody = "{}"
		}
		req, _ := http.NewRequest(method, "http://"+adminAddr.String()+path, strings.NewReader(reqBody))
		for k, v := range header {
			req.Header.Set(k, v)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		return resp.StatusCode, string(body)
	}
	// What fetch("http://127.0.0.1:9143/...", {method: "POST", mode:
	// "no-cors", body: "x"}) from https://evil.example sends, and the same
	// with less of what browsers add.
	crossSite := []map[string]string{
		{"Content-Type": "text/plain;charset=UTF-8", "Origin": "https://evil.example", "Sec-Fetch-Site": "cross-site", "Sec-Fetch-Mode": "no-cors"},
		{"Content-Type": "text/plain;charset=UTF-8", "Origin": "https://evil.example"},
		{"Content-Type": "application/x-www-form-urlencoded", "Referer": "https://evil.example/page"},
		{"Content-Type": "text/plain"}, // an old browser: no Origin, no Sec-Fetch-*
		{"Content-Type": "application/json", "Origin": "https://evil.example"},
		{"Content-Type": "application/json", "Sec-Fetch-Site": "same-site"},
		{"Content-Type": "application/json", "Origin": "null"},
	}
	for _, path := range []string{"/backends/main/servers/one/disable", "/backends/main/servers/two/drain?kick=true", "/ratelimit/unlock"} {
		for _, h := range crossSite {
			if code, body := do("POST", path, h); code != http.StatusForbidden {
				t.Errorf("POST %s with %v: %d %s", path, h, code, body)
			}
		}
	}
	for _, h := range crossSite {
		if code, body := do("DELETE", "/sessions?user=alice", h); code != http.StatusForbidden {
			t.Errorf("DELETE /sessions with %v: %d %s", h, code, body)
		}
	}
	// The profiles need write scope though they are GETs: an <img> on
	// any page would start one.
	img := map[string]string{"Sec-Fetch-Site": "cross-site", "Sec-Fetch-Mode": "no-cors", "Sec-Fetch-Dest": "image", "Referer": "https://evil.example/page"}
	if code, body := do("GET", "/debug/pprof/cmdline", img); code != http.StatusForbidden {
		t.Errorf("a cross-site GET of a profile: %d %s", code, body)
	}
	if code, body := do("GET", "/debug/pprof/cmdline", nil); code != http.StatusOK {
		t.Errorf("a GET of a profile without tokens, not cross-site: %d %s", code, body)
	}
	if code, body := do("GET", "/backends", nil); code != http.StatusOK || strings.Contains(body, `"drain"`) || strings.Contains(body, `"disabled"`) {
		t.Fatalf("after the refused writes: %d %s", code, body)
	}
	// curl -X POST -H 'Content-Type: application/json', or a page of the
	// listener's own origin.
	if code, body := do("POST", "/backends/main/servers/two/drain", map[string]string{"Content-Type": "application/json"}); code != http.StatusOK {
		t.Errorf("a JSON POST without tokens: %d %s", code, body)
	}
	if code, body := do("POST", "/backends/main/servers/two/enable", map[string]string{"Content-Type": "application/json", "Origin": "http://" + adminAddr.String(), "Sec-Fetch-Site": "same-origin"}); code != http.StatusOK {
		t.Errorf("a same-origin JSON POST: %d %s", code, body)
	}
}
