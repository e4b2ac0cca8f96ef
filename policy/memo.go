package policy

import (
	"encoding/binary"
	"maps"
	"slices"
	"sync"
	"sync/atomic"
)

// memos are what an evaluation may reuse of earlier ones with the same
// parts of the input (ARCHITECTURE.md §10): the session rules' values and
// the values of the functions remembered by argument (callScopes), for the
// input's session and for its command's effects. The zero value remembers
// nothing.
type memos struct {
	rules ruleMemo
	calls [numScopes]*callMemo
	// now is the key of input.now's slots (cachedDoc), part of the key
	// of a call of scopeClock.
	now string
	// bodies remembers the session's bodies of rules (bodyGroup) by the
	// id of the command's effects' part, effects (0: none remembered).
	bodies  *callMemo
	effects uint64
}

// callMemo holds the values of a policy's functions of one scope
// (memoScope) for one value of that scope's slots, by function and
// arguments (callKey), each persisted out of the arena that made it. It is
// shared by concurrent evaluations: readers load the map without a lock;
// a writer copies it (it is small, and written only at a call's first
// evaluation). It holds at most maxEntry of values in all; a value that
// would not fit empties it first, a larger one is not kept.
//
// The calls whose key is fixed at load (a rule's, or constant arguments
// past input and data, constCalls) are kept apart, in fixed: by their
// slot of the evaluation's memo table, an index into an array, not a key made and
// hashed at each call; a call of scopeClock with input.now's key, which
// must equal the evaluation's (a later minute replaces it). They count in
// size like the map's entries, and are bounded in number by the plan.
type callMemo struct {
	m         atomic.Pointer[map[string]val] // never modified once stored
	fixed     []atomic.Pointer[fixedVal]     // by memo slot; nil: none
	mu        sync.Mutex                     // of writers
	size      int                            // of *m and fixed, under mu
	fixedSize int                            // of fixed, under mu
}

// fixedVal is a value in a callMemo's fixed slot: of input.now's key now
// for a call of scopeClock, "" otherwise; n is its size as counted.
type fixedVal struct {
	now string
	v   val
	n   int
}

// maxCalls bounds the entries of a callMemo.
const maxCalls = 64

func (c *callMemo) get(key []byte) (val, bool) {
	if m := c.m.Load(); m != nil {
		v, ok := (*m)[string(key)]
		return v, ok
	}
	return val{}, false
}

// entries is the memo's map, for tests.
func (c *callMemo) entries() map[string]val {
	if m := c.m.Load(); m != nil {
		return *m
	}
	return nil
}

