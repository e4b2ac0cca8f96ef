package imapwire

import (
	"bufio"
	"bytes"
	"io"
	"math"
	"slices"
)

const (
	// DefaultMaxLine is the line limit used when NewScanner is given
	// maxLine <= 0 (ARCHITECTURE.md §12: line 64 KiB).
	DefaultMaxLine = 64 << 10
	// MaxLiteralSize is the largest literal size accepted: number64 of
	// RFC 9051 §9 (0 <= n <= 2^63-1).
	MaxLiteralSize = math.MaxInt64

	// keepBuf is the largest line-assembly buffer kept between lines; a
	// larger one is handed to the caller and forgotten, so an idle session
	// does not pin the memory of its longest line (ARCHITECTURE.md §16).
	keepBuf = 4 << 10
	// tailSize is how many bytes at the end of a line are examined for a
	// literal marker. The longest valid marker, "~{9223372036854775807+}"
	// plus CRLF, is 25 bytes; the margin lets over-long digit runs be seen
	// and rejected rather than mistaken for text.
	tailSize = 40
)

// Scanner splits an IMAP byte stream into lines and literal bodies (RFC 9051
// §4.3). It never holds a literal body whole unless asked (ReadLiteral), and
// it is lossless: every byte it consumes is handed to the caller, except
// after ErrLineTooLong and through DiscardLiteral.
//
// A Scanner is not safe for concurrent use.
type Scanner struct {
	r       *bufio.Reader
	maxLine int
	buf     []byte // assembles ReadLine lines longer than r's buffer
	err     error  // sticky: ErrLineTooLong

	litOpen bool  // a literal was announced by the last line
	litRem  int64 // its bytes not consumed yet
	litSize int64 // its announced size
	// litText: the open literal may hold no NUL (RefuseNUL, not a
	// literal8).
	litText   bool
	refuseNUL bool

	lr literalReader // StreamLiteral's source

	inPart   bool // a line begun with ReadLinePart is unfinished
	partSeen int  // bytes of that line returned so far (saturating)
	tail     [tailSize]byte
	tailN    int // valid bytes at the start of tail
}

// RefuseNUL makes ReadLiteral and CopyLiteral fail with a SyntaxError at
// a NUL in a literal that is not a literal8: "literal = "{" number64 ["+"]
// "}" CRLF *CHAR8", CHAR8 excluding NUL (RFC 9051 §4.3, §9; RFC 3516 §4.2
// allows NUL only in literal8). For a client's commands: a backend would
// store, refuse or alter such a message, each its own way.
func (s *Scanner) RefuseNUL() { s.refuseNUL = true }

// NewScanner returns a Scanner reading from r. ReadLine refuses lines longer
// than maxLine bytes (line ending included); maxLine <= 0 means
// DefaultMaxLine.
func NewScanner(r *bufio.Reader, maxLine int) *Scanner {
	if maxLine <= 0 {
		maxLine = DefaultMaxLine
	}
	return &Scanner{r: r, maxLine: maxLine}
}

// Reset makes s read from r, forgetting all state (an open literal, an
// unfinished line, a sticky error): after STARTTLS nothing learned from the
// plaintext stream may carry over (RFC 9051 §6.2.1).
func (s *Scanner) Reset(r *bufio.Reader) {
	s.r = r
	s.err = nil
	s.litOpen, s.litRem = false, 0
	s.inPart, s.partSeen, s.tailN = false, 0, 0
	if cap(s.buf) > keepBuf {
		s.buf = nil
	}
}

// beginLine checks that a new line may be read and closes a fully consumed
// literal.
func (s *Scanner) beginLine() error {
	if s.err != nil {
		return s.err
	}
	if s.litOpen {
		if s.litRem > 0 {
			return ErrLiteralOpen
		}
		s.litOpen = false
	}
	return nil
}

