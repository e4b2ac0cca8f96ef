package policy

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"

	"github.com/open-policy-agent/opa/v1/ast"
)

// verdict is one policy directory's decision, as data.imapwarden.decision
// gave it.
type verdict struct {
	allow       bool
	reason      string
	code        string
	disconnect  bool
	annotations map[string]any
	backend     string
	// size estimates what the verdict holds (goSize), to bound the
	// decisions remembered (maxEntry).
	size int
	// shared is set when the verdict was read from a shared value.
	shared *sharedVerdict
}

// sharedVerdict is the verdict of a decision value evaluations share (a
// collection no arena made: a constant of the plan, or a value remembered
// with a session or with a command's effects; never modified), read at
// its first use and not at each (its annotations map is then shared too:
// a Decision's annotations are never modified). alone is the outcome of
// the evaluations it decides alone (evaluate), made once per state.
type sharedVerdict struct {
	d     verdict
	alone atomic.Pointer[outcome]
}

// parseShared is parseDecision of c, a collection no arena made, read
// once. A malformed decision is read again each time: never kept.
func parseShared(c *coll) (verdict, error) {
	if sv := c.verdict.Load(); sv != nil {
		return sv.d, nil
	}
	d, err := parseDecision(c.term.Value)
	if err != nil {
		return d, err
	}
	sv := &sharedVerdict{d: d}
	sv.d.shared = sv
	if !c.verdict.CompareAndSwap(nil, sv) {
		sv = c.verdict.Load()
	}
	return sv.d, nil
}

var (
	keyAllow       = ast.StringTerm("allow")
	keyReason      = ast.StringTerm("reason")
	keyCode        = ast.StringTerm("code")
	keyDisconnect  = ast.StringTerm("disconnect")
	keyAnnotations = ast.StringTerm("annotations")
	keyBackend     = ast.StringTerm("backend")
)

// maxReason bounds the text a policy puts in a client's response line.
const maxReason = 200

// parseDecision checks the decision document. Anything malformed is an
// error, so that the caller fails closed and logs why.
func parseDecision(v ast.Value) (verdict, error) {
	var d verdict
	obj, ok := v.(ast.Object)
	if !ok {
		return d, fmt.Errorf("decision is %s, not an object", ast.ValueName(v))
	}
	t := obj.Get(keyAllow)
	if t == nil {
		return d, errors.New(`decision has no "allow"`)
	}
	allow, ok := t.Value.(ast.Boolean)
	if !ok {
		return d, errors.New(`decision "allow" is not a boolean`)
	}
	d.allow = bool(allow)
	var err error
	if d.reason, err = optString(obj, keyReason); err != nil {
		return d, err
	}
	if len(d.reason) > maxReason {
		d.reason = d.reason[:maxReason]
	}
	if d.code, err = optString(obj, keyCode); err != nil {
		return d, err
	}
	if d.code != "" && !validCode(d.code) {
		return d, fmt.Errorf("decision code %q is not a response code atom", d.code)
	}
	d.code = strings.ToUpper(d.code)
	if t := obj.Get(keyDisconnect); t != nil {
		b, ok := t.Value.(ast.Boolean)
		if !ok {
			return d, errors.New(`decision "disconnect" is not a boolean`)
		}
		d.disconnect = bool(b)
	}
	if d.backend, err = optString(obj, keyBackend); err != nil {
		return d, err
	}
	if t := obj.Get(keyAnnotations); t != nil {
		a, ok := t.Value.(ast.Object)
		if !ok {
			return d, errors.New(`decision "annotations" is not an object`)
		}
		if a.Len() > 0 {
			j, err := ast.JSON(a)
			if err != nil {
				return d, fmt.Errorf("decision annotations: %w", err)
			}
			d.annotations, _ = j.(map[string]any)
			d.size = goSize(d.annotations, maxEntry)
		}
	}
	d.size += len(d.reason) + len(d.code) + len(d.backend)
	return d, nil
}

// goSize estimates the bytes v, a value ast.JSON made, holds on the heap;
// it stops counting once over limit. Without closures, unlike heapSize:
// it runs at every evaluation.
func goSize(v any, limit int) int {
	n := 16 // the interface
	switch v := v.(type) {
	case string:
		n += 16 + len(v)
	case json.Number:
		n += 16 + len(v)
	case []any:
		n += 24
		for _, e := range v {
			if n > limit {
				break
			}
			n += goSize(e, limit-n)
		}
	case map[string]any:
		n += 48
		for k, e := range v {
			if n > limit {
				break
			}
			n += 32 + len(k) + goSize(e, limit-n)
		}
	}
	return n
}

