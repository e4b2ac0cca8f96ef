package policy

import (
	"cmp"
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"

	"github.com/open-policy-agent/opa/v1/ast"
)

// The interpreter's values (machine.go): scalars held inline, collections
// as sorted slices, so that a decision builds no OPA term. A collection
// made during an evaluation comes from the machine's arena and is reused
// by the next one; whatever outlives the evaluation (the decision, a
// session rule's value) is converted (toAST) or copied (persist) first.
// Order and equality are ast.Compare's, so that iteration and results are
// topdown's (ARCHITECTURE.md §10).

// vkind is a value's type, in ast.Compare's order of types.
type vkind uint8

const (
	kUndef vkind = iota // no value (Rego: undefined)
	kNull
	kBool
	kNum  // an integer in n, written as such (numVal)
	kNumX // any other number, its JSON text in s
	kStr
	kArr
	kObj
	kSet
)

// val is a value: n holds a bool (0 or 1) or an integer, s a string or a
// number's text, c a collection.
type val struct {
	k vkind
	n int64
	s string
	c *coll
}

// coll is an array (vals), a set (keys, sorted) or an object (keys, sorted,
// and vals alongside).
type coll struct {
	keys, vals []val
	// term is the collection as an OPA term, when known: set for those
	// converted from one (data, constants) and by seal; an arena
	// collection caches it at its first conversion.
	term *ast.Term
	// arena: made by a machine, valid until its release.
	arena bool
	// id, when not 0, names this collection alone (sharedVals.put gives
	// one to each it shares): never modified, never another's id, so that a
	// key may hold it for the contents (appendValKey).
	id uint64
	// verdict is the collection read as a decision, when it is one and
	// no arena's (sharedVerdict).
	verdict atomic.Pointer[sharedVerdict]
}

var (
	vTrue  = val{k: kBool, n: 1}
	vFalse = val{k: kBool}
	vNull  = val{k: kNull}
)

func vBool(b bool) val {
	if b {
		return vTrue
	}
	return vFalse
}

func vInt(n int64) val  { return val{k: kNum, n: n} }
func vStr(s string) val { return val{k: kStr, s: s} }

// order is the rank of a type in ast.Compare.
func (v val) order() int {
	if v.k == kNumX {
		return int(kNum)
	}
	return int(v.k)
}

func (v val) numText() string {
	if v.k == kNum {
		return strconv.FormatInt(v.n, 10)
	}
	return v.s
}

// compareVal is ast.Compare on values.
func compareVal(a, b val) int {
	if oa, ob := a.order(), b.order(); oa != ob {
		return cmp.Compare(oa, ob)
	}
	switch a.k {
	case kUndef, kNull:
		return 0
	case kBool:
		return cmp.Compare(a.n, b.n)
	case kNum, kNumX:
		if a.k == kNum && b.k == kNum {
			return cmp.Compare(a.n, b.n)
		}
		// OPA's equality of numbers is this comparison too
		// (ast.Number.Equal), and its hash agrees with it.
		return ast.NumberCompare(ast.Number(a.numText()), ast.Number(b.numText()))
	case kStr:
		return compareStr(a.s, b.s)
	case kArr:
		return slices.CompareFunc(a.c.vals, b.c.vals, compareVal)
	case kSet:
		return slices.CompareFunc(a.c.keys, b.c.keys, compareVal)
	case kObj:
		ak, bk := a.c.keys, b.c.keys
		for i := range min(len(ak), len(bk)) {
			if c := compareVal(ak[i], bk[i]); c != 0 {
				return c
			}
			if c := compareVal(a.c.vals[i], b.c.vals[i]); c != 0 {
				return c
			}
		}
		return len(ak) - len(bk)
	}
	return 0
}

func equalVal(a, b val) bool {
	if a.k == kStr && b.k == kStr {
		return a.s == b.s
	}
	return compareVal(a, b) == 0
}

// compareStr is strings.Compare, deciding by the first bytes inline when
// they differ, as the keys of the input and the policies' objects mostly
// do: a call of the runtime's comparison costs more than the rest of a
// look-up in a small object.
func compareStr(a, b string) int {
	if a != "" && b != "" && a[0] != b[0] {
		if a[0] < b[0] {
			return -1
		}
		return 1
	}
	return strings.Compare(a, b)
}

