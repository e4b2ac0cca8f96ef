package proxy

import (
	"bufio"
	"io"
	"sync"

	"github.com/imapwarden/imapwarden/proxy/imapwire"
)

// The buffers that carry data (responses toward the client, from the
// backend, commands both ways) come from pools: taken for a transfer,
// given back whenever a session waits, so that an idle session holds none
// and connection churn does not churn the heap. Literal bodies stream
// through them and are never held whole.
var (
	clientWriters  = newWriterPool(clientWriteBuf)
	backendWriters = newWriterPool(backendWriteBuf)
	clientReaders  = newReaderPool(clientReadBuf)
	backendReaders = newReaderPool(backendReadBuf)
)

type readerPool struct{ p sync.Pool }

func newReaderPool(size int) *readerPool {
	return &readerPool{sync.Pool{New: func() any { return bufio.NewReaderSize(nil, size) }}}
}

func (rp *readerPool) get(r io.Reader) *bufio.Reader {
	br := rp.p.Get().(*bufio.Reader)
	br.Reset(r)
	return br
}

// put returns br; nobody may use it afterwards.
func (rp *readerPool) put(br *bufio.Reader) {
	br.Reset(nil)
	rp.p.Put(br)
}

type writerPool struct{ p sync.Pool }

func newWriterPool(size int) *writerPool {
	return &writerPool{sync.Pool{New: func() any { return bufio.NewWriterSize(nil, size) }}}
}

func (wp *writerPool) get(w io.Writer) *bufio.Writer {
	bw := wp.p.Get().(*bufio.Writer)
	bw.Reset(w)
	return bw
}

// put returns bw; nobody may use it afterwards.
func (wp *writerPool) put(bw *bufio.Writer) {
	bw.Reset(nil)
	wp.p.Put(bw)
}

// parsers holds command parsers (about 1.4 KB each, and the argument
// lists they keep for reuse) of sessions that do not read a command:
// a parked client pump gives its parser back (ARCHITECTURE.md §16).
var parsers = sync.Pool{New: func() any { return new(imapwire.CommandParser) }}

// putParser gives the session's parser back; the session goroutine only,
// once nothing refers to the last command (in-flight records hold copies).
func (s *Session) putParser() {
	if s.parser != nil {
		s.parser.Reset()
		s.parser.Bounds = nil // the session's configuration, which the pool must not keep
		parsers.Put(s.parser)
		s.parser = nil
	}
}

// takeParser takes a parser for the next command if the session has none.
func (s *Session) takeParser() {
	if s.parser == nil {
		s.parser = parsers.Get().(*imapwire.CommandParser)
		s.parser.Bounds = &s.dyn.bounds
	}
}
