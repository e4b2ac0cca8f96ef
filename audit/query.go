package audit

import (
	"bufio"
	"fmt"
	"net/netip"
	"os"
	"path"
	"slices"
	"strings"
	"time"
)

// Filter selects records for "imapwarden audit query". Zero fields match
// everything; set fields must all match.
type Filter struct {
	// User matches the record's user, case-insensitively; "*" and "?"
	// are wildcards.
	User string
	// Mailbox matches the mailbox, the destination (COPY, MOVE, RENAME),
	// the selected mailbox (FETCH, STORE, ... name none), a source
	// (CATENATE) or a mailbox NOTIFY watches, with wildcards; INBOX in any
	// case (RFC 9051 §5.1).
	Mailbox string
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

// Match reports whether r passes the filter.
func (f *Filter) Match(r *Record) bool {
	if f.User != "" && !globFold(f.User, r.User) {
		return false
	}
	if f.Mailbox != "" && !mailboxMatch(f.Mailbox, r.Mailbox) && !mailboxMatch(f.Mailbox, r.Destination) && !mailboxMatch(f.Mailbox, r.Selected) &&
		!slices.ContainsFunc(r.Sources, func(m string) bool { return mailboxMatch(f.Mailbox, m) }) &&
		!slices.ContainsFunc(r.Mailboxes, func(m string) bool { return mailboxMatch(f.Mailbox, m) }) {
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

func globFold(pattern, s string) bool {
	ok, err := path.Match(strings.ToLower(pattern), strings.ToLower(s))
	return err == nil && ok
}

func mailboxMatch(pattern, mbox string) bool {
	if mbox == "" {
		return false
	}
	if strings.EqualFold(mbox, "INBOX") {
		mbox = "INBOX"
	}
	if strings.EqualFold(pattern, "INBOX") {
		pattern = "INBOX"
	}
	ok, err := path.Match(pattern, mbox)
	return err == nil && ok
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
	return scan(files, nil, fn)
}

// Query calls fn for the records of the files that match f, in chain
// order. Kind and time are checked on the record's head before the rest
// is decoded, which makes narrow queries over large trails fast.
func Query(files []string, f *Filter, fn func(r *Record, line []byte) error) (skipped int, err error) {
	head := &Filter{Kinds: f.Kinds, Since: f.Since, Until: f.Until}
	pre := func(h *recordHead) bool {
		ts, err := time.Parse(time.RFC3339Nano, h.TS)
		if err != nil {
			return true // ParseRecord decides
		}
		return head.Match(&Record{Kind: h.Kind, Time: ts})
	}
	return scan(files, pre, func(r *Record, line []byte) error {
		if !f.Match(r) {
			return nil
		}
		return fn(r, line)
	})
}

func scan(files []string, pre func(h *recordHead) bool, fn func(r *Record, line []byte) error) (skipped int, err error) {
	ordered, err := chainOrder(files)
	if err != nil {
		return 0, err
	}
	var h recordHead
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