// find returns the index of key among keys (sorted), or where it would go.
func find(keys []val, key val) (int, bool) {
	if key.k == kStr && len(keys) <= 16 {
		// Most objects are small, and most keys strings: a scan deciding
		// by first bytes beats a binary search up to the input.command's size.
		for i := range keys {
			e := &keys[i]
			switch {
			case e.k > kStr:
				return i, false
			case e.k < kStr:
			case e.s != "" && key.s != "" && e.s[0] != key.s[0]:
				// compareStr's test, inline.
				if e.s[0] > key.s[0] {
					return i, false
				}
			default:
				if c := strings.Compare(e.s, key.s); c >= 0 {
					return i, c == 0
				}
			}
		}
		return len(keys), false
	}
	if key.k == kStr {
		// Strings sort after every scalar of another type and before
		// every collection: search among the strings alone.
		return slices.BinarySearchFunc(keys, key.s, func(e val, s string) int {
			if e.k != kStr {
				return cmp.Compare(e.order(), int(kStr))
			}
			return strings.Compare(e.s, s)
		})
	}
	return slices.BinarySearchFunc(keys, key, compareVal)
}

// get is an object's value for key, or undefined.
func (c *coll) get(key val) val {
	if i, ok := find(c.keys, key); ok {
		return c.vals[i]
	}
	return val{}
}

// setAdd adds x to a set in order, once.
func (c *coll) setAdd(x val) {
	if n := len(c.keys); n == 0 || compareVal(c.keys[n-1], x) < 0 {
		c.keys = append(c.keys, x)
		return
	}
	if i, ok := find(c.keys, x); !ok {
		c.keys = slices.Insert(c.keys, i, x)
	}
}

// appendKV adds k and v to an object whose keys all sort before k: the
// caller builds it in the order of its keys (inputCtx.object).
func (c *coll) appendKV(k, v val) {
	c.keys, c.vals = append(c.keys, k), append(c.vals, v)
}

// insert sets an object's key to v; once, it reports false when the key
// holds another value already.
func (c *coll) insert(k, v val, once bool) bool {
	if n := len(c.keys); n == 0 || compareVal(c.keys[n-1], k) < 0 {
		c.keys, c.vals = append(c.keys, k), append(c.vals, v)
		return true
	}
	i, ok := find(c.keys, k)
	if ok {
		if once && !equalVal(c.vals[i], v) {
			return false
		}
		c.vals[i] = v
		return true
	}
	c.keys, c.vals = slices.Insert(c.keys, i, k), slices.Insert(c.vals, i, v)
	return true
}

func (v val) len() int {
	switch v.k {
	case kArr:
		return len(v.c.vals)
	case kObj, kSet:
		return len(v.c.keys)
	case kStr:
		return len(v.s)
	}
	return 0
}

// fromAST converts an OPA value. Collections keep t as their term: they
// are never modified (only arena collections are).
func fromAST(t *ast.Term) (val, error) {
	switch x := t.Value.(type) {
	case ast.Null:
		return vNull, nil
	case ast.Boolean:
		return vBool(bool(x)), nil
	case ast.Number:
		return numVal(string(x)), nil
	case ast.String:
		return vStr(string(x)), nil
	case *ast.Array:
		c := &coll{term: t, vals: make([]val, x.Len())}
		for i := range c.vals {
			v, err := fromAST(x.Elem(i))
			if err != nil {
				return val{}, err
			}
			c.vals[i] = v
		}
		return val{k: kArr, c: c}, nil
	case ast.Set:
		c := &coll{term: t, keys: make([]val, 0, x.Len())}
		for _, e := range x.Slice() { // sorted
			v, err := fromAST(e)
			if err != nil {
				return val{}, err
			}
			c.keys = append(c.keys, v)
		}
		return val{k: kSet, c: c}, nil
	case ast.Object:
		c := &coll{term: t, keys: make([]val, 0, x.Len()), vals: make([]val, 0, x.Len())}
		var err error
		x.Foreach(func(k, e *ast.Term) { // sorted by key
			kv, err1 := fromAST(k)
			ev, err2 := fromAST(e)
			if err == nil {
				err = cmp.Or(err1, err2)
			}
			c.keys, c.vals = append(c.keys, kv), append(c.vals, ev)
		})
		return val{k: kObj, c: c}, err
	}
	return val{}, fmt.Errorf("policy: %s is not a value", ast.ValueName(t.Value))
}

