package difftest

import (
	"crypto/tls"
	"slices"
	"strings"
	"testing"

	"github.com/imapwarden/imapwarden/audit"
	"github.com/imapwarden/imapwarden/internal/testenv"
)

// getACL reads the backend's ACL of INBOX (RFC 4314 §3.6: mailbox, then
// identifier and rights pairs) as identifier → rights, each right once,
// without RFC 2086's c and d, which Cyrus adds for the rights they stand
// for (RFC 4314 §2.1.1).
func getACL(t *testing.T, cn *Conn) map[string]string {
	t.Helper()
	rs, err := cn.OK("g", "GETACL INBOX")
	if err != nil {
		t.Fatalf("GETACL: %v", err)
	}
	acl := map[string]string{}
	for _, r := range rs {
		rest, ok := strings.CutPrefix(r.Text, "* ACL ")
		if !ok {
			continue
		}
		f := strings.Fields(rest)
		for i := 1; i+1 < len(f); i += 2 {
			acl[strings.Trim(f[i], `"`)] = rightSet(strings.Trim(f[i+1], `"`))
		}
	}
	return acl
}

// rightSet is r's rights sorted, each once, without c and d.
func rightSet(r string) string {
	b := []byte(strings.NewReplacer("c", "", "d", "").Replace(r))
	slices.Sort(b)
	return string(slices.Compact(b))
}

// TestACLReadingMatchesBackend: the identifier and rights the proxy
// records for a SETACL or DELETEACL, and hands the policy, are what the
// backend did: after each command the backend's GETACL holds, for the
// recorded identifier, the rights the recorded mode and rights make
// (RFC 4314 §3.1: replace, "+" adds, "-" removes; a leading "-" on the
// identifier is a negative entry of its own, §2). Spellings with more
// than one reading get BAD and leave the ACL alone; a grant to anyone is
// refused by the shipped acl policy unless allow_public_grants is set.
func TestACLReadingMatchesBackend(t *testing.T) {
	for _, name := range []string{"dovecot", "cyrus", "courier"} {
		t.Run(name, func(t *testing.T) {
			b := startServer(t, name, map[string]string{"alice": "alice-pw", "alice2": "alice2-pw", "alice3": "alice3-pw"}, true)
			for _, public := range []bool{false, true} {
				pc := ProxyFor(b)
				pc.PolicyData["acl"] = "admin_groups: [staff]\n"
				if public {
					pc.PolicyData["acl"] += "allow_public_grants: true\n"
				}
				p := StartProxy(t, pc)
				cn, _, err := Dial(p.Addr, &tls.Config{InsecureSkipVerify: true}, testenv.IOTimeout())
				if err != nil {
					t.Fatal(err)
				}
				if _, err := cn.OK("l", "LOGIN alice alice-pw"); err != nil {
					t.Fatal(err)
				}
				trail := p.Audit()
				before := getACL(t, cn)
				// Each step: the command, the status the proxy lets
				// through or gives ("*": the backend's to give).
				steps := []struct{ cmd, status string }{
					{"SETACL INBOX alice2 lrs", "OK"},
					{"SETACL INBOX alice2 +wi", "OK"},
					{"SETACL INBOX alice2 -s", "OK"},
					{`SETACL INBOX "-alice3" r`, "OK"},
					{"SETACL INBOX alice2 lrc", "BAD"}, // c: RFC 2086's, read differently
					{"SETACL INBOX alice2 LR", "BAD"},  // upper case
					{"SETACL INBOX alice2 lrl", "BAD"}, // a right twice
					{"SETACL INBOX --alice2 l", "BAD"}, // two readings of "-"
					{"SETACL INBOX anyone lr", "NO"},   // public sharing
					{"SETACL INBOX anyone +l", "NO"},   // likewise
					{"DELETEACL INBOX -alice3", "OK"},
					// A literal identifier: decided again once known.
					{"SETACL INBOX {6}\r\nanyone lr", "NO"},
					{"SETACL INBOX {6}\r\nalice3 lr", "OK"},
					{"DELETEACL INBOX alice3", "OK"},
				}
				if public {
					// Allowed by the proxy; Dovecot refuses anyone unless
					// configured (acl_anyone), the others grant it.
					steps = append(steps[:0:0], struct{ cmd, status string }{"SETACL INBOX anyone lr", "*"},
						struct{ cmd, status string }{"DELETEACL INBOX anyone", "*"})
				}
				model := before
				for i, st := range steps {
					tag := "s" + string(rune('a'+i))
					rs := sendACL(t, cn, tag, st.cmd)
					got := rs[len(rs)-1].Status
					if got != st.status && st.status != "*" {
						t.Fatalf("%s: %s, want %s (%s)", st.cmd, got, st.status, rs[len(rs)-1].Text)
					}
					acl := getACL(t, cn)
					if got != "OK" {
						if !equalACL(acl, model) {
							t.Fatalf("%s (%s) changed the ACL: %v, was %v", st.cmd, got, acl, model)
						}
						continue
					}
					rec := commandRecord(t, trail, tag)
					if rec.Identifier == "" {
						t.Fatalf("%s: the record names no identifier: %+v", st.cmd, rec)
					}
					model = applyACL(model, strings.Fields(st.cmd)[0], rec.Identifier, rec.Rights)
					if !equalACL(acl, model) {
						t.Errorf("%s: recorded identifier %q rights %q; the backend's ACL is %v, the proxy's reading %v",
							st.cmd, rec.Identifier, rec.Rights, acl, model)
					}
				}
				cn.Cmd("z", "LOGOUT")
				cn.Close()
			}
		})
	}
}

