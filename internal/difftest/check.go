package difftest

import (
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/imapwarden/imapwarden/audit"
)

// check compares what the backend did in a step (its state before and
// after, its answers) with what the proxy decided and audited:
//
//   - every change of the backend's state is one a forwarded command, as
//     audited (its canonical mailbox, the selected mailbox it was decided
//     in), can make: a refused command changed nothing;
//   - a forwarded command the backend completed with OK did what its
//     record says, in the mailbox the record names;
//   - a STATUS, SELECT or EXAMINE answer describes the mailbox the record
//     names;
//   - held mail stays, protected folders stay;
//   - every content octet the client received is in the trail, and no
//     capped user received more than the cap;
//   - the backend never read a forwarded command otherwise than the proxy
//     (no backend-protocol-error).
func (e *Env) check(st *Step, user string, o *Outcome) []string {
	var probs []string
	bad := func(format string, args ...any) { probs = append(probs, fmt.Sprintf(format, args...)) }
	d := e.B.Delim
	var fwd, all []*audit.Record
	for _, r := range o.Recs {
		switch r.Kind {
		case audit.KindCommand:
			fwd = append(fwd, r)
			all = append(all, r)
		case audit.KindPolicyDeny, audit.KindDelivery:
			all = append(all, r)
		case audit.KindSecurity:
			if r.Event == "backend-protocol-error" {
				bad("the backend read a forwarded command otherwise than the proxy: %s", r.Detail)
			}
		}
	}
	changes := Diff(o.Before, o.After)
	for _, c := range changes {
		if !allowed(c, fwd, st, d) {
			bad("%s, which no forwarded command accounts for (audited: %s)", c, describe(fwd))
		}
	}
	// Held mail stays; protected folders stay.
	for _, h := range Held {
		hc := e.B.Canonical(h)
		for _, c := range changes {
			if c.Box != hc {
				continue
			}
			switch {
			case c.Kind == BoxRemoved || c.Kind == BoxRecreated || c.Kind == MsgRemoved:
				bad("held mailbox: %s", c)
			case c.Kind == FlagsChanged && hasFlag(c.To, `\Deleted`) && !hasFlag(c.From, `\Deleted`):
				bad("held mailbox: %s", c)
			}
		}
	}
	for _, p := range Protected {
		pc := e.B.Canonical(p)
		for _, c := range changes {
			if c.Box == pc && (c.Kind == BoxRemoved || c.Kind == BoxRecreated) {
				bad("protected mailbox: %s", c)
			}
		}
	}
	touched := map[string]bool{}
	for _, c := range changes {
		touched[c.Box] = true
	}
	probs = append(probs, e.checkDone(fwd, o, touched)...)
	probs = append(probs, e.checkContent(user, all, o)...)
	return probs
}

// describe lists audited commands for a report.
func describe(recs []*audit.Record) string {
	if len(recs) == 0 {
		return "none"
	}
	var b []string
	for _, r := range recs {
		s := r.Tag + " " + r.Command
		if r.Mailbox != "" {
			s += fmt.Sprintf(" mailbox=%q", r.Mailbox)
		}
		if r.Destination != "" {
			s += fmt.Sprintf(" destination=%q", r.Destination)
		}
		if r.Selected != "" {
			s += fmt.Sprintf(" selected=%q", r.Selected)
		}
		s += " " + r.Result
		b = append(b, s)
	}
	return strings.Join(b, "; ")
}

func hasFlag(flags, f string) bool {
	for _, x := range strings.Fields(flags) {
		if strings.EqualFold(x, f) {
			return true
		}
	}
	return false
}

// under reports whether name is box or inside it.
func under(name, box string, d byte) bool {
	return name == box || (d != 0 && strings.HasPrefix(name, box) && len(name) > len(box) && name[len(box)] == d)
}

func hasEffect(r *audit.Record, eff string) bool { return slices.Contains(r.Effects, eff) }

