package imapwire

// FetchUID returns the UID item of a "* n FETCH (...)" response, reading
// only the top-level items present in part (the first piece of the line is
// enough: servers put UID before any body literal, RFC 9051 §7.5.2). It
// does not allocate.
func FetchUID(part []byte) (uint32, bool) {
	r, after, err := parseResponse(part)
	if err != nil || r.Kind != Untagged || !equalFold(r.Name, "FETCH") || after < 0 {
		return 0, false
	}
	b := part[after:]
	i := 0
	for i < len(b) && b[i] == ' ' {
		i++
	}
	if i >= len(b) || b[i] != '(' {
		return 0, false
	}
	i++
	for i < len(b) {
		for i < len(b) && b[i] == ' ' {
			i++
		}
		// msg-att name: an atom, with a [section] and <partial> attached.
		start := i
		depth := 0
		for i < len(b) {
			c := b[i]
			if c == '[' {
				depth++
			} else if c == ']' && depth > 0 {
				depth--
			} else if depth == 0 && (c == ' ' || c == ')' || c == '\r' || c == '\n') {
				break
			}
			i++
		}
		name := b[start:i]
		if len(name) == 0 || i >= len(b) || b[i] != ' ' {
			return 0, false
		}
		i++
		if equalFold(name, "UID") {
			var n uint64
			j := i
			for j < len(b) && '0' <= b[j] && b[j] <= '9' && n <= 1<<32 {
				n = n*10 + uint64(b[j]-'0')
				j++
			}
			if j == i || n == 0 || n >= 1<<32 {
				return 0, false
			}
			return uint32(n), true
		}
		// Skip the value: a number, atom or NIL; a quoted string; a
		// parenthesized list (with quoted strings inside); a literal ends
		// what this piece can tell.
		switch {
		case i < len(b) && b[i] == '"':
			i = skipQuoted(b, i)
		case i < len(b) && b[i] == '(':
			depth := 0
			for i < len(b) {
				switch b[i] {
				case '"':
					i = skipQuoted(b, i) - 1
				case '(':
					depth++
				case ')':
					depth--
				case '{':
					return 0, false
				}
				i++
				if depth == 0 {
					break
				}
			}
		case i < len(b) && (b[i] == '{' || b[i] == '~'):
			return 0, false
		default:
			for i < len(b) && b[i] != ' ' && b[i] != ')' && b[i] != '\r' && b[i] != '\n' {
				i++
			}
		}
		if i >= len(b) || b[i] == ')' || b[i] == '\r' || b[i] == '\n' {
			return 0, false
		}
	}
	return 0, false
}

// skipQuoted returns the index after the quoted string starting at b[i].
func skipQuoted(b []byte, i int) int {
	for i++; i < len(b); i++ {
		switch b[i] {
		case '\\':
			i++
		case '"':
			return i + 1
		}
	}
	return i
}
