package ratelimit

import (
	"net/netip"
	"sort"
	"sync"
	"time"
)

// memStore is the in-process store: sharded maps of uint64 keys (see
// hasher) under one mutex per shard. Checks on the hot paths (Command,
// Login) only read or update existing entries: no allocation.
//
// Memory is bounded: the entries clients can create before proving who
// they are (connection rates, failures) and the per-user buckets all count
// against max tracked keys; a shard that is full first drops what has
// expired, then the sampled entry closest to expiry, preferring a rate
// bucket (losing one merely refills it) over a failure record. Concurrency
// counters exist only while connections are open, so they are bounded by
// those and not counted.
type memStore struct {
	h        hasher
	shardCap int
	shards   [nShards]shard
}

const (
	nShards = 64
	// sweepEvery: a shard drops its expired entries at most this often
	// (lazily, when something is inserted), so a sweep's cost, linear in
	// the shard, is paid rarely.
	sweepEvery = int64(10 * time.Second)
	// evictSample entries are looked at to choose one to drop.
	evictSample = 8
)

type shard struct {
	mu sync.Mutex
	// rates: connection rate buckets (TAT), keyed by IP or subnet.
	rates map[uint64]int64
	// users: per-user buckets (TAT): commands, fetched and appended volume.
	users map[uint64]int64
	fails map[uint64]failEntry
	// conc: concurrency counters; an entry is deleted at zero.
	conc      map[uint64]int32
	nextSweep int64
	evicted   uint64
	_         [40]byte // keep shards on separate cache lines
}

// failEntry is the failed-login record of one key.
type failEntry struct {
	last  int64 // last failure, unix ns
	until int64 // end of the lockout (unix ns), 0 if none
	exp   int64 // forgotten after this
	uh    uint64
	n     int32
	kind  kind
	user  string // folded, capped (label); "" for kindFailIP
	ip    netip.Addr
	// mirror: a copy of Redis's record, kept to enforce its lockout while
	// Redis is down. dirty: failures counted here while Redis could not
	// be reached, written back when it answers again.
	mirror, dirty bool
}

func newMemStore(maxKeys int) *memStore {
	m := &memStore{h: newHasher(), shardCap: max(1, maxKeys/nShards)}
	for i := range m.shards {
		sh := &m.shards[i]
		sh.rates = make(map[uint64]int64)
		sh.users = make(map[uint64]int64)
		sh.fails = make(map[uint64]failEntry)
		sh.conc = make(map[uint64]int32)
	}
	return m
}

func (m *memStore) shard(key uint64) *shard { return &m.shards[key%nShards] }

// bucketMap picks the map of a rate kind.
func (sh *shard) bucketMap(k kind) map[uint64]int64 {
	if k == kindConnRateIP || k == kindConnRateSubnet {
		return sh.rates
	}
	return sh.users
}

// makeRoom is called with sh.mu held before an entry is added.
func (sh *shard) makeRoom(now int64, shardCap int) {
	if now >= sh.nextSweep {
		sh.sweep(now)
		sh.nextSweep = now + sweepEvery
	}
	for len(sh.rates)+len(sh.users)+len(sh.fails) >= shardCap {
		sh.evictOne()
	}
}

func (sh *shard) sweep(now int64) {
	for k, tat := range sh.rates {
		if tat <= now {
			delete(sh.rates, k)
		}
	}
	for k, tat := range sh.users {
		if tat <= now {
			delete(sh.users, k)
		}
	}
	for k, e := range sh.fails {
		if e.exp <= now {
			delete(sh.fails, k)
		}
	}
}

// evictOne drops the entry closest to expiry among a few sampled (map
// iteration starts at a random place), like Redis's volatile-ttl.
func (sh *shard) evictOne() {
	sh.evicted++
	evictTAT := func(m map[uint64]int64) {
		var victim uint64
		best, i := int64(1<<63-1), 0
		for k, tat := range m {
			if tat < best {
				victim, best = k, tat
			}
			if i++; i == evictSample {
				break
			}
		}
		delete(m, victim)
	}
	switch {
	case len(sh.rates) > 0:
		evictTAT(sh.rates)
	case len(sh.fails) > 0:
		var victim uint64
		best, i := int64(1<<63-1), 0
		for k, e := range sh.fails {
			if e.exp < best {
				victim, best = k, e.exp
			}
			if i++; i == evictSample {
				break
			}
		}
		delete(sh.fails, victim)
	default:
		evictTAT(sh.users)
	}
}

// peek returns a bucket's TAT (0 when untracked).
func (m *memStore) peek(k kind, key uint64) int64 {
	sh := m.shard(key)
	sh.mu.Lock()
	tat := sh.bucketMap(k)[key]
	sh.mu.Unlock()
	return tat
}

// take charges a bucket (see gcra.take) and returns the wait and the new TAT.
func (m *memStore) take(k kind, key uint64, g gcra, now, n, maxDelay int64, force bool) (wait, tat int64, ok bool) {
	sh := m.shard(key)
	sh.mu.Lock()
	bm := sh.bucketMap(k)
	old, had := bm[key]
	tat, wait, ok = g.take(old, now, n, maxDelay, force)
	if ok && tat > now {
		if !had {
			sh.makeRoom(now, m.shardCap)
		}
		bm[key] = tat
	}
	sh.mu.Unlock()
	return wait, tat, ok
}