// numVal is a number from its JSON text: an integer inline when the text
// is its canonical form, so that converting back gives the same text
// ("1.0" stays "1.0").
func numVal(s string) val {
	if n, err := strconv.ParseInt(s, 10, 64); err == nil && strconv.FormatInt(n, 10) == s {
		return vInt(n)
	}
	return val{k: kNumX, s: s}
}

// toAST converts a value to an OPA term (nil for undefined).
func toAST(v val) *ast.Term {
	switch v.k {
	case kNull:
		return ast.InternedNullTerm
	case kBool:
		return ast.InternedTerm(v.n == 1)
	case kNum:
		if v.n >= -1<<31 && v.n < 1<<31 {
			return ast.InternedTerm(int(v.n))
		}
		return ast.NumberTerm(json.Number(strconv.FormatInt(v.n, 10)))
	case kNumX:
		return ast.NumberTerm(json.Number(v.s))
	case kStr:
		return ast.StringTerm(v.s)
	case kUndef:
		return nil
	}
	c := v.c
	if c.term != nil {
		return c.term
	}
	var t *ast.Term
	switch v.k {
	case kArr:
		ts := make([]*ast.Term, len(c.vals))
		for i, e := range c.vals {
			ts[i] = toAST(e)
		}
		t = ast.ArrayTerm(ts...)
	case kSet:
		ts := make([]*ast.Term, len(c.keys))
		for i, e := range c.keys {
			ts[i] = toAST(e)
		}
		t = ast.SetTerm(ts...)
	case kObj:
		items := make([][2]*ast.Term, len(c.keys))
		for i := range c.keys {
			items[i] = ast.Item(toAST(c.keys[i]), toAST(c.vals[i]))
		}
		t = ast.ObjectTerm(items...)
	}
	if c.arena {
		c.term = t // the arena's own: no other goroutine sees it
	}
	return t
}

// seal gives a value made outside an arena, about to be shared, its terms
// (toAST may not cache them once other goroutines read it).
func seal(v val) val {
	if v.c == nil || v.c.term != nil {
		return v
	}
	for _, e := range v.c.keys {
		seal(e)
	}
	for _, e := range v.c.vals {
		seal(e)
	}
	v.c.term = toAST(v)
	return v
}

// persist copies what v holds of an arena to the heap, sealed, so that it
// outlives the evaluation.
func persist(v val) val {
	if v.c == nil || !v.c.arena {
		return v
	}
	c := &coll{}
	if v.c.keys != nil {
		c.keys = make([]val, len(v.c.keys))
		for i, e := range v.c.keys {
			c.keys[i] = persist(e)
		}
	}
	if v.c.vals != nil {
		c.vals = make([]val, len(v.c.vals))
		for i, e := range v.c.vals {
			c.vals[i] = persist(e)
		}
	}
	return seal(val{k: v.k, c: c})
}

// valSize estimates the bytes v holds on the heap, with its terms, each
// counted once; it stops counting once over limit. A persisted or
// converted collection's term holds its children's terms (seal, fromAST),
// which their own valSize counts: only its shell is counted here
// (heapSize, shallow). An arena's collection, or one whose child has no
// term, may hold other terms: those are counted in full.
func valSize(v val, limit int) int {
	n := 40 + len(v.s)
	if v.c == nil {
		return n
	}
	n += 80 // the coll
	shallow := !v.c.arena
	for _, e := range v.c.keys {
		if n > limit {
			return n
		}
		n += valSize(e, limit-n)
		shallow = shallow && (e.c == nil || e.c.term != nil)
	}
	for _, e := range v.c.vals {
		if n > limit {
			return n
		}
		n += valSize(e, limit-n)
		shallow = shallow && (e.c == nil || e.c.term != nil)
	}
	if v.c.term != nil && n <= limit {
		n += heapSize(v.c.term, shallow, limit-n)
	}
	return n
}
