// Package imapwire is a streaming scanner for the IMAP wire format (RFC 9051
// §4, §9): it splits a byte stream into lines and literal bodies without ever
// holding a literal body whole, and parses commands and responses enough for
// a proxy to inspect them. It uses the standard library only.
//
// Implementation notes, invariants a reader must keep:
//   - A line ends at LF. A literal marker ({n}, {n+}, ~{n}, ~{n+}; RFC 9051
//     §4.3, RFC 7888, RFC 3516) is recognised only at the very end of a line,
//     right before CRLF (or a bare LF, which the proxy rejects anyway).
//   - Literal sizes are parsed with overflow checks before anything is
//     allocated; sizes beyond MaxLiteralSize (2^63-1) are syntax errors.
//   - While a literal is open, ReadLine fails with ErrLiteralOpen: the caller
//     must copy, discard or buffer exactly its bytes first.
//   - Lossless: the lines and literal bodies returned, concatenated, are
//     exactly the input bytes read (except after ErrLineTooLong, and what
//     DiscardLiteral skips).
//   - A marker is a literal only where the grammar allows one. Commands may
//     carry literals anywhere; of server responses only untagged data may
//     (Response.MayHaveLiteral): in a status response or a continuation
//     request a brace group at the end is resp-text (RFC 9051 §7.1): the
//     caller settles every response line's marker with
//     Scanner.ResponseMarker.
//   - The response path (ReadLinePart, ParseResponse, FilterCapabilities
//     when nothing is dropped, CopyLiteral, StreamLiteral) does not
//     allocate; errors on it
//     are preallocated.
//
// Client to server: Scanner.ReadLine, then CommandParser line by line and
// literal by literal; CommandParser.Line holds each line to the rules of
// CheckCommandLine in its one pass (CheckCommandLine states them alone, for
// tests of what reached a backend). Server to client: Scanner.ReadLinePart,
// ParseResponse on the first piece, its FilterCapabilities on capability lines,
// StreamLiteral (or CopyLiteral) for literal bodies; PlainFetchLine over
// Scanner.Buffered (then Skip) for the whole FETCH lines without content
// that need no more.
package imapwire

import "errors"

// Errors returned by the Scanner. SyntaxError values describe malformed input
// whose line was consumed whole, so the stream is still in step.
var (
	// ErrLineTooLong: no LF within the line limit. The stream can no longer
	// be trusted; the caller should answer BYE and close.
	ErrLineTooLong = errors.New("imapwire: line too long")
	// ErrLiteralOpen: ReadLine called while literal bytes remain.
	ErrLiteralOpen = errors.New("imapwire: literal body not consumed")
	// ErrNoLiteral: a literal method called with no literal open.
	ErrNoLiteral = errors.New("imapwire: no literal open")
	// ErrLiteralTooBig: ReadLiteral asked to buffer more than its cap.
	ErrLiteralTooBig = errors.New("imapwire: literal too big to buffer")
	// ErrPartialLine: ReadLine called while a line begun with ReadLinePart
	// is unfinished; that line must be finished with ReadLinePart.
	ErrPartialLine = errors.New("imapwire: line begun with ReadLinePart not finished")
)

// SyntaxError reports malformed input. The line it came from was consumed.
type SyntaxError struct {
	Msg string
	// Code is the RFC 5530 response code of the BAD, "" for none.
	Code string
	// Refuse: the command is well formed, but part of it has no reading
	// the proxy knows, so it is not relayed; the answer is a tagged NO
	// rather than BAD, which would tell the client its syntax is wrong.
	Refuse bool
	// Audit: the refusal is an attempt on a mailbox under a name policies
	// do not know, or on messages the trail cannot name, and is recorded
	// (ARCHITECTURE.md §10), unlike other syntax errors.
	Audit bool
}

func (e *SyntaxError) Error() string { return "imapwire: " + e.Msg }

// Literal describes a literal announced at the end of a line.
type Literal struct {
	Size    int64
	NonSync bool // {n+} (RFC 7888): the sender does not wait for "+"
	Binary  bool // ~{n} (RFC 3516 literal8)
}
