package ratelimit

import (
	"context"
	"net/netip"
	"time"

	"github.com/redis/go-redis/v9"
	"go.uber.org/zap"
)

// Lockouts that outlive Redis. Each instance mirrors the failure records
// it learns from Redis (at each login check, at each failure it records,
// and every LockoutSyncInterval the whole lockout index) into its
// in-process store, and keeps enforcing them while Redis is down. The
// failures it counts during an outage are marked dirty and written back
// (the larger count and lockout of both sides) when Redis answers again.

// mergeScript writes back records counted during an outage. KEYS: failure
// hashes, then the lock index. ARGV: now, window (µs), then per hash: n,
// last, until (µs), kind, user, ip. Counts and times merge by maximum, so
// a write-back never shortens a lockout another instance made.
var mergeScript = redis.NewScript(`
local now, win = tonumber(ARGV[1]), tonumber(ARGV[2])
local idx = KEYS[#KEYS]
for i = 1, #KEYS - 1 do
  local k = KEYS[i]
  local a = 2 + (i - 1) * 6
  local n, last, untl = tonumber(ARGV[a + 1]), tonumber(ARGV[a + 2]), tonumber(ARGV[a + 3])
  local v = redis.call("HMGET", k, "n", "last", "until")
  local rn, rlast, runtl = tonumber(v[1]) or 0, tonumber(v[2]) or 0, tonumber(v[3]) or 0
  if math.max(rlast, runtl) + win > now then
    n, last, untl = math.max(n, rn), math.max(last, rlast), math.max(untl, runtl)
  end
  redis.call("HSET", k, "n", n, "last", string.format("%.0f", last), "until", string.format("%.0f", untl),
    "kind", ARGV[a + 4], "user", ARGV[a + 5], "ip", ARGV[a + 6])
  if untl > now then redis.call("ZADD", idx, string.format("%.0f", untl), k) end
  redis.call("PEXPIRE", k, math.ceil((math.max(last, untl) + win - now) / 1000) + 1000)
end
return #KEYS - 1
`)

// redisKey is the Redis key of a local failure record.
func (r *redisStore) redisKey(e *failEntry) string {
	switch e.kind {
	case kindFailIP:
		return r.p + "f:ip:" + e.ip.String()
	case kindFailUser:
		return r.p + "f:u:" + userID(e.user)
	}
	return r.p + "f:ui:" + userID(e.user) + ":" + e.ip.String()
}

// merge writes records back, a batch per call.
func (r *redisStore) merge(now, window int64, es []failEntry) error {
	keys := make([]string, 0, len(es)+1)
	args := make([]any, 0, 2+6*len(es))
	args = append(args, us(now), us(window))
	for i := range es {
		e := &es[i]
		keys = append(keys, r.redisKey(e))
		var ips string
		if e.ip.IsValid() {
			ips = e.ip.String()
		}
		args = append(args, e.n, us(e.last), us(e.until), e.kind.keyName(), e.user, ips)
	}
	keys = append(keys, r.p+"locks")
	return r.call(func(ctx context.Context) error {
		return mergeScript.Run(ctx, r.c, keys, args...).Err()
	})
}

// failKeyOf is the local key of a failure record named by kind, user and
// IP, as failKeys computes them.
func (l *Limiter) failKeyOf(k kind, user string, ip netip.Addr) failKey {
	fk := failKey{kind: k, user: user, ip: ip}
	switch k {
	case kindFailIP:
		fk.user = ""
	case kindFailUser:
		fk.ip = netip.Addr{}
	}
	fk.key = l.local.h.sum(k, fk.user, fk.ip)
	if fk.user != "" {
		fk.uh = l.local.h.sum(kindFailUser, fk.user, netip.Addr{})
	}
	return fk
}

// mirrorViews keeps Redis's answer for the records of a login
// (failRecords).
func (l *Limiter) mirrorViews(c *config, user string, ip netip.Addr, v *[3]failView, now int64) {
	for i, k := range failKinds[:failRecords(user)] {
		l.local.mirror(l.failKeyOf(k, user, ip), v[i], now, c.pol)
	}
}

// syncLockouts mirrors Redis's lockout index, forgetting mirrored lockouts
// Redis no longer has (an operator unlocked them elsewhere).
func (l *Limiter) syncLockouts() {
	if !l.remoteUp() {
		return
	}
	c := l.cfg.Load()
	ctx, cancel := context.WithTimeout(context.Background(), adminTimeout)
	defer cancel()
	now := l.nowNs()
	ls, err := l.remote.lockouts(ctx, now)
	if err != nil {
		return
	}
	live := make(map[uint64]bool, len(ls))
	for _, x := range ls {
		k, ok := kindOfName(x.Kind)
		if !ok {
			continue
		}
		ip, _ := netip.ParseAddr(x.IP)
		fk := l.failKeyOf(k, x.User, ip)
		live[fk.key] = true
		l.local.mirror(fk, failView{n: int32(x.Failures), until: x.Until.UnixNano()}, now, c.pol)
	}
	l.local.dropStaleMirrors(live, l.nowNs())
}

func kindOfName(name string) (kind, bool) {
	switch name {
	case keyIP:
		return kindFailIP, true
	case keyUser:
		return kindFailUser, true
	case keyUserIP:
		return kindFailUserIP, true
	}
	return 0, false
}

// writeBack gives back the places of logins that ended during an outage,
// writes the failures counted meanwhile, and the mirrored lockouts in
// force, to Redis, then takes Redis's lockouts in.
// Called when Redis answers again.
func (l *Limiter) writeBack() {
	l.releaseKept()
	c := l.cfg.Load()
	now := l.nowNs()
	keys, es := l.local.pendingFails(now)
	const batch = 100
	for i := 0; i < len(es); i += batch {
		j := min(i+batch, len(es))
		if err := l.remote.merge(now, c.pol.window, es[i:j]); err != nil {
			l.log.Warn("rate limit store: write-back of lockouts made during the outage failed; retried when it answers again", zap.Error(err))
			return
		}
		for n := i; n < j; n++ {
			l.local.written(keys[n], es[n])
		}
	}
	if len(es) > 0 {
		l.log.Info("rate limit store: lockouts and failures kept during the outage written back", zap.Int("records", len(es)))
	}
	l.syncLockouts()
}

// runSync mirrors Redis's lockouts every interval until stop.
func (l *Limiter) runSync(every time.Duration, stop <-chan struct{}) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		l.syncLockouts()
		select {
		case <-stop:
			return
		case <-t.C:
		}
	}
}
