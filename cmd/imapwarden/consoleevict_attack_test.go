package main

import (
	"net/http"
	"net/url"
	"testing"
)

// TestAttackReadTokenSignsOutWriteOperator: console sign-ins beyond
// admin.console_max_sessions evict the oldest session, whoever holds it
// (console.open). A read-token holder who signs in that many times ends
// the write-token operator's console session, as often as it likes: in
// the middle of an incident, the one person who can end sessions and
// lift lockouts is sent back to the sign-in form.
func TestAttackReadTokenSignsOutWriteOperator(t *testing.T) {
	const max = 4
	f := startAdminFixture(t, "  console_max_sessions: 4")
	oncall := newConsoleClient(t, f.admin)
	if resp, _ := oncall.post("/console/login", url.Values{"token": {testWriteToken}}, oncall.base); resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("oncall sign-in: %d", resp.StatusCode)
	}
	if resp, _ := oncall.get("/console/"); resp.StatusCode != http.StatusOK {
		t.Fatalf("oncall console: %d", resp.StatusCode)
	}
	for range max {
		soc := newConsoleClient(t, f.admin)
		if resp, _ := soc.post("/console/login", url.Values{"token": {testReadToken}}, soc.base); resp.StatusCode != http.StatusSeeOther {
			t.Fatalf("soc sign-in: %d", resp.StatusCode)
		}
	}
	if resp, _ := oncall.get("/console/"); resp.StatusCode != http.StatusOK {
		t.Errorf("after %d sign-ins with the read token, the write token's console session is gone: %d %s", max, resp.StatusCode, resp.Header.Get("Location"))
	}
}
