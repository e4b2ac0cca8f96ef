package ratelimit

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/redis/go-redis/v9/maintnotifications"
	"go.uber.org/zap"
)

// Redis layout (prefix P, "imapwarden:{rl}:" by default; the {rl} hash tag
// puts every key in one cluster slot, which multi-key scripts need):
//
//	P r:ip:<ip>            GCRA TAT (µs) of new connections from an IP
//	P r:net:<prefix>       ... from a subnet
//	P r:fb:<uid>           ... of bytes fetched by a user (uid: userID)
//	P r:fm:<uid>           ... of messages fetched
//	P r:ab:<uid>           ... of bytes appended
//	P f:ip:<ip>            failure hash: n, last, until (µs), kind, user, ip
//	P f:u:<uid>            ... of a user
//	P f:ui:<uid>:<ip>      ... of a user from an IP
//	P locks                sorted set: failure keys by lockout end (µs)
//	P p:ip:<ip>            sorted set: logins in flight counted in f:ip:<ip>,
//	P p:u:<uid>            ... in f:u:<uid>, by when they lapse (µs)
//	P p:ui:<uid>:<ip>      ... in f:ui:<uid>:<ip>
//
// Times are microseconds from the caller's clock, not Redis's: Lua numbers
// are doubles, exact to 2^53 (µs since 1970 fit; ns do not), and the
// instances of a fleet share NTP time anyway. Every key has a TTL just past
// the moment it stops mattering, so Redis needs no sweeping.

// rateScript charges buckets all or nothing. KEYS: the buckets. ARGV[1]:
// now; then per bucket five values: interval (µs per unit), tolerance (µs),
// units, max wait (µs), force (1: charge even when over). It returns
// {ok, index of the refusing bucket or 0, wait µs, TAT of each bucket}.
// Numbers are written with %.0f: Redis would turn a Lua number into text
// with %.14g and lose the low digits of a timestamp.
var rateScript = redis.NewScript(`
local now = tonumber(ARGV[1])
local tats, worst = {}, 0
for i = 1, #KEYS do
  local b = 1 + (i - 1) * 5
  local t, tol, n = tonumber(ARGV[b + 1]), tonumber(ARGV[b + 2]), tonumber(ARGV[b + 3])
  local maxd, force = tonumber(ARGV[b + 4]), ARGV[b + 5] == "1"
  local tat = tonumber(redis.call("GET", KEYS[i]) or "0")
  if tat < now then tat = now end
  local new = tat + n * t
  local wait = new - now - tol
  if wait > maxd and not force then
    return {0, i, string.format("%.0f", wait), string.format("%.0f", tat)}
  end
  tats[i] = new
  if wait > worst then worst = wait end
end
local out = {1, 0, string.format("%.0f", worst)}
for i = 1, #KEYS do
  local ttl = math.ceil((tats[i] - now) / 1000) + 1000
  redis.call("SET", KEYS[i], string.format("%.0f", tats[i]), "PX", ttl)
  out[#out + 1] = string.format("%.0f", tats[i])
end
return out
`)

// failScript records a failed login. KEYS: m failure hashes, their m
// sets of logins in flight, then the lock index. ARGV: now, window, base,
// max (µs), the login's member in the sets ("" for none: it leaves them
// in the same step, so that no check sees the login neither in flight nor
// failed), then per hash: threshold, kind, user, ip. A record is
// forgotten window after its last failure or the end of its lockout,
// whichever is later. It returns {n, until} per hash.
var failScript = redis.NewScript(`
local now, win, base, maxd, id = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4]), ARGV[5]
local idx = KEYS[#KEYS]
local m = (#KEYS - 1) / 2
local out = {}
for i = 1, m do
  if id ~= "" then redis.call("ZREM", KEYS[m + i], id) end
  local k = KEYS[i]
  local a = 5 + (i - 1) * 4
  local thr = tonumber(ARGV[a + 1])
  local v = redis.call("HMGET", k, "n", "last", "until")
  local n, last, untl = tonumber(v[1]) or 0, tonumber(v[2]) or 0, tonumber(v[3]) or 0
  if math.max(last, untl) + win <= now then n, untl = 0, 0 end
  n = n + 1
  if thr > 0 and n >= thr then
    local d = base * 2 ^ math.min(n - thr, 60)
    if d > maxd then d = maxd end
    if now + d > untl then untl = now + d end
    redis.call("ZADD", idx, string.format("%.0f", untl), k)
  end
  redis.call("HSET", k, "n", n, "last", string.format("%.0f", now), "until", string.format("%.0f", untl),
    "kind", ARGV[a + 2], "user", ARGV[a + 3], "ip", ARGV[a + 4])
  redis.call("PEXPIRE", k, math.ceil((math.max(now, untl) + win - now) / 1000) + 1000)
  out[#out + 1] = n
  out[#out + 1] = string.format("%.0f", untl)
end
return out
`)

