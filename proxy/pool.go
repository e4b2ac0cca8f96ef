package proxy

import (
	"bufio"
	"io"
	"sync"
)

// The buffers that carry bulk data (responses toward the client, and from
// the backend) come from pools and go back when the session ends, so that
// connection churn does not churn the heap. Literal bodies stream through
// them and are never held whole.
var (
	clientWriterPool  = sync.Pool{New: func() any { return bufio.NewWriterSize(nil, clientWriteBuf) }}
	backendReaderPool = sync.Pool{New: func() any { return bufio.NewReaderSize(nil, backendReadBuf) }}
	backendWriterPool = sync.Pool{New: func() any { return bufio.NewWriterSize(nil, backendWriteBuf) }}
	clientReaderPool  = sync.Pool{New: func() any { return bufio.NewReaderSize(nil, clientReadBuf) }}
)

func getClientReader(r io.Reader) *bufio.Reader {
	br := clientReaderPool.Get().(*bufio.Reader)
	br.Reset(r)
	return br
}

func putClientReader(br *bufio.Reader) {
	br.Reset(nil)
	clientReaderPool.Put(br)
}

func getBackendWriter(w io.Writer) *bufio.Writer {
	bw := backendWriterPool.Get().(*bufio.Writer)
	bw.Reset(w)
	return bw
}

func putBackendWriter(bw *bufio.Writer) {
	bw.Reset(nil)
	backendWriterPool.Put(bw)
}

func getWriter(w io.Writer) *bufio.Writer {
	bw := clientWriterPool.Get().(*bufio.Writer)
	bw.Reset(w)
	return bw
}

// putWriter returns bw; nobody may use it afterwards.
func putWriter(bw *bufio.Writer) {
	bw.Reset(nil)
	clientWriterPool.Put(bw)
}

func getReader(r io.Reader) *bufio.Reader {
	br := backendReaderPool.Get().(*bufio.Reader)
	br.Reset(r)
	return br
}

func putReader(br *bufio.Reader) {
	br.Reset(nil)
	backendReaderPool.Put(br)
}
