package proxy

import (
	"context"
	"net"
	"syscall"
	"time"
)

// Keep-alive parameters of every accepted client connection: Go's
// defaults for the connections its listeners accept (net.ListenConfig,
// KeepAlive 0), kept when the listener sets them itself.
const (
	clientKeepAliveIdle     = 15 * time.Second
	clientKeepAliveInterval = 15 * time.Second
	clientKeepAliveCount    = 9
)

// listen binds a listener whose accepted connections inherit their
// keep-alive options from the listening socket (Linux copies the socket's
// options into every connection it accepts): Go would set four options on
// each connection, four system calls per login. TCP_NODELAY is still set
// by Go on each (TestSocketOptions checks both).
func listen(addr string) (net.Listener, error) {
	lc := net.ListenConfig{KeepAlive: -1, Control: func(_, _ string, rc syscall.RawConn) error {
		var serr error
		err := rc.Control(func(fd uintptr) {
			for _, o := range [...]struct{ level, opt, v int }{
				{syscall.SOL_SOCKET, syscall.SO_KEEPALIVE, 1},
				{syscall.IPPROTO_TCP, syscall.TCP_KEEPIDLE, int(clientKeepAliveIdle / time.Second)},
				{syscall.IPPROTO_TCP, syscall.TCP_KEEPINTVL, int(clientKeepAliveInterval / time.Second)},
				{syscall.IPPROTO_TCP, syscall.TCP_KEEPCNT, clientKeepAliveCount},
			} {
				if serr = syscall.SetsockoptInt(int(fd), o.level, o.opt, o.v); serr != nil {
					return
				}
			}
		})
		if err != nil {
			return err
		}
		return serr
	}}
	return lc.Listen(context.Background(), "tcp", addr)
}
