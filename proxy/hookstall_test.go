package proxy

import (
	"context"
	"fmt"
	"net"
	"testing"
	"time"

	"github.com/imapwarden/imapwarden/internal/testenv"
	"github.com/imapwarden/imapwarden/proxy/imapwire"
)

// blockingLimiter's handle blocks Command for the tag "slow" until
// release is closed, as a Redis round trip may; it limits nothing.
type blockingLimiter struct{ entered, release chan struct{} }

func (l *blockingLimiter) Connect(*SessionInfo) (LimitResult, LimitConn) {
	return LimitResult{}, blockingConn{l}
}

type blockingConn struct{ l *blockingLimiter }

func (blockingConn) Login(context.Context, string) (LimitResult, LoginPlace) {
	return LimitResult{}, noPlace{}
}
func (blockingConn) Session() (LimitResult, func())   { return LimitResult{}, nil }
func (blockingConn) Delivered(int64, int) LimitResult { return LimitResult{} }
func (blockingConn) Snapshot() map[string]int64       { return nil }
func (blockingConn) Release()                         {}
func (c blockingConn) Command(cmd *imapwire.Command) LimitResult {
	if cmd.Tag == "slow" {
		close(c.l.entered)
		<-c.l.release
	}
	return LimitResult{}
}

// noPlace is a login in flight that counts nothing.
type noPlace struct{}

func (noPlace) Result(bool) time.Duration { return 0 }
func (noPlace) Release()                  {}

// blockingAuditor blocks the record of a refused command until release
// is closed, as a full audit queue may.
type blockingAuditor struct {
	*recAuditor
	entered, release chan struct{}
}

func (a blockingAuditor) Command(s *SessionInfo, e CommandEvent) error {
	if e.Denied {
		close(a.entered)
		<-a.release
	}
	return a.recAuditor.Command(s, e)
}

// A hook the client pump asks (the policy, the limiter, the audit of a
// refusal) is called with no lock held, so that while it waits the backend
// pump still relays the answer to an earlier command (ARCHITECTURE.md §5).
// The backend holds that answer until the client pump is inside the hook.
func TestHookStallsOnlyItsPump(t *testing.T) {
	for _, hook := range []string{"policy", "limiter", "audit"} {
		t.Run(hook, func(t *testing.T) {
			entered, release := make(chan struct{}), make(chan struct{})
			gotF1, answerF1 := make(chan struct{}), make(chan struct{})
			want := "slow OK"
			h := scriptedHarness(t, func(c net.Conn, tag, line string) {
				if tag == "f1" {
					close(gotF1)
					<-answerF1
				}
				fmt.Fprintf(c, "%s OK done\r\n", tag)
			}, func(o *Options) {
				switch hook {
				case "policy":
					o.Decider = funcDecider(func(in *DecisionInput) Decision {
						if in.Command != nil && in.Command.Tag == "slow" {
							close(entered)
							<-release
						}
						return Decision{Allow: true}
					})
				case "limiter":
					o.Limiter = &blockingLimiter{entered: entered, release: release}
				case "audit":
					want = "slow NO"
					o.Auditor = blockingAuditor{recAuditor: &recAuditor{}, entered: entered, release: release}
					o.Decider = funcDecider(func(in *DecisionInput) Decision {
						return Decision{Allow: in.Command == nil || in.Command.Tag != "slow"}
					})
				}
			})
			// A failed test still lets the hook and the backend go, so
			// that the session ends (cleanups run last first: this before the
			// harness waits for the server).
			var released, answered bool
			t.Cleanup(func() {
				if !released {
					close(release)
				}
				if !answered {
					close(answerF1)
				}
			})
			wait := func(ch chan struct{}, what string) {
				t.Helper()
				select {
				case <-ch:
				case <-time.After(testenv.IOTimeout()):
					t.Fatalf("timed out waiting for %s", what)
				}
			}
			c := h.login()
			c.send("f1 NOOP")
			wait(gotF1, "f1 at the backend")
			c.send("slow NOOP")
			wait(entered, "the "+hook+" hook")
			close(answerF1)
			answered = true
			c.expect("f1 OK") // while the client pump waits in the hook
			close(release)
			released = true
			c.expect(want)
			c.transact("z LOGOUT", "z OK")
		})
	}
}

// deliveryBlockingAuditor blocks the record of a delivery no command
// answers, or of a limit hit, until release is closed, as a full audit
// queue may.
type deliveryBlockingAuditor struct {
	*recAuditor
	limit            bool // block Limit rather than Delivered
	entered, release chan struct{}
}

func (a deliveryBlockingAuditor) Delivered(s *SessionInfo, e DeliveryEvent) {
	if !a.limit {
		close(a.entered)
		<-a.release
	}
	a.recAuditor.Delivered(s, e)
}

func (a deliveryBlockingAuditor) Limit(s *SessionInfo, r LimitResult) {
	if a.limit {
		close(a.entered)
		<-a.release
	}
	a.recAuditor.Limit(s, r)
}

// alertingLimiter's handle reports every delivery as over its budget
// (an alert, nothing refused).
type alertingLimiter struct{}

func (alertingLimiter) Connect(*SessionInfo) (LimitResult, LimitConn) {
	return LimitResult{}, alertingConn{}
}

type alertingConn struct{ blockingConn }

func (alertingConn) Command(*imapwire.Command) LimitResult { return LimitResult{} }
func (alertingConn) Delivered(int64, int) LimitResult {
	return LimitResult{Alert: true, Limit: "fetch_bytes_per_user", Key: "user"}
}

// The audit hooks the backend pump calls (a delivery no command in flight
// answers, a limit hit inside a response) are called with the client
// writer let go, so that while a slow trail holds them the client pump
// still answers the client itself (ARCHITECTURE.md §5).
func TestBackendAuditStallsOnlyItsPump(t *testing.T) {
	for _, hook := range []string{"delivery", "limit"} {
		t.Run(hook, func(t *testing.T) {
			entered, release := make(chan struct{}), make(chan struct{})
			rec := &recAuditor{}
			h := scriptedHarness(t, func(c net.Conn, tag, line string) {
				if tag == "f1" {
					// Content no command in flight asked for (as NOTIFY
					// delivers it, RFC 5465).
					fmt.Fprintf(c, "%s OK done\r\n* 1 FETCH (BODY[] {5}\r\nhello)\r\n", tag)
					return
				}
				fmt.Fprintf(c, "%s OK done\r\n", tag)
			}, func(o *Options) {
				o.Auditor = deliveryBlockingAuditor{recAuditor: rec, limit: hook == "limit", entered: entered, release: release}
				if hook == "limit" {
					o.Limiter = alertingLimiter{}
				}
			})
			released := false
			t.Cleanup(func() {
				if !released {
					close(release)
				}
			})
			c := h.login()
			c.send("f1 NOOP")
			select {
			case <-entered:
			case <-time.After(testenv.IOTimeout()):
				t.Fatalf("timed out waiting for the %s hook", hook)
			}
			// Nothing selected: the proxy answers CHECK itself, through
			// the client writer the backend pump must not hold.
			c.transact("a1 CHECK", "a1 BAD")
			close(release)
			released = true
			c.transact("z LOGOUT", "z OK")
		})
	}
}
