package ratelimit

import (
	"context"
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

		// A pair, then a user everywhere, then an IP (the caller reads
		// the arguments and records the act: Unlock).
		ctx := context.Background()
		if n, err := l.Unlock(ctx, "alice", "192.0.2.2"); err != nil || n != 1 {
			t.Fatalf("unlock pair: %d %v", n, err)
		}
		if r, _ := fail(t, l, "192.0.2.2", "alice"); r.Exceeded {
			t.Error("pair still locked")
		}
		if n, err := l.Unlock(ctx, "Alice", ""); err != nil || n < 2 {
			t.Fatalf("unlock user: %d %v", n, err)
		}
		if n, err := l.Unlock(ctx, "", "192.0.2.1"); err != nil || n < 2 {
			t.Fatalf("unlock ip: %d %v", n, err)
		}
		if code, out := adminDo(t, h, "GET", "/ratelimit/lockouts", ""); code != 200 || len(out["lockouts"].([]any)) != 0 {
			t.Errorf("after unlocks: %d %v", code, out)
		}
		// The handler only lists: an unlock through it would act on a
		// reading of the request its caller's record does not share.
		for _, m := range []string{"POST", "GET"} {
			if code, _ := adminDo(t, h, m, "/ratelimit/unlock?user=alice", `{"user":"alice"}`); code != http.StatusNotFound && code != http.StatusMethodNotAllowed {
				t.Errorf("%s /unlock: %d, want 404 or 405", m, code)
			}
		}
	})
}
