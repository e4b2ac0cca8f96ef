package proxy

import (
	"bufio"
	"io"
	"sync"
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