// reserveScript takes a place among the logins in flight of each failure
// record (ARCHITECTURE.md §12), unless one is locked or has no room left
// (config.full). KEYS: m failure hashes (ip, user, user_ip order), their
// m sets of logins in flight. ARGV: now, window (µs), the login's member,
// when it lapses (µs), user_lockout_all_ips (1 or 0), then per hash: its
// threshold and the failures this instance counted during an outage and
// not yet wrote back. Members past their time are dropped first: the
// places of a proxy that died with logins in flight lapse on their own.
// It returns {outcome (0 taken, 1 locked, 2 full), the record (1-based)
// that locked or is full, then n, until per hash}.
var reserveScript = redis.NewScript(`
local now, win, id, exp, all = tonumber(ARGV[1]), tonumber(ARGV[2]), ARGV[3], tonumber(ARGV[4]), ARGV[5] == "1"
local m = #KEYS / 2
local n, untl, held, thr, out = {}, {}, {}, {}, {0, 0}
for i = 1, m do
  local v = redis.call("HMGET", KEYS[i], "n", "last", "until")
  n[i], untl[i] = tonumber(v[1]) or 0, tonumber(v[3]) or 0
  if math.max(tonumber(v[2]) or 0, untl[i]) + win <= now then n[i], untl[i] = 0, 0 end
  out[#out + 1] = n[i]
  out[#out + 1] = string.format("%.0f", untl[i])
  n[i] = math.max(n[i], tonumber(ARGV[5 + 2 * i]))
  thr[i] = tonumber(ARGV[4 + 2 * i])
  redis.call("ZREMRANGEBYSCORE", KEYS[m + i], "-inf", now)
  held[i] = redis.call("ZCARD", KEYS[m + i])
end
local function applies(i) return i ~= 2 or all or n[3] > 0 end
for i = 1, m do
  if applies(i) and untl[i] > now then out[1], out[2] = 1, i return out end
end
for i = 1, m do
  if applies(i) and thr[i] > 0 and held[i] >= math.max(thr[i] - n[i], 1) then out[1], out[2] = 2, i return out end
end
for i = 1, m do
  redis.call("ZADD", KEYS[m + i], string.format("%.0f", exp), id)
  local ttl = math.ceil((exp - now) / 1000) + 1000
  if redis.call("PTTL", KEYS[m + i]) < ttl then redis.call("PEXPIRE", KEYS[m + i], ttl) end
end
return out
`)

// reserveScript's outcomes.
const (
	reserveTaken = iota
	reserveLocked
	reserveFull
)

// errStoreDown is returned without a call while the store is marked down.
var errStoreDown = errors.New("ratelimit: redis is down")

// redisStore is the shared store. After a failed call it is marked down:
// calls are skipped (the Limiter applies its FailureMode) until a
// background ping succeeds, so a dead Redis costs no timeout per login.
type redisStore struct {
	c          redis.UniversalClient
	p          string // key prefix
	timeout    time.Duration
	probeEvery time.Duration
	onErr      func(error)
	onState    func(bool, error)
	// onRecover runs on the prober's goroutine once Redis answers again
	// (the Limiter writes back what it counted meanwhile).
	onRecover func()
	log       *zap.Logger

	down    atomic.Bool
	probing atomic.Bool
	errors  atomic.Uint64
	stop    chan struct{}
	wg      sync.WaitGroup
}

func newRedisStore(o *Options) *redisStore {
	return &redisStore{
		c: o.Redis, p: o.RedisPrefix, timeout: o.RedisTimeout, probeEvery: o.RedisProbeInterval,
		onErr: o.OnStoreError, onState: o.OnStoreState, log: o.Logger,
		stop: make(chan struct{}),
	}
}

