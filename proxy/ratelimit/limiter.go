package ratelimit

import (
	"context"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"

	"github.com/imapwarden/imapwarden/proxy"
	"github.com/imapwarden/imapwarden/proxy/imapwire"
)

// Limit names (LimitResult.Limit): the same words as the Options keys.
const (
	LimitConnectionsPerIP       = "connections_per_ip"
	LimitConnectionsPerSubnet   = "connections_per_subnet"
	LimitConcurrentPerIP        = "concurrent_connections_per_ip"
	LimitUnauthenticatedPerIP   = "unauthenticated_connections_per_ip"
	LimitUnauthenticatedPerNet  = "unauthenticated_connections_per_subnet"
	LimitSessionsPerUser        = "sessions_per_user"
	LimitLoginFailuresPerIP     = "login_failures_per_ip"
	LimitLoginFailuresPerUser   = "login_failures_per_user"
	LimitLoginFailuresPerUserIP = "login_failures_per_user_ip"
	LimitCommandsPerSession     = "commands_per_session"
	LimitCommandsPerUser        = "commands_per_user"
	LimitFetchBytesPerUser      = "fetch_bytes_per_user"
	LimitFetchMessagesPerUser   = "fetch_messages_per_user"
	LimitAppendBytesPerUser     = "append_bytes_per_user"
	// LimitStoreUnavailable: Redis is down and the failure mode is closed.
	LimitStoreUnavailable = "store_unavailable"
)

// Hits are the (limit, key) pairs a Limiter reports in LimitResult, so
// that metrics can show each series before its first hit.
var Hits = [][2]string{
	{LimitConnectionsPerIP, keyIP}, {LimitConnectionsPerSubnet, keySubnet}, {LimitConcurrentPerIP, keyIP},
	{LimitUnauthenticatedPerIP, keyIP}, {LimitUnauthenticatedPerNet, keySubnet}, {LimitSessionsPerUser, keyUser},
	{LimitLoginFailuresPerIP, keyIP}, {LimitLoginFailuresPerUser, keyUser}, {LimitLoginFailuresPerUserIP, keyUserIP},
	{LimitCommandsPerSession, keySession}, {LimitCommandsPerUser, keyUser},
	{LimitFetchBytesPerUser, keyUser}, {LimitFetchMessagesPerUser, keyUser}, {LimitAppendBytesPerUser, keyUser},
	{LimitStoreUnavailable, keyStore},
}

// RFC 5530 response codes and the texts that go with them.
const (
	codeLimit         = "LIMIT"
	codeAuthFailed    = "AUTHENTICATIONFAILED"
	codeUnavailable   = "UNAVAILABLE"
	reasonConnections = "Too many connections, try again later"
	reasonSessions    = "Too many sessions for this user"
	reasonCommands    = "Too many commands, slow down"
	reasonFetch       = "Download limit reached, try again later"
	reasonAppend      = "Upload limit reached, try again later"
	reasonStore       = "Service temporarily unavailable, try again later"
	reasonLoginBusy   = "Authentication temporarily unavailable"
)

// failLimits names the failure limits in failKinds order.
var failLimits = [3]string{LimitLoginFailuresPerIP, LimitLoginFailuresPerUser, LimitLoginFailuresPerUserIP}

// Limiter enforces the limits of Options; it implements proxy.Limiter.
// One Limiter serves all the listeners of a process for its whole life:
// Update changes its limits on reload without losing counters, lockouts
// or the accounting of open connections.
type Limiter struct {
	cfg    atomic.Pointer[config]
	local  *memStore
	remote *redisStore // nil without Redis
	places *places     // logins in flight, and their waiters
	now    func() time.Time
	log    *zap.Logger
	// With Redis: sessions whose deliveries flushLoop sends to it.
	flushCh   chan *sessState
	stop      chan struct{}
	flushDone chan struct{}
}

// config is Options prepared for the hot paths.
type config struct {
	o               Options
	connIP, connNet gcra
	pol             failPolicy
	thr             [3]int32 // failKinds order; 0: no lockout
	base            userLimits
	cmdMaxDelay     int64
	fetchMaxDelay   int64
	closed          bool // RedisFailureMode closed
	hosts           Hosts
}

// userLimits are the per-user limits of one session, group overrides
// applied (resolved once, at login).
type userLimits struct {
	maxSessions int
	cmdSession  gcra
	cmdUser     gcra
	fetchBytes  gcra
	fetchMsgs   gcra
	fetchAction Action
	appendBytes gcra
}

