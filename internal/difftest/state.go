package difftest

import (
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
)

// State is what a backend holds for one user, read over a direct
// connection to it (never through the proxy): its mailboxes, their
// messages and flags, and the subscriptions. It is the ground truth the
// harness compares the proxy's decisions and audit with.
type State struct {
	Boxes map[string]*Box // by canonical name (Canon)
	Subs  map[string]bool // canonical names
}

// Box is one mailbox.
type Box struct {
	Raw         string // as LIST gave it
	NoSelect    bool   // \Noselect or \NonExistent: a level, not a mailbox
	UIDValidity uint32
	Msgs        map[uint32]string // UID -> flags, sorted, space separated, \Recent left out
}

// Canon is the harness's own canonical form of a backend's mailbox name:
// modified UTF-7 decoded, a first level spelled INBOX in any case upper
// case (RFC 9051 §5.1). A name that is not valid modified UTF-7 stays raw
// with a "?" in front, so that it can equal no decoded name.
func Canon(raw string, delim byte) string {
	name, err := DecodeMUTF7(raw)
	if err != nil {
		return "?" + raw
	}
	if len(name) >= 5 && strings.EqualFold(name[:5], "INBOX") && (len(name) == 5 || (delim != 0 && name[5] == delim)) {
		name = "INBOX" + name[5:]
	}
	return name
}

// Snapshot reads the user's state over cn, a direct, logged-in
// connection to the backend.
func Snapshot(cn *Conn, delim byte) (*State, error) {
	st := &State{Boxes: map[string]*Box{}, Subs: map[string]bool{}}
	rs, err := cn.OK("sl", `LIST "" "*"`)
	if err != nil {
		return nil, err
	}
	for _, r := range rs {
		name, attrs, ok := listEntry(r, "LIST")
		if !ok {
			continue
		}
		b := &Box{Raw: name, Msgs: map[uint32]string{}}
		for _, a := range attrs {
			if strings.EqualFold(a, `\Noselect`) || strings.EqualFold(a, `\NonExistent`) {
				b.NoSelect = true
			}
		}
		st.Boxes[Canon(name, delim)] = b
	}
	rs, err = cn.OK("ss", `LSUB "" "*"`)
	if err != nil {
		return nil, err
	}
	for _, r := range rs {
		// A \Noselect entry is a parent of a subscribed name (Courier
		// lists INBOX so), not a subscription.
		if name, attrs, ok := listEntry(r, "LSUB"); ok && !slices.ContainsFunc(attrs, func(a string) bool { return strings.EqualFold(a, `\Noselect`) }) {
			st.Subs[Canon(name, delim)] = true
		}
	}
	// One EXAMINE and UID FETCH per mailbox, all in one write.
	names := slices.Sorted(maps.Keys(st.Boxes))
	var req strings.Builder
	var sel []string
	for _, n := range names {
		b := st.Boxes[n]
		if b.NoSelect || !quotable(b.Raw) {
			continue
		}
		i := len(sel)
		sel = append(sel, n)
		fmt.Fprintf(&req, "e%d EXAMINE %s\r\nf%d UID FETCH 1:* (FLAGS)\r\n", i, Quote(b.Raw), i)
	}
	if len(sel) == 0 {
		return st, nil
	}
	// A failed EXAMINE leaves no mailbox selected (RFC 9051 §6.3.2), where
	// UNSELECT is not offered (Courier); a selected one could not be
	// deleted by a reset.
	req.WriteString("su EXAMINE difftest-none\r\n")
	if err := cn.Write([]byte(req.String())); err != nil {
		return nil, err
	}
	last, ok := -1, false // the EXAMINE completed last, and whether it succeeded
	for {
		r, err := cn.Next()
		if err != nil {
			return nil, err
		}
		switch {
		case r.Tag == "su":
			return st, nil
		case r.Tag != "*":
			if strings.HasPrefix(r.Tag, "e") {
				last, _ = strconv.Atoi(r.Tag[1:])
				if ok = r.Status == "OK"; !ok {
					// Listed but not a mailbox (Dovecot lists a deleted
					// parent of a mailbox so): a level, like \Noselect.
					st.Boxes[sel[last]].NoSelect = true
				}
			}
		case last+1 < len(sel) && strings.Contains(r.Text, "[UIDVALIDITY "):
			// Untagged data of the EXAMINE in progress.
			v := r.Text[strings.Index(r.Text, "[UIDVALIDITY ")+len("[UIDVALIDITY "):]
			v, _, _ = strings.Cut(v, "]")
			n, _ := strconv.ParseUint(v, 10, 32)
			st.Boxes[sel[last+1]].UIDValidity = uint32(n)
		case ok && last >= 0 && isFetch(r):
			if uid, flags, found := fetchUIDFlags(r); found {
				st.Boxes[sel[last]].Msgs[uid] = flags
			}
		}
	}
}

