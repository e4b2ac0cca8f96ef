package ratelimit

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/imapwarden/imapwarden/proxy"
)

// Logins in flight (ARCHITECTURE.md §12). A lockout checked at Login and
// charged at the result would let every guess sent at once through. So a
// login let through holds a place in each failure record it would fail
// until its result: a record with n of its limit's failures has room for
// limit − n logins in flight (one once n reached the limit: each failure
// then locks again). A login over that waits for a place, never refused
// for it, so that a client's several connections or an office behind one
// address queue a moment; a failure takes its place in the same step, so
// that guesses sent together are counted one after another: at most the
// limit reach the password check before the lockout.

// Polling Redis for a place held by another proxy: from placePollMin,
// doubling up to placePollMax, and always bounded by the login's
// deadline. A place given back by this process wakes its waiters at once.
const (
	placePollMin = 10 * time.Millisecond
	placePollMax = 250 * time.Millisecond
)

// places counts this process's logins in flight per failure record (the
// in-process store's places) and holds the channels its waiters wait on,
// for both stores. Every field of its entries is under mu, and so is every
// in-process admission and every in-process failure of a login that held
// a place: no admission sees a login neither in flight nor failed.
type places struct {
	mu sync.Mutex
	m  map[uint64]placeEntry // by failure record key (failKeys)
	// waiting: logins waiting now; waits: logins that waited, ever.
	waiting atomic.Int64
	waits   atomic.Uint64
	// unreleased: places in Redis whose logins ended while it did not
	// answer, given back when it answers again (Limiter.writeBack), at
	// most maxUnreleased; the rest lapse after login_place_ttl.
	unreleased []remotePlace
}

// remotePlace names one login's place in Redis's sets.
type remotePlace struct {
	uid string
	ip  netip.Addr
	n   int
	id  string
}

const maxUnreleased = 4096

type placeEntry struct {
	held    int32 // places taken in the in-process store
	waiters int32
	// wake is closed at the record's next change (a place given back or
	// turned into a failure); nil while nobody waits.
	wake chan struct{}
}

func newPlaces() *places { return &places{m: map[uint64]placeEntry{}} }

// count returns the in-process places of record k; mu held.
func (p *places) count(k uint64) int32 { return p.m[k].held }

// take counts one login in flight in each record; mu held.
func (p *places) take(keys []uint64) {
	for _, k := range keys {
		e := p.m[k]
		e.held++
		p.m[k] = e
	}
}

// give takes one login out of each record and wakes its waiters; mu held.
func (p *places) give(keys []uint64) {
	for _, k := range keys {
		if e, ok := p.m[k]; ok {
			e.held = max(e.held-1, 0)
			p.put(k, e.signal())
		}
	}
}

func (e placeEntry) signal() placeEntry {
	if e.wake != nil {
		close(e.wake)
		e.wake = nil
	}
	return e
}

// put stores e, or forgets the record once nothing holds or awaits it
// (its wake channel was closed by then: no waiter is left on it).
func (p *places) put(k uint64, e placeEntry) {
	if e.held == 0 && e.waiters == 0 {
		delete(p.m, k)
		return
	}
	p.m[k] = e
}

// await registers a waiter of record k and returns what wakes it; mu held.
func (p *places) await(k uint64) <-chan struct{} {
	e := p.m[k]
	e.waiters++
	if e.wake == nil {
		e.wake = make(chan struct{})
	}
	p.m[k] = e
	return e.wake
}

// wakeAll wakes every waiter to decide again: records were forgotten
// (Limiter.Unlock), so a login waiting for a place may have room now.
func (p *places) wakeAll() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for k, e := range p.m {
		p.m[k] = e.signal()
	}
}

// leave unregisters a waiter of record k.
func (p *places) leave(k uint64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if e, ok := p.m[k]; ok {
		e.waiters = max(e.waiters-1, 0)
		p.put(k, e)
	}
}

// full reports whether record i (failKinds order) has as many logins in
// flight (held) as it has room for: thr − n, or one once n reached thr.
// The user record counts where its lockout would apply (lockResult): from
// addresses that failed for the user, or everywhere.
func (c *config) full(i int, v *[3]failView, held int32) bool {
	thr := c.thr[i]
	if thr <= 0 || (i == 1 && !c.o.UserLockoutAllIPs && v[2].n == 0) {
		return false
	}
	return held >= max(thr-v[i].n, 1)
}

// placeTimeout answers a login whose wait for a place of record i ended
// first (its deadline passed, or its session ended): UNAVAILABLE with the
// text the proxy gives a login its authenticator could not answer in
// time, since the check did not happen; the limit names the record.
func placeTimeout(i int) proxy.LimitResult {
	return exceeded(failLimits[i], failKinds[i].keyName(), codeUnavailable, reasonLoginBusy)
}