// connState is what the Limiter keeps per open connection.
type connState struct {
	ip        netip.Addr // the host: unmapped, masked (hostOf); invalid when unknown
	ipKey     uint64     // concurrent connections of the IP
	unauthKey uint64     // concurrent unauthenticated connections of the IP
	unauthNet uint64     // and of its subnet
	counted   bool       // Connect counted it: release uncounts it
	released  atomic.Bool
	unauth    atomic.Bool
	// Failure counts seen at this connection's last login check or
	// failure, for Snapshot (policy input).
	fails [3]atomic.Int32
	sess  atomic.Pointer[sessState]
	// place is the connection's login in flight, if any.
	place loginPlace
}

// sessState is what the Limiter keeps per logged-in session.
type sessState struct {
	lim     userLimits
	sessKey uint64 // concurrent sessions of the user
	// Local bucket keys of the user.
	cmdUserKey, fetchBytesKey, fetchMsgsKey, appendKey uint64
	// Redis keys of the user's shared buckets ("" without Redis).
	rFetchBytes, rFetchMsgs, rAppend string
	cmdTAT                           atomic.Int64 // commands of this session
	// Delivered content not yet charged in Redis, and whether the session
	// waits in flushCh.
	pendBytes, pendMsgs atomic.Int64
	queued              atomic.Bool
	// flushed marks flushWait's sentinel in flushCh.
	flushed chan struct{}
}

// New returns a Limiter. Close it to stop its Redis prober.
func New(o Options) (*Limiter, error) {
	c, err := newConfig(o)
	if err != nil {
		return nil, err
	}
	l := &Limiter{local: newMemStore(c.o.MaxTrackedKeys), places: newPlaces(), now: c.o.Now, log: c.o.Logger}
	l.cfg.Store(c)
	if c.o.Redis != nil {
		l.remote = newRedisStore(&c.o)
		l.remote.onRecover = l.writeBack
		l.remote.wg.Add(1)
		go func() {
			defer l.remote.wg.Done()
			l.runSync(c.o.LockoutSyncInterval, l.remote.stop)
		}()
		l.flushCh, l.stop, l.flushDone = make(chan *sessState, 1024), make(chan struct{}), make(chan struct{})
		go l.flushLoop()
	}
	return l, nil
}

func newConfig(o Options) (*config, error) {
	o, err := o.withDefaults()
	if err != nil {
		return nil, err
	}
	hosts, err := NewHosts(o.IPBitsV4, o.IPBitsV6, o.IPv4Translators)
	if err != nil {
		return nil, err
	}
	thr := func(n int) int32 { return int32(min(max(n, 0), 1<<30)) }
	c := &config{
		hosts:  hosts,
		o:      o,
		connIP: newGCRA(o.ConnectionsPerIP), connNet: newGCRA(o.ConnectionsPerSubnet),
		pol: failPolicy{window: int64(o.LoginFailureWindow), base: int64(o.LockoutBase), max: int64(o.LockoutMax)},
		thr: [3]int32{thr(o.LoginFailuresPerIP), thr(o.LoginFailuresPerUser), thr(o.LoginFailuresPerUserIP)},
		base: userLimits{
			maxSessions: max(o.MaxSessionsPerUser, 0),
			cmdSession:  newGCRA(o.CommandsPerSession), cmdUser: newGCRA(o.CommandsPerUser),
			fetchBytes: newGCRA(o.FetchBytesPerUser), fetchMsgs: newGCRA(o.FetchMessagesPerUser),
			fetchAction: o.FetchAction, appendBytes: newGCRA(o.AppendBytesPerUser),
		},
		cmdMaxDelay:   int64(max(o.CommandMaxDelay, 0)),
		fetchMaxDelay: int64(max(o.FetchMaxDelay, 0)),
		closed:        o.RedisFailureMode == FailClosed,
	}
	return c, nil
}

// Update makes new limits current. Open sessions keep the per-user limits
// resolved at their login; the store settings (MaxTrackedKeys, Redis and
// its callbacks, Now, Logger) are those given to New.
func (l *Limiter) Update(o Options) error {
	old := l.cfg.Load().o
	o.MaxTrackedKeys, o.Now, o.Logger = old.MaxTrackedKeys, old.Now, old.Logger
	o.Redis, o.RedisPrefix, o.RedisTimeout, o.RedisProbeInterval = old.Redis, old.RedisPrefix, old.RedisTimeout, old.RedisProbeInterval
	o.LockoutSyncInterval, o.RedisLoginPlaceTTL = old.LockoutSyncInterval, old.RedisLoginPlaceTTL
	o.OnStoreError, o.OnStoreState, o.OnLoginWait = old.OnStoreError, old.OnStoreState, old.OnLoginWait
	c, err := newConfig(o)
	if err != nil {
		return err
	}
	l.cfg.Store(c)
	return nil
}

