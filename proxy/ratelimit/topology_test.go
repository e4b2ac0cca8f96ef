package ratelimit

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// lockThrough locks alice out through a Limiter on client c and checks
// that the lockout is listed from Redis.
func lockThrough(t *testing.T, c redis.UniversalClient) {
	t.Helper()
	l, err := New(Options{Redis: c, RedisTimeout: testRedisTimeout, LoginFailuresPerUserIP: 2, LockoutBase: time.Hour, LockoutMax: time.Hour,
		OnStoreError: func(err error) { t.Errorf("redis error: %v", err) }})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	fail(t, l, "192.0.2.1", "alice")
	fail(t, l, "192.0.2.1", "alice")
	wantExceeded(t, l.Login(info("192.0.2.1"), "alice"), LimitLoginFailuresPerUserIP, "user_ip", "AUTHENTICATIONFAILED")
	ls, err := l.Lockouts(t.Context())
	if err != nil || lockoutList(ls) != "user_ip alice 192.0.2.1 redis" {
		t.Fatalf("lockouts: %s, %v", lockoutList(ls), err)
	}
	if n, err := l.Unlock(t.Context(), "alice", ""); err != nil || n != 2 { // user, user_ip
		t.Errorf("unlock: %d, %v", n, err)
	}
}

// A Sentinel address with the master's name: go-redis asks the real
// redis-sentinel for the master and runs the scripts there.
func TestRedisSentinel(t *testing.T) {
	master := startRedis(t)
	_, port, _ := strings.Cut(master.Addr, ":")
	sentinel := startRedisArgs(t, "--sentinel",
		"sentinel monitor wardenmaster 127.0.0.1 "+port+" 1",
		"sentinel down-after-milliseconds wardenmaster 5000")
	c := NewRedisClient(RedisOptions{Addr: sentinel.Addr, MasterName: "wardenmaster", Timeout: testRedisTimeout})
	t.Cleanup(func() { c.Close() })
	lockThrough(t, c)
	// The records went to the master the Sentinel named.
	direct := master.client(t)
	if n, err := direct.Exists(context.Background(), DefaultRedisPrefix+"f:ip:192.0.2.1").Result(); err != nil || n != 1 {
		t.Errorf("the master holds %d ip records (%v), want 1", n, err)
	}
}

// A Cluster address: a one-node redis-server cluster holding every slot.
// The {rl} hash tag keeps each script's keys in one slot.
func TestRedisCluster(t *testing.T) {
	node := startRedisArgs(t, "--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf")
	admin := redis.NewClient(&redis.Options{Addr: node.Addr})
	t.Cleanup(func() { admin.Close() })
	ctx := context.Background()
	if err := admin.Do(ctx, "CLUSTER", "ADDSLOTSRANGE", "0", "16383").Err(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the cluster to be ok", func() bool {
		s, err := admin.ClusterInfo(ctx).Result()
		return err == nil && strings.Contains(s, "cluster_state:ok")
	})
	c := NewRedisClient(RedisOptions{Addr: node.Addr, Cluster: true, Timeout: testRedisTimeout})
	t.Cleanup(func() { c.Close() })
	if _, ok := c.(*redis.ClusterClient); !ok {
		t.Fatalf("client %T, want a cluster client", c)
	}
	lockThrough(t, c)
}
