package proxy

import (
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// LimitMaxPreAuthConnections names the server-wide cap on connections not
// yet authenticated (Limits.MaxPreAuthConnections) in limit hits.
const LimitMaxPreAuthConnections = "max_preauth_connections"

// preAuthBye is what a STARTTLS client refused by the cap reads: a reply
// like any other (reply.go), encoded once, since no session exists yet.
var preAuthBye = appendReply(nil, "*", bye(CloseLimit, "UNAVAILABLE", "Too many connections, try again later"))

// preAuthAuditEvery is the least time between two audit records of
// refusals by the cap: a flood is recorded as counts, not line by line.
const preAuthAuditEvery = time.Minute

// DefaultMaxPreAuthConnections is the default of
// Limits.MaxPreAuthConnections for this machine: a quarter of the
// open-file limit (a connection awaiting login holds one descriptor, a
// session two), at least 64 and at most 4096 (a pending TLS connection
// costs tens of KiB); 1024 where the limit is unknown.
func DefaultMaxPreAuthConnections() int {
	n := openFileLimit()
	if n <= 0 {
		return 1024
	}
	return min(max(n/4, 64), 4096)
}

// preAuthGate bounds the connections not yet authenticated, server-wide.
// The per-IP limits cannot: behind a trusted balancer (PROXY protocol)
// every address is whatever the header says, and a flood from many
// addresses holds each connection until Limits.PreAuthIdle. A connection
// takes a slot when accepted, before anything is read from it, and gives
// it back when its login succeeds or it ends.
type preAuthGate struct {
	n atomic.Int64

	// Refusals are audited without flooding the trail: the first after a
	// quiet period at once, the others as one record with their count at
	// most every preAuthAuditEvery (and at Close).
	mu      sync.Mutex
	every   time.Duration
	pending int         // refusals not yet recorded
	last    time.Time   // of the last record
	timer   *time.Timer // armed while pending refusals wait for their record; in Server.wg
	closed  bool        // by Close: nothing more is recorded
}

// admitPreAuth takes a slot for a new connection, or reports that the
// cap is reached.
func (s *Server) admitPreAuth() bool {
	limit := int64(s.dyn.Load().Limits.MaxPreAuthConnections)
	if s.preAuth.n.Add(1) > limit {
		s.preAuth.n.Add(-1)
		return false
	}
	s.opts.Metrics.preAuthConns(1)
	return true
}

// leavePreAuth gives the session's slot back, once: at login or at its end.
func (s *Session) leavePreAuth() {
	if s.preAuthSlot {
		s.preAuthSlot = false
		s.srv.preAuth.n.Add(-1)
		s.srv.opts.Metrics.preAuthConns(-1)
	}
}

// refusePreAuth turns a connection away at accept: "* BYE [UNAVAILABLE]"
// on a STARTTLS listener (RFC 9051 §7.1.5, RFC 5530 §3), a plain close
// on an implicit-TLS one, where nothing can be said before a handshake
// that a refused flood must not cost. The write cannot wait: the socket's
// send buffer is empty, and the deadline keeps the accept loop going
// whatever the peer does.
func (s *Server) refusePreAuth(c net.Conn, lo *ListenerOptions) {
	res := LimitResult{Exceeded: true, Limit: LimitMaxPreAuthConnections, Key: "server", Code: "UNAVAILABLE",
		Reason: "Too many connections awaiting login"}
	s.opts.Metrics.limitHit(res)
	if lo.Mode == StartTLS {
		c.SetWriteDeadline(time.Now().Add(time.Second))
		c.Write(preAuthBye)
	}
	c.Close()

	g := &s.preAuth
	g.mu.Lock()
	g.pending++
	now := time.Now()
	var info *SessionInfo
	var n int
	switch {
	case g.timer != nil || g.closed:
		// A record is due already, or the server is closing.
	case now.Sub(g.last) < g.every:
		// The accept loop holds a count of wg: this Add cannot race Wait.
		s.wg.Add(1)
		g.timer = time.AfterFunc(g.last.Add(g.every).Sub(now), func() {
			defer s.wg.Done()
			s.flushPreAuthRefusals()
		})
	default:
		// The first refusal after a quiet period: with its address.
		info = &SessionInfo{Listener: lo.Name, ClientAddr: addrPort(c.RemoteAddr()), LocalAddr: addrPort(c.LocalAddr()), Started: now}
		n, g.pending, g.last = g.pending, 0, now
	}
	g.mu.Unlock()
	if info != nil {
		res.Count = n
		s.auditor.Limit(info, res)
	}
}

// flushPreAuthRefusals records the refusals counted since the last record.
func (s *Server) flushPreAuthRefusals() {
	g := &s.preAuth
	g.mu.Lock()
	n := g.pending
	g.pending, g.last, g.timer = 0, time.Now(), nil
	g.mu.Unlock()
	if n > 0 {
		s.auditor.Limit(&SessionInfo{Started: time.Now()}, LimitResult{Exceeded: true, Limit: LimitMaxPreAuthConnections,
			Key: "server", Code: "UNAVAILABLE", Reason: "Too many connections awaiting login", Count: n})
	}
}

// closePreAuth records the pending refusals at Close; none are recorded
// after.
func (s *Server) closePreAuth() {
	g := &s.preAuth
	g.mu.Lock()
	if g.closed {
		g.mu.Unlock()
		return
	}
	g.closed = true
	t := g.timer
	g.mu.Unlock()
	if t != nil && !t.Stop() {
		return // it runs now and records what is pending
	}
	if t != nil {
		s.wg.Done()
	}
	s.flushPreAuthRefusals()
}
