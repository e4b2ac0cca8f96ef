package proxy

import (
	"bytes"
	"compress/flate"
	"io"
	"sync"

	"github.com/imapwarden/imapwarden/proxy/internal/inflate"
)

// COMPRESS=DEFLATE (RFC 4978) is terminated here: the client's leg is
// compressed, the backend's is not, so the scanner keeps seeing plain IMAP
// and every command stays inspectable.

// deflaters are pooled: a flate.Writer is large.
var deflaters = sync.Pool{New: func() any {
	w, _ := flate.NewWriter(nil, flate.BestSpeed)
	return w
}}

// compressWriter is what the client writer writes into once COMPRESS is
// active; clientWriter.flush syncs it at the end of every response.
type compressWriter struct{ fw *flate.Writer }

func (c *compressWriter) Write(p []byte) (int, error) { return c.fw.Write(p) }

// startCompress answers COMPRESS DEFLATE and switches the client's leg
// (RFC 4978 §3). It returns errStop when the session must end.
func (s *Session) startCompress(tag string) error {
	r := s.relay
	r.mu.Lock()
	busy := r.inflight.len() > 0
	r.mu.Unlock()
	s.out.mu.Lock()
	active := s.out.fw != nil
	s.out.mu.Unlock()
	switch {
	case active:
		return s.answer(tag, no("COMPRESSIONACTIVE", "DEFLATE is already active"))
	case busy:
		// The switch must fall between responses: no command may be in
		// progress (RFC 4978 §3).
		return s.answer(tag, bad("CLIENTBUG", "COMPRESS while other commands are in progress"))
	}
	// Each compressing session holds a deflater of about 1.2 MiB: a bound
	// keeps authenticated clients from exhausting memory with them. The
	// client goes on uncompressed.
	if n := s.srv.compressing.Add(1); n > int64(s.lim.MaxCompressSessions) {
		s.srv.compressing.Add(-1)
		s.srv.auditor.Limit(&s.info, LimitResult{Exceeded: true, Limit: "max_compress_sessions", Key: "server", Reason: "Too many compressed sessions"})
		return s.answer(tag, no("LIMIT", "Too many compressed sessions, go on without COMPRESS"))
	}
	o := &s.out
	w := o.lock()
	defer o.unlock()
	// The count is the deflater's: installed with it, before anything can
	// fail, it is given back with it at the session's end whatever ends
	// the session (clientWriter.release, ARCHITECTURE.md §15). The OK
	// still leaves uncompressed: w writes to dw until it is reset.
	fw := deflaters.Get().(*flate.Writer)
	fw.Reset(&o.dw)
	o.fw, o.cw = fw, compressWriter{fw}
	w.WriteString(tag + " OK DEFLATE active\r\n")
	if err := w.Flush(); err != nil {
		return errStop
	}
	// From here on both directions are compressed. Bytes the client sent
	// after the command are already compressed: they go first into the
	// decompressor, which yields at every block end (internal/inflate).
	w.Reset(&o.cw)
	pending := make([]byte, s.br.Buffered())
	io.ReadFull(s.br, pending)
	s.rsrc = inflate.NewReader(io.MultiReader(bytes.NewReader(pending), s.conn))
	s.br.Reset(s.source())
	s.sc.Reset(s.br)
	return nil
}
