package ratelimit

import (
	"context"
	"fmt"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/imapwarden/imapwarden/proxy"
)

// newWaitingTest is newTest with OnLoginWait reporting each login that
// waits for a place on the returned channel.
func newWaitingTest(t *testing.T, newTest newFunc, set func(o *Options)) (*Limiter, chan struct{}) {
	waits := make(chan struct{}, 1024)
	l, _ := newTest(t, func(o *Options) {
		if set != nil {
			set(o)
		}
		o.OnLoginWait = func() { waits <- struct{}{} }
	})
	return l, waits
}

// try is one login of a crowd sent together: from ip, as user, with a
// right (ok) or wrong password.
type try struct {
	ip, user string
	ok       bool
}

// outcome is what became of a try: through to the password check
// (passed), or refused (res).
type outcome struct {
	passed bool
	res    proxy.LimitResult
}

// together sends the tries at once, each on its own connection. Those let
// through are held, as a backend that takes its time holds a login, until
// every try is through, refused or waiting for a place (OnLoginWait, on
// waits); then each records its result. Before that moment no place is
// given back, so no waiting try can end: the count is exact.
func together(t *testing.T, l *Limiter, waits <-chan struct{}, tries []try) []outcome {
	t.Helper()
	out := make([]outcome, len(tries))
	settled := make(chan struct{}, len(tries))
	gate := make(chan struct{})
	var wg sync.WaitGroup
	for i, tr := range tries {
		s, release := connect(t, l, tr.ip)
		t.Cleanup(release)
		s.User = tr.user
		h := l.handle(s)
		wg.Go(func() {
			r, p := h.Login(t.Context(), tr.user)
			out[i] = outcome{passed: p != nil, res: r}
			settled <- struct{}{}
			if p != nil {
				<-gate
				p.Result(tr.ok)
			}
		})
	}
	for range tries {
		select {
		case <-settled:
		case <-waits:
		}
	}
	close(gate)
	wg.Wait()
	return out
}

// placesLeft counts what the Limiter still holds of logins in flight:
// places and waiters in this process, members of Redis's sets of the
// records of user from ip.
func placesLeft(t *testing.T, l *Limiter, ip, user string) int {
	t.Helper()
	l.places.mu.Lock()
	n, held := 0, 0
	for _, e := range l.places.m {
		n += int(e.held) + int(e.waiters)
		held += int(e.held)
	}
	l.places.mu.Unlock()
	if l.remote != nil {
		// A place Redis gave is held in this process too (admitRemote):
		// the two must agree.
		inRedis := 0
		for _, k := range l.remote.placeKeys(userID(user), netip.MustParseAddr(ip)) {
			c, err := l.remote.c.ZCard(t.Context(), k).Result()
			if err != nil {
				t.Fatal(err)
			}
			inRedis += int(c)
		}
		if inRedis != held {
			t.Errorf("%d places in Redis, %d held in this process", inRedis, held)
		}
	}
	return n
}

// Honest logins of one user from one address sent together (a mail
// client's several connections, a phone behind the same NAT) are never
// refused for being together: past the places the user_ip record has
// (login_failures_per_user_ip, 5 by default) they wait for one. The
// reverted fix refused the sixth.
func TestHonestLoginsSentTogetherWait(t *testing.T) {
	forEachStore(t, func(t *testing.T, newTest newFunc) {
		l, waits := newWaitingTest(t, newTest, nil)
		tries := make([]try, 12)
		for i := range tries {
			tries[i] = try{ip: "192.0.2.1", user: "alice", ok: true}
		}
		for i, o := range together(t, l, waits, tries) {
			if !o.passed {
				t.Errorf("honest login %d of %d sent together refused: %+v", i+1, len(tries), o.res)
			}
		}
		if st := l.Stats(); st.LoginWaits != 7 || st.LoginsWaiting != 0 {
			t.Errorf("%d logins waited (%d waiting now), want the 7 past the 5 places", st.LoginWaits, st.LoginsWaiting)
		}
		if n := placesLeft(t, l, "192.0.2.1", "alice"); n != 0 {
			t.Errorf("%d places or waiters left", n)
		}
	})
}

// Honest logins and wrong passwords of one user from one address, sent
// together: the wrong ones stay under the limit, so every honest login
// gets through. With 4 failures counted the record has room for one
// login at a time: the others wait, never refused (the reverted fix
// refused them as locked out).
func TestHonestLoginsAndTyposSentTogether(t *testing.T) {
	forEachStore(t, func(t *testing.T, newTest newFunc) {
		l, waits := newWaitingTest(t, newTest, nil)
		var tries []try
		for i := range 16 {
			tries = append(tries, try{ip: "192.0.2.1", user: "alice", ok: i%4 != 0})
		}
		for i, o := range together(t, l, waits, tries) {
			if !o.passed {
				t.Errorf("login %d (right password: %v) refused: %+v", i, tries[i].ok, o.res)
			}
		}
		if n := placesLeft(t, l, "192.0.2.1", "alice"); n != 0 {
			t.Errorf("%d places or waiters left", n)
		}
	})
}

