package tlsterm

import (
	"bytes"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// defaultTicketRotation is how often session ticket keys change when
// ServerOptions.TicketKeyRotation is zero: crypto/tls's own interval.
const defaultTicketRotation = 24 * time.Hour

// ticketKeys owns the session ticket keys of every config a Server hands out.
//
// A master secret is drawn at random every interval; each config gets keys
// derived from the current and the previous master with its own label, so:
//   - tickets resume across all listeners that share a label (993 and 143
//     with the same client-certificate policy), since they share keys;
//   - a ticket issued under one client-certificate policy never resumes under
//     another. crypto/tls already re-checks a resumed session's stored chains
//     against the listener's ClientCAs; separate keys are a second wall that
//     does not depend on that, and keep each key on fewer listeners;
//   - a ticket stays usable for one to two intervals (previous key), and no
//     key lives longer than two intervals, so a leaked key exposes at most
//     that much traffic (RFC 8446 §8, RFC 9325 §3.4).
//
// Rotation is lazy: the first handshake after the due time rotates, from
// GetConfigForClient, before crypto/tls decrypts a ticket, so an idle Server
// runs no timer and no key is used past its two intervals.
type ticketKeys struct {
	interval time.Duration
	due      atomic.Int64 // UnixNano when the next rotation is due

	mu       sync.Mutex
	cur      [32]byte
	prev     [32]byte
	hasPrev  bool
	last     time.Time // when cur was drawn
	prevBorn time.Time // when prev was drawn
	configs  []labeledConfig
}

type labeledConfig struct {
	cfg   *tls.Config
	label string
}

func newTicketKeys(interval time.Duration, now time.Time) *ticketKeys {
	tk := &ticketKeys{interval: interval}
	tk.mu.Lock()
	tk.updateLocked(now)
	tk.mu.Unlock()
	return tk
}

// register gives cfg keys for label now and at every rotation.
func (tk *ticketKeys) register(cfg *tls.Config, label string) {
	tk.mu.Lock()
	defer tk.mu.Unlock()
	tk.configs = append(tk.configs, labeledConfig{cfg, label})
	cfg.SetSessionTicketKeys(tk.keysLocked(label))
}

// unregister stops giving cfg keys: a client CA bundle replaced.
func (tk *ticketKeys) unregister(cfg *tls.Config) {
	tk.mu.Lock()
	defer tk.mu.Unlock()
	tk.configs = slices.DeleteFunc(tk.configs, func(lc labeledConfig) bool { return lc.cfg == cfg })
}

// maybeRotate is called on every handshake, before crypto/tls looks at a
// ticket: one atomic load when nothing is due.
func (tk *ticketKeys) maybeRotate(now time.Time) {
	if now.UnixNano() < tk.due.Load() {
		return
	}
	tk.mu.Lock()
	defer tk.mu.Unlock()
	if now.UnixNano() >= tk.due.Load() { // not done meanwhile by another handshake
		tk.updateLocked(now)
	}
}

// updateLocked draws a new master when the current one is an interval old,
// drops the previous one when it is two intervals old, and hands the result
// to every config.
func (tk *ticketKeys) updateLocked(now time.Time) {
	if tk.last.IsZero() || !now.Before(tk.last.Add(tk.interval)) {
		tk.prev, tk.prevBorn, tk.hasPrev = tk.cur, tk.last, !tk.last.IsZero()
		rand.Read(tk.cur[:]) // never fails (crypto/rand, Go 1.24+)
		tk.last = now
	}
	if tk.hasPrev && !now.Before(tk.prevBorn.Add(2*tk.interval)) {
		tk.hasPrev = false
		tk.prev = [32]byte{}
	}
	due := tk.last.Add(tk.interval)
	if drop := tk.prevBorn.Add(2 * tk.interval); tk.hasPrev && drop.Before(due) {
		due = drop
	}
	tk.due.Store(due.UnixNano())
	for _, lc := range tk.configs {
		lc.cfg.SetSessionTicketKeys(tk.keysLocked(lc.label))
	}
}

// keysLocked derives the keys for label: current first (it encrypts new
// tickets), then previous (it still decrypts).
func (tk *ticketKeys) keysLocked(label string) [][32]byte {
	keys := [][32]byte{derive(tk.cur, label)}
	if tk.hasPrev {
		keys = append(keys, derive(tk.prev, label))
	}
	return keys
}

func derive(master [32]byte, label string) [32]byte {
	m := hmac.New(sha256.New, master[:])
	m.Write([]byte("imapwarden session ticket key\x00" + label))
	var k [32]byte
	copy(k[:], m.Sum(nil))
	return k
}

// sniExtra starts the SessionState.Extra entry that holds the SNI a
// ticket was issued under (FoldSNI).
const sniExtra = "imapwarden sni\x00"

// bindSessions ties each ticket cfg issues to the SNI it was issued under:
// crypto/tls picks no certificate for a session it resumes, so
// GetCertificate (StrictSNI) never sees the name. A ticket offered under
// another name, or under one StrictSNI would now refuse, is not resumed
// and the handshake is a full one (RFC 6066 §3: the server "MUST NOT
// accept the request to resume the session if the server_name extension
// contains a different name"). Each config that issues tickets is bound
// to itself: a Clone's closures would use the original's keys.
func (s *Server) bindSessions(cfg *tls.Config) {
	cfg.WrapSession = func(cs tls.ConnectionState, ss *tls.SessionState) ([]byte, error) {
		ss.Extra = append(ss.Extra, []byte(sniExtra+FoldSNI(cs.ServerName)))
		return cfg.EncryptTicket(cs, ss)
	}
	cfg.UnwrapSession = func(identity []byte, cs tls.ConnectionState) (*tls.SessionState, error) {
		ss, err := cfg.DecryptTicket(identity, cs)
		if ss == nil || err != nil || !s.resumable(ss, FoldSNI(cs.ServerName)) {
			return nil, err
		}
		return ss, nil
	}
}

// resumable says whether a ticket's session may resume under SNI name:
// it was issued under that name, and StrictSNI, if set, would serve it
// now. A name only the Manager covers gets a full handshake, which asks it.
func (s *Server) resumable(ss *tls.SessionState, name string) bool {
	var issued [][]byte
	for _, e := range ss.Extra {
		if v, ok := bytes.CutPrefix(e, []byte(sniExtra)); ok {
			issued = append(issued, v)
		}
	}
	if len(issued) != 1 || string(issued[0]) != name {
		return false
	}
	return !s.opts.StrictSNI || name == "" || s.current.Load().lookup(name) != nil
}
