package audit

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"slices"
	"strings"
	"time"
	"unicode/utf8"
)

// Filter selects records for "imapwarden audit query". Zero fields match
// everything; set fields must all match.
type Filter struct {
	// User is the record's user, exactly but for case.
	User string
	// UserGlob matches the record's user as a pattern, case-insensitively:
	// "*" any run of characters ("/" too), "?" one character, "\" the
	// next character as itself, anything else itself; a "\" at the end is
	// malformed (Check).
	UserGlob string
	// Mailbox is a name the record holds as the mailbox, the destination
	// (COPY, MOVE, RENAME), the selected mailbox (FETCH, STORE, ... name
	// none), a source (CATENATE) or a mailbox NOTIFY watches: exactly, but
	// for INBOX as the first level, in any case (RFC 9051 §5.1; foldInbox).
	Mailbox string
	// MailboxGlob matches those names as a pattern (as UserGlob, but
	// case-sensitive), INBOX folded alike: "*" crosses the hierarchy
	// delimiter.
	MailboxGlob string
	// Net matches the client IP.
	Net netip.Prefix
	// Since and Until bound the record time: Since <= ts < Until.
	Since, Until time.Time
	// Kinds: a kind matches itself and, without a dot, the kinds under
	// it ("policy" matches policy.deny and policy.would_deny).
	Kinds []string
	// Session, Command ("FETCH", "UID FETCH") and Fetch (FetchBody, ...)
	// narrow further.
	Session string
	Command string
	Fetch   string
}

// Check reports a malformed pattern: Match would match nothing with it,
// which an investigator would read as "no records".
func (f *Filter) Check() error {
	for _, g := range []struct{ name, pat string }{{"user glob", f.UserGlob}, {"mailbox glob", f.MailboxGlob}} {
		if err := checkGlob(g.pat); err != nil {
			return fmt.Errorf("audit: %s %q: %w", g.name, g.pat, err)
		}
	}
	return nil
}

// Match reports whether r passes the filter. A malformed pattern (Check)
// matches nothing.
func (f *Filter) Match(r *Record) bool {
	if f.User != "" && !strings.EqualFold(f.User, r.User) {
		return false
	}
	if f.UserGlob != "" && !glob(strings.ToLower(f.UserGlob), strings.ToLower(r.User)) {
		return false
	}
	if f.Mailbox != "" && !f.namesMailbox(r, func(m string) bool { return foldInbox(f.Mailbox) == foldInbox(m) }) {
		return false
	}
	if f.MailboxGlob != "" && !f.namesMailbox(r, func(m string) bool { return glob(foldInbox(f.MailboxGlob), foldInbox(m)) }) {
		return false
	}
	if f.Net.IsValid() && (!r.IP.IsValid() || !f.Net.Contains(r.IP.Unmap())) {
		return false
	}
	if !f.Since.IsZero() && r.Time.Before(f.Since) {
		return false
	}
	if !f.Until.IsZero() && !r.Time.Before(f.Until) {
		return false
	}
	if len(f.Kinds) > 0 {
		ok := false
		for _, k := range f.Kinds {
			ok = ok || string(r.Kind) == k || (!strings.Contains(k, ".") && strings.HasPrefix(string(r.Kind), k+"."))
		}
		if !ok {
			return false
		}
	}
	if f.Session != "" && r.Session != f.Session {
		return false
	}
	if f.Command != "" {
		name, uid := strings.ToUpper(f.Command), false
		if n, ok := strings.CutPrefix(name, "UID "); ok {
			name, uid = n, true
		}
		if r.Command != name || (uid && !r.UID) {
			return false
		}
	}
	if f.Fetch != "" && r.Fetch != f.Fetch {
		return false
	}
	return true
}

// namesMailbox reports whether match holds for a mailbox r names.
func (f *Filter) namesMailbox(r *Record, match func(string) bool) bool {
	for _, m := range [...]string{r.Mailbox, r.Destination, r.Selected} {
		if m != "" && match(m) {
			return true
		}
	}
	return slices.ContainsFunc(r.Sources, match) || slices.ContainsFunc(r.Mailboxes, match)
}

// foldInbox writes a first hierarchy level INBOX in upper case, as the
// proxy records it (RFC 9051 §5.1: INBOX is case-insensitive). The trail
// does not hold the backend's delimiter, so a level ends at "/" or ".",
// the delimiters of the backends: on a "/" backend "inbox.x" is another
// mailbox than "INBOX.x", and a query finds both (more, never less).
func foldInbox(name string) string {
	if len(name) >= 5 && strings.EqualFold(name[:5], "INBOX") && name[:5] != "INBOX" &&
		(len(name) == 5 || name[5] == '/' || name[5] == '.') {
		return "INBOX" + name[5:]
	}
	return name
}

// checkGlob reports a malformed pattern: a "\" with nothing after it.
func checkGlob(pat string) error {
	for i := 0; i < len(pat); i++ {
		if pat[i] == '\\' {
			if i++; i == len(pat) {
				return errors.New(`"\" at the end escapes nothing`)
			}
		}
	}
	return nil
}

