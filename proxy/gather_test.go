package proxy

import (
	"bytes"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"runtime"
	"testing"
)

// tlsOverPipe returns a server TLS connection on a countConn and its
// client, handshake done.
func tlsOverPipe(t *testing.T) (*countConn, *tls.Conn, *tls.Conn) {
	t.Helper()
	a, b := net.Pipe()
	t.Cleanup(func() { a.Close(); b.Close() })
	cc := &countConn{Conn: a}
	srv := tls.Server(cc, serverTLS())
	cli := tls.Client(b, &tls.Config{InsecureSkipVerify: true})
	errc := make(chan error, 1)
	go func() { errc <- cli.Handshake() }()
	if err := srv.Handshake(); err != nil {
		t.Fatal(err)
	}
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
	return cc, srv, cli
}

// TestGatherAgrees: what a gathered write sends is what a plain TLS write
// would: the client reads the same bytes, and the records went in one
// write on the connection beneath.
func TestGatherAgrees(t *testing.T) {
	cc, srv, cli := tlsOverPipe(t)
	p := bytes.Repeat([]byte("0123456789abcdef"), clientWriteBuf/16)
	got := make(chan []byte, 1)
	go func() {
		b := make([]byte, 2*len(p))
		_, err := io.ReadFull(cli, b)
		if err != nil {
			t.Error(err)
		}
		got <- b
	}()
	before := cc.out.Load()
	if n, err := cc.gather(srv, p); err != nil || n != len(p) {
		t.Fatalf("gather: %d %v", n, err)
	}
	if sent := cc.out.Load() - before; sent <= int64(len(p)) || sent > gatherBufSize {
		t.Errorf("%d octets on the wire for %d of plaintext", sent, len(p))
	}
	if _, err := srv.Write(p); err != nil {
		t.Fatal(err)
	}
	if b := <-got; !bytes.Equal(b[:len(p)], p) || !bytes.Equal(b[len(p):], p) {
		t.Error("the client read something else")
	}
}

// TestGatherCloseDoesNotWait: a close while gathered records are being
// written to a client that reads nothing does not wait for that write
// (its close_notify is refused, as during any Write) and the write ends.
func TestGatherCloseDoesNotWait(t *testing.T) {
	cc, srv, _ := tlsOverPipe(t) // the client never reads again
	done := make(chan error, 1)
	go func() {
		_, err := cc.gather(srv, make([]byte, clientWriteBuf))
		done <- err
	}()
	for {
		cc.wmu.Lock()
		flushing := cc.flushing
		cc.wmu.Unlock()
		if flushing {
			break
		}
		runtime.Gosched()
	}
	if err := srv.Close(); !errors.Is(err, errGatherBusy) {
		t.Errorf("Close: %v, want the close_notify refused", err)
	}
	if err := <-done; err == nil {
		t.Error("the gathered write to a closed connection succeeded")
	}
}
