package main

import (
	"maps"
	"strings"
	"sync"
	"time"

	"github.com/imapwarden/imapwarden/proxy"
)

// recentEvents keeps the newest policy denials and limit hits in memory
// for the console and GET /recent, whether or not an audit trail is on.
// It is an Auditor that ignores everything else; its cost on an allowed
// command is one comparison.
type recentEvents struct {
	mu     sync.Mutex
	buf    []recentEvent
	next   int
	full   bool
	health map[string]backendHealth // by backend name (from the configuration)
}

// backendHealth is what sessions saw of a backend since the start.
type backendHealth struct {
	LastLogin   time.Time // a login through it succeeded
	LastFailure time.Time
	Failure     string // connect-failed, lost, starttls-injection
	Failures    int
}

// recentEvent is one denial or limit hit. Its strings come from clients
// (user, mailbox): the console escapes them.
type recentEvent struct {
	Time     time.Time `json:"ts"`
	Kind     string    `json:"kind"` // policy.deny | limit
	Session  string    `json:"session,omitempty"`
	User     string    `json:"user,omitempty"`
	Client   string    `json:"client,omitempty"`
	Point    string    `json:"point,omitempty"` // auth | command
	Command  string    `json:"command,omitempty"`
	Mailbox  string    `json:"mailbox,omitempty"`
	Limit    string    `json:"limit,omitempty"`
	LimitKey string    `json:"limit_key,omitempty"`
	Event    string    `json:"event,omitempty"` // limit: exceeded | alert
	Code     string    `json:"code,omitempty"`
	Reason   string    `json:"reason,omitempty"`
}

func newRecentEvents(n int) *recentEvents {
	return &recentEvents{buf: make([]recentEvent, n), health: map[string]backendHealth{}}
}

func (r *recentEvents) add(e recentEvent) {
	r.mu.Lock()
	r.buf[r.next] = e
	r.next++
	if r.next == len(r.buf) {
		r.next, r.full = 0, true
	}
	r.mu.Unlock()
}

// list returns the events, newest first; nil-safe.
func (r *recentEvents) list() []recentEvent {
	out := []recentEvent{}
	if r == nil {
		return out
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	n := r.next
	if r.full {
		n = len(r.buf)
	}
	for i := range n {
		out = append(out, r.buf[(r.next-1-i+len(r.buf))%len(r.buf)])
	}
	return out
}

func (r *recentEvents) base(s *proxy.SessionInfo, kind string) recentEvent {
	e := recentEvent{Time: time.Now(), Kind: kind, Session: s.ID, User: s.User}
	if s.ClientAddr.IsValid() {
		e.Client = s.ClientAddr.Addr().Unmap().String()
	}
	return e
}

func (r *recentEvents) Command(s *proxy.SessionInfo, ev proxy.CommandEvent) error {
	if !ev.Denied {
		return nil
	}
	e := r.base(s, "policy.deny")
	e.Point, e.Code = "command", ev.Code
	if c := ev.Command; c != nil {
		e.Command, e.Mailbox = c.Name, c.Mailbox
		if c.UID {
			e.Command = "UID " + c.Name
		}
	}
	if e.Mailbox == "" {
		e.Mailbox = s.Selected
	}
	if d := ev.Decision; d != nil {
		e.Reason = d.Reason
		if e.Code == "" {
			e.Code = d.Code
		}
	}
	r.add(e)
	return nil
}

func (r *recentEvents) Auth(s *proxy.SessionInfo, ev proxy.AuthEvent) {
	if ev.Success && ev.Backend != "" {
		r.mu.Lock()
		h := r.health[ev.Backend]
		h.LastLogin = time.Now()
		r.health[ev.Backend] = h
		r.mu.Unlock()
	}
	if ev.Success || ev.Reason != "policy" {
		return
	}
	e := r.base(s, "policy.deny")
	e.Point, e.User = "auth", ev.User
	if d := ev.Decision; d != nil {
		e.Code, e.Reason = d.Code, d.Reason
	}
	r.add(e)
}

func (r *recentEvents) Limit(s *proxy.SessionInfo, l proxy.LimitResult) {
	e := r.base(s, "limit")
	e.Limit, e.LimitKey, e.Code, e.Reason, e.Event = l.Limit, l.Key, l.Code, l.Reason, "exceeded"
	if !l.Exceeded {
		e.Event = "alert"
	}
	r.add(e)
}

func (r *recentEvents) SessionOpen(*proxy.SessionInfo) {}
func (r *recentEvents) TLSStarted(*proxy.SessionInfo)  {}

// Security notes backend trouble, which the proxy reports with the
// backend's name as the detail.
func (r *recentEvents) Security(_ *proxy.SessionInfo, kind, detail string) {
	ev, ok := strings.CutPrefix(kind, "backend-")
	if !ok {
		return
	}
	r.mu.Lock()
	h := r.health[detail]
	h.LastFailure, h.Failure = time.Now(), ev
	h.Failures++
	r.health[detail] = h
	r.mu.Unlock()
}

// backendHealth returns a copy of what sessions saw of each backend.
func (r *recentEvents) backendHealth() map[string]backendHealth {
	if r == nil {
		return nil
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	return maps.Clone(r.health)
}
func (r *recentEvents) SessionClose(*proxy.SessionInfo, proxy.CloseEvent) {}
func (r *recentEvents) Delivered(*proxy.SessionInfo, proxy.DeliveryEvent) {}

var _ proxy.Auditor = (*recentEvents)(nil)
