//go:build !linux

package proxy

import "net"

// wrapSock is Linux's (sock_linux.go); elsewhere connections are used as
// the net package gives them.
func wrapSock(c net.Conn) net.Conn { return c }

// tcpOf is the TCP connection under c, if any.
func tcpOf(c net.Conn) (*net.TCPConn, bool) {
	tc, ok := c.(*net.TCPConn)
	return tc, ok
}

// idleSock is Linux's (sock_linux.go).
func idleSock(net.Conn) {}