// RedisOptions are what NewRedisClient needs; the rest of go-redis's
// options keep their defaults.
type RedisOptions struct {
	Addr string // host:port
	// Addrs are more addresses: Sentinels with MasterName, seed nodes of
	// a Cluster with Cluster.
	Addrs []string
	// MasterName is the Sentinel master's name: Addr and Addrs are then
	// Sentinels, which name the current master (redis-sentinel).
	MasterName string
	// SentinelPassword authenticates to the Sentinels, when they ask.
	SentinelPassword string
	// Cluster: the addresses are nodes of a Redis Cluster. The keys share
	// one hash tag ({rl} in the prefix), so each script runs on one node.
	Cluster  bool
	Username string
	Password string
	DB       int
	TLS      *tls.Config
	// Timeout bounds dialing and each read and write; default 250ms.
	Timeout time.Duration
}

// NewRedisClient returns a client for Options.Redis with short timeouts
// and no retries: a slow or dead Redis must fail fast, and the Limiter's
// own probing brings it back. A single server, a Sentinel-managed master
// (MasterName) or a Cluster (Cluster), as go-redis's UniversalClient.
func NewRedisClient(o RedisOptions) redis.UniversalClient {
	if o.Timeout <= 0 {
		o.Timeout = DefaultRedisTimeout
	}
	var addrs []string
	if o.Addr != "" {
		addrs = append(addrs, o.Addr)
	}
	addrs = append(addrs, o.Addrs...)
	return redis.NewUniversalClient(&redis.UniversalOptions{
		Addrs: addrs, MasterName: o.MasterName, SentinelPassword: o.SentinelPassword, IsClusterMode: o.Cluster,
		Username: o.Username, Password: o.Password, DB: o.DB, TLSConfig: o.TLS,
		DialTimeout: o.Timeout, ReadTimeout: o.Timeout, WriteTimeout: o.Timeout,
		PoolTimeout: o.Timeout, ContextTimeoutEnabled: true,
		// One dial, no retries: a refused connection is an answer.
		MaxRetries: -1, DialerRetries: 1,
		DisableIdentity: true,
		// Redis Enterprise's maintenance push notifications: not needed
		// for a few keys, and a plain redis-server does not know them.
		MaintNotificationsConfig: &maintnotifications.Config{Mode: maintnotifications.ModeDisabled},
	})
}

func (r *redisStore) up() bool { return !r.down.Load() }

// call runs f with the store's timeout; a failure marks the store down.
func (r *redisStore) call(f func(ctx context.Context) error) error {
	ctx, cancel := context.WithTimeout(context.Background(), r.timeout)
	defer cancel()
	return r.do(ctx, f)
}

// do runs f with ctx (admin calls bring their own, longer, deadline).
func (r *redisStore) do(ctx context.Context, f func(ctx context.Context) error) error {
	if r.down.Load() {
		return errStoreDown
	}
	err := f(ctx)
	if err != nil && !errors.Is(err, redis.Nil) {
		r.failed(err)
		return fmt.Errorf("ratelimit: redis: %w", err)
	}
	return nil
}

func (r *redisStore) failed(err error) {
	r.errors.Add(1)
	if r.onErr != nil {
		r.onErr(err)
	}
	if r.down.CompareAndSwap(false, true) {
		r.log.Warn("rate limit store down: deciding without it until it answers again", zap.Error(err))
		if r.onState != nil {
			r.onState(false, err)
		}
		r.startProbe()
	}
}

// startProbe pings until Redis answers, then marks the store up. Scripts
// need no reloading: go-redis falls back from EVALSHA to EVAL on NOSCRIPT
// (a restarted Redis has forgotten them).
func (r *redisStore) startProbe() {
	if !r.probing.CompareAndSwap(false, true) {
		return
	}
	r.wg.Add(1)
	go func() {
		defer r.wg.Done()
		t := time.NewTicker(r.probeEvery)
		defer t.Stop()
		for {
			select {
			case <-r.stop:
				r.probing.Store(false)
				return
			case <-t.C:
			}
			ctx, cancel := context.WithTimeout(context.Background(), r.timeout)
			err := r.c.Ping(ctx).Err()
			cancel()
			if err != nil {
				r.log.Debug("rate limit store still down", zap.Error(err))
				continue
			}
			// Probing ends before the store is up: a call failing from
			// then on, the write-back's included, starts a new probe
			// instead of leaving the store down for good.
			r.probing.Store(false)
			r.down.Store(false)
			r.log.Info("rate limit store up again")
			if r.onState != nil {
				r.onState(true, nil)
			}
			if r.onRecover != nil {
				r.onRecover()
			}
			return
		}
	}()
}

