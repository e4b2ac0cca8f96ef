package main

import (
	"fmt"
	"net/http"
	"path/filepath"
	"strings"
	"testing"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"
)

// TestAttackAdminActsWhileTheTrailIsDown: with the trail failed (disk
// full, on_full: block, the default), every IMAP command is refused
// (ARCHITECTURE.md §11), but an admin write still acts and answers 200:
// admin.audit hands its record to Trail.Log, which never reaches the
// disk, and only the operational log says so. A write-token holder can
// end sessions, lift lockouts or raise the log level with no record of
// who did it; the action should be refused while its record cannot be
// written, as a client's command is.
func TestAttackAdminActsWhileTheTrailIsDown(t *testing.T) {
	trailDir := tinyTmpfs(t)
	trail := filepath.Join(trailDir, "audit.jsonl")
	cfgFile := writeDemoConfig(t, fmt.Sprintf("audit: {path: %s, fsync: always, ack_timeout: 2s}\n", trail))
	addrs, admin := serveConfigFile(t, cfgFile, zaptest.NewLogger(t, zaptest.Level(zap.WarnLevel)))
	ld := startLoad(t, addrs[0].String(), 2)
	fillDisk(t, trailDir)
	// The load's records fill the rest: the sink fails, completions are
	// withheld (fail closed) and readiness says why.
	waitReadyz(t, admin.String(), nil, func(code int, body string) bool {
		return code == http.StatusServiceUnavailable && strings.Contains(body, "no space left on device")
	})
	ld.stop()

	// The admin API at the same moment.
	req, _ := http.NewRequest("PUT", "http://"+admin.String()+"/loglevel", strings.NewReader(`{"level":"debug"}`))
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode == http.StatusOK {
		t.Errorf("PUT /loglevel with the trail down: %d, the level changed with no record of it", resp.StatusCode)
	}
}