// Close stops the background work (the Redis prober). The Redis client
// belongs to the caller and stays open.
func (l *Limiter) Close() error {
	if l.remote != nil {
		close(l.stop)
		<-l.flushDone
		l.remote.close()
	}
	return nil
}

// StoreUp reports whether the shared store answers (always true without
// Redis): a gauge for the lead's metrics.
func (l *Limiter) StoreUp() bool { return l.remote == nil || l.remote.up() }

// Stats are counters for metrics.
type Stats struct {
	TrackedKeys int    // in-process entries counted against MaxTrackedKeys
	Evicted     uint64 // entries dropped to stay within MaxTrackedKeys
	StoreUp     bool
	StoreErrors uint64 // failed Redis calls
	// Lockouts counts the lockouts in force in this process by key
	// (ip, user, user_ip); each key is present, 0 when none.
	Lockouts map[string]int
	// LoginsWaiting: logins of this process waiting for a place among
	// the logins in flight now; LoginWaits: those that waited, ever.
	LoginsWaiting int64
	LoginWaits    uint64
}

// Stats returns the current counters; it takes every shard's lock, so call
// it at scrape time, not per request.
func (l *Limiter) Stats() Stats {
	s := Stats{TrackedKeys: l.local.tracked(), Evicted: l.local.evicted(), StoreUp: l.StoreUp(),
		Lockouts:      map[string]int{keyIP: 0, keyUser: 0, keyUserIP: 0},
		LoginsWaiting: l.places.waiting.Load(), LoginWaits: l.places.waits.Load()}
	for _, lo := range l.local.lockouts(l.nowNs()) {
		s.Lockouts[lo.Kind]++
	}
	if l.remote != nil {
		s.StoreErrors = l.remote.errors.Load()
	}
	return s
}

func (l *Limiter) nowNs() int64 { return l.now().UnixNano() }

func exceeded(limit, key, code, reason string) proxy.LimitResult {
	return proxy.LimitResult{Exceeded: true, Limit: limit, Key: key, Code: code, Reason: reason}
}

var storeUnavailable = exceeded(LimitStoreUnavailable, keyStore, codeUnavailable, reasonStore)

// hostOf is the address every "ip" key counts (Hosts.Of).
func (c *config) hostOf(ap netip.AddrPort) netip.Addr { return c.hosts.Of(ap) }

// ownHost reports whether hostOf(ap) stands for ap's address alone
// (Hosts.Whole): otherwise an "ip" key counts other addresses too (a
// host's /64), whose failures are not this address's doing.
func (c *config) ownHost(ap netip.AddrPort) bool { return c.hosts.Whole(ap) }

// ownLockout reports whether a refusal by limit is for what the client's
// address did itself (LimitResult.Own): an ip or user_ip lockout whose
// key is that address alone (ownHost), or a user's lockout when the
// address's own failures (its pair's, st.fails as the login saw them) are
// most of the user's, not when it failed once among an attacker's
// guesses.
func (c *config) ownLockout(s *proxy.SessionInfo, st *connState, limit string) bool {
	if !c.ownHost(s.ClientAddr) {
		return false
	}
	switch limit {
	case LimitLoginFailuresPerIP, LimitLoginFailuresPerUserIP:
		return true
	case LimitLoginFailuresPerUser:
		return 2*st.fails[2].Load() > st.fails[1].Load()
	}
	return false
}

// remoteUp reports whether to ask Redis.
func (l *Limiter) remoteUp() bool { return l.remote != nil && l.remote.up() }

// Connect counts a new connection: its IP's and subnet's connection rates
// (shared through Redis when there is one), then its IP's open and
// unauthenticated connections and its subnet's unauthenticated ones
// (in-process: an instance only knows its own sockets). The subnet's cap
// keeps one subnet's hosts, each under its own cap, from holding every
// connection the server lets wait for a login (max_preauth_connections).
func (l *Limiter) Connect(s *proxy.SessionInfo) (proxy.LimitResult, proxy.LimitConn) {
	c := l.cfg.Load()
	st := &connState{ip: c.hostOf(s.ClientAddr)}
	st.place.l, st.place.s, st.place.st = l, s, st
	if st.ip.IsValid() {
		if res := l.connRate(c, st.ip); res.Exceeded {
			return res, nil
		}
		h := l.local.h
		st.ipKey = h.sum(kindConnIP, "", st.ip)
		if !l.local.inc(st.ipKey, c.o.MaxConnectionsPerIP) {
			return exceeded(LimitConcurrentPerIP, keyIP, codeLimit, reasonConnections), nil
		}
		st.unauthKey = h.sum(kindUnauthIP, "", st.ip)
		if !l.local.inc(st.unauthKey, c.o.MaxUnauthenticatedPerIP) {
			l.local.dec(st.ipKey)
			return exceeded(LimitUnauthenticatedPerIP, keyIP, codeLimit, reasonConnections), nil
		}
		st.unauthNet = h.sum(kindUnauthSubnet, "", subnetOf(st.ip, c.o.SubnetBitsV4, c.o.SubnetBitsV6))
		if !l.local.inc(st.unauthNet, c.o.MaxUnauthenticatedPerSubnet) {
			l.local.dec(st.unauthKey)
			l.local.dec(st.ipKey)
			return exceeded(LimitUnauthenticatedPerNet, keySubnet, codeLimit, reasonConnections), nil
		}
		st.counted = true
		st.unauth.Store(true)
	}
	return proxy.LimitResult{}, &Conn{l: l, st: st, s: s}
}