func (r *redisStore) close() {
	select {
	case <-r.stop:
	default:
		close(r.stop)
	}
	r.wg.Wait()
}

func us(ns int64) int64 { return ns / 1000 }

func usf(ns float64) string { return strconv.FormatFloat(ns/1000, 'f', -1, 64) }

// bucketArg is one bucket of rateScript.
type bucketArg struct {
	key      string
	g        gcra
	n        int64
	maxDelay int64 // ns
	force    bool
}

// rateResult is rateScript's answer; times in ns.
type rateResult struct {
	ok     bool
	refuse int // index of the refusing bucket, with ok false
	wait   int64
	tats   []int64
}

func (r *redisStore) rate(now int64, bs ...bucketArg) (rateResult, error) {
	keys := make([]string, len(bs))
	args := make([]any, 0, 1+5*len(bs))
	args = append(args, us(now))
	for i, b := range bs {
		keys[i] = r.p + b.key
		force := "0"
		if b.force {
			force = "1"
		}
		args = append(args, usf(b.g.t), us(b.g.tol), b.n, us(b.maxDelay), force)
	}
	var res rateResult
	err := r.call(func(ctx context.Context) error {
		v, err := rateScript.Run(ctx, r.c, keys, args...).Slice()
		if err != nil {
			return err
		}
		if len(v) < 3 {
			return fmt.Errorf("rate script returned %d values", len(v))
		}
		res.ok = toInt(v[0]) == 1
		res.refuse = int(toInt(v[1])) - 1
		res.wait = toInt(v[2]) * 1000
		for _, t := range v[3:] {
			res.tats = append(res.tats, toInt(t)*1000)
		}
		return nil
	})
	return res, err
}

func toInt(v any) int64 {
	switch x := v.(type) {
	case int64:
		return x
	case string:
		n, _ := strconv.ParseInt(x, 10, 64)
		return n
	}
	return 0
}

// failKeys returns the Redis keys of the ip, user and user_ip records.
func (r *redisStore) failKeys(uid string, ip netip.Addr) [3]string {
	ips := ip.String()
	return [3]string{r.p + "f:ip:" + ips, r.p + "f:u:" + uid, r.p + "f:ui:" + uid + ":" + ips}
}

// placeKeys returns the Redis keys of the logins in flight of the ip,
// user and user_ip records.
func (r *redisStore) placeKeys(uid string, ip netip.Addr) [3]string {
	ips := ip.String()
	return [3]string{r.p + "p:ip:" + ips, r.p + "p:u:" + uid, r.p + "p:ui:" + uid + ":" + ips}
}

// reserve runs reserveScript for a login of user as member id, lapsing at
// exp: the records' views (n as Redis holds it), the outcome and the
// record (0-based) that locked or is full. extra are the failures this
// instance counted and Redis does not hold yet.
func (r *redisStore) reserve(now int64, uid, user string, ip netip.Addr, c *config, id string, exp int64, extra *[3]int32) (views [3]failView, outcome, record int, err error) {
	n := failRecords(user)
	fk, pk := r.failKeys(uid, ip), r.placeKeys(uid, ip)
	keys := append(fk[:n:n], pk[:n]...)
	all := "0"
	if c.o.UserLockoutAllIPs {
		all = "1"
	}
	args := []any{us(now), us(c.pol.window), id, us(exp), all}
	for i := range n {
		args = append(args, c.thr[i], extra[i])
	}
	err = r.call(func(ctx context.Context) error {
		v, err := reserveScript.Run(ctx, r.c, keys, args...).Slice()
		if err != nil {
			return err
		}
		if len(v) != 2+2*n {
			return fmt.Errorf("reserve script returned %d values", len(v))
		}
		outcome, record = int(toInt(v[0])), int(toInt(v[1]))-1
		for i := range n {
			views[i] = failView{n: int32(toInt(v[2+2*i])), until: toInt(v[3+2*i]) * 1000}
		}
		return nil
	})
	return views, outcome, record, err
}

