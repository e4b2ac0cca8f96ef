package imapwire

// ResponseKind tells the three shapes of server response (RFC 9051 §7).
type ResponseKind uint8

// Response kinds. The zero value is none of them.
const (
	Continuation ResponseKind = iota + 1 // "+" continue-req
	Tagged                               // tag SP resp-cond-state
	Untagged                             // "*" untagged status or data
)

func (k ResponseKind) String() string {
	switch k {
	case Continuation:
		return "continuation"
	case Tagged:
		return "tagged"
	case Untagged:
		return "untagged"
	}
	return "unknown"
}

// Status is the condition of a status response (RFC 9051 §7.1).
type Status uint8

// Statuses. StatusNone is an untagged data response or a continuation.
const (
	StatusNone Status = iota
	StatusOK
	StatusNO
	StatusBAD
	StatusBYE
	StatusPREAUTH
)

func (s Status) String() string {
	switch s {
	case StatusOK:
		return "OK"
	case StatusNO:
		return "NO"
	case StatusBAD:
		return "BAD"
	case StatusBYE:
		return "BYE"
	case StatusPREAUTH:
		return "PREAUTH"
	}
	return ""
}

// Response is the start of a server response line. Its slices alias the
// line it was parsed from.
type Response struct {
	Kind ResponseKind
	// Tag is the tag of a tagged response.
	Tag []byte
	// Status: tagged responses always have one; untagged ones when they
	// are status responses (OK, NO, BAD, BYE, PREAUTH); else StatusNone.
	Status Status
	// Code is the name of the response code in "[...]" right after the
	// status, as sent ("CAPABILITY", "UIDNEXT"); nil if none.
	Code []byte
	// Name is the name of untagged data, as sent: "CAPABILITY", "FETCH",
	// "EXISTS" ("* 12 FETCH ..." has Name FETCH and Num 12).
	Name []byte
	// Num is the number before Name in message data ("* 12 EXISTS").
	Num uint32
	// after indexes the line right after Name (untagged data) or Code;
	// -1 otherwise (parseResponse).
	after int
}

// Rest returns what follows Name in line, the response's first piece
// ParseResponse read (" 1:3,7" of "* VANISHED 1:3,7"); nil when the
// response has no Name.
func (r *Response) Rest(line []byte) []byte {
	if r.Name == nil || r.after < 0 || r.after > len(line) {
		return nil
	}
	return line[r.after:]
}

// MayHaveLiteral reports whether a response of this shape may carry
// literals. Only untagged data can (RFC 9051 §7.2-7.5); status responses and
// continuation requests carry resp-text (§7.1, §7.6), where "{5}" at the end
// is plain text, so a marker there must not open a literal.
func (r *Response) MayHaveLiteral() bool {
	return r.Kind == Untagged && r.Status == StatusNone
}

// Syntax errors of ParseResponse, allocated once: the response path must
// not allocate even on garbage.
var (
	errRespEmpty    = &SyntaxError{Msg: "empty response"}
	errRespCont     = &SyntaxError{Msg: `"+" not followed by SP`}
	errRespUntagged = &SyntaxError{Msg: `"*" not followed by SP`}
	errRespName     = &SyntaxError{Msg: "untagged response without name"}
	errRespNumber   = &SyntaxError{Msg: "bad message number"}
	errRespTag      = &SyntaxError{Msg: "bad tag in response"}
	errRespStatus   = &SyntaxError{Msg: "tagged response without OK, NO or BAD"}
)

// ParseResponse parses the start of a server response line (RFC 9051 §7):
// the first ReadLinePart piece is enough. Tags, status words and names are
// matched case-insensitively; the slices of the result alias line. It does
// not allocate. Garbage gives a *SyntaxError.
func ParseResponse(line []byte) (Response, error) {
	r, after, err := parseResponse(line)
	r.after = after
	return r, err
}