func optString(obj ast.Object, key *ast.Term) (string, error) {
	t := obj.Get(key)
	if t == nil {
		return "", nil
	}
	s, ok := t.Value.(ast.String)
	if !ok {
		return "", fmt.Errorf("decision %v is not a string", key)
	}
	return string(s), nil
}

// validCode accepts what can stand between "[" and "]" as a response code
// (RFC 9051 §7.1, RFC 5530): an atom of letters, digits, "-" and ".".
func validCode(c string) bool {
	if len(c) > 32 {
		return false
	}
	for i := 0; i < len(c); i++ {
		switch ch := c[i]; {
		case 'A' <= ch && ch <= 'Z', 'a' <= ch && ch <= 'z', '0' <= ch && ch <= '9', ch == '-', ch == '.':
		default:
			return false
		}
	}
	return true
}

// parseVerdict is parseDecision on the interpreter's value, without
// converting it: a well-formed decision is read as it is, anything else
// is converted and left to parseDecision, whose errors are the contract.
func parseVerdict(v val) (verdict, error) {
	slow := func() (verdict, error) { return parseDecision(toAST(v).Value) }
	if v.k != kObj {
		return slow()
	}
	if v.c.term != nil {
		if v.c.arena {
			return parseDecision(v.c.term.Value)
		}
		return parseShared(v.c) // a constant or a remembered value
	}
	var d verdict
	allow := v.c.get(vStr("allow"))
	reason, code, disc := v.c.get(vStr("reason")), v.c.get(vStr("code")), v.c.get(vStr("disconnect"))
	backend, ann := v.c.get(vStr("backend")), v.c.get(vStr("annotations"))
	if allow.k != kBool || !optKind(reason, kStr) || !optKind(code, kStr) || !optKind(disc, kBool) ||
		!optKind(backend, kStr) || !optKind(ann, kObj) || code.s != "" && !validCode(code.s) {
		return slow()
	}
	d.allow, d.reason, d.code, d.disconnect, d.backend = allow.n == 1, reason.s, strings.ToUpper(code.s), disc.n == 1, backend.s
	if len(d.reason) > maxReason {
		d.reason = d.reason[:maxReason]
	}
	if ann.k == kObj && len(ann.c.keys) > 0 {
		a, ok := goValue(ann)
		if !ok {
			return slow()
		}
		d.annotations = a.(map[string]any)
		d.size = goSize(d.annotations, maxEntry)
	}
	d.size += len(d.reason) + len(d.code) + len(d.backend)
	return d, nil
}

// maxVerdicts bounds compiled.verdicts, maxVerdictKey the key of a
// decision remembered there.
const (
	maxVerdicts   = 256
	maxVerdictKey = 1024
)

// verdictOf is parseVerdict of v, a decision p's plan made, remembered by
// v's exact key (appendValKey: equal keys, equal values): a decision made
// again (a denial whose reason names the same mailbox) is read once and
// shared, and so is the outcome it decides alone (sharedVerdict.alone),
// so that it allocates nothing. A malformed decision, or one larger than
// maxEntry, is not remembered.
func (p *compiled) verdictOf(m *machine, v val) (verdict, error) {
	if v.k != kObj || v.c.term != nil {
		return parseVerdict(v)
	}
	key, ok := appendValKey(m.vkey[:0], v, maxVerdictKey)
	m.vkey = key
	if !ok {
		return parseVerdict(v)
	}
	if sv := p.verdicts.get(key); sv != nil {
		return sv.d, nil
	}
	d, err := parseVerdict(v)
	if err != nil || d.size > maxEntry {
		return d, err
	}
	sv := &sharedVerdict{d: d}
	sv.d.shared = sv
	p.verdicts.put(key, sv)
	return sv.d, nil
}

// optKind: v is undefined or of kind k.
func optKind(v val, k vkind) bool { return v.k == kUndef || v.k == k }

// goValue is ast.JSON of v; ok is false for what it does not convert
// alone (an object key that is not a string).
func goValue(v val) (any, bool) {
	switch v.k {
	case kNull:
		return nil, true
	case kBool:
		return v.n == 1, true
	case kNum, kNumX:
		return json.Number(v.numText()), true
	case kStr:
		return v.s, true
	case kArr, kSet:
		elems := v.c.vals
		if v.k == kSet {
			elems = v.c.keys
		}
		out := make([]any, len(elems))
		for i, e := range elems {
			x, ok := goValue(e)
			if !ok {
				return nil, false
			}
			out[i] = x
		}
		return out, true
	case kObj:
		out := make(map[string]any, len(v.c.keys))
		for i, k := range v.c.keys {
			if k.k != kStr {
				return nil, false
			}
			x, ok := goValue(v.c.vals[i])
			if !ok {
				return nil, false
			}
			out[k.s] = x
		}
		return out, true
	}
	return nil, false
}