// allowed reports whether a forwarded command, as audited, accounts for a
// change.
func allowed(c Change, fwd []*audit.Record, st *Step, d byte) bool {
	if c.Kind == MsgAdded && slices.Contains(st.Adds, c.Box) {
		return true
	}
	for _, r := range fwd {
		switch c.Kind {
		case BoxAdded:
			switch r.Command {
			case "CREATE":
				// Some backends create the parents of a new mailbox.
				if under(r.Mailbox, c.Box, d) {
					return true
				}
			case "RENAME":
				if under(c.Box, r.Destination, d) || under(r.Destination, c.Box, d) {
					return true
				}
			}
		case BoxRemoved:
			switch r.Command {
			case "DELETE":
				if c.Box == r.Mailbox {
					return true
				}
			case "RENAME":
				if under(c.Box, r.Mailbox, d) {
					return true
				}
			}
		case BoxRecreated:
			if (r.Command == "DELETE" || r.Command == "RENAME") && under(c.Box, r.Mailbox, d) {
				return true
			}
		case MsgAdded:
			switch r.Command {
			case "APPEND":
				// Stored \Deleted: the record must say mark-deleted.
				if c.Box == r.Mailbox && (!hasFlag(c.To, `\Deleted`) || hasEffect(r, "mark-deleted")) {
					return true
				}
			case "COPY", "MOVE":
				if c.Box == r.Destination {
					return true
				}
			}
		case MsgRemoved:
			if hasEffect(r, "expunge") && c.Box == r.Selected {
				return true
			}
			if r.Command == "RENAME" && r.Mailbox == "INBOX" && c.Box == "INBOX" {
				return true // RENAME INBOX moves its messages (RFC 9051 §6.3.6)
			}
		case FlagsChanged:
			if c.Box != r.Selected || !hasEffect(r, "set-flags") {
				continue
			}
			if flagsFrom(c, r) {
				return true
			}
		case Subscribed, Unsubscribed:
			switch r.Command {
			case "SUBSCRIBE", "UNSUBSCRIBE", "DELETE":
				if c.Box == r.Mailbox {
					return true
				}
			case "RENAME":
				if under(c.Box, r.Mailbox, d) || under(c.Box, r.Destination, d) {
					return true
				}
			}
		}
	}
	return false
}

// flagsFrom reports whether a flag change is one a STORE or a reading
// FETCH (or NOTIFY) audited as r can make: only the flags it names, \Seen
// for a body read.
func flagsFrom(c Change, r *audit.Record) bool {
	from, to := strings.Fields(c.From), strings.Fields(c.To)
	var changed []string
	for _, f := range from {
		if !hasFlag(c.To, f) {
			changed = append(changed, f)
		}
	}
	for _, f := range to {
		if !hasFlag(c.From, f) {
			changed = append(changed, f)
		}
	}
	if r.Command != "STORE" {
		return len(changed) == 1 && strings.EqualFold(changed[0], `\Seen`) && hasFlag(c.To, `\Seen`)
	}
	if strings.HasPrefix(r.StoreOp, "FLAGS") {
		return true // replaces every flag
	}
	for _, f := range changed {
		if !slices.ContainsFunc(r.Flags, func(x string) bool { return strings.EqualFold(x, f) }) {
			return false
		}
	}
	return true
}