// heldPlace is what a login in flight holds: in the in-process store (id
// "") or as member id of Redis's sets of logins in flight.
type heldPlace struct {
	user string
	ip   netip.Addr
	keys [3]uint64
	n    int // records counted (failRecords)
	id   string
}

// loginPlace is a connection's login in flight (proxy.LoginPlace), kept
// in its connState so that taking a place allocates nothing; a
// connection has one login in flight at a time.
type loginPlace struct {
	l    *Limiter
	s    *proxy.SessionInfo
	st   *connState
	mu   sync.Mutex
	held bool
	h    heldPlace
}

var _ proxy.LoginPlace = (*loginPlace)(nil)

func (p *loginPlace) hold(h heldPlace) {
	p.mu.Lock()
	p.held, p.h = true, h
	p.mu.Unlock()
}

// take returns the place, if held, and marks it given up: of Result,
// Release and the connection's end, only the first acts.
func (p *loginPlace) take() (heldPlace, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	h, ok := p.h, p.held
	p.held, p.h = false, heldPlace{}
	return h, ok
}

// Result records the login's credential check in its place's stead.
func (p *loginPlace) Result(ok bool) time.Duration {
	h, held := p.take()
	if !held {
		return 0
	}
	return p.l.loginResult(p.s, p.st, h.user, ok, &h)
}

// Release gives the place back, counting nothing.
func (p *loginPlace) Release() {
	if h, held := p.take(); held {
		p.l.givePlace(&h)
	}
}

// givePlace gives back a place no result took.
func (l *Limiter) givePlace(h *heldPlace) {
	if h.id != "" {
		l.releaseRemote(remotePlace{userID(h.user), h.ip, h.n, h.id}, l.remoteUp() && l.remote.release(userID(h.user), h.ip, h.n, h.id) == nil)
	}
	l.places.mu.Lock()
	l.places.give(h.keys[:h.n])
	l.places.mu.Unlock()
}

// releaseRemote keeps a place Redis did not take back (done false: it was
// down, or the call failed) for writeBack: left there, it would hold the
// record's room until login_place_ttl, and a user's later logins would
// wait for logins long ended.
func (l *Limiter) releaseRemote(p remotePlace, done bool) {
	if done || p.id == "" {
		return
	}
	l.places.mu.Lock()
	if len(l.places.unreleased) < maxUnreleased {
		l.places.unreleased = append(l.places.unreleased, p)
	}
	l.places.mu.Unlock()
}

// releaseKept gives Redis back the places kept by releaseRemote; those it
// does not take are kept for its next recovery.
func (l *Limiter) releaseKept() {
	l.places.mu.Lock()
	if len(l.places.unreleased) == 0 {
		l.places.mu.Unlock()
		return
	}
	kept := l.places.unreleased
	l.places.unreleased = nil
	l.places.mu.Unlock()
	for i, p := range kept {
		if err := l.remote.release(p.uid, p.ip, p.n, p.id); err != nil {
			for _, q := range kept[i:] {
				l.releaseRemote(q, false)
			}
			return
		}
	}
}

