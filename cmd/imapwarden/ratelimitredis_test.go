package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/redis/go-redis/v9"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/imapwarden/imapwarden/internal/redistest"
	"github.com/imapwarden/imapwarden/proxy/ratelimit"
)

// Issue 13.2: rate_limits.redis's Sentinel and Cluster settings, written
// in the config file, reach the limiter: a lockout made through the proxy
// lands in the real Redis that the Sentinel (with its password, and the
// master's) names, or in the cluster; the admin API lists it from Redis.
// During an outage /ratelimit/lockouts answers 502 with the error and this
// proxy's list, and the lockout is still enforced.
func TestRateLimitRedisTopologyFromConfigFile(t *testing.T) {
	const masterPW, sentinelPW = "master-password-0123", "sentinel-password-0123"
	for _, topo := range []string{"sentinel", "cluster"} {
		t.Run(topo, func(t *testing.T) {
			dir := t.TempDir()
			var store *redistest.Server // where the records go
			var redisCfg string
			switch topo {
			case "sentinel":
				store = redistest.Start(t, "--requirepass", masterPW)
				sentinel := redistest.Start(t, "--sentinel",
					"sentinel monitor wardenmaster 127.0.0.1 "+store.Port()+" 1",
					"sentinel auth-pass wardenmaster "+masterPW,
					"sentinel down-after-milliseconds wardenmaster 60000",
					"requirepass "+sentinelPW)
				pwFile, sentinelPWFile := filepath.Join(dir, "redis.pw"), filepath.Join(dir, "sentinel.pw")
				os.WriteFile(pwFile, []byte(masterPW+"\n"), 0o600)
				os.WriteFile(sentinelPWFile, []byte(sentinelPW+"\n"), 0o600)
				redisCfg = fmt.Sprintf(`{addresses: [%q], sentinel_master: wardenmaster, sentinel_password_file: %s, password_file: %s, timeout: 10s}`,
					sentinel.Addr, sentinelPWFile, pwFile)
			case "cluster":
				store = redistest.Start(t, "--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf")
				c := redis.NewClient(&redis.Options{Addr: store.Addr})
				defer c.Close()
				if err := c.Do(context.Background(), "CLUSTER", "ADDSLOTSRANGE", "0", "16383").Err(); err != nil {
					t.Fatal(err)
				}
				eventually(t, "the cluster to be ok", func() bool {
					s, err := c.ClusterInfo(context.Background()).Result()
					return err == nil && strings.Contains(s, "cluster_state:ok")
				})
				redisCfg = fmt.Sprintf(`{address: %q, cluster: true, timeout: 10s}`, store.Addr)
			}
			cfgFile := writeDemoConfig(t, `
rate_limits:
  login_failure_delay: 1ms
  login_failures_per_user_ip: 2
  lockout_base: 1h
  lockout_max: 1h
  redis: `+redisCfg+"\n")
			// Not zaptest's: serve hands the logger to go-redis's
			// process-wide one, which its goroutines use after the test.
			core, _ := observer.New(zapcore.InfoLevel)
			s, addrs, admin, _ := startServe(t, cfgFile, zap.New(core), nil)
			// A one-node cluster also answers a plain client: the client's
			// kind shows that cluster: true was read.
			if _, isCluster := s.redis.(*redis.ClusterClient); isCluster != (topo == "cluster") {
				t.Errorf("%s: the limiter's client is a %T", topo, s.redis)
			}
			login := func(tag, pw string) string {
				c := dialIMAPS(t, addrs[0].String())
				fmt.Fprintf(c.c, "%s LOGIN demo %q\r\n", tag, pw)
				return c.line()
			}
			for i := range 2 {
				if l := login(fmt.Sprintf("f%d", i), "wrong"); !strings.Contains(l, " NO ") {
					t.Fatalf("a wrong password: %q", l)
				}
			}
			if l := login("r1", "demo-password"); !strings.Contains(l, " NO ") {
				t.Fatalf("locked out, the right password: %q", l)
			}

			// The records are in the Redis the settings lead to.
			// (A one-node cluster's node holds every key.)
			pw := ""
			if topo == "sentinel" {
				pw = masterPW
			}
			direct := redis.NewClient(&redis.Options{Addr: store.Addr, Password: pw})
			defer direct.Close()
			keys, err := direct.Keys(context.Background(), ratelimit.DefaultRedisPrefix+"*").Result()
			if err != nil || len(keys) == 0 {
				t.Fatalf("the %s Redis holds no rate limit keys (%v)", topo, err)
			}
			code, ls := lockouts(t, admin.String())
			if code != http.StatusOK || !ls.has("demo", ratelimit.StoreRedis) {
				t.Fatalf("/ratelimit/lockouts: %d %+v", code, ls)
			}

			// The outage: the list this proxy holds, the error, and the
			// lockout still enforced.
			store.Kill()
			code, ls = lockouts(t, admin.String())
			if code != http.StatusBadGateway || ls.Error == "" || !ls.has("demo", "") {
				t.Errorf("/ratelimit/lockouts with Redis down: %d %+v, want 502, the error and demo's lockout", code, ls)
			}
			if l := login("r2", "demo-password"); !strings.Contains(l, " NO ") {
				t.Errorf("locked out, Redis down, the right password: %q", l)
			}
		})
	}
}

type lockoutList struct {
	Lockouts []ratelimit.Lockout `json:"lockouts"`
	Error    string              `json:"error"`
}

// has reports a lockout of user (from store, if not empty).
func (l lockoutList) has(user, store string) bool {
	for _, x := range l.Lockouts {
		if x.User == user && (store == "" || x.Store == store) {
			return true
		}
	}
	return false
}

func lockouts(t *testing.T, adminAddr string) (int, lockoutList) {
	t.Helper()
	resp, err := http.Get("http://" + adminAddr + "/ratelimit/lockouts")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var l lockoutList
	if err := json.Unmarshal(b, &l); err != nil {
		t.Fatalf("/ratelimit/lockouts: %v: %s", err, b)
	}
	return resp.StatusCode, l
}