// raise moves a bucket's TAT up to tat (a Redis store's value mirrored).
func (m *memStore) raise(k kind, key uint64, tat, now int64) {
	if tat <= now {
		return
	}
	sh := m.shard(key)
	sh.mu.Lock()
	bm := sh.bucketMap(k)
	if old, had := bm[key]; !had || old < tat {
		if !had {
			sh.makeRoom(now, m.shardCap)
		}
		bm[key] = tat
	}
	sh.mu.Unlock()
}

// failView is what a check learns of one failure key.
type failView struct {
	n     int32
	until int64
}

// failPeekMirror returns a failure record and whether it is only a mirror
// of Redis's.
func (m *memStore) failPeekMirror(key uint64, now int64) (failView, bool) {
	sh := m.shard(key)
	sh.mu.Lock()
	e, ok := sh.fails[key]
	sh.mu.Unlock()
	if !ok || e.exp <= now {
		return failView{}, false
	}
	return failView{n: e.n, until: e.until}, e.mirror
}

// mirror keeps Redis's view v of a record: Redis is the authority while it
// answers, so v replaces a mirror (a zero v removes it), but failures
// counted here and not yet written back are kept (the larger of each).
func (m *memStore) mirror(fk failKey, v failView, now int64, p failPolicy) {
	sh := m.shard(fk.key)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	e, ok := sh.fails[fk.key]
	if ok && e.exp <= now {
		ok = false
	}
	if ok && e.dirty {
		e.n, e.until = max(e.n, v.n), max(e.until, v.until)
		e.exp = max(e.exp, max(now, e.until)+p.window)
		sh.fails[fk.key] = e
		return
	}
	if v.n == 0 && v.until <= now {
		if ok {
			delete(sh.fails, fk.key)
		}
		return
	}
	if !ok {
		if _, had := sh.fails[fk.key]; !had {
			sh.makeRoom(now, m.shardCap)
		}
		e = failEntry{kind: fk.kind, uh: fk.uh, ip: fk.ip}
		if fk.user != "" {
			e.user = label(fk.user)
		}
	}
	e.mirror, e.n, e.until, e.last = true, v.n, v.until, now
	e.exp = max(now, e.until) + p.window
	sh.fails[fk.key] = e
}

// pendingFails returns the records to write back to Redis, with their
// keys: failures counted during an outage, and the mirrored lockouts still
// in force (a Redis restarted without persistence has lost them; merging
// by maximum cannot shorten what Redis still has).
func (m *memStore) pendingFails(now int64) (keys []uint64, es []failEntry) {
	for i := range m.shards {
		sh := &m.shards[i]
		sh.mu.Lock()
		for k, e := range sh.fails {
			if e.exp > now && (e.dirty || (e.mirror && e.until > now)) {
				keys, es = append(keys, k), append(es, e)
			}
		}
		sh.mu.Unlock()
	}
	return keys, es
}

// written marks a record written back as a mirror, unless it changed since
// it was read (then the next write-back takes it).
func (m *memStore) written(key uint64, was failEntry) {
	sh := m.shard(key)
	sh.mu.Lock()
	if e, ok := sh.fails[key]; ok && e.n == was.n && e.until == was.until && e.dirty {
		e.dirty, e.mirror = false, true
		sh.fails[key] = e
	}
	sh.mu.Unlock()
}

// dropStaleMirrors forgets mirrored lockouts that Redis no longer holds
// (unlocked by an operator on another instance); live holds the keys of
// Redis's current lockouts.
func (m *memStore) dropStaleMirrors(live map[uint64]bool, now int64) {
	for i := range m.shards {
		sh := &m.shards[i]
		sh.mu.Lock()
		for k, e := range sh.fails {
			if e.mirror && !e.dirty && e.until > now && !live[k] {
				delete(sh.fails, k)
			}
		}
		sh.mu.Unlock()
	}
}

// failPolicy is the lockout arithmetic shared by both stores.
type failPolicy struct {
	window, base, max int64 // ns
}

// lockFor returns the lockout after the n-th failure with threshold thr:
// base, doubled for each failure beyond the threshold, up to max.
func (p failPolicy) lockFor(n, thr int32) int64 {
	if thr <= 0 || n < thr {
		return 0
	}
	d := p.base
	for i := n - thr; i > 0 && d < p.max; i-- {
		d *= 2
	}
	return min(d, p.max)
}

// failKey names one failure record.
type failKey struct {
	key  uint64
	kind kind
	thr  int32
	uh   uint64
	user string
	ip   netip.Addr
	// dirty: counted while Redis was unreachable (write it back).
	dirty bool
}

