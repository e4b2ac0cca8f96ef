package imapwire

// IgnoreLiteral closes a literal announced by the last line without
// consuming anything: the caller decided the marker was not a literal
// ("{5}" at the end of resp-text, RFC 9051 §7.1), or the peer will not send
// it (a synchronizing literal that was refused).
func (s *Scanner) IgnoreLiteral() {
	s.litOpen, s.litRem, s.litSize = false, 0, 0
}
