//go:build linux

package proxy

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"runtime"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/imapwarden/imapwarden/internal/testenv"
)

// tcpPair is a connected loopback pair: a (wrapped by wrap) and its peer.
func tcpPair(t *testing.T, wrap func(net.Conn) net.Conn) (net.Conn, *net.TCPConn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	acc := make(chan net.Conn, 1)
	go func() {
		c, _ := ln.Accept()
		acc <- c
	}()
	a, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	b := <-acc
	if b == nil {
		t.Fatal("accept failed")
	}
	t.Cleanup(func() { a.Close(); b.Close() })
	return wrap(a), b.(*net.TCPConn)
}

// errClass names what the relay tells apart in an error (isTimeout,
// net.ErrClosed, io.EOF, a *net.OpError around an *os.SyscallError).
func errClass(err error) string {
	var ne net.Error
	var se *os.SyscallError
	switch {
	case err == nil:
		return "nil"
	case err == io.EOF:
		return "EOF"
	case isTimeout(err) && errors.As(err, &ne) && ne.Timeout() && errors.Is(err, os.ErrDeadlineExceeded):
		return "timeout"
	case errors.Is(err, net.ErrClosed):
		return "closed"
	case errors.As(err, &se):
		return "syscall " + se.Syscall
	}
	return "other: " + err.Error()
}

// TestSockConnLikeNetConn: a sockConn reads, writes, times out, ends and
// fails as the net package's connection does, scenario by scenario, the
// plain connection run through the same steps for the answer.
func TestSockConnLikeNetConn(t *testing.T) {
	scenarios := []struct {
		name string
		run  func(t *testing.T, a net.Conn, b *net.TCPConn) []string
	}{
		{"bulk both ways", func(t *testing.T, a net.Conn, b *net.TCPConn) []string {
			// 4 MiB fills both socket buffers: writes wait for room,
			// reads for data, in random sizes.
			data := make([]byte, 4<<20)
			rng := rand.New(rand.NewPCG(1, 2))
			for i := range data {
				data[i] = byte(rng.Uint32())
			}
			done := make(chan [32]byte, 1)
			go func() {
				h := sha256.New()
				buf := make([]byte, 1+rng.IntN(70000))
				io.CopyBuffer(h, io.LimitReader(b, int64(len(data))), buf)
				var sum [32]byte
				copy(sum[:], h.Sum(nil))
				done <- sum
			}()
			n, err := a.Write(data)
			got := <-done
			back := make(chan error, 1)
			go func() { _, err := b.Write(data); back <- err }()
			h := sha256.New()
			m, rerr := io.CopyBuffer(h, io.LimitReader(a, int64(len(data))), make([]byte, 5000))
			return []string{errClass(err), errClass(rerr), errClass(<-back),
				boolStr(n == len(data) && m == int64(len(data))),
				boolStr(got == sha256.Sum256(data) && bytes.Equal(h.Sum(nil), got[:]))}
		}},
		{"empty read", func(t *testing.T, a net.Conn, b *net.TCPConn) []string {
			n, err := a.Read(nil)
			return []string{strconv.Itoa(n), errClass(err)}
		}},
		{"read deadline, then data", func(t *testing.T, a net.Conn, b *net.TCPConn) []string {
			a.SetReadDeadline(time.Now().Add(-time.Second))
			n, err := a.Read(make([]byte, 10))
			a.SetReadDeadline(time.Time{})
			b.Write([]byte("after"))
			buf := make([]byte, 10)
			m, err2 := io.ReadFull(a, buf[:5])
			return []string{strconv.Itoa(n), errClass(err), strconv.Itoa(m), errClass(err2), string(buf[:m])}
		}},
		{"write deadline, peer not reading", func(t *testing.T, a net.Conn, b *net.TCPConn) []string {
			big := make([]byte, 64<<20)
			a.SetWriteDeadline(time.Now().Add(50 * time.Millisecond))
			n, err := a.Write(big)
			return []string{boolStr(n < len(big)), errClass(err)}
		}},
		{"peer closes", func(t *testing.T, a net.Conn, b *net.TCPConn) []string {
			b.Write([]byte("bye"))
			b.Close()
			got, err := io.ReadAll(a)
			n, err2 := a.Read(make([]byte, 1))
			return []string{string(got), errClass(err), strconv.Itoa(n), errClass(err2)}
		}},
		{"close wakes a blocked read", func(t *testing.T, a net.Conn, b *net.TCPConn) []string {
			res := make(chan error, 1)
			go func() { _, err := a.Read(make([]byte, 1)); res <- err }()
			// The read may start before or after Close: either way it ends.
			a.Close()
			err := <-res
			_, err2 := a.Write([]byte("x"))
			return []string{errClass(err), errClass(err2)}
		}},
		{"peer resets", func(t *testing.T, a net.Conn, b *net.TCPConn) []string {
			b.SetLinger(0)
			b.Close()
			// The reset may arrive after the first writes: write until one
			// fails (EPIPE or ECONNRESET, never SIGPIPE).
			var err error
			for range 1000 {
				if _, err = a.Write([]byte("x")); err != nil {
					break
				}
				time.Sleep(time.Millisecond)
			}
			_, rerr := a.Read(make([]byte, 1))
			return []string{errClass(err), errClass(rerr)}
		}},
	}
	for _, sc := range scenarios {
		t.Run(sc.name, func(t *testing.T) {
			a, b := tcpPair(t, func(c net.Conn) net.Conn { return c })
			want := sc.run(t, a, b)
			for _, raw := range []bool{!raceEnabled, true} {
				a, b = tcpPair(t, func(c net.Conn) net.Conn { return newSockConn(c, raw) })
				if _, ok := a.(*sockConn); !ok {
					t.Fatalf("newSockConn gave %T", a)
				}
				got := sc.run(t, a, b)
				if !slices.Equal(got, want) {
					t.Errorf("sockConn (raw %v) %q, net.Conn %q", raw, got, want)
				}
			}
		})
	}
}