// put remembers v, persisted, of size n (valSize).
func (c *callMemo) put(key []byte, v val, n int) {
	n += len(key)
	if n > maxEntry {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	old := c.entries()
	if _, ok := old[string(key)]; ok {
		return
	}
	if c.size+n > maxEntry || len(old) >= maxCalls {
		old, c.size = nil, c.fixedSize
		if c.size+n > maxEntry {
			c.m.Store(nil)
			return
		}
	}
	m := make(map[string]val, len(old)+1)
	maps.Copy(m, old)
	m[string(key)] = v
	c.size += n
	c.m.Store(&m)
}

// putFixed remembers v, persisted, of size n (valSize), in the fixed
// slot of a rule or a call with constant arguments, with input.now's key
// now for one of the clock's (replacing another minute's); the map is
// emptied first when both would not fit.
func (c *callMemo) putFixed(slot int, now string, v val, n int) {
	if n > maxEntry {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if old := c.fixed[slot].Load(); old != nil {
		if old.now == now {
			return
		}
		c.fixed[slot].Store(nil)
		c.size -= old.n
		c.fixedSize -= old.n
	}
	if c.size+n > maxEntry {
		c.m.Store(nil)
		c.size = c.fixedSize
		if c.size+n > maxEntry {
			return
		}
	}
	c.fixed[slot].Store(&fixedVal{now: now, v: v, n: n})
	c.size += n
	c.fixedSize += n
}

// newCallMemos makes the callMemos of scopes for the policies of st.dirs
// (nil for those with no function of them).
func newCallMemos(st *state, scopes ...memoScope) []*callMemo {
	var out []*callMemo
	for i, p := range st.dirs {
		if p.prog != nil && slices.ContainsFunc(scopes, func(s memoScope) bool { return p.prog.scoped[s] }) {
			if out == nil {
				out = make([]*callMemo, len(st.dirs))
			}
			out[i] = &callMemo{fixed: make([]atomic.Pointer[fixedVal], p.prog.nmemo)}
		}
	}
	return out
}

// maxCallKey bounds a callMemo key: calls with larger arguments are
// evaluated every time.
const maxCallKey = 256

// appendCallKey appends the key of call in (a call of fn; input and data
// first, as the planner passes them) to key. It reports false when the call
// is not to be remembered: input or data are not the evaluation's (never,
// in a plan without with, which is not planned), or the arguments are
// large. Equal keys mean identical arguments, down to the spelling of
// numbers (1 and 1.0 get two keys: topdown's results may differ, as
// sprintf's do): the encoding is prefix-free. The key of constant
// arguments is made once, at load (constCalls).
func (m *machine) appendCallKey(key []byte, fn *function, in *instr, base int) ([]byte, bool) {
	args := in.args
	if !m.ownArgs(in, base) {
		return key, false
	}
	limit := len(key) + maxCallKey
	key = binary.AppendUvarint(key, uint64(fn.index))
	if fn.scope == scopeClock {
		if m.mem.now == "" {
			return key, false
		}
		key = binary.AppendUvarint(key, uint64(len(m.mem.now)))
		key = append(key, m.mem.now...)
	}
	if in.cargs != nil {
		key = append(key, in.cargs...)
		return key, len(key) <= limit
	}
	for i := 2; i < len(args); i++ {
		var ok bool
		if key, ok = appendValKey(key, m.get(&args[i], base), limit); !ok {
			return key, false
		}
	}
	return key, len(key) <= limit
}

// ownArgs: call in passes the evaluation's input and data, the only
// ones its remembered value may be of.
func (m *machine) ownArgs(in *instr, base int) bool {
	input, data := m.get(&in.args[0], base), m.get(&in.args[1], base)
	return input.k == m.input.k && input.c == m.input.c && data.k == m.p.data.k && data.c == m.p.data.c
}

// constCalls gives each call of a function whose arguments past input and
// data are constants (a literal, folded: effects_of({"expunge",
// "mark-deleted"})) a slot in the evaluation's memo table, shared by the
// calls of that function with the same arguments: within one evaluation
// such a call has one value, as a rule has (the planner memoizes rules
// alone), so a policy may ask for it in every rule at the price of one
// evaluation. Only in a program whose calls all pass the evaluation's
// input and data (inputStable). Their callMemo keys are made here too
// (instrX.cargs).
func constCalls(prog *program) {
	if !inputStable(prog) {
		return
	}
	slots := map[string]int{}
	var walk func(b block)
	walk = func(b block) {
		known := constLocals{}
		for i := range b {
			in := &b[i]
			if in.op == opCall && in.fn.memo < 0 && len(in.args) > 2 {
				if cargs, ok := constArgs(prog, known, in.args[2:]); ok {
					key := string(binary.AppendUvarint(nil, uint64(in.fn.index))) + string(cargs)
					slot, seen := slots[key]
					if !seen {
						slot = prog.nmemo
						prog.nmemo++
						slots[key] = slot
					}
					in.cslot, in.cargs = slot+1, cargs
				}
			}
			if in.instrX != nil {
				for _, inner := range in.blocks {
					walk(inner)
				}
				walk(in.body)
			}
			known.note(in)
		}
	}
	for _, b := range prog.entry {
		walk(b)
	}
	for _, fn := range prog.funcs {
		for _, b := range fn.blocks {
			walk(b)
		}
	}
}

// constArgs is the key of args (appendValKey's, as appendCallKey makes
// it) when each is a constant or a local known to hold one.
func constArgs(prog *program, known constLocals, args []operand) ([]byte, bool) {
	var key []byte
	for _, a := range args {
		c, ok := known.of(a)
		if !ok {
			return nil, false
		}
		if key, ok = appendValKey(key, prog.consts[-1-c.local], maxCallKey); !ok {
			return nil, false
		}
	}
	return key, true
}

// keyShared begins the key of a shared collection: no vkind.
const keyShared = 0xff

// appendValKey appends a prefix-free encoding of v: its kind, then its
// contents, length-prefixed. It reports false for an undefined value, or
// when key would grow past limit: a string is refused before it is copied,
// so that key (a machine's scratch, kept across decisions) never grows
// more than a few bytes past limit.
//
// A collection share persisted is its id instead (keyShared): the
// memos' keys of a denial that recurs (first_denial by deny's value,
// denied(d) by d's) then hold a few bytes, not the denial's texts. Equal
// keys still mean equal values, as no id names two collections; an equal
// value not shared has another key, a miss that evaluates again.
func appendValKey(key []byte, v val, limit int) ([]byte, bool) {
	if v.c != nil && v.c.id != 0 {
		key = binary.AppendUvarint(append(key, keyShared), v.c.id)
		return key, len(key) <= limit
	}
	key = append(key, byte(v.k))
	switch v.k {
	case kUndef:
		return key, false
	case kNull:
	case kBool, kNum:
		key = binary.AppendVarint(key, v.n)
	case kNumX, kStr:
		key = binary.AppendUvarint(key, uint64(len(v.s)))
		if len(key)+len(v.s) > limit {
			return key, false
		}
		key = append(key, v.s...)
	case kArr, kSet, kObj:
		key = binary.AppendUvarint(key, uint64(len(v.c.keys)))
		for _, e := range v.c.keys {
			var ok bool
			if key, ok = appendValKey(key, e, limit); !ok {
				return key, false
			}
		}
		key = binary.AppendUvarint(key, uint64(len(v.c.vals)))
		for _, e := range v.c.vals {
			var ok bool
			if key, ok = appendValKey(key, e, limit); !ok {
				return key, false
			}
		}
	}
	return key, len(key) <= limit
}
