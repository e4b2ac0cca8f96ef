package ldap

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync"

	goldap "github.com/go-ldap/ldap/v3"
)

// pool keeps up to size connections open; a login waits for one when all
// are busy, at most until its context ends.
type pool struct {
	dial  func(ctx context.Context) (*goldap.Conn, error)
	idle  chan *goldap.Conn
	slots chan struct{} // one per connection open (idle or in use)

	mu     sync.Mutex
	closed bool
}

func newPool(size int, dial func(ctx context.Context) (*goldap.Conn, error)) *pool {
	return &pool{dial: dial, idle: make(chan *goldap.Conn, size), slots: make(chan struct{}, size)}
}

// get returns an idle connection, or a new one while fewer than size are
// open. reused reports a connection that served before.
func (p *pool) get(ctx context.Context) (c *goldap.Conn, reused bool, err error) {
	for {
		select {
		case c := <-p.idle:
			if c.IsClosing() {
				p.drop(c)
				continue
			}
			return c, true, nil
		default:
		}
		select {
		case c := <-p.idle:
			if c.IsClosing() {
				p.drop(c)
				continue
			}
			return c, true, nil
		case p.slots <- struct{}{}:
			c, err := p.dial(ctx)
			if err != nil {
				<-p.slots
				return nil, false, err
			}
			return c, false, nil
		case <-ctx.Done():
			return nil, false, fmt.Errorf("ldap: waiting for a connection: %w", ctx.Err())
		}
	}
}

// put gives c back, or closes it when it failed.
func (p *pool) put(c *goldap.Conn, broken bool) {
	p.mu.Lock()
	closed := p.closed
	p.mu.Unlock()
	if broken || closed || c.IsClosing() {
		p.drop(c)
		return
	}
	p.idle <- c // never blocks: at most size connections exist
}

func (p *pool) drop(c *goldap.Conn) {
	c.Close()
	<-p.slots
}

// do runs fn on a pooled connection. A connection the directory closed
// while idle fails at once: fn is tried again, once, on a new one. After
// close it still works (a login in flight while a reload replaced the
// Directory), keeping no connection.
func (p *pool) do(ctx context.Context, fn func(c *goldap.Conn) error) error {
	for attempt := 0; ; attempt++ {
		c, reused, err := p.get(ctx)
		if err != nil {
			return err
		}
		err = fn(c)
		broken := isNetworkError(err)
		p.put(c, broken)
		if broken && reused && attempt == 0 {
			continue
		}
		return err
	}
}

func (p *pool) close() {
	p.mu.Lock()
	p.closed = true
	p.mu.Unlock()
	for {
		select {
		case c := <-p.idle:
			p.drop(c)
		default:
			return
		}
	}
}

// isNetworkError reports an error after which the connection is unusable:
// go-ldap's own codes (200 and up: network, timeout, closed) or a network
// error. An LDAP result from the server leaves it usable.
func isNetworkError(err error) bool {
	if err == nil {
		return false
	}
	var le *goldap.Error
	if errors.As(err, &le) {
		return le.ResultCode >= goldap.ErrorNetwork
	}
	var ne net.Error
	return errors.As(err, &ne)
}