// checkDone checks that each forwarded command the backend completed with
// OK did what its record says, in the mailbox it names, and that the
// answers of STATUS, SELECT and EXAMINE describe that mailbox.
func (e *Env) checkDone(fwd []*audit.Record, o *Outcome, touched map[string]bool) []string {
	var probs []string
	bad := func(format string, args ...any) { probs = append(probs, fmt.Sprintf(format, args...)) }
	before, after := o.Before, o.After
	selectable := func(st *State, n string) bool { b, ok := st.Boxes[n]; return ok && !b.NoSelect }
	// The untagged data each completion ended, in order.
	data := map[string][]*Resp{}
	var pending []*Resp
	for _, r := range o.Resps {
		if r.Tag == "*" {
			pending = append(pending, r)
			continue
		}
		if r.Tag != "+" {
			data[r.Tag] = pending
			pending = nil
		}
	}
	for _, r := range fwd {
		ok := r.Result == "OK"
		switch r.Command {
		case "CREATE":
			if ok && (!selectable(after, r.Mailbox) || selectable(before, r.Mailbox)) {
				bad("%s CREATE OK but %q was not created (audited mailbox)", r.Tag, r.Mailbox)
			}
		case "DELETE":
			if ok && (!selectable(before, r.Mailbox) || selectable(after, r.Mailbox)) {
				bad("%s DELETE OK but %q was not deleted (audited mailbox)", r.Tag, r.Mailbox)
			}
		case "RENAME":
			// (Courier answers OK to a RENAME of a mailbox that does not
			// exist, and does nothing.)
			if ok && selectable(before, r.Mailbox) && (!selectable(after, r.Destination) || (r.Mailbox != "INBOX" && selectable(after, r.Mailbox))) {
				bad("%s RENAME OK but %q was not renamed to %q (audited)", r.Tag, r.Mailbox, r.Destination)
			}
		case "APPEND":
			if ok && selectable(before, r.Mailbox) && selectable(after, r.Mailbox) &&
				len(after.Boxes[r.Mailbox].Msgs) <= len(before.Boxes[r.Mailbox].Msgs) && !touchedRemoved(o, r.Mailbox) {
				bad("%s APPEND OK but no message was added to %q (audited mailbox)", r.Tag, r.Mailbox)
			}
		case "SUBSCRIBE":
			if ok && !after.Subs[r.Mailbox] {
				bad("%s SUBSCRIBE OK but %q is not subscribed (audited mailbox)", r.Tag, r.Mailbox)
			}
		case "UNSUBSCRIBE":
			if ok && after.Subs[r.Mailbox] {
				bad("%s UNSUBSCRIBE OK but %q is still subscribed (audited mailbox)", r.Tag, r.Mailbox)
			}
		case "STATUS":
			if !selectable(before, r.Mailbox) {
				if ok {
					bad("%s STATUS OK for %q, which does not exist (audited mailbox)", r.Tag, r.Mailbox)
				}
				continue
			}
			if !ok {
				if r.Result == "NO" {
					bad("%s STATUS NO for %q, which exists (audited mailbox): %s", r.Tag, r.Mailbox, o.Done[r.Tag].Text)
				}
				continue
			}
			if touched[r.Mailbox] {
				continue
			}
			for _, resp := range data[r.Tag] {
				if msg, okm := statusMessages(resp); okm && msg != len(before.Boxes[r.Mailbox].Msgs) {
					bad("%s STATUS answered %q, but the audited mailbox %q holds %d messages", r.Tag, resp.Text, r.Mailbox, len(before.Boxes[r.Mailbox].Msgs))
				}
			}
		case "SELECT", "EXAMINE":
			if !selectable(before, r.Mailbox) {
				if ok {
					bad("%s %s OK for %q, which does not exist (audited mailbox)", r.Tag, r.Command, r.Mailbox)
				}
				continue
			}
			if r.Result == "NO" {
				bad("%s %s NO for %q, which exists (audited mailbox): %s", r.Tag, r.Command, r.Mailbox, o.Done[r.Tag].Text)
				continue
			}
			if !ok {
				continue
			}
			box := before.Boxes[r.Mailbox]
			for _, resp := range data[r.Tag] {
				if v, okv := respCode(resp, "UIDVALIDITY"); okv && v != uint64(box.UIDValidity) {
					bad("%s %s answered %q, but the audited mailbox %q has UIDVALIDITY %d", r.Tag, r.Command, resp.Text, r.Mailbox, box.UIDValidity)
				}
				if n, okn := existsCount(resp); okn && !touched[r.Mailbox] && n != len(box.Msgs) {
					bad("%s %s answered %q, but the audited mailbox %q holds %d messages", r.Tag, r.Command, resp.Text, r.Mailbox, len(box.Msgs))
				}
			}
		case "EXPUNGE", "CLOSE":
			if !ok || !hasEffect(r, "expunge") || r.UID || r.ReadOnly || !selectable(after, r.Selected) || !selectable(before, r.Selected) {
				continue
			}
			for uid, fl := range after.Boxes[r.Selected].Msgs {
				if hasFlag(fl, `\Deleted`) && before.Boxes[r.Selected].Msgs[uid] == fl {
					bad("%s %s OK but %q (the audited selected mailbox) still holds \\Deleted message %d", r.Tag, r.Command, r.Selected, uid)
					break
				}
			}
		}
	}
	return probs
}

// touchedRemoved reports a message removed from box in the step.
func touchedRemoved(o *Outcome, box string) bool {
	for _, c := range Diff(o.Before, o.After) {
		if c.Box == box && c.Kind == MsgRemoved {
			return true
		}
	}
	return false
}

// statusMessages reads MESSAGES from "* STATUS name (MESSAGES n ...)".
func statusMessages(r *Resp) (int, bool) {
	if !strings.HasPrefix(strings.ToUpper(r.Text), "* STATUS ") {
		return 0, false
	}
	i := strings.LastIndex(strings.ToUpper(r.Text), "MESSAGES ")
	if i < 0 {
		return 0, false
	}
	v := r.Text[i+len("MESSAGES "):]
	v = strings.FieldsFunc(v, func(c rune) bool { return c == ' ' || c == ')' })[0]
	n, err := strconv.Atoi(v)
	return n, err == nil
}

