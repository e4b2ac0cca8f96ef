package main

import (
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/imapwarden/imapwarden/audit"
)

// TestAttackAdminTokenGuessesLeaveNoTrace: a request to the admin API
// with a wrong bearer token is answered 401 and nothing else: no log
// line, no audit record, no delay, no bound per address. Whoever reaches
// the admin port (every pod with the Helm chart) guesses tokens as fast
// as the listener answers, and the operator, the trail and any alert on
// them never learn of it; a wrong console sign-in is at least logged.
// Failed IMAP logins are audited and limited; failed admin sign-ins
// must leave a trace too.
func TestAttackAdminTokenGuessesLeaveNoTrace(t *testing.T) {
	env := newServeEnv(t)
	trail := filepath.Join(env.dir, "audit.jsonl")
	tokenFile := filepath.Join(env.dir, "admin.token")
	if err := os.WriteFile(tokenFile, []byte(testWriteToken+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	s, _, log, logs := env.buildFile(t, fmt.Sprintf(`
listeners: [{name: imaps, address: "127.0.0.1:0", mode: tls}]
tls: {certificates: [{cert: %s, key: %s}]}
backends: {mem: {address: %q, security: plain}}
admin: {address: "127.0.0.1:0", token_file: %s}
audit: {path: %q, fsync: always}
lame_duck: 0s
`, env.cert.Cert, env.cert.Key, env.backend, tokenFile, trail))
	_, admin, cancel, done := serve(t, s, log, nil, nil)

	const guesses = 50
	before := logs.Len()
	for i := range guesses {
		req, _ := http.NewRequest("GET", "http://"+admin.String()+"/sessions", nil)
		req.Header.Set("Authorization", fmt.Sprintf("Bearer guess-%016d", i))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusUnauthorized {
			t.Fatalf("guess %d: %d", i, resp.StatusCode)
		}
	}
	logged := 0
	for _, e := range logs.All()[before:] {
		if strings.Contains(strings.ToLower(e.Message), "admin") {
			logged++
		}
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(trail)
	if err != nil {
		t.Fatal(err)
	}
	recorded := 0
	for _, l := range strings.Split(strings.TrimSpace(string(data)), "\n") {
		r, err := audit.ParseRecord([]byte(l))
		if err != nil {
			t.Fatal(err)
		}
		if r.Kind == audit.KindAdmin || r.Kind == audit.KindSecurity {
			recorded++
		}
	}
	if logged == 0 && recorded == 0 {
		t.Errorf("%d wrong admin tokens from one address: no log line, no audit record", guesses)
	}
}