// release takes login id out of the first n records' logins in flight.
func (r *redisStore) release(uid string, ip netip.Addr, n int, id string) error {
	pk := r.placeKeys(uid, ip)
	return r.call(func(ctx context.Context) error {
		_, err := r.c.TxPipelined(ctx, func(p redis.Pipeliner) error {
			for _, k := range pk[:n] {
				p.ZRem(ctx, k, id)
			}
			return nil
		})
		return err
	})
}

// fail records a failure against the login's records (failRecords), and
// takes its member id ("" for none) out of their logins in flight.
func (r *redisStore) fail(now int64, uid, user string, ip netip.Addr, thr [3]int32, p failPolicy, id string) ([3]failView, error) {
	var out [3]failView
	fk, pk := r.failKeys(uid, ip), r.placeKeys(uid, ip)
	n := failRecords(user)
	keys := append(append(fk[:n:n], pk[:n]...), r.p+"locks")
	lbl, ips := label(user), ip.String()
	args := []any{us(now), us(p.window), us(p.base), us(p.max), id}
	for i, k := range failKinds[:n] {
		u, a := lbl, ips
		switch k {
		case kindFailIP:
			u = ""
		case kindFailUser:
			a = ""
		}
		args = append(args, thr[i], k.keyName(), u, a)
	}
	err := r.call(func(ctx context.Context) error {
		v, err := failScript.Run(ctx, r.c, keys, args...).Slice()
		if err != nil {
			return err
		}
		if len(v) != 2*n {
			return fmt.Errorf("fail script returned %d values", len(v))
		}
		for i := range n {
			out[i] = failView{n: int32(toInt(v[2*i])), until: toInt(v[2*i+1]) * 1000}
		}
		return nil
	})
	return out, err
}

// succeeded forgets the user's failures from this IP, and takes the
// login's member id ("" for none) out of its n records' logins in flight.
func (r *redisStore) succeeded(uid string, ip netip.Addr, n int, id string) error {
	k := r.failKeys(uid, ip)[2]
	pk := r.placeKeys(uid, ip)
	return r.call(func(ctx context.Context) error {
		_, err := r.c.TxPipelined(ctx, func(p redis.Pipeliner) error {
			p.Del(ctx, k)
			p.ZRem(ctx, r.p+"locks", k)
			if id != "" {
				for _, k := range pk[:n] {
					p.ZRem(ctx, k, id)
				}
			}
			return nil
		})
		return err
	})
}

// lockouts lists the records locked at now.
func (r *redisStore) lockouts(ctx context.Context, now int64) ([]Lockout, error) {
	idx := r.p + "locks"
	var out []Lockout
	err := r.do(ctx, func(ctx context.Context) error {
		nowUS := strconv.FormatInt(us(now), 10)
		if err := r.c.ZRemRangeByScore(ctx, idx, "-inf", "("+nowUS).Err(); err != nil {
			return err
		}
		keys, err := r.c.ZRangeByScore(ctx, idx, &redis.ZRangeBy{Min: "(" + nowUS, Max: "+inf"}).Result()
		if err != nil {
			return err
		}
		cmds, err := r.c.Pipelined(ctx, func(p redis.Pipeliner) error {
			for _, k := range keys {
				p.HMGet(ctx, k, "n", "until", "kind", "user", "ip")
			}
			return nil
		})
		if err != nil && !errors.Is(err, redis.Nil) {
			return err
		}
		for i, c := range cmds {
			v, err := c.(*redis.SliceCmd).Result()
			if err != nil || len(v) != 5 || v[0] == nil {
				// Unlocked or expired since: drop it from the index.
				r.c.ZRem(ctx, idx, keys[i])
				continue
			}
			until := toInt(v[1]) * 1000
			if until <= now {
				continue
			}
			var ip netip.Addr
			if s, _ := v[4].(string); s != "" {
				ip, _ = netip.ParseAddr(s)
			}
			user, _ := v[3].(string)
			kindName, _ := v[2].(string)
			l := lockoutOf(kindFailIP, user, ip, int(toInt(v[0])), until, StoreRedis)
			l.Kind = kindName
			out = append(out, l)
		}
		return nil
	})
	sortLockouts(out)
	return out, err
}