// listEntry parses "* LIST (attrs) delim name".
func listEntry(r *Resp, kind string) (name string, attrs []string, ok bool) {
	if r.Tag != "*" {
		return "", nil, false
	}
	rest, found := strings.CutPrefix(r.Text, "* "+kind+" ")
	if !found {
		return "", nil, false
	}
	toks := tokens(r, len(r.Text)-len(rest))
	// ( attrs... ) delim name
	i := 0
	if i < len(toks) && toks[i].kind == '(' {
		for i++; i < len(toks) && toks[i].kind != ')'; i++ {
			attrs = append(attrs, toks[i].s)
		}
		i++
	}
	if i+1 >= len(toks) {
		return "", nil, false
	}
	return toks[i+1].s, attrs, true
}

func isFetch(r *Resp) bool {
	f := strings.Fields(r.Text)
	return r.Tag == "*" && len(f) >= 3 && strings.EqualFold(f[2], "FETCH")
}

// fetchUIDFlags reads UID and FLAGS from "* n FETCH (UID u FLAGS (...))".
func fetchUIDFlags(r *Resp) (uint32, string, bool) {
	t := r.Text
	i := strings.Index(strings.ToUpper(t), "UID ")
	if i < 0 {
		return 0, "", false
	}
	u, _, _ := strings.Cut(t[i+4:], " ")
	u = strings.TrimRight(u, ")")
	uid, err := strconv.ParseUint(u, 10, 32)
	if err != nil {
		return 0, "", false
	}
	j := strings.Index(strings.ToUpper(t), "FLAGS (")
	if j < 0 {
		return 0, "", false
	}
	fl, _, _ := strings.Cut(t[j+7:], ")")
	var flags []string
	for _, f := range strings.Fields(fl) {
		if !strings.EqualFold(f, `\Recent`) {
			flags = append(flags, f)
		}
	}
	slices.Sort(flags)
	return uint32(uid), strings.Join(flags, " "), true
}

// Change is one difference between two states.
type Change struct {
	Kind ChangeKind
	Box  string // canonical mailbox
	UID  uint32 // for message changes
	From string // flags before (FlagsChanged)
	To   string // flags after (FlagsChanged, MsgAdded)
}

// ChangeKind names a kind of change.
type ChangeKind string

const (
	BoxAdded     ChangeKind = "mailbox-created"
	BoxRemoved   ChangeKind = "mailbox-deleted"
	BoxRecreated ChangeKind = "mailbox-recreated" // new UIDVALIDITY
	MsgAdded     ChangeKind = "message-added"
	MsgRemoved   ChangeKind = "message-removed"
	FlagsChanged ChangeKind = "flags-changed"
	Subscribed   ChangeKind = "subscribed"
	Unsubscribed ChangeKind = "unsubscribed"
)

func (c Change) String() string {
	switch c.Kind {
	case MsgAdded, MsgRemoved:
		if c.To != "" {
			return fmt.Sprintf("%s %q uid %d (%s)", c.Kind, c.Box, c.UID, c.To)
		}
		return fmt.Sprintf("%s %q uid %d", c.Kind, c.Box, c.UID)
	case FlagsChanged:
		return fmt.Sprintf("%s %q uid %d: %q -> %q", c.Kind, c.Box, c.UID, c.From, c.To)
	}
	return fmt.Sprintf("%s %q", c.Kind, c.Box)
}

// Diff lists what changed from a to b, in a stable order.
func Diff(a, b *State) []Change {
	var out []Change
	for _, n := range slices.Sorted(maps.Keys(a.Boxes)) {
		x := a.Boxes[n]
		y, ok := b.Boxes[n]
		switch {
		case !ok:
			if !x.NoSelect {
				out = append(out, Change{Kind: BoxRemoved, Box: n})
			}
			continue
		case x.NoSelect != y.NoSelect:
			if x.NoSelect {
				out = append(out, Change{Kind: BoxAdded, Box: n})
			} else {
				out = append(out, Change{Kind: BoxRemoved, Box: n})
			}
			continue
		case x.UIDValidity != y.UIDValidity:
			out = append(out, Change{Kind: BoxRecreated, Box: n})
			continue
		}
		for _, u := range slices.Sorted(maps.Keys(x.Msgs)) {
			f, ok := y.Msgs[u]
			switch {
			case !ok:
				out = append(out, Change{Kind: MsgRemoved, Box: n, UID: u})
			case f != x.Msgs[u]:
				out = append(out, Change{Kind: FlagsChanged, Box: n, UID: u, From: x.Msgs[u], To: f})
			}
		}
		for _, u := range slices.Sorted(maps.Keys(y.Msgs)) {
			if _, ok := x.Msgs[u]; !ok {
				out = append(out, Change{Kind: MsgAdded, Box: n, UID: u, To: y.Msgs[u]})
			}
		}
	}
	for _, n := range slices.Sorted(maps.Keys(b.Boxes)) {
		if _, ok := a.Boxes[n]; !ok && !b.Boxes[n].NoSelect {
			out = append(out, Change{Kind: BoxAdded, Box: n})
		}
	}
	for _, n := range slices.Sorted(maps.Keys(a.Subs)) {
		if !b.Subs[n] {
			out = append(out, Change{Kind: Unsubscribed, Box: n})
		}
	}
	for _, n := range slices.Sorted(maps.Keys(b.Subs)) {
		if !a.Subs[n] {
			out = append(out, Change{Kind: Subscribed, Box: n})
		}
	}
	return out
}
