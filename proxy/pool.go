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
)

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