// glob matches s against a pattern of Glob's syntax: "*" any run of
// characters (the hierarchy delimiter too), "?" one character, "\" the
// next character as itself; every other character as itself ("[" too:
// Gmail's "[Gmail]/All Mail"). Unlike path.Match, no character class and
// nothing special about "/". Greedy with one backtrack point, linear in
// practice and O(len(pat)·len(s)) at worst.
func glob(pat, s string) bool {
	if checkGlob(pat) != nil {
		return false
	}
	var px, sx, starP, starS = 0, 0, -1, 0
	for sx < len(s) || px < len(pat) {
		if px < len(pat) {
			switch c := pat[px]; c {
			case '*':
				starP, starS = px, sx
				px++
				continue
			case '?':
				if sx < len(s) {
					_, n := utf8.DecodeRuneInString(s[sx:])
					px, sx = px+1, sx+n
					continue
				}
			default:
				lit := c
				n := 1
				if c == '\\' {
					lit, n = pat[px+1], 2
				}
				if sx < len(s) && s[sx] == lit {
					px, sx = px+n, sx+1
					continue
				}
			}
		}
		if starP >= 0 && starS < len(s) {
			_, n := utf8.DecodeRuneInString(s[starS:])
			starS += n
			px, sx = starP+1, starS
			continue
		}
		return false
	}
	return true
}

// ParseTime reads a time for a filter: RFC 3339, a date (midnight UTC),
// "2006-01-02 15:04" (UTC), or a duration before now ("24h", "90m").
func ParseTime(s string, now time.Time) (time.Time, error) {
	for _, layout := range []string{time.RFC3339Nano, "2006-01-02T15:04:05", "2006-01-02 15:04:05", "2006-01-02 15:04", "2006-01-02"} {
		if t, err := time.Parse(layout, s); err == nil {
			return t, nil
		}
	}
	if d, err := time.ParseDuration(strings.TrimPrefix(s, "-")); err == nil && d > 0 {
		return now.Add(-d), nil
	}
	return time.Time{}, fmt.Errorf("audit: time %q: want RFC 3339 (2026-01-02T15:04:05Z), a date (2026-01-02) or a duration before now (24h)", s)
}

// Scan calls fn for every record of the files, in chain order (like
// Verify). Lines that are not records (torn, damaged or foreign) are
// skipped and counted; Scan does not check the chain: run Verify for
// that.
func Scan(files []string, fn func(r *Record, line []byte) error) (skipped int, err error) {
	return scan(context.Background(), files, nil, fn)
}

// Query calls fn for the records of the files that match f, in chain
// order. Kind and time are checked on the record's head before the rest
// is decoded, which makes narrow queries over large trails fast.
func Query(files []string, f *Filter, fn func(r *Record, line []byte) error) (skipped int, err error) {
	return QueryContext(context.Background(), files, f, fn)
}

// QueryContext is Query that gives up, with ctx's error, once ctx ends:
// a search whose asker has gone stops reading the trail.
func QueryContext(ctx context.Context, files []string, f *Filter, fn func(r *Record, line []byte) error) (skipped int, err error) {
	if err := f.Check(); err != nil {
		return 0, err
	}
	head := &Filter{Kinds: f.Kinds, Since: f.Since, Until: f.Until}
	pre := func(h *recordHead) bool {
		ts, err := time.Parse(time.RFC3339Nano, h.TS)
		if err != nil {
			return true // ParseRecord decides
		}
		return head.Match(&Record{Kind: h.Kind, Time: ts})
	}
	return scan(ctx, files, pre, func(r *Record, line []byte) error {
		if !f.Match(r) {
			return nil
		}
		return fn(r, line)
	})
}

// scanCheckEvery is how many lines scan reads between looks at its ctx.
const scanCheckEvery = 4096

func scan(ctx context.Context, files []string, pre func(h *recordHead) bool, fn func(r *Record, line []byte) error) (skipped int, err error) {
	ordered, err := chainOrder(files)
	if err != nil {
		return 0, err
	}
	var h recordHead
	n := 0
	for _, name := range ordered {
		f, err := os.Open(name)
		if err != nil {
			return skipped, fmt.Errorf("audit: %w", err)
		}
		br := bufio.NewReaderSize(f, 256<<10)
		for {
			line, complete, err := readLine(br)
			if err != nil {
				f.Close()
				return skipped, fmt.Errorf("audit: read %s: %w", name, err)
			}
			if line == nil {
				break
			}
			if n++; n%scanCheckEvery == 0 && ctx.Err() != nil {
				f.Close()
				return skipped, fmt.Errorf("audit: %w", ctx.Err())
			}
			rec := recordStart(line)
			if !complete || rec == nil {
				skipped++
				continue
			}
			if pre != nil && fastHead(rec, &h) && !pre(&h) {
				continue
			}
			r, err := ParseRecord(rec)
			if err != nil {
				skipped++
				continue
			}
			if err := fn(r, rec); err != nil {
				f.Close()
				return skipped, err
			}
		}
		f.Close()
	}
	return skipped, nil
}
