package main

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"path/filepath"
	"strings"
	"testing"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"
)

// With the trail failed (block mode), every admin write is refused with
// 503 before it acts, the API's and the console's; reads still answer.
func TestAdminWritesRefusedWhileTrailDown(t *testing.T) {
	trailDir := tinyTmpfs(t)
	trail := filepath.Join(trailDir, "audit.jsonl")
	cfgFile := writeDemoConfig(t, fmt.Sprintf("audit: {path: %s, fsync: always, ack_timeout: 2s}\n", trail))
	addrs, admin := serveConfigFile(t, cfgFile, zaptest.NewLogger(t, zaptest.Level(zap.WarnLevel)))
	// The console, signed in before the trail fails (no tokens: loopback).
	c := newConsoleClient(t, admin.String())
	_, page := c.get("/console/")
	m := csrfField.FindStringSubmatch(page)
	if m == nil {
		t.Fatalf("console page:\n%s", page)
	}
	ld := startLoad(t, addrs[0].String(), 2)
	fillDisk(t, trailDir)
	waitReadyz(t, admin.String(), nil, func(code int, body string) bool {
		return code == http.StatusServiceUnavailable && strings.Contains(body, "no space left on device")
	})
	ld.stop()
	get := func(path string, v any) {
		t.Helper()
		resp, err := http.Get("http://" + admin.String() + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		if err := json.NewDecoder(resp.Body).Decode(v); err != nil || resp.StatusCode != http.StatusOK {
			t.Fatalf("GET %s: %d %v", path, resp.StatusCode, err)
		}
	}
	var backends []struct {
		Servers []struct{ Name, Admin string }
	}
	get("/backends", &backends)
	if len(backends) != 1 || len(backends[0].Servers) != 1 {
		t.Fatalf("backends: %+v", backends)
	}
	server := backends[0].Servers[0].Name

	for _, req := range []struct{ method, path, body string }{
		{"PUT", "/loglevel", `{"level":"debug"}`},
		{"DELETE", "/sessions?user=demo", ""},
		{"POST", "/backends/mem/servers/" + url.PathEscape(server) + "/drain", ""},
	} {
		r, _ := http.NewRequest(req.method, "http://"+admin.String()+req.path, strings.NewReader(req.body))
		r.Header.Set("Content-Type", "application/json")
		resp, err := http.DefaultClient.Do(r)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusServiceUnavailable {
			t.Errorf("%s %s with the trail down: %d, want 503", req.method, req.path, resp.StatusCode)
		}
	}
	if resp, body := c.post("/console/sessions/end-user", url.Values{"user": {"demo"}, "csrf": {m[1]}}, c.base); resp.StatusCode != http.StatusServiceUnavailable {
		t.Errorf("console end-user with the trail down: %d %s", resp.StatusCode, body)
	}
	// Nothing changed; reads still answer.
	get("/backends", &backends)
	if st := backends[0].Servers[0].Admin; st != "enabled" {
		t.Errorf("the server after the refused drain: %s", st)
	}
	var level struct{ Level string }
	if get("/loglevel", &level); level.Level == "debug" {
		t.Error("the log level changed")
	}
}