func (l *Limiter) release(st *connState) {
	st.place.Release()
	if !st.released.CompareAndSwap(false, true) {
		return // released already
	}
	if !st.counted {
		return
	}
	l.local.dec(st.ipKey)
	l.leaveUnauth(st)
}

// leaveUnauth ends a counted connection's unauthenticated counts, once:
// at its login or its release.
func (l *Limiter) leaveUnauth(st *connState) {
	if st.unauth.CompareAndSwap(true, false) {
		l.local.dec(st.unauthKey)
		l.local.dec(st.unauthNet)
	}
}

func (l *Limiter) connRate(c *config, ip netip.Addr) proxy.LimitResult {
	if !c.connIP.on && !c.connNet.on {
		return proxy.LimitResult{}
	}
	now := l.nowNs()
	subnet := subnetOf(ip, c.o.SubnetBitsV4, c.o.SubnetBitsV6)
	refuse := func(i int) proxy.LimitResult {
		if i == 0 {
			return exceeded(LimitConnectionsPerIP, keyIP, codeLimit, reasonConnections)
		}
		return exceeded(LimitConnectionsPerSubnet, keySubnet, codeLimit, reasonConnections)
	}
	if l.remoteUp() {
		var bs []bucketArg
		var which []int
		if c.connIP.on {
			bs, which = append(bs, bucketArg{key: "r:ip:" + ip.String(), g: c.connIP, n: 1}), append(which, 0)
		}
		if c.connNet.on {
			bs, which = append(bs, bucketArg{key: "r:net:" + subnet.String(), g: c.connNet, n: 1}), append(which, 1)
		}
		res, err := l.remote.rate(now, bs...)
		if err == nil {
			if !res.ok {
				return refuse(which[res.refuse])
			}
			return proxy.LimitResult{}
		}
		// Either failure mode: count locally. Refusing every connection
		// while Redis is down would cut off clients that could log in.
	}
	h := l.local.h
	var ipKey uint64
	if c.connIP.on {
		ipKey = h.sum(kindConnRateIP, "", ip)
		if _, _, ok := l.local.take(kindConnRateIP, ipKey, c.connIP, now, 1, 0, false); !ok {
			return refuse(0)
		}
	}
	if c.connNet.on {
		netKey := h.sum(kindConnRateSubnet, "", subnet)
		if _, _, ok := l.local.take(kindConnRateSubnet, netKey, c.connNet, now, 1, 0, false); !ok {
			if c.connIP.on {
				l.local.refund(kindConnRateIP, ipKey, c.connIP, now, 1)
			}
			return refuse(1)
		}
	}
	return proxy.LimitResult{}
}

// failRecords is how many of the ip, user and user_ip records (failKinds
// order) a login of user counts against: a login that names no user (a
// bearer token without one, whose subject is not verified before the
// lockout is asked) only its IP's. One record for every such login would
// let a flood of bad tokens lock out every token user (with
// UserLockoutAllIPs), and a record by the token's claimed subject would
// be a fresh counter for each attempt (ARCHITECTURE.md §17).
func failRecords(user string) int {
	if user == "" {
		return 1
	}
	return len(failKinds)
}

// failKeys returns the local keys of the ip, user and user_ip records.
func (l *Limiter) failKeys(user string, ip netip.Addr) [3]uint64 {
	hu, hip := l.local.h.user(user), l.local.h.ip(ip)
	return [3]uint64{mix(kindFailIP, 0, hip), mix(kindFailUser, hu, 0), mix(kindFailUserIP, hu, hip)}
}

func (l *Limiter) lockResult(c *config, v *[3]failView, now int64) proxy.LimitResult {
	i := -1
	switch {
	case v[0].until > now:
		i = 0
	case v[2].until > now:
		i = 2
	// A user's lockout reaches only IPs that failed for that user, unless
	// configured otherwise: the owner logging in from elsewhere gets in.
	case v[1].until > now && (c.o.UserLockoutAllIPs || v[2].n > 0):
		i = 1
	}
	if i < 0 {
		return proxy.LimitResult{}
	}
	return lockout(c, i)
}