// parseResponse also returns the index right after Name (untagged data) or
// after Code (status with a code), for FilterCapabilities; -1 otherwise.
func parseResponse(b []byte) (r Response, after int, err error) {
	after = -1
	if len(b) == 0 {
		return r, after, errRespEmpty
	}
	switch b[0] {
	case '+':
		// continue-req = "+" SP (resp-text / base64) CRLF; some servers
		// omit the SP before CRLF.
		if len(b) > 1 && b[1] != ' ' && b[1] != '\r' && b[1] != '\n' {
			return r, after, errRespCont
		}
		r.Kind = Continuation
		return r, after, nil
	case '*':
		if len(b) < 2 || b[1] != ' ' {
			return r, after, errRespUntagged
		}
		r.Kind = Untagged
		i := 2
		if i < len(b) && '0' <= b[i] && b[i] <= '9' {
			// message-data = nz-number SP ("EXPUNGE" / ("FETCH" ...)),
			// mailbox-data = number SP "EXISTS"; number is 32-bit.
			var n uint64
			for ; i < len(b) && '0' <= b[i] && b[i] <= '9'; i++ {
				n = n*10 + uint64(b[i]-'0')
				if n > 1<<32-1 {
					return r, after, errRespNumber
				}
			}
			if i >= len(b) || b[i] != ' ' {
				return r, after, errRespNumber
			}
			i++
			l := atomLen(b[i:])
			if l == 0 {
				return r, after, errRespName
			}
			r.Num, r.Name = uint32(n), b[i:i+l]
			return r, i + l, nil
		}
		l := atomLen(b[i:])
		if l == 0 {
			return r, after, errRespName
		}
		word := b[i : i+l]
		if st := statusOf(word); st != StatusNone {
			r.Status = st
			r.Code, after = parseCode(b, i+l)
			return r, after, nil
		}
		r.Name = word
		return r, i + l, nil
	}
	i := 0
	for i < len(b) && isTagChar(b[i]) {
		i++
	}
	if i == 0 || i >= len(b) || b[i] != ' ' {
		return r, after, errRespTag
	}
	r.Kind, r.Tag = Tagged, b[:i]
	i++
	l := atomLen(b[i:])
	st := statusOf(b[i : i+l])
	if st == StatusNone {
		return r, after, errRespStatus
	}
	r.Status = st
	r.Code, after = parseCode(b, i+l)
	return r, after, nil
}

// CodeName returns a response code's name as a string, without
// allocating for the codes of RFC 9051 §7.1, RFC 5530 and the extensions
// the proxy relays: a completion's code is kept by its audit record.
func CodeName(code []byte) string {
	if s, ok := codeNames[string(code)]; ok {
		return s
	}
	return string(code)
}

var codeNames = func() map[string]string {
	m := map[string]string{}
	for _, c := range []string{
		// RFC 9051 §7.1
		"ALERT", "ALREADYEXISTS", "APPENDUID", "AUTHENTICATIONFAILED", "AUTHORIZATIONFAILED",
		"BADCHARSET", "CANNOT", "CAPABILITY", "CLIENTBUG", "CLOSED", "CONTACTADMIN", "COPYUID",
		"CORRUPTION", "EXPIRED", "EXPUNGEISSUED", "HASCHILDREN", "INUSE", "LIMIT", "NONEXISTENT",
		"NOPERM", "OVERQUOTA", "PARSE", "PERMANENTFLAGS", "PRIVACYREQUIRED", "READ-ONLY",
		"READ-WRITE", "SERVERBUG", "TRYCREATE", "UIDNEXT", "UIDNOTSTICKY", "UIDVALIDITY",
		"UNAVAILABLE", "UNKNOWN-CTE", "UNSEEN",
		// RFC 7162, 4978, 8474, 7889, 5464, 4469, 5182, 5465
		"HIGHESTMODSEQ", "NOMODSEQ", "MODIFIED", "COMPRESSIONACTIVE", "MAILBOXID", "APPENDLIMIT",
		"METADATA", "BADURL", "TOOBIG", "NOUPDATE", "NOTSAVED", "BADEVENT", "NOTIFICATIONOVERFLOW",
		"BADCOMPARATOR", "ANNOTATE", "ANNOTATIONS", "TEMPFAIL", "USEATTR", "REFERRAL", "OBJECTID",
	} {
		m[c] = c
	}
	return m
}()

// parseCode reads the name of a resp-text-code right after a status word:
// resp-text = ["[" resp-text-code "]" SP] [text] (RFC 9051 §7.1).
func parseCode(b []byte, i int) ([]byte, int) {
	if i+1 >= len(b) || b[i] != ' ' || b[i+1] != '[' {
		return nil, -1
	}
	i += 2
	l := atomLen(b[i:])
	if l == 0 {
		return nil, -1
	}
	return b[i : i+l], i + l
}

func statusOf(w []byte) Status {
	switch len(w) {
	case 2:
		if equalFold(w, "OK") {
			return StatusOK
		}
		if equalFold(w, "NO") {
			return StatusNO
		}
	case 3:
		if equalFold(w, "BAD") {
			return StatusBAD
		}
		if equalFold(w, "BYE") {
			return StatusBYE
		}
	case 7:
		if equalFold(w, "PREAUTH") {
			return StatusPREAUTH
		}
	}
	return StatusNone
}