// sockWraps are the connections the tests compare: the net package's,
// and sockConn as wrapSock makes it and with raw system calls whatever
// the build (the race detector's build otherwise uses syscall.Read).
var sockWraps = []struct {
	name string
	wrap func(net.Conn) net.Conn
}{
	{"net.Conn", func(c net.Conn) net.Conn { return c }},
	{"sockConn", wrapSock},
	{"sockConn raw", func(c net.Conn) net.Conn { return newSockConn(c, true) }},
}

// TestSockConnEmptyOps: an empty Read or Write reports a closed
// connection and a passed deadline as the net package's does.
func TestSockConnEmptyOps(t *testing.T) {
	var want []string
	for _, w := range sockWraps {
		a, _ := tcpPair(t, w.wrap)
		a.SetWriteDeadline(time.Now().Add(-time.Second))
		_, e1 := a.Write(nil)
		a.SetWriteDeadline(time.Time{})
		a.Close()
		_, e2 := a.Write(nil)
		_, e3 := a.Read(nil)
		got := []string{errClass(e1), errClass(e2), errClass(e3)}
		if want == nil {
			want = got
		} else if !slices.Equal(got, want) {
			t.Errorf("%s %q, net.Conn %q", w.name, got, want)
		}
	}
}

// TestSockConnConcurrentWrites: Writes from two goroutines at once each
// go whole, as net.Conn promises.
func TestSockConnConcurrentWrites(t *testing.T) {
	for _, w := range sockWraps {
		t.Run(w.name, func(t *testing.T) {
			a, b := tcpPair(t, w.wrap)
			const per, size = 5000, 64
			var wg sync.WaitGroup
			for g := range 2 {
				wg.Go(func() {
					rec := bytes.Repeat([]byte{byte('A' + g)}, size)
					for range per {
						if n, err := a.Write(rec); n != size || err != nil {
							t.Errorf("write: %d %v", n, err)
							return
						}
					}
				})
			}
			go func() { wg.Wait(); a.Close() }()
			all, err := io.ReadAll(b)
			if err != nil {
				t.Fatal(err)
			}
			torn := 0
			for i := 0; i+size <= len(all); i += size {
				if r := all[i : i+size]; bytes.Count(r, r[:1]) != size {
					torn++
				}
			}
			if len(all) != 2*per*size || torn > 0 {
				t.Errorf("%d bytes (want %d), %d torn records", len(all), 2*per*size, torn)
			}
		})
	}
}

