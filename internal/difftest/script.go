package difftest

import (
	"bytes"
	"fmt"
	"strconv"
	"strings"
)

// A script is a step written as text, for the fuzz target's corpus and
// the attacks: one command line per line, sent with CRLF. A line ending
// with a literal marker ({n}, {n+}, ~{n}, ~{n+}) takes the next n bytes
// of the script as the literal (padded with "x" when the script is
// shorter; n is at most maxScriptLiteral), then the command goes on.
// "$P" stands for the backend's personal prefix ("" or "INBOX.") and
// "$D" for its delimiter, so that one script reads the same on every
// backend. Lines starting with "!" are the harness's:
//
//	!user NAME     the step's user (first line; one of Users)
//	!wait TAG      write what follows once TAG completed
//	!deliver BOX   deliver a message to BOX (logical name) directly
//	!logout        end the session after the step
//
// After an IDLE line the harness waits for the "+" (RFC 9051 §6.3.13); a
// line "DONE" is sent as it is, in its turn. Anything else is sent as it is, so
// that a fuzzer reaches every spelling; the script only keeps literals
// framed, so that the harness always finds the end of what it sent.

// maxScriptLiteral bounds a script's literals.
const maxScriptLiteral = 8192

// ParseScript makes a step of a script for backend b.
func ParseScript(b *Backend, script []byte) (*Step, error) {
	st := &Step{Label: fmt.Sprintf("script %.300q", script)}
	rest := bytes.ReplaceAll(bytes.ReplaceAll(script, []byte("$P"), []byte(b.Prefix)), []byte("$D"), []byte{b.Delim})
	nextLine := func() []byte {
		var line []byte
		if i := bytes.IndexByte(rest, '\n'); i >= 0 {
			line, rest = rest[:i], rest[i+1:]
		} else {
			line, rest = rest, nil
		}
		return bytes.TrimSuffix(line, []byte("\r"))
	}
	after := ""
	for first := true; len(rest) > 0; first = false {
		line := nextLine()
		if d, ok := bytes.CutPrefix(line, []byte("!")); ok {
			verb, arg, _ := strings.Cut(string(d), " ")
			switch verb {
			case "user":
				if !first || !validUser(arg) {
					return nil, fmt.Errorf("bad !user %q", arg)
				}
				st.User = arg
			case "wait":
				// Only a plain tag sent before completes for sure: a wait
				// on anything else would wait for nothing (a fuzzed script
				// whose command lost its tag).
				if !sentTag(st.Cmds, arg) {
					return nil, fmt.Errorf("!wait %q: no command with that tag before", arg)
				}
				after = arg
			case "deliver":
				box := b.Wire(arg)
				st.Adds = append(st.Adds, Canon(box, b.Delim))
				user := st.User
				st.Cmds = append(st.Cmds, Cmd{Parts: []Part{{Do: func(e *Env) error {
					if user == "" {
						user = e.Main
					}
					return e.B.Append(e.Direct(user), box, "", Message("delivered", 3000))
				}}}})
			case "logout":
				st.Logout = true
			default:
				return nil, fmt.Errorf("unknown directive %q", line)
			}
			continue
		}
		if bytes.EqualFold(line, []byte("DONE")) {
			// Not a command: the end of an IDLE, written in its turn.
			st.Cmds = append(st.Cmds, Cmd{Parts: []Part{{Data: []byte("DONE\r\n")}}})
			continue
		}
		tag, _, _ := bytes.Cut(line, []byte(" "))
		c := Cmd{Tag: string(tag), After: after}
		after = ""
		data := append([]byte(nil), line...)
		for {
			n, kind, ok := scriptLiteral(line)
			if !ok {
				c.Parts = append(c.Parts, Part{Data: append(data, "\r\n"...)})
				c.Parts[0].Cont = isIdle(&c) && len(c.Parts) == 1
				break
			}
			if n > maxScriptLiteral {
				return nil, fmt.Errorf("literal of %d octets", n)
			}
			// The marker ends a part (the harness waits for "+" after a
			// synchronizing one); the literal and the rest of its line
			// start the next.
			c.Parts = append(c.Parts, Part{Data: append(data, "\r\n"...), Cont: kind.sync()})
			lit := rest[:min(n, len(rest))]
			rest = rest[len(lit):]
			data = append(append([]byte(nil), lit...), bytes.Repeat([]byte("x"), n-len(lit))...)
			line = nextLine()
			data = append(data, line...)
		}
		st.Cmds = append(st.Cmds, c)
	}
	return st, nil
}

// sentTag reports whether tag is letters and digits only and the tag of
// one of cmds.
func sentTag(cmds []Cmd, tag string) bool {
	if tag == "" {
		return false
	}
	for _, r := range tag {
		if !('a' <= r && r <= 'z' || 'A' <= r && r <= 'Z' || '0' <= r && r <= '9') {
			return false
		}
	}
	for _, c := range cmds {
		// "tag name ...": a line without a command name may be answered
		// untagged, and the wait would never end.
		if c.Tag == tag && len(c.Parts) > 0 {
			_, name, _ := bytes.Cut(c.Parts[0].Data, []byte(" "))
			if len(name) > 0 && ('a' <= name[0]|0x20 && name[0]|0x20 <= 'z') {
				return true
			}
		}
	}
	return false
}

// isIdle reports a command whose first line is "tag IDLE".
func isIdle(c *Cmd) bool {
	return len(c.Parts) > 0 && bytes.HasSuffix(bytes.ToUpper(bytes.TrimRight(c.Parts[0].Data, "\r\n")), []byte(" IDLE"))
}

func validUser(u string) bool {
	for _, x := range Users {
		if x == u {
			return true
		}
	}
	return false
}

// scriptLiteral parses a literal marker ending a line.
func scriptLiteral(line []byte) (int, litKind, bool) {
	if !bytes.HasSuffix(line, []byte("}")) {
		return 0, 0, false
	}
	i := bytes.LastIndexByte(line, '{')
	if i < 0 {
		return 0, 0, false
	}
	num := line[i+1 : len(line)-1]
	plus := bytes.HasSuffix(num, []byte("+"))
	num = bytes.TrimSuffix(num, []byte("+"))
	n, err := strconv.Atoi(string(num))
	if err != nil || n < 0 || len(num) == 0 || num[0] == '+' || num[0] == '-' {
		return 0, 0, false
	}
	bin := i > 0 && line[i-1] == '~'
	switch {
	case bin && plus:
		return n, lit8Plus, true
	case bin:
		return n, lit8, true
	case plus:
		return n, litPlus, true
	}
	return n, litSync, true
}
