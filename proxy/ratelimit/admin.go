package ratelimit

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/netip"
	"time"
)

// Lockout is one active lockout, as the admin API lists it.
type Lockout struct {
	// Kind is what is locked: "ip", "user" or "user_ip".
	Kind string `json:"kind"`
	// User is folded (proxy.FoldUser); one of more than 128 bytes is
	// listed as its head, two spaces, "#" and an id of the whole name,
	// which Unlock takes as it is listed.
	User string `json:"user,omitempty"`
	// IP is the first address of the client's host prefix (ip_bits_v4,
	// ip_bits_v6): 2001:db8:1:2:: for every address of that /64.
	IP       string    `json:"ip,omitempty"`
	Failures int       `json:"failures"`
	Until    time.Time `json:"until"`
	// Store is where the lockout comes from: StoreRedis, StoreLocal or
	// StoreMirror.
	Store string `json:"store"`
}

// Values of Lockout.Store.
const (
	// StoreRedis: the fleet's record, read from Redis now.
	StoreRedis = "redis"
	// StoreLocal: made by this instance, without Redis or while Redis
	// was down (then written back once it answers again).
	StoreLocal = "local"
	// StoreMirror: this instance's copy of a Redis lockout, enforced while
	// Redis is down.
	StoreMirror = "mirror"
)

// Lockouts lists the lockouts in force here: with Redis answering, the
// fleet's (StoreRedis) and this instance's not yet written back
// (StoreLocal); with Redis down, this instance's own and its mirrors of
// the fleet's (StoreMirror), which it keeps enforcing, and the error.
func (l *Limiter) Lockouts(ctx context.Context) ([]Lockout, error) {
	now := l.nowNs()
	local := l.local.lockouts(now)
	if l.remote == nil {
		return local, nil
	}
	rl, err := l.remote.lockouts(ctx, now)
	if err != nil {
		return local, err
	}
	type id struct{ kind, user, ip string }
	seen := make(map[id]bool, len(rl))
	for _, x := range rl {
		seen[id{x.Kind, x.User, x.IP}] = true
	}
	out := rl
	for _, x := range local {
		if x.Store == StoreLocal && !seen[id{x.Kind, x.User, x.IP}] {
			out = append(out, x)
		}
	}
	sortLockouts(out)
	return out, nil
}

// Unlock forgets failed logins: of a user (from every IP), of an IP (its
// host prefix, ip_bits_v4 and ip_bits_v6, for every user), or of a user
// from one IP when both are given. user is a name or a Lockout's User as
// listed (a cut name names the whole one, label). It returns how many
// records were removed, here and in Redis.
func (l *Limiter) Unlock(ctx context.Context, user, ip string) (int, error) {
	var addr netip.Addr
	if ip != "" {
		var err error
		if addr, err = netip.ParseAddr(ip); err != nil {
			return 0, fmt.Errorf("ratelimit: unlock: %w", err)
		}
		// Any address of a host's prefix names its records (hostOf).
		addr = l.cfg.Load().hostOf(netip.AddrPortFrom(addr, 0))
	}
	if user == "" && !addr.IsValid() {
		return 0, errors.New("ratelimit: unlock: a user or an ip is required")
	}
	n := l.local.unlock(user, addr)
	// Logins waiting for a place decide again at once: the failures that
	// left them no room are gone (ARCHITECTURE.md §12).
	defer l.places.wakeAll()
	if l.remote == nil {
		return n, nil
	}
	rn, err := l.remote.unlock(ctx, user, addr)
	return n + rn, err
}

// adminTimeout bounds an admin request's Redis work (a SCAN of the
// keyspace for an unlock).
const adminTimeout = 10 * time.Second

// AdminHandler serves the lockouts, in JSON:
//
//	GET  /lockouts                      {"lockouts": [Lockout...]}
//
// It serves no unlock: the caller reads an unlock's arguments once, calls
// Unlock and records the act with that one reading. Mount it under a
// prefix with http.StripPrefix, on the admin listener only.
func (l *Limiter) AdminHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /lockouts", func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithTimeout(r.Context(), adminTimeout)
		defer cancel()
		ls, err := l.Lockouts(ctx)
		if ls == nil {
			ls = []Lockout{}
		}
		body := map[string]any{"lockouts": ls}
		status := http.StatusOK
		if err != nil {
			// The local list is still worth showing.
			body["error"] = err.Error()
			status = http.StatusBadGateway
		}
		writeJSON(w, status, body)
	})
	return mux
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.Encode(v)
}