// fail records a failure and returns the record's count and lockout.
func (m *memStore) fail(fk failKey, now int64, p failPolicy) failView {
	sh := m.shard(fk.key)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	e, ok := sh.fails[fk.key]
	if !ok || e.exp <= now {
		if !ok {
			sh.makeRoom(now, m.shardCap)
		}
		e = failEntry{kind: fk.kind, uh: fk.uh, ip: fk.ip}
		if fk.user != "" {
			e.user = label(fk.user)
		}
	}
	if fk.dirty {
		e.dirty, e.mirror = true, false
	}
	e.n++
	e.last = now
	if d := p.lockFor(e.n, fk.thr); d > 0 {
		e.until = max(e.until, now+d)
	}
	e.exp = max(e.last, e.until) + p.window
	sh.fails[fk.key] = e
	return failView{n: e.n, until: e.until}
}

func (m *memStore) failReset(key uint64) {
	sh := m.shard(key)
	sh.mu.Lock()
	delete(sh.fails, key)
	sh.mu.Unlock()
}

// inc adds one to a concurrency counter unless it is at limit (limit <= 0:
// no limit); it reports whether it did.
func (m *memStore) inc(key uint64, limit int) bool {
	sh := m.shard(key)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	n := sh.conc[key]
	if limit > 0 && int(n) >= limit {
		return false
	}
	sh.conc[key] = n + 1
	return true
}

func (m *memStore) dec(key uint64) {
	sh := m.shard(key)
	sh.mu.Lock()
	if n := sh.conc[key]; n <= 1 {
		delete(sh.conc, key)
	} else {
		sh.conc[key] = n - 1
	}
	sh.mu.Unlock()
}

func (m *memStore) count(key uint64) int64 {
	sh := m.shard(key)
	sh.mu.Lock()
	n := sh.conc[key]
	sh.mu.Unlock()
	return int64(n)
}

// lockouts lists the records locked at now.
func (m *memStore) lockouts(now int64) []Lockout {
	var out []Lockout
	for i := range m.shards {
		sh := &m.shards[i]
		sh.mu.Lock()
		for _, e := range sh.fails {
			if e.until > now && e.exp > now {
				store := StoreLocal
				if e.mirror {
					store = StoreMirror
				}
				out = append(out, lockoutOf(e.kind, e.user, e.ip, int(e.n), e.until, store))
			}
		}
		sh.mu.Unlock()
	}
	sortLockouts(out)
	return out
}

// unlock deletes the failure records of a user (user, user_ip), of an IP
// (ip, user_ip) or of both (user_ip).
func (m *memStore) unlock(user string, ip netip.Addr) int {
	var uh uint64
	listed := "" // a cut name, as Lockouts lists it
	if user != "" {
		uh = m.h.sum(kindFailUser, user, netip.Addr{})
		if _, ok := listedID(user); ok {
			listed = foldString(user)
		}
	}
	n := 0
	for i := range m.shards {
		sh := &m.shards[i]
		sh.mu.Lock()
		for k, e := range sh.fails {
			var match bool
			switch {
			case user != "" && ip.IsValid():
				match = e.kind == kindFailUserIP && (e.uh == uh || listed != "" && e.user == listed) && e.ip == ip
			case user != "":
				match = (e.kind == kindFailUser || e.kind == kindFailUserIP) && (e.uh == uh || listed != "" && e.user == listed)
			case ip.IsValid():
				match = (e.kind == kindFailIP || e.kind == kindFailUserIP) && e.ip == ip
			}
			if match {
				delete(sh.fails, k)
				if !e.mirror { // a copy of Redis's record, counted there
					n++
				}
			}
		}
		sh.mu.Unlock()
	}
	return n
}

// tracked counts the entries that count against max tracked keys.
func (m *memStore) tracked() (n int) {
	for i := range m.shards {
		sh := &m.shards[i]
		sh.mu.Lock()
		n += len(sh.rates) + len(sh.users) + len(sh.fails)
		sh.mu.Unlock()
	}
	return n
}

func (m *memStore) evicted() (n uint64) {
	for i := range m.shards {
		sh := &m.shards[i]
		sh.mu.Lock()
		n += sh.evicted
		sh.mu.Unlock()
	}
	return n
}

func lockoutOf(k kind, user string, ip netip.Addr, n int, until int64, store string) Lockout {
	l := Lockout{Kind: k.keyName(), User: user, Failures: n, Until: time.Unix(0, until).UTC(), Store: store}
	if ip.IsValid() {
		l.IP = ip.String()
	}
	return l
}

func sortLockouts(ls []Lockout) {
	sort.Slice(ls, func(i, j int) bool {
		a, b := ls[i], ls[j]
		if a.Kind != b.Kind {
			return a.Kind < b.Kind
		}
		if a.User != b.User {
			return a.User < b.User
		}
		if a.IP != b.IP {
			return a.IP < b.IP
		}
		return a.Store < b.Store
	})
}

// refund takes back a charge of n units (a connection that another limit
// refused after this one counted it).
func (m *memStore) refund(k kind, key uint64, g gcra, now, n int64) {
	sh := m.shard(key)
	sh.mu.Lock()
	bm := sh.bucketMap(k)
	if tat, ok := bm[key]; ok {
		if tat -= g.cost(n); tat <= now {
			delete(bm, key)
		} else {
			bm[key] = tat
		}
	}
	sh.mu.Unlock()
}