// An office behind one address: 30 people log in together while someone
// there sends 20 guesses of alice's password at once. The guesses reach
// the check at most login_failures_per_user_ip times; every honest login
// gets through, though the address's record (login_failures_per_ip, 10
// here) has room for fewer at a time.
func TestOfficeLogsInTogetherWhileGuessesArrive(t *testing.T) {
	forEachStore(t, func(t *testing.T, newTest newFunc) {
		l, waits := newWaitingTest(t, newTest, func(o *Options) {
			o.LoginFailuresPerIP = 10
			o.LockoutBase = time.Hour
			o.LockoutMax = time.Hour
		})
		var tries []try
		for i := range 30 {
			tries = append(tries, try{ip: "203.0.113.7", user: fmt.Sprintf("user%d", i), ok: true})
		}
		for range 20 {
			tries = append(tries, try{ip: "203.0.113.7", user: "alice"})
		}
		guessed := 0
		for i, o := range together(t, l, waits, tries) {
			switch {
			case tries[i].ok && !o.passed:
				t.Errorf("%s refused: %+v", tries[i].user, o.res)
			case !tries[i].ok && o.passed:
				guessed++
			case !tries[i].ok:
				wantExceeded(t, o.res, LimitLoginFailuresPerUserIP, "user_ip", "AUTHENTICATIONFAILED")
			}
		}
		if guessed > 5 {
			t.Errorf("%d of 20 guesses sent together reached the check, want at most 5", guessed)
		}
		if st := l.Stats(); st.LoginWaits == 0 {
			t.Error("no login waited: the address's 10 places did not bind")
		}
		if n := placesLeft(t, l, "203.0.113.7", "alice"); n != 0 {
			t.Errorf("%d places or waiters left", n)
		}
	})
}

// Every way out of a login gives its place back: its result (either),
// Release (any number of times, and a Result after it counts nothing),
// the connection's Release, the connection's next Login, and a wait that
// ends with its context (UNAVAILABLE, its waiter gone).
func TestLoginPlacesGivenBackOnEveryPath(t *testing.T) {
	forEachStore(t, func(t *testing.T, newTest newFunc) {
		l, waits := newWaitingTest(t, newTest, func(o *Options) { o.LoginFailuresPerUserIP = 2 })
		const ip = "192.0.2.1"
		take := func() (*Conn, proxy.LoginPlace, func()) {
			t.Helper()
			s, release := connect(t, l, ip)
			h := l.handle(s)
			// noWait: a place left held refuses it rather than hanging.
			r, p := h.Login(noWait, "alice")
			wantOK(t, r)
			if p == nil {
				t.Fatal("no place")
			}
			return h, p, release
		}
		left := func(what string, want int) {
			t.Helper()
			if n := placesLeft(t, l, ip, "alice"); n != want {
				t.Errorf("after %s: %d places or waiters held, want %d", what, n, want)
			}
		}
		fails := func() int {
			t.Helper()
			if l.remote != nil {
				n, err := l.remote.c.HGet(t.Context(), l.remote.failKeys(userID("alice"), netip.MustParseAddr(ip))[2], "n").Int()
				if err != nil && err != redis.Nil {
					t.Fatal(err)
				}
				return n
			}
			v, _ := l.local.failPeekMirror(l.failKeys("alice", netip.MustParseAddr(ip))[2], l.nowNs())
			return int(v.n)
		}
		// One record per store: the places of each record are 3 (ip,
		// user, user_ip); each count below is in those units.
		_, p, rel := take()
		left("a login let through", 3)
		p.Result(true)
		left("its success", 0)
		p.Release()
		p.Result(false)
		left("a Release and a Result after the success", 0)
		if n := fails(); n != 0 {
			t.Errorf("a Result after the first counted a failure (%d)", n)
		}
		rel()

		_, p, rel = take()
		p.Result(false)
		left("a failure", 0)
		if n := fails(); n != 1 {
			t.Errorf("%d failures, want 1", n)
		}
		rel()

		_, p, rel = take()
		p.Release()
		p.Release()
		left("Release twice", 0)
		p.Result(false)
		if n := fails(); n != 1 {
			t.Errorf("a Result after Release counted a failure (%d failures)", n)
		}
		rel()

		_, _, rel = take()
		rel()
		left("the connection's end", 0)

		h, _, rel := take()
		if r, p := h.Login(noWait, "alice"); r.Exceeded || p == nil {
			t.Fatalf("second login on one connection: %+v", r)
		}
		left("a second Login on the connection", 3)
		rel()
		left("its end", 0)

		// One failure counted: the record has room for one login.
		_, p, rel = take()
		s2, rel2 := connect(t, l, ip)
		ctx, cancel := context.WithCancel(t.Context())
		done := make(chan proxy.LimitResult)
		go func() {
			r, p := l.handle(s2).Login(ctx, "alice")
			if p != nil {
				t.Error("the second login got a place")
			}
			done <- r
		}()
		<-waits
		if st := l.Stats(); st.LoginsWaiting != 1 {
			t.Errorf("%d logins waiting, want 1", st.LoginsWaiting)
		}
		cancel()
		wantExceeded(t, <-done, LimitLoginFailuresPerUserIP, "user_ip", "UNAVAILABLE")
		left("a wait that ended with its context", 3)
		if st := l.Stats(); st.LoginsWaiting != 0 {
			t.Errorf("%d logins waiting after the wait ended", st.LoginsWaiting)
		}
		p.Release()
		rel()
		rel2()
		left("all", 0)
	})
}

