package ratelimit

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

func adminDo(t *testing.T, h http.Handler, method, target, body string) (int, map[string]any) {
	t.Helper()
	req := httptest.NewRequest(method, target, strings.NewReader(body))
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	var out map[string]any
	if rec.Code != http.StatusMethodNotAllowed && rec.Code != http.StatusNotFound {
		if ct := rec.Header().Get("Content-Type"); ct != "application/json" {
			t.Errorf("%s %s: content type %q", method, target, ct)
		}
		if err := json.Unmarshal(rec.Body.Bytes(), &out); err != nil {
			t.Fatalf("%s %s: %v: %s", method, target, err, rec.Body.String())
		}
	}
	return rec.Code, out
}

func TestAdminHandler(t *testing.T) {
	forEachStore(t, func(t *testing.T, newTest newFunc) {
		l, _ := newTest(t, func(o *Options) { o.LoginFailuresPerUserIP = 2; o.LoginFailuresPerIP = 4 })
		h := http.StripPrefix("/ratelimit", l.AdminHandler())
		for _, ip := range []string{"192.0.2.1", "192.0.2.2"} {
			fail(t, l, ip, "alice")
			fail(t, l, ip, "alice")
		}
		fail(t, l, "192.0.2.1", "bob")
		fail(t, l, "192.0.2.1", "bob")

		code, out := adminDo(t, h, "GET", "/ratelimit/lockouts", "")
		ls, _ := out["lockouts"].([]any)
		if code != 200 || len(ls) != 4 { // alice ×2, bob, and 192.0.2.1
			t.Fatalf("GET /lockouts: %d %v", code, out)
		}
		first := ls[0].(map[string]any)
		for _, k := range []string{"kind", "failures", "until", "store"} {
			if _, ok := first[k]; !ok {
				t.Errorf("lockout without %q: %v", k, first)
			}
		}

		// A pair, then a user everywhere, then an IP.
		code, out = adminDo(t, h, "POST", "/ratelimit/unlock", `{"user":"alice","ip":"192.0.2.2"}`)
		if code != 200 || out["removed"] != 1.0 {
			t.Fatalf("unlock pair: %d %v", code, out)
		}
		if r, _ := fail(t, l, "192.0.2.2", "alice"); r.Exceeded {
			t.Error("pair still locked")
		}
		code, out = adminDo(t, h, "POST", "/ratelimit/unlock?user=Alice", "")
		if code != 200 || out["removed"].(float64) < 2 {
			t.Fatalf("unlock user: %d %v", code, out)
		}
		code, out = adminDo(t, h, "POST", "/ratelimit/unlock", `{"ip":"192.0.2.1"}`)
		if code != 200 || out["removed"].(float64) < 2 {
			t.Fatalf("unlock ip: %d %v", code, out)
		}
		if code, out := adminDo(t, h, "GET", "/ratelimit/lockouts", ""); code != 200 || len(out["lockouts"].([]any)) != 0 {
			t.Errorf("after unlocks: %d %v", code, out)
		}

		for _, c := range []struct{ method, target, body string }{
			{"POST", "/ratelimit/unlock", `{}`},
			{"POST", "/ratelimit/unlock", `{"ip":"not-an-ip"}`},
			{"POST", "/ratelimit/unlock", `{"user":`},
		} {
			if code, _ := adminDo(t, h, c.method, c.target, c.body); code != http.StatusBadRequest {
				t.Errorf("%s %s %s: %d, want 400", c.method, c.target, c.body, code)
			}
		}
		if code, _ := adminDo(t, h, "GET", "/ratelimit/unlock?user=alice", ""); code != http.StatusMethodNotAllowed {
			t.Errorf("GET /unlock: %d, want 405", code)
		}
	})
}