// lockout is the answer of record i's lockout.
func lockout(c *config, i int) proxy.LimitResult {
	return proxy.LimitResult{Exceeded: true, Delay: max(c.o.LoginFailureDelay, 0), Limit: failLimits[i],
		Key: failKinds[i].keyName(), Code: codeAuthFailed, Reason: c.o.LockoutReason}
}

// loginResult records a credential check. A failure counts against the
// IP, the user and the pair (only the IP when no user is named,
// failRecords), and returns the delay before the answer: the same for
// every failure, so it tells nothing about the user. The login's place
// (h, nil for none) becomes the failure in the same step, or is given
// back on a success.
func (l *Limiter) loginResult(s *proxy.SessionInfo, st *connState, user string, ok bool, h *heldPlace) time.Duration {
	c := l.cfg.Load()
	ip := c.hostOf(s.ClientAddr)
	var id string
	if h != nil {
		ip, id = h.ip, h.id
	}
	now := l.nowNs()
	keys := l.failKeys(user, ip)
	n := failRecords(user)
	if ok {
		if n == len(failKinds) {
			// The pair's failures were typos; the IP's and the user's
			// stand, as they may come from an attack still going on.
			l.local.failReset(keys[2])
			st.fails[2].Store(0)
			done := l.remoteUp() && l.remote.succeeded(userID(user), ip, n, id) == nil
			l.releaseRemote(remotePlace{userID(user), ip, n, id}, done)
		} else if id != "" {
			l.releaseRemote(remotePlace{userID(user), ip, n, id}, l.remoteUp() && l.remote.release(userID(user), ip, n, id) == nil)
		}
		if h != nil {
			l.places.mu.Lock()
			l.places.give(keys[:n])
			l.places.mu.Unlock()
		}
		return 0
	}
	var v [3]failView
	recorded := false
	if l.remoteUp() {
		rv, err := l.remote.fail(now, userID(user), user, ip, c.thr, c.pol, id)
		if err == nil {
			v, recorded = rv, true
			l.mirrorViews(c, user, ip, &rv, now)
		}
	}
	if !recorded {
		// The failure is written back when Redis answers; its place
		// is given back then too.
		l.releaseRemote(remotePlace{userID(user), ip, n, id}, false)
	}
	if h != nil || !recorded {
		l.places.mu.Lock()
		if !recorded {
			uh := keys[1] // matched by Unlock
			for i, k := range failKinds[:n] {
				// With Redis configured but down, the record is written
				// back when it answers again (a place left in Redis lapses).
				fk := failKey{key: keys[i], kind: k, thr: c.thr[i], uh: uh, ip: ip, user: user, dirty: l.remote != nil}
				switch k {
				case kindFailIP:
					fk.user, fk.uh = "", 0
				case kindFailUser:
					fk.ip = netip.Addr{}
				}
				v[i] = l.local.fail(fk, now, c.pol)
			}
		}
		if h != nil {
			l.places.give(keys[:n])
		}
		l.places.mu.Unlock()
	}
	for i := range v {
		st.fails[i].Store(v[i].n)
	}
	return max(c.o.LoginFailureDelay, 0)
}

// resolve applies the user's group overrides: the groups Options.Groups
// names first, then the directory's (proxy.Identity.Groups).
func (c *config) resolve(user string, id *proxy.Identity) userLimits {
	u := c.base
	if len(c.o.GroupLimits) == 0 {
		return u
	}
	var groups []string
	if c.o.Groups != nil {
		// By the one name of the login, as the keys (ARCHITECTURE.md §17).
		groups = c.o.Groups(proxy.FoldUser(user))
	}
	if id != nil && len(id.Groups) > 0 {
		groups = append(slices.Clip(groups), id.Groups...)
	}
	set := map[string]bool{}
	over := func(name string, g *gcra, r Rate) {
		if r.zero() || set[name] {
			return
		}
		set[name] = true
		*g = newGCRA(r)
	}
	for _, name := range groups {
		gl, ok := c.o.GroupLimits[name]
		if !ok {
			continue
		}
		if gl.MaxSessionsPerUser != 0 && !set["sessions"] {
			set["sessions"] = true
			u.maxSessions = max(gl.MaxSessionsPerUser, 0)
		}
		over("cmdSession", &u.cmdSession, gl.CommandsPerSession)
		over("cmdUser", &u.cmdUser, gl.CommandsPerUser)
		over("fetchBytes", &u.fetchBytes, gl.FetchBytesPerUser)
		over("fetchMsgs", &u.fetchMsgs, gl.FetchMessagesPerUser)
		over("append", &u.appendBytes, gl.AppendBytesPerUser)
		if gl.FetchAction != "" && !set["action"] {
			set["action"] = true
			u.fetchAction = gl.FetchAction
		}
	}
	return u
}

