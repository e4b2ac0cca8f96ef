package imapwire

// IgnoreLiteral closes a literal announced by the last line without
// consuming anything: the caller decided the marker was not a literal
// ("{5}" at the end of resp-text, RFC 9051 §7.1), or the peer will not send
// it (a synchronizing literal that was refused).
func (s *Scanner) IgnoreLiteral() {
	s.litOpen, s.litRem, s.litSize = false, 0, 0
}

// ResponseMarker settles the marker at the end of a line of response r,
// given ok and err as ReadLine or ReadLinePart returned them for the line
// (or its final piece): the one place that decides whether a response
// line ends in a literal, by its kind (Response.MayHaveLiteral). Untagged
// data keeps ok and err: a malformed marker there is a protocol fault.
// A status response, the greeting among them, and a continuation request
// end in resp-text (RFC 9051 §7.1, §7.6), where a brace group is text
// whatever it holds ("{5}", "{x}", "{}", 20 digits): the literal is
// closed and a marker's SyntaxError dropped. Other errors are kept.
func (s *Scanner) ResponseMarker(r *Response, ok bool, err error) (bool, error) {
	if r.MayHaveLiteral() {
		return ok, err
	}
	if ok {
		s.IgnoreLiteral()
	}
	if IsMarkerError(err) {
		err = nil
	}
	return false, err
}

// IsMarkerError reports whether err is the SyntaxError of a malformed
// literal marker at the end of a line ({}, {x}, more than 19 digits, a
// size over MaxLiteralSize); the line was returned whole.
func IsMarkerError(err error) bool {
	switch err {
	case errMarkerEmpty, errMarkerDigit, errMarkerTooLong, errMarkerRange:
		return true
	}
	return false
}
