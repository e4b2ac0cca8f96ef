package proxy

import (
	"bufio"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/imapwarden/imapwarden/proxy/imapwire"
)

// selectedLines are command lines for every command of the table that may
// be sent with a mailbox selected, FETCH and STORE in every form whose
// effects may hang on the selection (RFC 9051 §6.4.5, §6.4.6).
func selectedLines(t *testing.T) []string {
	t.Helper()
	byName := map[string][]string{
		"CAPABILITY": {"CAPABILITY"}, "NOOP": {"NOOP"}, "LOGOUT": {"LOGOUT"}, "ID": {`ID ("name" "x")`, "ID NIL"},
		"ENABLE": {"ENABLE QRESYNC"}, "SELECT": {"SELECT INBOX", "SELECT Legal (CONDSTORE)"}, "EXAMINE": {"EXAMINE Legal"},
		"CREATE": {"CREATE Legal/x"}, "DELETE": {"DELETE Legal", "DELETE Other"}, "RENAME": {"RENAME Legal Other", "RENAME Other Legal/y"},
		"SUBSCRIBE": {"SUBSCRIBE Legal"}, "UNSUBSCRIBE": {"UNSUBSCRIBE Legal"},
		"LIST": {`LIST "" *`, `LIST "" Legal RETURN (STATUS (MESSAGES))`}, "LSUB": {`LSUB "" *`}, "NAMESPACE": {"NAMESPACE"},
		"STATUS": {"STATUS Legal (MESSAGES UNSEEN)"},
		"APPEND": {`APPEND Legal (\Deleted) {1+}` + "\r\nx", "APPEND Legal {1+}\r\nx"},
		"IDLE":   {"IDLE"},
		"NOTIFY": {"NOTIFY SET (SELECTED (MessageNew (UID BODY[]) MessageExpunge FlagChange))", "NOTIFY SET (SELECTED (MessageNew (BODY.PEEK[]) MessageExpunge))", "NOTIFY NONE"},
		"GETACL": {"GETACL Legal"}, "MYRIGHTS": {"MYRIGHTS Legal"}, "LISTRIGHTS": {"LISTRIGHTS Legal bob"},
		"SETACL": {"SETACL Legal alice lrswipkxtea", "SETACL Legal bob +r"}, "DELETEACL": {"DELETEACL Legal bob"},
		"GETQUOTA": {`GETQUOTA ""`}, "GETQUOTAROOT": {"GETQUOTAROOT Legal"}, "SETQUOTA": {`SETQUOTA "" (STORAGE 512)`},
		"GETMETADATA": {"GETMETADATA Legal /shared/comment"},
		"SETMETADATA": {`SETMETADATA Legal (/shared/comment "x")`, `SETMETADATA Legal (/shared/vendor/cmu/cyrus-imapd/expire "1")`},
		"CHECK":       {"CHECK"}, "CLOSE": {"CLOSE"}, "UNSELECT": {"UNSELECT"},
		"EXPUNGE": {"EXPUNGE", "UID EXPUNGE 1:*"},
		"SEARCH":  {"SEARCH ALL", "UID SEARCH BODY x", "SEARCH RETURN (SAVE) DELETED"},
		"COPY":    {"COPY 1:* Other", "UID COPY 1 Other"}, "MOVE": {"MOVE 1:* Other", "UID MOVE 1 Other"},
		"SORT": {"SORT (DATE) UTF-8 ALL", "UID SORT (SUBJECT) UTF-8 TEXT x"}, "THREAD": {"THREAD REFERENCES UTF-8 ALL"},
	}
	byName["FETCH"] = []string{"FETCH 1 ALL", "FETCH 1:* FAST", "UID FETCH 1 FULL"}
	items := []string{"FLAGS", "UID", "INTERNALDATE", "RFC822.SIZE", "ENVELOPE", "BODYSTRUCTURE", "BODY",
		"RFC822", "RFC822.HEADER", "RFC822.TEXT", "PREVIEW", "MODSEQ", "BINARY.SIZE[1]"}
	for _, sec := range []string{"[]", "[TEXT]", "[HEADER]", "[HEADER.FIELDS (From)]", "[1]", "[1.MIME]", "[]<0.10>"} {
		items = append(items, "BODY"+sec, "BODY.PEEK"+sec)
	}
	items = append(items, "BINARY[]", "BINARY.PEEK[]", "BINARY[1]<0.10>")
	for _, it := range items {
		byName["FETCH"] = append(byName["FETCH"], "FETCH 1 "+it, "UID FETCH 1:* (UID "+it+")", "FETCH 1:* (FLAGS "+it+") (CHANGEDSINCE 1)")
	}
	for _, op := range []string{"+FLAGS", "-FLAGS", "FLAGS", "+FLAGS.SILENT", "FLAGS.SILENT"} {
		for _, fl := range []string{`(\Deleted)`, `(\Seen)`, `()`, `(\Seen \Deleted $Junk)`} {
			byName["STORE"] = append(byName["STORE"], "STORE 1 "+op+" "+fl, "UID STORE 1:* (UNCHANGEDSINCE 5) "+op+" "+fl)
		}
	}
	var lines []string
	for _, s := range imapwire.Specs() {
		if s.States&imapwire.StateSelected == 0 || s.Proxy {
			continue
		}
		l := byName[s.Name]
		if len(l) == 0 {
			t.Errorf("%s may be sent with a mailbox selected but has no line here", s.Name)
		}
		lines = append(lines, l...)
	}
	return lines
}