// unlock deletes the failure records of a user (user, user_ip), of an IP
// (ip, user_ip) or of both (user_ip). Finding a user's or an IP's user_ip
// records takes a SCAN of the keyspace: admin calls are rare.
func (r *redisStore) unlock(ctx context.Context, user string, ip netip.Addr) (int, error) {
	var del []string
	var uid, ips string
	deleted := 0
	if user != "" {
		uid = userID(user)
		if id, ok := listedID(user); ok {
			uid = id // a cut name, as lockouts lists it
		}
	}
	if ip.IsValid() {
		ips = ip.String()
	}
	err := r.do(ctx, func(ctx context.Context) error {
		switch {
		case user != "" && ip.IsValid():
			del = append(del, r.failKeys(uid, ip)[2])
		case user != "":
			del = append(del, r.p+"f:u:"+uid)
			keys, err := r.scan(ctx, globEscape(r.p+"f:ui:"+uid+":")+"*")
			if err != nil {
				return err
			}
			del = append(del, keys...)
		case ip.IsValid():
			del = append(del, r.p+"f:ip:"+ips)
			keys, err := r.scan(ctx, globEscape(r.p+"f:ui:")+"*:"+globEscape(ips))
			if err != nil {
				return err
			}
			// "*:" could also match the tail of a longer IPv6 text: keep
			// only keys that are exactly P f:ui: <32 hex> : <ip>.
			for _, k := range keys {
				rest := strings.TrimPrefix(k, r.p+"f:ui:")
				if len(rest) == 33+len(ips) && rest[32] == ':' && rest[33:] == ips {
					del = append(del, k)
				}
			}
		}
		if len(del) == 0 {
			return nil
		}
		n, err := r.c.Del(ctx, del...).Result()
		if err != nil {
			return err
		}
		members := make([]any, len(del))
		for i, k := range del {
			members[i] = k
		}
		if err := r.c.ZRem(ctx, r.p+"locks", members...).Err(); err != nil {
			return err
		}
		deleted = int(n)
		return nil
	})
	return deleted, err
}

func (r *redisStore) scan(ctx context.Context, match string) ([]string, error) {
	cc, ok := r.c.(*redis.ClusterClient)
	if !ok {
		return scanNode(ctx, r.c, match)
	}
	// SCAN covers one node: ask every master.
	var mu sync.Mutex
	var out []string
	err := cc.ForEachMaster(ctx, func(ctx context.Context, n *redis.Client) error {
		keys, err := scanNode(ctx, n, match)
		mu.Lock()
		out = append(out, keys...)
		mu.Unlock()
		return err
	})
	return out, err
}

func scanNode(ctx context.Context, c redis.Cmdable, match string) ([]string, error) {
	var out []string
	var cursor uint64
	for {
		keys, next, err := c.Scan(ctx, cursor, match, 1000).Result()
		if err != nil {
			return nil, err
		}
		out = append(out, keys...)
		if cursor = next; cursor == 0 {
			return out, nil
		}
	}
}

func globEscape(s string) string {
	var b strings.Builder
	for _, c := range s {
		switch c {
		case '*', '?', '[', ']', '\\':
			b.WriteByte('\\')
		}
		b.WriteRune(c)
	}
	return b.String()
}

// go-redis has one process-wide logger, which otherwise prints to stderr
// (a dead Redis logs a dial failure per attempt). UseRedisLogger routes it
// to a zap logger for a while; its client goroutines (reconnects, Sentinel
// watches) may outlive the one who installed it, so the routing is scoped.
var redisLog struct {
	once sync.Once
	mu   sync.RWMutex
	log  *zap.Logger
}

type redisLogger struct{}

// Printf implements go-redis's internal.Logging.
func (redisLogger) Printf(_ context.Context, format string, v ...any) {
	redisLog.mu.RLock()
	defer redisLog.mu.RUnlock()
	if redisLog.log != nil {
		redisLog.log.Warn("redis client", zap.String("message", fmt.Sprintf(format, v...)))
	}
}

// UseRedisLogger sends go-redis's logs to log until restore is called;
// after restore returns, nothing more is written to log (a later
// UseRedisLogger's logger, if any, keeps receiving).
func UseRedisLogger(log *zap.Logger) (restore func()) {
	redisLog.once.Do(func() { redis.SetLogger(redisLogger{}) })
	redisLog.mu.Lock()
	redisLog.log = log
	redisLog.mu.Unlock()
	return func() {
		redisLog.mu.Lock()
		if redisLog.log == log {
			redisLog.log = nil
		}
		redisLog.mu.Unlock()
	}
}