// FilterCapabilities rewrites the capability list of an untagged
// "* CAPABILITY ..." line (RFC 9051 §7.2.2) or of a "[CAPABILITY ...]"
// response code right after the status of a status response, tagged or
// untagged (§7.1), dropping each capability for which drop returns true.
// drop gets each capability atom as sent ("AUTH=PLAIN", "STARTTLS") once, in
// order. The rewritten line is appended to dst and returned with
// changed=true; if the line has no capability list or nothing is dropped,
// dst is returned unchanged with changed=false. Everything else is kept
// byte for byte: the separators of kept capabilities, the rest of the
// resp-text after "]", the line ending.
//
// The proxy filters because the capabilities the client sees after login
// are the backend's minus what the proxy cannot relay (ARCHITECTURE.md §7).
func FilterCapabilities(dst, line []byte, drop func(capability []byte) bool) (out []byte, changed bool) {
	r, err := ParseResponse(line)
	if err != nil {
		return dst, false
	}
	return r.FilterCapabilities(dst, line, drop)
}

// FilterCapabilities is FilterCapabilities for the line r was parsed from
// (ParseResponse, the line's only piece): the relay parses each response
// line once and filters with what that parse found.
func (r *Response) FilterCapabilities(dst, line []byte, drop func(capability []byte) bool) (out []byte, changed bool) {
	after := r.after
	if after <= 0 || after > len(line) {
		return dst, false
	}
	end := len(line)
	switch {
	case r.Kind == Untagged && r.Status == StatusNone && equalFold(r.Name, "CAPABILITY"):
		for end > after && (line[end-1] == '\n' || line[end-1] == '\r') {
			end--
		}
	case r.Status != StatusNone && equalFold(r.Code, "CAPABILITY"):
		j := after
		for j < len(line) && line[j] != ']' && line[j] != '\r' && line[j] != '\n' {
			j++
		}
		if j == len(line) || line[j] != ']' {
			return dst, false // no closing "]": not a code we understand
		}
		end = j
	default:
		return dst, false
	}
	// The list is line[after:end]: capabilities separated by SP, each
	// kept with the separator before it.
	i := after
	for {
		sep, tok, next := nextCap(line, i, end)
		if tok < 0 {
			return dst, false
		}
		if drop(line[tok:next]) {
			dst = append(dst, line[:sep]...)
			i = next
			break
		}
		i = next
	}
	for {
		sep, tok, next := nextCap(line, i, end)
		if tok < 0 {
			break
		}
		if !drop(line[tok:next]) {
			dst = append(dst, line[sep:next]...)
		}
		i = next
	}
	return append(dst, line[i:]...), true
}

// nextCap finds the next capability in line[i:end]: sep is where its
// separator starts, tok where it starts (-1 when none is left), next its
// end.
func nextCap(line []byte, i, end int) (sep, tok, next int) {
	sep = i
	for i < end && line[i] == ' ' {
		i++
	}
	if i == end {
		return sep, -1, end
	}
	tok = i
	for i < end && line[i] != ' ' {
		i++
	}
	return sep, tok, i
}

// ListDelimiter returns the hierarchy delimiter of a "* LIST (flags) delim
// name" response (RFC 9051 §7.3.1): the quoted character, 0 for NIL (a
// flat namespace). ok is false when line is not such a response.
func ListDelimiter(line []byte) (delim byte, ok bool) {
	r, after, err := parseResponse(line)
	if err != nil || r.Kind != Untagged || r.Status != StatusNone || !equalFold(r.Name, "LIST") || after < 0 {
		return 0, false
	}
	b := line[after:]
	if len(b) < 2 || b[0] != ' ' || b[1] != '(' {
		return 0, false
	}
	i := 2
	for i < len(b) && b[i] != ')' {
		i++
	}
	b = b[i:]
	switch {
	case len(b) >= 6 && b[1] == ' ' && b[2] == '"' && b[3] == '\\' && b[5] == '"':
		return b[4], true // "\\" or "\""
	case len(b) >= 5 && b[1] == ' ' && b[2] == '"' && b[4] == '"':
		return b[3], true
	case len(b) >= 5 && b[1] == ' ' && equalFold(b[2:5], "NIL"):
		return 0, true
	}
	return 0, false
}