// Session counts a logged-in session against its user's concurrent
// sessions and marks the connection authenticated.
func (l *Limiter) session(s *proxy.SessionInfo, st *connState) (proxy.LimitResult, func()) {
	c := l.cfg.Load()
	user := s.User
	hu := l.local.h.user(user)
	ss := &sessState{
		lim:           c.resolve(user, s.Identity),
		sessKey:       mix(kindSessUser, hu, 0),
		cmdUserKey:    mix(kindCmdUser, hu, 0),
		fetchBytesKey: mix(kindFetchBytes, hu, 0),
		fetchMsgsKey:  mix(kindFetchMsgs, hu, 0),
		appendKey:     mix(kindAppend, hu, 0),
	}
	if l.remote != nil {
		uid := userID(user)
		ss.rFetchBytes, ss.rFetchMsgs, ss.rAppend = "r:fb:"+uid, "r:fm:"+uid, "r:ab:"+uid
	}
	if !l.local.inc(ss.sessKey, ss.lim.maxSessions) {
		return exceeded(LimitSessionsPerUser, keyUser, codeLimit, reasonSessions), nil
	}
	st.sess.Store(ss)
	if st.counted {
		l.leaveUnauth(st)
	}
	var once sync.Once
	return proxy.LimitResult{}, func() {
		once.Do(func() { l.endSession(st, ss) })
	}
}

func (l *Limiter) endSession(st *connState, ss *sessState) {
	st.sess.CompareAndSwap(ss, nil)
	l.local.dec(ss.sessKey)
}

// takeAtomic charges a bucket held in one atomic (a session's own).
func takeAtomic(a *atomic.Int64, g gcra, now, n, maxDelay int64) (wait int64, ok bool) {
	for {
		old := a.Load()
		tat, w, ok := g.take(old, now, n, maxDelay, false)
		if !ok {
			return w, false
		}
		if a.CompareAndSwap(old, tat) {
			return w, true
		}
	}
}

// Command checks one command after login: the session's and the user's
// command rates (a short wait, then refusal), the fetch caps before a
// FETCH of message content, and the append budget. It is on every
// command's path: in-process state only (the fetch caps are mirrored from
// Redis by Fetched) and no allocation, except for an APPEND with Redis.
func (l *Limiter) command(st *connState, cmd *imapwire.Command) proxy.LimitResult {
	ss := st.sess.Load()
	if ss == nil {
		return proxy.LimitResult{}
	}
	c := l.cfg.Load()
	lim := &ss.lim
	now := l.nowNs()
	var res proxy.LimitResult
	if lim.cmdSession.on {
		w, ok := takeAtomic(&ss.cmdTAT, lim.cmdSession, now, 1, c.cmdMaxDelay)
		if !ok {
			return exceeded(LimitCommandsPerSession, keySession, codeLimit, reasonCommands)
		}
		res.Delay = time.Duration(w)
	}
	if lim.cmdUser.on {
		w, _, ok := l.local.take(kindCmdUser, ss.cmdUserKey, lim.cmdUser, now, 1, c.cmdMaxDelay, false)
		if !ok {
			return exceeded(LimitCommandsPerUser, keyUser, codeLimit, reasonCommands)
		}
		res.Delay = max(res.Delay, time.Duration(w))
	}
	switch cmd.Name {
	case "FETCH":
		if lim.fetchAction == ActionAlert || !(lim.fetchBytes.on || lim.fetchMsgs.on) || !cmd.ContentItems {
			break
		}
		var over int64
		name := ""
		if lim.fetchBytes.on {
			if o := lim.fetchBytes.over(l.local.peek(kindFetchBytes, ss.fetchBytesKey), now); o > 0 {
				over, name = o, LimitFetchBytesPerUser
			}
		}
		if lim.fetchMsgs.on {
			if o := lim.fetchMsgs.over(l.local.peek(kindFetchMsgs, ss.fetchMsgsKey), now); o > over {
				over, name = o, LimitFetchMessagesPerUser
			}
		}
		switch {
		case over <= 0:
		case lim.fetchAction == ActionDeny:
			return exceeded(name, keyUser, codeLimit, reasonFetch)
		default:
			// Delay: audited (Alert), since it is a cap taking effect.
			res.Delay = max(res.Delay, time.Duration(min(over, c.fetchMaxDelay)))
			res.Alert, res.Limit, res.Key, res.Reason = true, name, keyUser, reasonFetch
		}
	}
	// A message's decision point is its literal (before "+", RFC 9051
	// §4.3): each message of a MULTIAPPEND and each CATENATE TEXT part is
	// charged once, at its own.
	if n := cmd.PendingLiteral; n > 0 && lim.appendBytes.on && cmd.Effects.Has(imapwire.EffCreateMessages) {
		if r := l.chargeAppend(c, ss, now, n); r.Exceeded {
			return r
		}
	}
	return res
}