// selectAnswered runs a completed SELECT or EXAMINE through the backend
// pump's state update (backendPump.completed) and returns the state the
// next commands are judged in and what hooks see.
func selectAnswered(t *testing.T, verb, answer string) (imapwire.Context, SessionInfo) {
	t.Helper()
	p := &backendPump{r: &relay{}, s: &Session{}}
	p.r.ctx = imapwire.Context{State: imapwire.StateAuth, Delim: '/', Caps: ^imapwire.Cap(0)}
	cmd, err := checkLine(p.r.ctx, "s "+verb+" Legal\r\n")
	if err != nil {
		t.Fatal(err)
	}
	f := &inflight{}
	snapshotInto(&f.cmd, cmd)
	p.r.barrier = f
	resp, err := imapwire.ParseResponse([]byte("s " + answer + "\r\n"))
	if err != nil {
		t.Fatal(err)
	}
	if p.completed(f, &resp) {
		t.Fatalf("%s answered %q: state lost", verb, answer)
	}
	return p.r.ctx, p.s.info
}

// checkLine reads and checks one command in ctx.
func checkLine(ctx imapwire.Context, wire string) (*imapwire.Command, error) {
	var p imapwire.CommandParser
	sc := imapwire.NewScanner(bufio.NewReader(strings.NewReader(wire)), 0)
	for {
		line, lit, hasLit, err := sc.ReadLine()
		if err != nil {
			return nil, err
		}
		if err := p.Line(line, lit, hasLit); err != nil {
			return nil, err
		}
		if !hasLit {
			break
		}
		if p.PendingIsMessage() {
			if err := sc.DiscardLiteral(); err != nil {
				return nil, err
			}
			p.LiteralStreamed(lit.Size)
			continue
		}
		b, err := sc.ReadLiteral(nil, 4096)
		if err != nil {
			return nil, err
		}
		p.Literal(b)
	}
	if err := p.Check(&ctx); err != nil {
		return nil, err
	}
	return p.Command(), nil
}

func effectOn(e imapwire.Effect, t imapwire.Target) string { return fmt.Sprintf("%s@%d", e, t) }

// effectsOf lists a command's effects with their targets, sorted, each once.
func effectsOf(c *imapwire.Command) []string {
	var l []string
	for i := range c.Effects.Len() {
		e := c.Effects.At(i)
		l = append(l, effectOn(e.Effect, e.Target))
	}
	slices.Sort(l)
	return slices.Compact(l)
}

// TestReadOnlyAnswerRemovesNoEffect: a SELECT answered [READ-ONLY] is the
// backend's state at SELECT, not a promise (Dovecot decides the rights
// again at CLOSE, TestAttackReadOnlySelectThenRegrantedCloseExpungesHeld):
// every command of the table, in every form here, has after it exactly the
// effects it has after a read-write SELECT (an effect is the worst the
// backend may do, later included: ARCHITECTURE.md §8, §10). Only EXAMINE
// is read-only by protocol (RFC 9051 §6.3.3), and removes only a body
// FETCH's set-flags and CLOSE's expunge. Hooks and the trail still see
// what the backend answered (SessionInfo.SelectedReadOnly).
func TestReadOnlyAnswerRemovesNoEffect(t *testing.T) {
	rw, rwInfo := selectAnswered(t, "SELECT", "OK [READ-WRITE] done")
	answers := []struct {
		verb, answer string
		readOnly     bool
	}{
		{"SELECT", "OK [READ-ONLY] done", true},
		{"SELECT", "OK [read-only] Select completed", true},
		{"SELECT", "OK done", false},
		{"EXAMINE", "OK [READ-ONLY] done", true},
		{"EXAMINE", "OK [READ-WRITE] done", true},
	}
	if rwInfo.SelectedReadOnly || rwInfo.Selected != "Legal" {
		t.Fatalf("SELECT answered [READ-WRITE]: hooks see %q read-only %v", rwInfo.Selected, rwInfo.SelectedReadOnly)
	}
	lines := selectedLines(t)
	for _, a := range answers {
		ctx, info := selectAnswered(t, a.verb, a.answer)
		if info.Selected != "Legal" || info.SelectedReadOnly != a.readOnly {
			t.Errorf("%s answered %q: hooks see %q read-only %v, want read-only %v", a.verb, a.answer, info.Selected, info.SelectedReadOnly, a.readOnly)
		}
		for _, l := range lines {
			wire := "a " + l + "\r\n"
			want, err := checkLine(rw, wire)
			if err != nil {
				t.Errorf("%q after a read-write SELECT: %v", wire, err)
				continue
			}
			wantEff := effectsOf(want)
			got, err := checkLine(ctx, wire)
			if err != nil {
				t.Errorf("%q after %s answered %q: %v", wire, a.verb, a.answer, err)
				continue
			}
			gotEff := effectsOf(got)
			if a.verb == "SELECT" {
				if !slices.Equal(gotEff, wantEff) {
					t.Errorf("%q after SELECT answered %q: effects %v, after a read-write SELECT %v", wire, a.answer, gotEff, wantEff)
				}
				continue
			}
			for _, e := range gotEff {
				if !slices.Contains(wantEff, e) {
					t.Errorf("%q after EXAMINE: effect %s, which it lacks after SELECT", wire, e)
				}
			}
			for _, e := range wantEff {
				if slices.Contains(gotEff, e) {
					continue
				}
				if !(want.Name == "CLOSE" && e == effectOn(imapwire.EffExpunge, imapwire.TargetSelected)) &&
					!(want.Name == "FETCH" && e == effectOn(imapwire.EffSetFlags, imapwire.TargetSelected)) {
					t.Errorf("%q after EXAMINE lacks the effect %s it has after SELECT", wire, e)
				}
			}
		}
	}
}
