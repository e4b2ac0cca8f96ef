package main

import (
	"io"
	"net/http"
	"strings"
	"testing"
)

// TestAttackUnlockAuditNamesWhomItUnlocked: the audit record of POST
// /ratelimit/unlock must name the user whose lockout was lifted. noteUnlock
// reads the body with json.Unmarshal whatever the Content-Type, while the
// ratelimit handler decodes only the first JSON value, and only when the
// type is JSON or the length is known: a write-token holder could lift one
// user's lockout while the trail names another.
func TestAttackUnlockAuditNamesWhomItUnlocked(t *testing.T) {
	cases := []struct {
		name, ctype string
		body        func() io.Reader
	}{
		// json.Unmarshal refuses the trailing value, so the record takes
		// the query's user; the handler's Decoder stops after the first.
		{"trailing value", "application/json", func() io.Reader { return strings.NewReader(`{"user":"demo"} {"user":"decoy"}`) }},
		// No length and no JSON type: the handler ignores the body and
		// takes the query's user; the record takes the body's.
		{"chunked text body", "text/plain", func() io.Reader { return io.MultiReader(strings.NewReader(`{"user":"decoy"}`)) }},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			f := startAdminFixture(t, "")
			c := f.session()
			c.cmd("x", "NO", "LOGIN demo wrong")
			c.cmd("y", "NO", "LOGIN demo wrong")
			if code, body := f.do("GET", "/ratelimit/lockouts", testReadToken, "", ""); code != 200 || !strings.Contains(body, `"demo"`) {
				t.Fatalf("lockouts before: %d %s", code, body)
			}
			query := "?user=decoy"
			if tc.name == "chunked text body" {
				query = "?user=demo"
			}
			req, err := http.NewRequest("POST", "http://"+f.admin+"/ratelimit/unlock"+query, tc.body())
			if err != nil {
				t.Fatal(err)
			}
			req.Header.Set("Authorization", "Bearer "+testWriteToken)
			req.Header.Set("Content-Type", tc.ctype)
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			t.Logf("unlock: %d %s", resp.StatusCode, b)

			_, after := f.do("GET", "/ratelimit/lockouts", testReadToken, "", "")
			if strings.Contains(after, `"demo"`) {
				return // refused or not acted on: nothing to name
			}
			recs := f.adminRecords(1)
			if len(recs) != 1 {
				t.Fatalf("admin records: %d", len(recs))
			}
			if r := recs[0]; r.Event != "unlock" || r.User != "demo" || !strings.Contains(r.Detail, "demo") {
				t.Errorf("demo's lockout was lifted, but the trail says: event %q user %q detail %q", r.Event, r.User, r.Detail)
			}
		})
	}
}