// ReadLine returns the next whole line including its line ending (CRLF or a
// bare LF; CommandParser.Line rejects the latter for commands). The line is
// valid until the next call on s.
//
// If the line ends with a literal marker ({n}, {n+}, ~{n}, ~{n+}; RFC 9051
// §4.3, RFC 7888, RFC 3516) right before its line ending, ok is true and the
// literal is open: exactly lit.Size bytes must be consumed with the literal
// methods before the next ReadLine, which otherwise fails with
// ErrLiteralOpen. A malformed marker ({}, {-1}, {1a}, {+}, more than 19
// digits, a size over MaxLiteralSize) returns the line with a *SyntaxError
// and opens nothing.
//
// A line with no LF within maxLine bytes fails with ErrLineTooLong, which is
// sticky: the stream can no longer be split reliably. A stream ending inside
// a line returns the partial line with io.ErrUnexpectedEOF; one ending
// between lines returns io.EOF.
func (s *Scanner) ReadLine() (line []byte, lit Literal, ok bool, err error) {
	if err := s.beginLine(); err != nil {
		return nil, Literal{}, false, err
	}
	if s.inPart {
		return nil, Literal{}, false, ErrPartialLine
	}
	b, err := s.r.ReadSlice('\n')
	switch err {
	case nil:
		if len(b) > s.maxLine {
			s.err = ErrLineTooLong
			return nil, Literal{}, false, s.err
		}
		return s.endLine(b, true)
	case bufio.ErrBufferFull:
	default:
		if len(b) == 0 {
			b = nil
		}
		if len(b) >= s.maxLine {
			s.err = ErrLineTooLong
			return nil, Literal{}, false, s.err
		}
		return b, Literal{}, false, lineEOF(b, err, false)
	}
	// The line is longer than r's buffer: assemble it, bounded by maxLine
	// so that a peer cannot make us buffer without limit.
	buf := s.buf[:0]
	for {
		if len(buf)+len(b) >= s.maxLine {
			s.dropBuf(buf)
			s.err = ErrLineTooLong
			return nil, Literal{}, false, s.err
		}
		buf = append(buf, b...)
		b, err = s.r.ReadSlice('\n')
		if err == nil {
			break
		}
		if err != bufio.ErrBufferFull {
			if len(buf)+len(b) >= s.maxLine {
				s.dropBuf(buf)
				s.err = ErrLineTooLong
				return nil, Literal{}, false, s.err
			}
			buf = append(buf, b...)
			s.dropBuf(buf)
			return buf, Literal{}, false, lineEOF(buf, err, true)
		}
	}
	if len(buf)+len(b) > s.maxLine {
		s.dropBuf(buf)
		s.err = ErrLineTooLong
		return nil, Literal{}, false, s.err
	}
	buf = append(buf, b...)
	s.dropBuf(buf)
	return s.endLine(buf, true)
}

// dropBuf keeps buf for the next long line unless it grew past keepBuf; a
// bigger one now belongs to the caller alone and is collected once dropped.
func (s *Scanner) dropBuf(buf []byte) {
	if cap(buf) > keepBuf {
		s.buf = nil
	} else {
		s.buf = buf[:0]
	}
}

// lineEOF maps the error of a read that ended without LF: nothing read at a
// line boundary is a clean io.EOF, anything else is a truncated line.
func lineEOF(b []byte, err error, midLine bool) error {
	if err == io.EOF && (len(b) > 0 || midLine) {
		return io.ErrUnexpectedEOF
	}
	return err
}

// endLine looks for a literal marker at the end of a complete line and opens
// the literal.
func (s *Scanner) endLine(line []byte, whole bool) ([]byte, Literal, bool, error) {
	w := line
	if len(w) > tailSize {
		w = w[len(w)-tailSize:]
		whole = false
	}
	lit, ok, err := parseMarker(w, whole)
	if ok {
		s.litOpen, s.litRem, s.litSize = true, lit.Size, lit.Size
		s.litText = s.refuseNUL && !lit.Binary
	}
	return line, lit, ok, err
}