func (l *Limiter) chargeAppend(c *config, ss *sessState, now, n int64) proxy.LimitResult {
	g := ss.lim.appendBytes
	refuse := exceeded(LimitAppendBytesPerUser, keyUser, codeLimit, reasonAppend)
	if l.remote != nil {
		res, err := l.remote.rate(now, bucketArg{key: ss.rAppend, g: g, n: n})
		switch {
		case err == nil && !res.ok:
			return refuse
		case err == nil:
			l.local.raise(kindAppend, ss.appendKey, res.tats[0], now)
			return proxy.LimitResult{}
		case c.closed:
			return storeUnavailable
		}
	}
	if _, _, ok := l.local.take(kindAppend, ss.appendKey, g, now, n, 0, false); !ok {
		return refuse
	}
	return proxy.LimitResult{}
}

// Delivered charges message content as it goes to the client, in
// whatever response it comes (FETCH, IDLE and NOOP pushes, NOTIFY), before
// it is sent (ARCHITECTURE.md §12: caps count what is delivered). With fetch_action
// deny, content that would take a budget over is refused, uncharged, and
// the proxy ends the session before it goes; delay and alert charge it
// and wait or alert. The local buckets decide at once; with Redis the
// charge reaches the shared buckets through the background flush
// (flushLoop), so the backend pump never waits on the network, and the
// local buckets mirror what Redis answers.
func (l *Limiter) delivered(st *connState, octets int64, messages int) proxy.LimitResult {
	ss := st.sess.Load()
	if ss == nil {
		return proxy.LimitResult{}
	}
	lim := &ss.lim
	if !lim.fetchBytes.on && !lim.fetchMsgs.on {
		return proxy.LimitResult{}
	}
	c := l.cfg.Load()
	now := l.nowNs()
	charges := [2]struct {
		on    bool
		g     gcra
		kind  kind
		key   uint64
		n     int64
		limit string
	}{
		{lim.fetchBytes.on && octets > 0, lim.fetchBytes, kindFetchBytes, ss.fetchBytesKey, octets, LimitFetchBytesPerUser},
		{lim.fetchMsgs.on && messages > 0, lim.fetchMsgs, kindFetchMsgs, ss.fetchMsgsKey, int64(messages), LimitFetchMessagesPerUser},
	}
	var res proxy.LimitResult
	for _, ch := range charges {
		if !ch.on {
			continue
		}
		deny := lim.fetchAction == ActionDeny
		wait, tat, ok := l.local.take(ch.kind, ch.key, ch.g, now, ch.n, 0, !deny)
		if !ok {
			return exceeded(ch.limit, keyUser, codeLimit, reasonFetch)
		}
		if wait > 0 || ch.g.over(tat, now) > 0 {
			// Over the budget (delay or alert): audited once per charge
			// that crossed it, delayed up to fetch_max_delay.
			before := tat - ch.g.cost(ch.n)
			if ch.g.over(before, now) <= 0 && !res.Alert {
				res = proxy.LimitResult{Alert: true, Limit: ch.limit, Key: keyUser, Code: codeLimit, Reason: reasonFetch}
			}
			if lim.fetchAction == ActionDelay {
				res.Delay = max(res.Delay, time.Duration(min(wait, c.fetchMaxDelay)))
			}
		}
	}
	if l.remote != nil {
		ss.pendBytes.Add(max(octets, 0))
		ss.pendMsgs.Add(int64(max(messages, 0)))
		l.queueFlush(ss)
	}
	return res
}

// queueFlush hands a session with charges not yet in Redis to flushLoop.
func (l *Limiter) queueFlush(ss *sessState) {
	if ss.queued.Swap(true) {
		return
	}
	select {
	case l.flushCh <- ss:
	default:
		// Full: the next delivery queues it again.
		ss.queued.Store(false)
	}
}

// flushLoop sends delivered content to the shared buckets in Redis and
// raises the local ones to what Redis holds (other proxies' deliveries
// included), off every session's path.
func (l *Limiter) flushLoop() {
	defer close(l.flushDone)
	for {
		select {
		case <-l.stop:
			return
		case ss := <-l.flushCh:
			if ss.flushed != nil {
				close(ss.flushed)
				continue
			}
			ss.queued.Store(false)
			l.flush(ss)
		}
	}
}

