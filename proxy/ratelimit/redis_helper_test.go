package ratelimit

import (
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/imapwarden/imapwarden/internal/redistest"
	"github.com/imapwarden/imapwarden/internal/testenv"
)

// redisServer is a private redis-server for one test (internal/redistest).
type redisServer struct{ *redistest.Server }

func startRedis(t testing.TB) *redisServer { return startRedisArgs(t) }

// startRedisArgs starts a redis-server with more arguments (redistest.Start).
func startRedisArgs(t testing.TB, extra ...string) *redisServer {
	t.Helper()
	return &redisServer{redistest.Start(t, extra...)}
}

// testRedisTimeout bounds each Redis call of the tests' Limiters: a killed
// redis-server refuses at once, and a busy machine must not make a live
// one look down (the default, 250ms, is for production).
const testRedisTimeout = 10 * time.Second

// client returns a client made as the lead would make it.
func (r *redisServer) client(t testing.TB) redis.UniversalClient {
	// A killed redis-server refuses connections at once; the timeout only
	// has to outlast a busy machine (two race-enabled suites at once),
	// where a short one marks a live Redis down and fails the test.
	c := NewRedisClient(RedisOptions{Addr: r.Addr, Timeout: testRedisTimeout})
	t.Cleanup(func() { c.Close() })
	return c
}

// waitFor polls cond (a state that arrives asynchronously, such as the
// prober noticing a restarted Redis) up to a generous deadline.
func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(testenv.IOTimeout())
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

type newFunc func(t testing.TB, set func(o *Options)) (*Limiter, *fakeClock)

var prefixSeq struct {
	sync.Mutex
	n int
}

// forEachStore runs f with Limiters on the in-process store, then on
// Redis (a private redis-server; each Limiter its own key prefix).
func forEachStore(t *testing.T, f func(t *testing.T, newTest newFunc)) {
	t.Run("local", func(t *testing.T) { f(t, newTest) })
	t.Run("redis", func(t *testing.T) {
		srv := startRedis(t)
		c := srv.client(t)
		f(t, func(t testing.TB, set func(o *Options)) (*Limiter, *fakeClock) {
			prefixSeq.Lock()
			prefixSeq.n++
			p := fmt.Sprintf("test%d:{rl}:", prefixSeq.n)
			prefixSeq.Unlock()
			return newTest(t, func(o *Options) {
				o.Redis, o.RedisPrefix, o.RedisTimeout = c, p, testRedisTimeout
				o.OnStoreError = func(err error) { t.Errorf("redis error: %v", err) }
				if set != nil {
					set(o)
				}
			})
		})
	})
}