// With Redis, the places are the fleet's: a proxy that died with logins
// in flight holds them until login_place_ttl, and a place given back on
// one proxy lets a login waiting on another through (at its next poll).
func TestRedisPlacesOfDeadProxyLapse(t *testing.T) {
	srv := startRedis(t)
	waits := make(chan struct{}, 16)
	a, b, clk := pair(t, srv, func(o *Options) {
		o.LoginFailuresPerUserIP = 2
		o.RedisLoginPlaceTTL = time.Minute
		o.OnLoginWait = func() { waits <- struct{}{} }
	})
	var held []proxy.LoginPlace
	for range 2 {
		s, release := connect(t, a, "192.0.2.1")
		t.Cleanup(release)
		r, p := a.handle(s).Login(t.Context(), "alice")
		wantOK(t, r)
		held = append(held, p)
	}
	// a gives one place back while b's login waits: b's gets it.
	s, release := connect(t, b, "192.0.2.1")
	t.Cleanup(release)
	got := make(chan proxy.LoginPlace)
	go func() {
		r, p := b.handle(s).Login(t.Context(), "alice")
		if p == nil {
			t.Errorf("refused: %+v", r)
		}
		got <- p
	}()
	<-waits
	held[0].Result(true)
	if p := <-got; p != nil {
		p.Release()
	}
	// a "dies" holding the other: b's login waits until it lapses.
	s1, release1 := connect(t, b, "192.0.2.1")
	t.Cleanup(release1)
	r1, p1 := b.handle(s1).Login(t.Context(), "alice")
	wantOK(t, r1)
	ended := make(chan proxy.LimitResult)
	s2, release2 := connect(t, b, "192.0.2.1")
	t.Cleanup(release2)
	go func() {
		r, p := b.handle(s2).Login(t.Context(), "alice")
		if p != nil {
			p.Release()
		}
		ended <- r
	}()
	<-waits
	clk.Advance(time.Minute + time.Second)
	wantOK(t, <-ended)
	p1.Release()
}

// TestUnlockWakesWaitingLogins: a login waiting for a place because
// failures left its record room for one login in flight gets through as
// soon as an administrator unlocks the user, not when the login in
// flight ends or its session's pre-login time runs out.
func TestUnlockWakesWaitingLogins(t *testing.T) {
	forEachStore(t, func(t *testing.T, newTest newFunc) {
		l, waits := newWaitingTest(t, newTest, func(o *Options) { o.LoginFailuresPerUserIP = 3 })
		const ip = "192.0.2.7"
		for range 2 {
			s, release := connect(t, l, ip)
			s.User = "alice"
			h := l.handle(s)
			r, p := h.Login(t.Context(), "alice")
			if p == nil {
				t.Fatalf("login refused: %+v", r)
			}
			p.Result(false)
			release()
		}
		// Two failures of three: room for one login in flight.
		s, release := connect(t, l, ip)
		defer release()
		s.User = "alice"
		r, inFlight := l.handle(s).Login(t.Context(), "alice")
		if inFlight == nil {
			t.Fatalf("login refused: %+v", r)
		}
		defer inFlight.Release()
		s2, release2 := connect(t, l, ip)
		defer release2()
		s2.User = "alice"
		done := make(chan outcome, 1)
		go func() {
			r, p := l.handle(s2).Login(t.Context(), "alice")
			if p != nil {
				p.Release()
			}
			done <- outcome{passed: p != nil, res: r}
		}()
		select {
		case <-waits:
		case o := <-done:
			t.Fatalf("second login did not wait for a place: %+v", o)
		}
		if _, err := l.Unlock(t.Context(), "alice", ""); err != nil {
			t.Fatal(err)
		}
		select {
		case o := <-done:
			if !o.passed {
				t.Errorf("the waiting login, after the unlock: %+v", o.res)
			}
		case <-time.After(time.Minute):
			t.Fatal("the waiting login still waits a minute after the unlock")
		}
	})
}