// flushWait returns once every delivery queued before it reached Redis.
func (l *Limiter) flushWait() {
	if l.remote == nil {
		return
	}
	done := make(chan struct{})
	l.flushCh <- &sessState{flushed: done}
	<-done
}

func (l *Limiter) flush(ss *sessState) {
	b, m := ss.pendBytes.Swap(0), ss.pendMsgs.Swap(0)
	if !l.remoteUp() {
		return // the local buckets were charged; Redis learns nothing of an outage
	}
	lim := &ss.lim
	now := l.nowNs()
	var bs []bucketArg
	var kinds []kind
	var keys []uint64
	if lim.fetchBytes.on && b > 0 {
		bs, kinds, keys = append(bs, bucketArg{key: ss.rFetchBytes, g: lim.fetchBytes, n: b, force: true}), append(kinds, kindFetchBytes), append(keys, ss.fetchBytesKey)
	}
	if lim.fetchMsgs.on && m > 0 {
		bs, kinds, keys = append(bs, bucketArg{key: ss.rFetchMsgs, g: lim.fetchMsgs, n: m, force: true}), append(kinds, kindFetchMsgs), append(keys, ss.fetchMsgsKey)
	}
	if len(bs) == 0 {
		return
	}
	if res, err := l.remote.rate(now, bs...); err == nil && len(res.tats) == len(bs) {
		for i, tat := range res.tats {
			l.local.raise(kinds[i], keys[i], tat, now)
		}
	}
}

// Snapshot returns the counters relevant to decisions about a connection,
// for the policy input (input.session.limits): open connections and
// unauthenticated connections of its IP, failed logins (as of its last
// login attempt), sessions of its user, and the user's fetched and
// appended volume still counted in the budgets. It allocates; call it at
// decision points the policy asks for, not per command.
func (l *Limiter) snapshot(st *connState) map[string]int64 {
	m := make(map[string]int64, 12)
	if st.counted {
		m["connections_ip"] = l.local.count(st.ipKey)
		m["unauthenticated_ip"] = l.local.count(st.unauthKey)
	}
	m["login_failures_ip"] = int64(st.fails[0].Load())
	m["login_failures_user"] = int64(st.fails[1].Load())
	m["login_failures_user_ip"] = int64(st.fails[2].Load())
	if ss := st.sess.Load(); ss != nil {
		now := l.nowNs()
		m["sessions_user"] = l.local.count(ss.sessKey)
		m["commands_session"] = ss.lim.cmdSession.level(ss.cmdTAT.Load(), now)
		m["commands_user"] = ss.lim.cmdUser.level(l.local.peek(kindCmdUser, ss.cmdUserKey), now)
		m["fetch_bytes_user"] = ss.lim.fetchBytes.level(l.local.peek(kindFetchBytes, ss.fetchBytesKey), now)
		m["fetch_messages_user"] = ss.lim.fetchMsgs.level(l.local.peek(kindFetchMsgs, ss.fetchMsgsKey), now)
		m["append_bytes_user"] = ss.lim.appendBytes.level(l.local.peek(kindAppend, ss.appendKey), now)
	}
	return m
}

// Conn is one connection's handle on the Limiter (proxy.LimitConn): it
// carries the connection's state, so that no question looks it up.
type Conn struct {
	l  *Limiter
	st *connState
	s  *proxy.SessionInfo
}

var _ proxy.LimitConn = (*Conn)(nil)

// Login is asked before credentials are checked: a locked-out client
// never reaches the backend; one let through holds a place until its
// result, waiting for one until ctx ends.
func (c *Conn) Login(ctx context.Context, user string) (proxy.LimitResult, proxy.LoginPlace) {
	return c.l.login(ctx, c.s, c.st, user)
}

// Session counts a logged-in session against its user's sessions.
func (c *Conn) Session() (proxy.LimitResult, func()) { return c.l.session(c.s, c.st) }

// Command checks one command at its decision point.
func (c *Conn) Command(cmd *imapwire.Command) proxy.LimitResult { return c.l.command(c.st, cmd) }

// Delivered charges content as it goes to the client.
func (c *Conn) Delivered(octets int64, messages int) proxy.LimitResult {
	return c.l.delivered(c.st, octets, messages)
}

// Snapshot returns the counters of input.session.limits.
func (c *Conn) Snapshot() map[string]int64 { return c.l.snapshot(c.st) }

// Release ends the connection's accounting.
func (c *Conn) Release() { c.l.release(c.st) }