// sendACL sends cmd, its synchronizing literal (one, ending the first
// line) after the "+", and returns the responses.
func sendACL(t *testing.T, cn *Conn, tag, cmd string) []*Resp {
	t.Helper()
	first, rest, lit := strings.Cut(cmd, "\r\n")
	if !lit {
		rs, err := cn.Cmd(tag, "%s", cmd)
		if err != nil {
			t.Fatalf("%s: %v", cmd, err)
		}
		return rs
	}
	if err := cn.Write([]byte(tag + " " + first + "\r\n")); err != nil {
		t.Fatal(err)
	}
	if r, err := cn.Next(); err != nil || !r.Cont() {
		t.Fatalf("%s: no continuation: %v %v", cmd, r, err)
	}
	if err := cn.Write([]byte(rest + "\r\n")); err != nil {
		t.Fatal(err)
	}
	rs, err := cn.Until(tag)
	if err != nil {
		t.Fatalf("%s: %v", cmd, err)
	}
	return rs
}

// commandRecord waits for the record of the command tagged tag.
func commandRecord(t *testing.T, trail *AuditReader, tag string) *audit.Record {
	t.Helper()
	for trail.Wait(testenv.IOTimeout()) {
		for _, r := range trail.Read() {
			if r.Kind == audit.KindCommand && r.Tag == tag {
				return r
			}
		}
	}
	t.Fatalf("no record of %s", tag)
	return nil
}

// applyACL is what SETACL or DELETEACL does to acl as the proxy read it.
func applyACL(acl map[string]string, cmd, id, rights string) map[string]string {
	out := map[string]string{}
	for k, v := range acl {
		out[k] = v
	}
	if cmd == "DELETEACL" {
		delete(out, id)
		return out
	}
	switch {
	case strings.HasPrefix(rights, "+"):
		out[id] = rightSet(out[id] + rights[1:])
	case strings.HasPrefix(rights, "-"):
		out[id] = rightSet(strings.Map(func(r rune) rune {
			if strings.ContainsRune(rights[1:], r) {
				return -1
			}
			return r
		}, out[id]))
	default:
		out[id] = rightSet(rights)
	}
	if out[id] == "" {
		delete(out, id)
	}
	return out
}

func equalACL(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return false
		}
	}
	return true
}