// ReadLinePart returns the next piece of a line straight from the bufio
// buffer, without copying: at most the buffer's size, valid until the next
// call on s. final is true on the piece that ends with LF; there lit, ok and
// err describe a literal marker at the end of the whole line, exactly as for
// ReadLine (a marker split across two pieces is found: the last bytes of the
// line are kept across calls). There is no line limit: this is for backend
// responses such as a huge "* SEARCH" (RFC 3501 §7.2.5). A line begun with
// ReadLinePart must be finished with ReadLinePart.
//
// A marker is only a literal where the grammar allows one: in a status
// response or a continuation request it is resp-text (RFC 9051 §7.1), see
// Scanner.ResponseMarker.
func (s *Scanner) ReadLinePart() (part []byte, final bool, lit Literal, ok bool, err error) {
	if !s.inPart {
		if err := s.beginLine(); err != nil {
			return nil, false, Literal{}, false, err
		}
	}
	b, err := s.r.ReadSlice('\n')
	switch err {
	case nil:
	case bufio.ErrBufferFull:
		s.pushTail(b)
		return b, false, Literal{}, false, nil
	default:
		if len(b) == 0 {
			b = nil
		}
		mid := s.inPart
		if err == io.EOF {
			s.inPart, s.partSeen, s.tailN = false, 0, 0
		} else if len(b) > 0 {
			// Another error (a read deadline) leaves the line open: a
			// later call may finish it, so its bytes count for the tail.
			s.pushTail(b)
		}
		return b, false, Literal{}, false, lineEOF(b, err, mid)
	}
	if !s.inPart || len(b) >= tailSize {
		_, lit, ok, err = s.endLine(b, !s.inPart)
	} else {
		// The marker may straddle the previous piece: examine the kept
		// tail followed by this piece.
		var win [2 * tailSize]byte
		n := copy(win[:], s.tail[:s.tailN])
		n += copy(win[n:], b)
		_, lit, ok, err = s.endLine(win[:n], s.partSeen <= s.tailN)
	}
	s.inPart, s.partSeen, s.tailN = false, 0, 0
	return b, true, lit, ok, err
}

// Buffered returns the bytes buffered ahead of the next line, without
// reading: nil in the middle of a line or a literal, or after a sticky
// error. A caller that relays whole lines straight from the buffer (the
// relay's runs of PlainFetchLine lines, issue 12) consumes them with Skip;
// they are valid until the next call on s.
func (s *Scanner) Buffered() []byte {
	if s.err != nil || s.inPart || s.litOpen && s.litRem > 0 {
		return nil
	}
	b, _ := s.r.Peek(s.r.Buffered()) // at most Buffered: cannot fail
	return b
}

// Skip consumes the first n bytes Buffered returned: whole lines, none
// with a literal marker that opens a literal.
func (s *Scanner) Skip(n int) {
	s.litOpen = false
	s.r.Discard(n) // n <= Buffered: cannot fail
}

// pushTail remembers the last tailSize bytes of the line so far.
func (s *Scanner) pushTail(b []byte) {
	if !s.inPart {
		s.inPart, s.partSeen, s.tailN = true, 0, 0
	}
	if s.partSeen < math.MaxInt-len(b) {
		s.partSeen += len(b)
	}
	if len(b) >= tailSize {
		s.tailN = copy(s.tail[:], b[len(b)-tailSize:])
		return
	}
	keep := min(tailSize-len(b), s.tailN)
	copy(s.tail[:keep], s.tail[s.tailN-keep:s.tailN])
	s.tailN = keep + copy(s.tail[keep:], b)
}

// Syntax errors of literal markers, allocated once: a hostile peer must not
// make the scanner allocate.
var (
	errMarkerEmpty   = &SyntaxError{Msg: "literal marker without size"}
	errMarkerDigit   = &SyntaxError{Msg: "literal size is not a number"}
	errMarkerTooLong = &SyntaxError{Msg: "literal size has more than 19 digits"}
	errMarkerRange   = &SyntaxError{Msg: "literal size over 2^63-1"}
)