// respCode reads a numeric response code: "* OK [UIDVALIDITY 7] ...".
func respCode(r *Resp, code string) (uint64, bool) {
	i := strings.Index(r.Text, "["+code+" ")
	if i < 0 {
		return 0, false
	}
	v, _, _ := strings.Cut(r.Text[i+len(code)+2:], "]")
	n, err := strconv.ParseUint(v, 10, 64)
	return n, err == nil
}

// existsCount reads "* n EXISTS".
func existsCount(r *Resp) (int, bool) {
	f := strings.Fields(r.Text)
	if len(f) != 3 || f[0] != "*" || !strings.EqualFold(f[2], "EXISTS") {
		return 0, false
	}
	n, err := strconv.Atoi(f[1])
	return n, err == nil
}

// checkContent compares the content the client received with the trail's
// account of it, and with the user's caps.
func (e *Env) checkContent(user string, recs []*audit.Record, o *Outcome) []string {
	var probs []string
	var gotOctets, gotMsgs int64
	for _, r := range o.Resps {
		n, ok := fetchContent(r)
		if ok {
			gotOctets += n
			gotMsgs++
		}
	}
	var audOctets, audMsgs int64
	for _, r := range recs {
		audOctets += r.ContentBytes
		audMsgs += int64(r.Messages)
	}
	if gotOctets != audOctets || gotMsgs != audMsgs {
		probs = append(probs, fmt.Sprintf("the client received %d content octets in %d messages, the trail accounts for %d octets in %d messages", gotOctets, gotMsgs, audOctets, audMsgs))
	}
	octets, msgs := e.got.add(user, gotOctets, gotMsgs)
	if strings.HasPrefix(user, "cap") && (octets > CapBytes || msgs > CapMessages) {
		probs = append(probs, fmt.Sprintf("%s received %d content octets in %d messages: over the cap of %d octets, %d messages", user, octets, msgs, CapBytes, CapMessages))
	}
	return probs
}

// fetchContent returns the message content octets a FETCH response
// carries (RFC 9051 §7.5.2: BODY[...], BINARY[...], RFC822, RFC822.HEADER,
// RFC822.TEXT; PREVIEW, RFC 8970, and Dovecot's SNIPPET): the strings of
// their values, also inside a list. It reports whether the response has
// a content item at all. It is the harness's own reading, independent of
// the proxy's tracker.
func fetchContent(r *Resp) (int64, bool) {
	if !isFetch(r) {
		return 0, false
	}
	i := strings.IndexByte(r.Text, '(')
	if i < 0 {
		return 0, false
	}
	toks := tokens(r, i)
	var n int64
	found := false
	// toks[0] is the attribute list's "(": name value pairs follow.
	for k := 1; k+1 < len(toks); k++ {
		if toks[k].kind != 'a' {
			break
		}
		name := strings.ToUpper(toks[k].s)
		content := strings.HasPrefix(name, "BODY[") || strings.HasPrefix(name, "BINARY[") ||
			name == "RFC822" || name == "RFC822.HEADER" || name == "RFC822.TEXT" || name == "PREVIEW" || name == "SNIPPET"
		found = found || content
		k++
		v := toks[k]
		if v.kind == 's' && content {
			n += int64(len(v.s))
		}
		if v.kind == '(' {
			for lvl := 1; lvl > 0 && k+1 < len(toks); {
				k++
				switch toks[k].kind {
				case '(':
					lvl++
				case ')':
					lvl--
				case 's':
					if content {
						n += int64(len(toks[k].s))
					}
				}
			}
		}
	}
	return n, found
}

// fetchUID returns the UID item of a FETCH response, 0 if none.
func fetchUID(r *Resp) uint32 {
	i := strings.IndexByte(r.Text, '(')
	if i < 0 {
		return 0
	}
	toks := tokens(r, i)
	for k := 1; k+1 < len(toks); k += 2 {
		if toks[k].kind != 'a' {
			return 0
		}
		if strings.EqualFold(toks[k].s, "UID") {
			n, _ := strconv.ParseUint(toks[k+1].s, 10, 32)
			return uint32(n)
		}
		if toks[k+1].kind == '(' {
			return 0 // a list value: skipping it is not worth it here
		}
	}
	return 0
}