// TestSockConnBlockingSocket: a read never sleeps holding the P, even on
// a socket something made blocking (TCPConn.File does, on the shared file
// description): with one P, another goroutine still runs. A child process
// each, since a failure stalls the whole process.
func TestSockConnBlockingSocket(t *testing.T) {
	if kind := os.Getenv("SOCK_BLOCKING_CHILD"); kind != "" {
		runtime.GOMAXPROCS(1)
		a, _ := tcpPair(t, func(c net.Conn) net.Conn { return c })
		f, err := a.(*net.TCPConn).File()
		if err != nil {
			t.Fatal(err)
		}
		f.Fd() // the shared file description is blocking from now on
		for _, w := range sockWraps {
			if w.name == kind {
				a = w.wrap(a)
			}
		}
		started := make(chan struct{})
		go func() {
			close(started)
			a.Read(make([]byte, 1)) // nothing comes
		}()
		<-started
		runtime.Gosched() // the reader goes on to its read
		fmt.Println("ALIVE")
		os.Exit(0)
	}
	for _, w := range sockWraps {
		cmd := exec.CommandContext(testenv.Context(t), os.Args[0], "-test.run=^TestSockConnBlockingSocket$")
		cmd.Env = append(os.Environ(), "SOCK_BLOCKING_CHILD="+w.name)
		out, _ := cmd.Output()
		if !bytes.Contains(out, []byte("ALIVE")) {
			t.Errorf("%s: the process stalled: %q", w.name, out)
		}
	}
}

func boolStr(b bool) string {
	if b {
		return "true"
	}
	return "false"
}

// TestWrapSockOnlyPlainTCP: a wrapper's own bytes are never skipped: only
// a *net.TCPConn itself reads and writes the socket directly.
func TestWrapSockOnlyPlainTCP(t *testing.T) {
	a, _ := tcpPair(t, func(c net.Conn) net.Conn { return c })
	w := &writeCounter{Conn: a}
	if got := wrapSock(w); got != net.Conn(w) {
		t.Fatalf("wrapSock wrapped a %T", w)
	}
	if tc, ok := tcpOf(wrapSock(a)); !ok || tc != a.(*net.TCPConn) {
		t.Fatalf("tcpOf: %v %v", tc, ok)
	}
}

// TestRelayUsesSockConn: both of a relayed session's connections are read
// and written directly (sockConn), the client's under TLS.
func TestRelayUsesSockConn(t *testing.T) {
	h := newHarness(t)
	c := h.login()
	c.transact("a2 NOOP", "a2 OK")
	h.srv.mu.Lock()
	var ss []*Session
	for s := range h.srv.sessions {
		ss = append(ss, s)
	}
	h.srv.mu.Unlock()
	if len(ss) != 1 {
		t.Fatalf("%d sessions", len(ss))
	}
	s := ss[0]
	if _, ok := s.raw.Conn.(*sockConn); !ok {
		t.Errorf("client connection is a %T", s.raw.Conn)
	}
	s.connMu.Lock()
	be := s.be
	s.connMu.Unlock()
	if _, ok := be.raw.(*sockConn); !ok {
		t.Errorf("backend connection is a %T", be.raw)
	}
}