// parseMarker recognises a literal marker at the end of w, which ends with
// LF. whole reports whether w is the whole line; when it is not and the
// bytes before "}" run to the start of w without a "{" or a delimiter, an
// all-digit run is rejected as over-long (it may hide a marker with leading
// zeros) and anything else is text.
//
// Grammar (RFC 9051 §9, RFC 7888, RFC 3516):
//
//	literal  = "{" number64 ["+"] "}" CRLF
//	literal8 = "~{" number64 ["+"] "}" CRLF
//
// Overflow is detected digit by digit, before the size is used for anything.
func parseMarker(w []byte, whole bool) (lit Literal, ok bool, err error) {
	n := len(w)
	if n == 0 || w[n-1] != '\n' {
		return Literal{}, false, nil
	}
	n--
	if n > 0 && w[n-1] == '\r' {
		n--
	}
	if n == 0 || w[n-1] != '}' {
		return Literal{}, false, nil
	}
	end := n - 1 // the '}'
	open := -1
	for i := end - 1; i >= 0; i-- {
		c := w[i]
		if c == '{' {
			open = i
			break
		}
		if c <= ' ' || c == '(' || c == ')' || c == '"' || c == 0x7f {
			return Literal{}, false, nil // "text}" : no marker
		}
	}
	if open < 0 {
		if whole {
			return Literal{}, false, nil
		}
		for _, c := range w[:end] {
			if (c < '0' || c > '9') && c != '+' {
				return Literal{}, false, nil
			}
		}
		return Literal{}, false, errMarkerTooLong
	}
	digits := w[open+1 : end]
	if len(digits) > 0 && digits[len(digits)-1] == '+' {
		lit.NonSync = true
		digits = digits[:len(digits)-1]
	}
	if len(digits) == 0 {
		return Literal{}, false, errMarkerEmpty
	}
	var v int64
	for _, c := range digits {
		if c < '0' || c > '9' {
			return Literal{}, false, errMarkerDigit
		}
	}
	if len(digits) > 19 {
		return Literal{}, false, errMarkerTooLong
	}
	for _, c := range digits {
		d := int64(c - '0')
		if v > (MaxLiteralSize-d)/10 {
			return Literal{}, false, errMarkerRange
		}
		v = v*10 + d
	}
	lit.Size = v
	lit.Binary = open > 0 && w[open-1] == '~'
	return lit, true, nil
}

// LiteralRemaining returns how many bytes of the open literal are still to
// be consumed (0 when none is open).
func (s *Scanner) LiteralRemaining() int64 {
	if !s.litOpen {
		return 0
	}
	return s.litRem
}

// peekLiteral returns the buffered bytes of the open literal, filling the
// buffer if it is empty, without consuming them.
func (s *Scanner) peekLiteral() ([]byte, error) {
	n := s.r.Buffered()
	if n == 0 {
		if _, err := s.r.Peek(1); err != nil {
			if err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			return nil, err
		}
		n = s.r.Buffered()
	}
	if int64(n) > s.litRem {
		n = int(s.litRem)
	}
	b, _ := s.r.Peek(n) // n <= Buffered: cannot fail
	return b, nil
}

// LiteralChunk consumes and returns the next piece of the open literal
// straight from the bufio buffer: at most the remaining size, valid until
// the next call on s. Once the literal is fully consumed it returns io.EOF;
// a stream ending early gives io.ErrUnexpectedEOF; ErrNoLiteral if none is
// open.
func (s *Scanner) LiteralChunk() ([]byte, error) {
	if !s.litOpen {
		return nil, ErrNoLiteral
	}
	if s.litRem == 0 {
		return nil, io.EOF
	}
	b, err := s.peekLiteral()
	if err != nil {
		return nil, err
	}
	s.discard(len(b))
	return b, nil
}

// discard consumes n buffered bytes of the literal.
func (s *Scanner) discard(n int) {
	d, _ := s.r.Discard(n) // n <= Buffered: cannot fail
	s.litRem -= int64(d)
}

