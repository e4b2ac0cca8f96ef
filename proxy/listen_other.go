//go:build !linux

package proxy

import "net"

// listen binds a listener; Go sets keep-alives on each connection it
// accepts (listen_linux.go sets them once, on the listener).
func listen(addr string) (net.Listener, error) { return net.Listen("tcp", addr) }