// placeID names one login in flight in Redis's sets, unique across a
// fleet.
func placeID() string {
	var b [12]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// login refuses a client locked out by earlier failures, before any
// credential is checked (a lockout is answered like a failed login: same
// code, same delay, and by default the same text), and otherwise takes a
// place among the logins in flight, waiting for one until ctx ends.
func (l *Limiter) login(ctx context.Context, s *proxy.SessionInfo, st *connState, user string) (proxy.LimitResult, proxy.LoginPlace) {
	st.place.Release() // one login in flight per connection
	var (
		queued bool
		timer  *time.Timer
		poll   = placePollMin
		id     string
	)
	defer func() {
		if queued {
			l.places.waiting.Add(-1)
		}
		if timer != nil {
			timer.Stop()
		}
	}()
	for {
		c := l.cfg.Load()
		ip := c.hostOf(s.ClientAddr)
		now := l.nowNs()
		keys := l.failKeys(user, ip)
		var (
			res      proxy.LimitResult
			admitted bool
			full     = -1
			wake     <-chan struct{}
			polled   bool
			decided  bool
		)
		if l.remote != nil {
			if id == "" {
				id = placeID()
			}
			if l.remoteUp() {
				// Before its room is read: the prober marks Redis up
				// before its write-back has given these back.
				l.releaseKept()
			}
			r, adm, f, err := l.admitRemote(c, st, user, ip, keys, now, id)
			switch {
			case err == nil:
				res, admitted, full, decided, polled = r, adm, f, true, true
				if full >= 0 {
					// A place given back by this process wakes it at once;
					// another proxy's, at the next poll.
					l.places.mu.Lock()
					wake = l.places.await(keys[full])
					l.places.mu.Unlock()
				}
			case c.closed:
				return storeUnavailable, nil
			}
			// Redis down, fail open: this instance's records, its mirrors
			// of Redis's and its own logins in flight decide.
		}
		if !decided {
			res, admitted, full, wake = l.admitLocal(c, st, user, ip, keys, now)
		}
		if res.Exceeded {
			res.Own = c.ownLockout(s, st, res.Limit)
			return res, nil
		}
		if admitted {
			return res, &st.place
		}
		if !queued {
			queued = true
			l.places.waiting.Add(1)
			l.places.waits.Add(1)
			if c.o.OnLoginWait != nil {
				c.o.OnLoginWait()
			}
		}
		var tick <-chan time.Time
		if polled {
			if timer == nil {
				timer = time.NewTimer(poll)
			} else {
				timer.Reset(poll)
			}
			tick, poll = timer.C, min(2*poll, placePollMax)
		}
		select {
		case <-wake:
		case <-tick:
		case <-ctx.Done():
			l.places.leave(keys[full])
			return placeTimeout(full), nil
		}
		l.places.leave(keys[full])
	}
}

// admitLocal decides a login on the in-process store: a lockout, a place
// taken, or the record whose places are all held (full) and the channel
// that wakes its waiter.
func (l *Limiter) admitLocal(c *config, st *connState, user string, ip netip.Addr, keys [3]uint64, now int64) (res proxy.LimitResult, admitted bool, full int, wake <-chan struct{}) {
	n := failRecords(user)
	l.places.mu.Lock()
	defer l.places.mu.Unlock()
	var v [3]failView
	for i := range n {
		v[i], _ = l.local.failPeekMirror(keys[i], now)
	}
	for i := range v {
		st.fails[i].Store(v[i].n)
	}
	if res := l.lockResult(c, &v, now); res.Exceeded {
		return res, false, -1, nil
	}
	for i := range n {
		if c.full(i, &v, l.places.count(keys[i])) {
			return proxy.LimitResult{}, false, i, l.places.await(keys[i])
		}
	}
	l.places.take(keys[:n])
	st.place.hold(heldPlace{user: user, ip: ip, keys: keys, n: n})
	return proxy.LimitResult{}, true, -1, nil
}

// admitRemote decides a login on Redis (reserveScript), the failures
// this instance counted during an outage and not yet written back
// included.
func (l *Limiter) admitRemote(c *config, st *connState, user string, ip netip.Addr, keys [3]uint64, now int64, id string) (res proxy.LimitResult, admitted bool, full int, err error) {
	n := failRecords(user)
	var v [3]failView
	var mirrored [3]bool
	var extra [3]int32
	for i, k := range keys {
		v[i], mirrored[i] = l.local.failPeekMirror(k, now)
		if !mirrored[i] {
			extra[i] = v[i].n
		}
	}
	rv, code, idx, err := l.remote.reserve(now, userID(user), user, ip, c, id, now+int64(c.o.RedisLoginPlaceTTL), &extra)
	if err != nil {
		return proxy.LimitResult{}, false, -1, err
	}
	// Redis is the authority over the mirrors; failures counted here
	// during an outage and not yet written back still hold.
	for i := range v {
		if mirrored[i] {
			v[i] = failView{}
		}
		v[i] = failView{n: max(v[i].n, rv[i].n), until: max(v[i].until, rv[i].until)}
	}
	if rv[0].n > 0 || rv[1].n > 0 || rv[2].n > 0 || mirrored != [3]bool{} {
		l.mirrorViews(c, user, ip, &rv, now)
	}
	for i := n; i < len(v); i++ {
		v[i] = failView{}
	}
	for i := range v {
		st.fails[i].Store(v[i].n)
	}
	lock := l.lockResult(c, &v, now)
	switch code {
	case reserveTaken:
		if lock.Exceeded {
			// Locked by a failure counted here during an outage.
			_ = l.remote.release(userID(user), ip, n, id)
			return lock, false, -1, nil
		}
		// Counted here too: should Redis stop answering, this process's
		// own logins in flight (admitLocal) include the ones Redis let in.
		l.places.mu.Lock()
		l.places.take(keys[:n])
		l.places.mu.Unlock()
		st.place.hold(heldPlace{user: user, ip: ip, keys: keys, n: n, id: id})
		return proxy.LimitResult{}, true, -1, nil
	case reserveLocked:
		if !lock.Exceeded {
			lock = lockout(c, idx)
		}
		return lock, false, -1, nil
	}
	return proxy.LimitResult{}, false, idx, nil
}