// CopyLiteral writes the rest of the open literal to w straight from the
// bufio buffer, without another buffer or any allocation, and returns the
// number of bytes written. Bytes are consumed only once written, so after a
// write error LiteralRemaining tells what is left.
func (s *Scanner) CopyLiteral(w io.Writer) (int64, error) {
	if !s.litOpen {
		return 0, ErrNoLiteral
	}
	var n int64
	for s.litRem > 0 {
		b, err := s.peekLiteral()
		if err != nil {
			return n, err
		}
		var nul error
		if s.litText {
			if i := bytes.IndexByte(b, 0); i >= 0 {
				// What came before the NUL goes; the NUL and the rest
				// never reach w.
				b, nul = b[:i], errNULLiteral
			}
		}
		m, err := w.Write(b)
		if m < 0 || m > len(b) {
			m = 0
			if err == nil {
				err = io.ErrShortWrite
			}
		}
		s.discard(m)
		n += int64(m)
		if err != nil {
			return n, err
		}
		if m < len(b) {
			return n, io.ErrShortWrite
		}
		if nul != nil {
			return n, nul
		}
	}
	return n, nil
}

// StreamLiteral writes the rest of the open literal to w, as CopyLiteral,
// but reads into w's buffer: what r holds is copied, the rest is read from
// r's source straight into w whenever w has room for a read of r's buffer
// size, so that a large literal is copied once less on its way through
// (unless w writes to an io.ReaderFrom, which bufio hands the reading to).
// Unlike CopyLiteral, bytes are consumed before w writes them: after a
// write error the literal's state says nothing about what was written.
func (s *Scanner) StreamLiteral(w *bufio.Writer) (int64, error) {
	if !s.litOpen {
		return 0, ErrNoLiteral
	}
	s.lr.s = s
	return w.ReadFrom(&s.lr)
}

// literalReader reads the open literal of s, then io.EOF.
type literalReader struct{ s *Scanner }

func (lr *literalReader) Read(p []byte) (int, error) {
	s := lr.s
	if s.litRem == 0 {
		return 0, io.EOF
	}
	if int64(len(p)) > s.litRem {
		p = p[:s.litRem]
	}
	// bufio.Reader.Read reads straight into p when its buffer is empty
	// and p at least as large as it.
	n, err := s.r.Read(p)
	if s.litText {
		if i := bytes.IndexByte(p[:n], 0); i >= 0 {
			s.litRem -= int64(i)
			return i, errNULLiteral
		}
	}
	s.litRem -= int64(n)
	if err == io.EOF {
		err = io.ErrUnexpectedEOF
	}
	return n, err
}

// DiscardLiteral consumes the rest of the open literal unseen: a rejected
// non-synchronizing literal is skipped by counting its octets (RFC 7888).
func (s *Scanner) DiscardLiteral() error {
	if !s.litOpen {
		return ErrNoLiteral
	}
	for s.litRem > 0 {
		n := int(min(s.litRem, math.MaxInt32))
		d, err := s.r.Discard(n)
		s.litRem -= int64(d)
		if err != nil {
			if err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			return err
		}
	}
	return nil
}

// ReadLiteral appends the rest of the open literal to dst if it is at most
// limit bytes; otherwise it returns dst and ErrLiteralTooBig, consuming
// nothing, so that the caller can still copy or discard it. The size is
// checked before anything is allocated (ARCHITECTURE.md §12). If the stream ends
// early, the bytes read are appended and io.ErrUnexpectedEOF returned.
func (s *Scanner) ReadLiteral(dst []byte, limit int) ([]byte, error) {
	if !s.litOpen {
		return dst, ErrNoLiteral
	}
	if s.litRem > int64(max(limit, 0)) {
		return dst, ErrLiteralTooBig
	}
	n := int(s.litRem)
	off := len(dst)
	dst = slices.Grow(dst, n)
	m, err := io.ReadFull(s.r, dst[off:off+n])
	s.litRem -= int64(m)
	dst = dst[:off+m]
	if err == io.EOF {
		err = io.ErrUnexpectedEOF
	}
	if s.litText && bytes.IndexByte(dst[off:], 0) >= 0 {
		return dst[:off], errNULLiteral
	}
	return dst, err
}
