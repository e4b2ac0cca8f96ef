package proxy

import (
	"bufio"
	"compress/flate"
	"crypto/tls"
	"io"
	"net"
	"sync"
	"time"
)

// clientWriter is the client's write side. After login both pumps write to
// the client: the backend pump the responses it relays, the client pump
// the proxy's own answers ("+", BAD, NO, BYE); each writes whole responses
// under mu, so that they never interleave (ARCHITECTURE.md §5).
// The buffer is pooled: taken for a write, given back once flushed, so a
// waiting session holds none.
type clientWriter struct {
	mu sync.Mutex
	bw *bufio.Writer // nil while nothing is being written
	dw deadlineWriter
	// With COMPRESS=DEFLATE active (compress.go) bw writes into cw, which
	// compresses into dw.
	fw *flate.Writer
	cw compressWriter
	// open: the backend pump wrote part of a response and not its end
	// (Session.stop).
	open openState
}

// openState says where a response the backend pump left half written
// stands: the proxy's own line (a BYE) starts after a CRLF in the middle
// of a line, and is not written at all in the middle of a literal, whose
// octets it would become (ARCHITECTURE.md §15).
type openState uint8

const (
	openNone openState = iota
	openLine
	openLiteral
)

// setConn makes the writer write to c: the TCP connection, or TLS on it
// (whose records a large write gathers into one write of the connection
// beneath).
func (o *clientWriter) setConn(c net.Conn, timeout time.Duration) {
	o.mu.Lock()
	o.dw = deadlineWriter{c: c, timeout: timeout}
	if o.bw != nil {
		o.bw.Reset(o.sink())
	}
	o.mu.Unlock()
}

func (o *clientWriter) sink() io.Writer {
	if o.fw != nil {
		return &o.cw
	}
	return &o.dw
}

// lock takes the writer for one response; unlock gives it back.
func (o *clientWriter) lock() *bufio.Writer {
	o.mu.Lock()
	return o.buf()
}

// buf returns the buffer, taking one from the pool if needed. Called with
// mu held.
func (o *clientWriter) buf() *bufio.Writer {
	if o.bw == nil {
		o.bw = clientWriters.get(o.sink())
	}
	return o.bw
}

// unlock returns the buffer to the pool once it holds nothing, and
// releases the writer.
func (o *clientWriter) unlock() {
	o.idle()
	o.mu.Unlock()
}

// idle gives the buffer back once it holds nothing. Called with mu held.
func (o *clientWriter) idle() {
	if o.bw != nil && o.bw.Buffered() == 0 {
		clientWriters.put(o.bw)
		o.bw = nil
	}
}

// flush sends what the buffer holds, through the compressor when COMPRESS
// is active (a sync flush, so that the client can read each response at
// once). Called with mu held.
func (o *clientWriter) flush() error {
	if o.bw != nil {
		if err := o.bw.Flush(); err != nil {
			return err
		}
	}
	if o.fw != nil {
		return o.fw.Flush()
	}
	return nil
}

// send writes b as one response and flushes it.
func (o *clientWriter) send(b []byte) error {
	w := o.lock()
	w.Write(b)
	err := o.flush()
	o.unlock()
	return err
}

// release gives the pooled buffer and compressor back at the session's
// end; it reports whether a compressor was held.
func (o *clientWriter) release() bool {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.bw != nil {
		clientWriters.put(o.bw)
		o.bw = nil
	}
	if o.fw == nil {
		return false
	}
	o.fw.Reset(io.Discard)
	deflaters.Put(o.fw)
	o.fw = nil
	return true
}

// deadlineWriter keeps the write deadline at least timeout ahead of
// every write, so that a client that stops reading cannot hold a pump
// forever, while a long transfer that makes progress is never cut. It
// moves the deadline only when less than timeout is left, and then to
// timeout and an eighth ahead: a client that stops reading is cut
// between timeout and 9/8 of it after the write began, and a session's
// writes change the timer once in timeout/8 rather than at each reply (a
// timer change and the poller's deadline lock, per command).
type deadlineWriter struct {
	c       net.Conn
	timeout time.Duration
	// until is the deadline set last, in nanoseconds since
	// writeEpoch; 0 when none was (setConn).
	until int64
}

// writeEpoch is the origin of deadlineWriter.until (monotonic).
var writeEpoch = time.Now()

func (w *deadlineWriter) Write(p []byte) (int, error) {
	if now := int64(time.Since(writeEpoch)); w.until-now < int64(w.timeout) {
		w.until = now + int64(w.timeout+w.timeout/8)
		w.c.SetWriteDeadline(writeEpoch.Add(time.Duration(w.until)))
	}
	if len(p) > tlsRecord {
		// TLS on the session's connection: its records leave in one
		// write (countConn.gather). Looked up here, not kept: the
		// Session fills its size class (ARCHITECTURE.md §16).
		if tc, ok := w.c.(*tls.Conn); ok {
			if cc, ok := tc.NetConn().(*countConn); ok {
				return cc.gather(w.c, p)
			}
		}
	}
	return w.c.Write(p)
}
