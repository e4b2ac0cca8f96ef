package audit

import (
	"bytes"
	"encoding/json"
)

// dupKey finds a key that an object of the valid JSON text b holds twice
// (at any depth). Such a record has two readings: the verifier's fast head
// takes the first "kind", encoding/json (audit query) the last, and
// encoding/json also matches a struct's fields case-insensitively after
// unescaping ("KIND", "\u006bind"). So keys are compared as it compares
// them: unescaped, with bytes.EqualFold. The writer never writes such a
// record: of keys from outside (client_id, counts, quota, annotations)
// that compare so (sameKey), it writes the first and names the field in
// cut; every reader refuses one (ARCHITECTURE.md §11).
func dupKey(b []byte) (string, bool) {
	s := keyScan{b: b}
	s.value()
	return s.dup, s.found
}

// keyScan walks valid JSON; it stops at the first duplicate key.
type keyScan struct {
	b     []byte
	i     int
	dup   string
	found bool
}

func (s *keyScan) ws() {
	for s.i < len(s.b) {
		switch s.b[s.i] {
		case ' ', '\t', '\r', '\n':
			s.i++
		default:
			return
		}
	}
}

// str skips a string at s.i and returns it without its quotes, still
// escaped.
func (s *keyScan) str() []byte {
	start := s.i + 1
	for s.i = start; s.i < len(s.b); s.i++ {
		switch s.b[s.i] {
		case '\\':
			s.i++
		case '"':
			s.i++
			return s.b[start : s.i-1]
		}
	}
	return s.b[start:]
}

func (s *keyScan) value() {
	s.ws()
	if s.i >= len(s.b) || s.found {
		return
	}
	switch s.b[s.i] {
	case '{':
		s.object()
	case '[':
		s.i++
		for !s.found {
			s.ws()
			if s.i >= len(s.b) || s.b[s.i] == ']' {
				s.i++
				return
			}
			s.value()
			s.ws()
			if s.i < len(s.b) && s.b[s.i] == ',' {
				s.i++
			}
		}
	case '"':
		s.str()
	default: // number, true, false, null
		for s.i < len(s.b) && !isDelim(s.b[s.i]) {
			s.i++
		}
	}
}

func (s *keyScan) object() {
	var buf [32][]byte
	keys := buf[:0]
	s.i++
	for !s.found {
		s.ws()
		if s.i >= len(s.b) || s.b[s.i] == '}' {
			s.i++
			return
		}
		k := s.str()
		if bytes.IndexByte(k, '\\') >= 0 {
			var u string
			if json.Unmarshal(s.b[s.i-len(k)-2:s.i], &u) == nil {
				k = []byte(u)
			}
		}
		for _, o := range keys {
			if bytes.EqualFold(o, k) {
				s.dup, s.found = string(k), true
				return
			}
		}
		keys = append(keys, k)
		s.ws()
		s.i++ // ':'
		s.value()
		s.ws()
		if s.i < len(s.b) && s.b[s.i] == ',' {
			s.i++
		}
	}
}

func isDelim(c byte) bool {
	switch c {
	case ',', ']', '}', ' ', '\t', '\r', '\n':
		return true
	}
	return false
}
