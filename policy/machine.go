package policy

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/topdown"
)

// The interpreter of programs (plan.go), over the flat values of flat.go.
// Locals of every active function live on one stack, a frame per call;
// kUndef is undefined. Executing a block yields fellThrough, returned (a
// ReturnLocalStmt ran), or the number of enclosing blocks still to leave:
// an undefined statement leaves its block (0), BreakStmt{Index: n} leaves
// n more. The structure is that of OPA's Wasm compiler: the blocks of a
// BlockStmt run one after the other whatever each yields; a ScanStmt is
// two levels (0 is the next element, 1 ends the scan); NotStmt wraps its
// block in one.

const (
	fellThrough = -1
	returned    = -2
)

// machine is one decision's state, pooled: the stack, and the arena of
// the collections its evaluations make (the input's among them).
type machine struct {
	p      *program
	done   <-chan struct{}
	ctx    context.Context
	steps  uint
	stack  []val
	high   int // of the stack, to clear on release
	memo   []val
	memoOK []bool
	ret    val
	result val
	nres   int
	bctx   topdown.BuiltinContext
	vargs  []val
	args   []*ast.Term
	out    *ast.Term
	outFn  func(*ast.Term) error
	mem    memos
	input  val    // of the evaluation: appendCallKey checks calls receive it
	key    []byte // appendCallKey's, kept across decisions
	// berr is the first builtin error: as topdown does with strict
	// builtin errors, the call is undefined, evaluation goes on, and the
	// evaluation fails at the end.
	berr error
	// arena holds the collections made; the first used of them are in
	// use until release.
	arena []*coll
	used  int
	// lowerCache holds lower() of strings of earlier decisions (lower):
	// heap strings, kept across decisions.
	lowerCache  map[string]string
	concatCache map[[3]string]string
	// sprintfCache holds sprintf's results by the exact key of its
	// arguments (appendValKey), as lowerCache: a denial's reason recurs.
	sprintfCache map[string]string
	// vkey is the scratch of sprintf's and verdictOf's keys.
	vkey []byte
	// deadline is the decision's (Options.EvalTimeout), zero for none:
	// the engine's, set for every policy it evaluates, kept by reset.
	deadline time.Time
}

var machinePool = sync.Pool{New: func() any {
	m := &machine{}
	m.outFn = func(t *ast.Term) error {
		if m.out == nil {
			m.out = t
		}
		return nil
	}
	return m
}}

func getMachine() *machine { return machinePool.Get().(*machine) }

// Bounds of what a machine keeps for the next decision. maxScratchKey
// bounds m.key's and m.vkey's capacity: the keys appendValKey builds stop
// a few bytes past maxVerdictKey, and append's growth keeps them under.
const (
	maxArena      = 256
	maxArenaLen   = 64
	maxScratchKey = 2 * maxVerdictKey
)

// release gives the machine back: nothing it made may be used after.
func (m *machine) release() {
	m.tidy()
	machinePool.Put(m)
}

// tidy empties m for the next decision, dropping what is too large to keep.
func (m *machine) tidy() {
	clear(m.stack[:m.high])
	for _, c := range m.arena[:m.used] {
		dropRefs(c.keys)
		dropRefs(c.vals)
		c.keys, c.vals, c.term = c.keys[:0], c.vals[:0], nil
		if cap(c.keys) > maxArenaLen {
			c.keys = nil
		}
		if cap(c.vals) > maxArenaLen {
			c.vals = nil
		}
	}
	clear(m.arena[min(len(m.arena), maxArena):cap(m.arena)])
	m.arena = m.arena[:min(len(m.arena), maxArena)]
	clear(m.args[:cap(m.args)])
	dropRefs(m.vargs[:cap(m.vargs)])
	// The memo table was cleared by run's reset, as each evaluation
	// ends; the rest of what reset clears is zeroed here.
	*m = machine{stack: m.stack[:0], memo: m.memo[:0], memoOK: m.memoOK[:0], args: m.args[:0], vargs: m.vargs[:0],
		outFn: m.outFn, arena: m.arena, lowerCache: m.lowerCache, concatCache: m.concatCache, key: m.key[:0],
		sprintfCache: m.sprintfCache, vkey: m.vkey[:0]}
	if cap(m.key) > maxScratchKey {
		m.key = nil
	}
	if cap(m.vkey) > maxScratchKey {
		m.vkey = nil
	}
}

// dropRefs drops what vs references, for the collector, as clear does
// but, for the few elements of most collections, without its call (a
// hundred instructions, ten times per decision). Its caller empties vs.
func dropRefs(vs []val) {
	if len(vs) > 8 {
		clear(vs)
		return
	}
	for i := range vs {
		vs[i].s, vs[i].c = "", nil
	}
}

// reset clears what one evaluation leaves, keeping the arena.
func (m *machine) reset() {
	clear(m.memo)
	clear(m.memoOK)
	m.stack, m.key = m.stack[:0], m.key[:0]
	m.ret, m.result, m.nres, m.berr, m.mem, m.out, m.input = val{}, val{}, 0, nil, memos{}, nil, val{}
}

// newColl is an empty collection from the arena.
func (m *machine) newColl() *coll {
	if m.used < len(m.arena) {
		c := m.arena[m.used]
		m.used++
		return c
	}
	c := &coll{arena: true}
	m.arena = append(m.arena, c)
	m.used++
	return c
}

func (m *machine) newVal(k vkind, n int) val {
	c := m.newColl()
	if k == kArr {
		c.vals = slices.Grow(c.vals, n)
	} else {
		c.keys = slices.Grow(c.keys, n)
		if k == kObj {
			c.vals = slices.Grow(c.vals, n)
		}
	}
	return val{k: k, c: c}
}

var errStackOverflow = errors.New("policy: plan nests calls too deeply")

// maxStack bounds the locals of active calls (Rego has no recursion; a
// plan this deep is broken).
const maxStack = 1 << 20

// eval runs the program for an OPA input and returns the single value of
// the plan's result set, or an error (undefined included). For tests and
// EvalInput: the engine builds a flat input (run).
func (p *program) eval(ctx context.Context, input *ast.Term, mem memos) (ast.Value, error) {
	in, err := fromAST(input)
	if err != nil {
		return nil, err
	}
	m := getMachine()
	defer m.release()
	v, err := p.run(ctx, m, in, mem)
	if err != nil {
		return nil, err
	}
	return toAST(v).Value, nil
}

// run runs the program for input on m and returns the decision, valid
// until m's release.
//
// mem holds the session rules' values and the remembered calls for
// input's parts (memos), and receives those computed here.
func (p *program) run(ctx context.Context, m *machine, input val, mem memos) (_ val, err error) {
	defer m.reset()
	defer func() {
		// A fault of the interpreter is not a decision: topdown decides.
		if r := recover(); r != nil {
			err = fmt.Errorf("policy: plan failed: %v", r)
		}
	}()
	if input.k == kObj && p.byPoint != nil {
		if pt := input.c.get(vStr("point")); pt.k == kStr {
			for i, point := range decisionPoints {
				if point == pt.s {
					p = p.points[i]
					break
				}
			}
		}
	}
	m.mem, m.input = mem, input
	m.p, m.ctx, m.done = p, ctx, ctx.Done()
	// The builtins the interpreter calls (planBuiltins) read neither the
	// time nor a seed.
	m.bctx = topdown.BuiltinContext{Context: ctx, Metrics: noMetrics, Capabilities: p.caps}
	if cap(m.memo) < p.nmemo {
		m.memo, m.memoOK = make([]val, p.nmemo), make([]bool, p.nmemo)
	} else {
		m.memo, m.memoOK = m.memo[:p.nmemo], m.memoOK[:p.nmemo]
	}
	base := m.push(p.nlocals)
	if base < 0 {
		return val{}, errStackOverflow
	}
	m.stack[base+0], m.stack[base+1] = input, p.data
	for _, b := range p.entry {
		r, err := m.exec(b, base)
		if err != nil {
			return val{}, err
		}
		if r == returned || r > 0 {
			return val{}, errors.New("policy: plan left its body")
		}
	}
	if m.berr != nil {
		return val{}, m.berr
	}
	switch {
	case m.nres == 0:
		return val{}, errors.New("data.imapwarden.decision is undefined")
	case m.nres > 1:
		return val{}, errors.New("data.imapwarden.decision has several values")
	}
	if m.result.k != kObj || len(m.result.c.keys) != 1 {
		return val{}, errors.New("policy: plan result is not a binding")
	}
	return m.result.c.vals[0], nil
}

// push makes a frame of n undefined locals and returns its base.
func (m *machine) push(n int) int {
	base := len(m.stack)
	if base+n > maxStack {
		return -1
	}
	if base+n > cap(m.stack) {
		m.stack = slices.Grow(m.stack, max(n, 256))
	}
	m.stack = m.stack[:base+n]
	clear(m.stack[base:])
	if len(m.stack) > m.high {
		m.high = len(m.stack)
	}
	return base
}

func (m *machine) get(o *operand, base int) val {
	if o.local >= 0 {
		return m.stack[base+int(o.local)]
	}
	return m.p.consts[-1-o.local]
}

// cancelled checks the context and the deadline now and then: plans loop
// over data.
func (m *machine) cancelled() error {
	if m.done == nil && m.deadline.IsZero() {
		return nil
	}
	m.steps++
	if m.steps%64 != 0 {
		return nil
	}
	if !m.deadline.IsZero() && time.Now().After(m.deadline) {
		return errEvalTimeout
	}
	select {
	case <-m.done:
		return fmt.Errorf("policy: evaluation cancelled: %w", m.ctx.Err())
	default:
		return nil
	}
}

// conflict is the error of a rule with two values. It never reaches a
// decision: topdown evaluates that input again and reports its own.
func conflict(what string) error {
	return &topdown.Error{Code: topdown.ConflictErr, Message: what}
}

// owned is the collection of a local the function made (checkOwnership),
// or an error for a value of another type.
func owned(v val, k vkind, what string) (*coll, error) {
	if v.k != k || !v.c.arena {
		return nil, fmt.Errorf("policy: plan %s a value it did not make", what)
	}
	v.c.term = nil // no longer what it was converted to
	return v.c, nil
}

// exec runs a block: see the package comment above for what it yields.
func (m *machine) exec(b block, base int) (int, error) {
	for i := range b {
		in := &b[i]
		switch in.op {
		case opNop:
		case opAssignVar:
			v := m.get(&in.a, base)
			if v.k == kUndef {
				return 0, nil
			}
			m.stack[base+in.target] = v
		case opAssignVarOnce:
			v := m.get(&in.a, base)
			if v.k == kUndef {
				return 0, nil
			}
			if cur := m.stack[base+in.target]; cur.k != kUndef && !equalVal(cur, v) {
				return 0, conflict("complete rules must not produce multiple outputs")
			}
			m.stack[base+in.target] = v
		case opAssignInt:
			m.stack[base+in.target] = vInt(in.n)
		case opMakeConst:
			m.stack[base+in.target] = m.get(&in.a, base)
		case opMakeArray:
			m.stack[base+in.target] = m.newVal(kArr, int(in.n))
		case opMakeObject:
			m.stack[base+in.target] = m.newVal(kObj, int(in.n))
		case opMakeSet:
			m.stack[base+in.target] = m.newVal(kSet, int(in.n))
		case opResetLocal:
			m.stack[base+in.target] = val{}
		case opBlock:
			for _, inner := range in.blocks {
				r, err := m.exec(inner, base)
				if err != nil || r == returned {
					return r, err
				}
				if r > 0 {
					return r - 1, nil
				}
			}
		case opBreak:
			return int(in.n), nil
		case opDot:
			src, key := m.get(&in.a, base), m.get(&in.b, base)
			v := dot(src, key)
			if v.k == kUndef {
				return 0, nil
			}
			m.stack[base+in.target] = v
		case opEqual, opNotEqual:
			a, b := m.get(&in.a, base), m.get(&in.b, base)
			if a.k == kUndef || b.k == kUndef || equalVal(a, b) != (in.op == opEqual) {
				return 0, nil
			}
		case opIsArray:
			if m.get(&in.a, base).k != kArr {
				return 0, nil
			}
		case opIsObject:
			if m.get(&in.a, base).k != kObj {
				return 0, nil
			}
		case opIsSet:
			if m.get(&in.a, base).k != kSet {
				return 0, nil
			}
		case opIsDefined:
			if m.stack[base+in.target].k == kUndef {
				return 0, nil
			}
		case opIsUndefined:
			if m.stack[base+in.target].k != kUndef {
				return 0, nil
			}
		case opLen:
			v := m.get(&in.a, base)
			if v.k == kUndef {
				return 0, nil
			}
			m.stack[base+in.target] = vInt(int64(v.len()))
		case opNot:
			r, err := m.exec(in.body, base)
			if err != nil || r == returned {
				return r, err
			}
			switch {
			case r == fellThrough: // the negated block holds
				return 0, nil
			case r > 0:
				return r - 1, nil
			}
		case opScan:
			r, err := m.scan(in, base)
			if err != nil || r != fellThrough {
				return r, err
			}
		case opCall:
			r, err := m.call(in, base)
			if err != nil || r != fellThrough {
				return r, err
			}
		case opCallBuiltin:
			if in.n != fastNone {
				if !m.fastBuiltin(in, base) {
					return 0, nil
				}
			} else if !m.callBuiltin(in, base) {
				return 0, nil
			}
		case opArrayAppend:
			v, t := m.get(&in.a, base), m.stack[base+in.target]
			if v.k == kUndef || t.k == kUndef {
				return 0, nil
			}
			c, err := owned(t, kArr, "appends to")
			if err != nil {
				return 0, err
			}
			c.vals = append(c.vals, v)
		case opSetAdd:
			v, t := m.get(&in.a, base), m.stack[base+in.target]
			if v.k == kUndef || t.k == kUndef {
				return 0, nil
			}
			c, err := owned(t, kSet, "adds to")
			if err != nil {
				return 0, err
			}
			c.setAdd(v)
		case opObjectInsert, opObjectInsertOnce:
			k, v := m.get(&in.a, base), m.get(&in.b, base)
			t := m.stack[base+in.target]
			if k.k == kUndef || v.k == kUndef || t.k == kUndef {
				return 0, nil
			}
			c, err := owned(t, kObj, "inserts into")
			if err != nil {
				return 0, err
			}
			if !c.insert(k, v, in.op == opObjectInsertOnce) {
				return 0, conflict("object keys must be unique")
			}
		case opObjectMerge:
			a, b := m.stack[base+in.key], m.stack[base+in.val]
			if a.k == kUndef || b.k == kUndef {
				return 0, nil
			}
			m.stack[base+in.target] = m.merge(a, b)
		case opResultSetAdd:
			v := m.stack[base+in.target]
			if v.k == kUndef {
				return 0, nil
			}
			if m.nres == 0 || !equalVal(m.result, v) {
				m.result = v
				m.nres++
			}
		case opReturn:
			m.ret = m.stack[base+in.target]
			return returned, nil
		case opBodies:
			if err := m.bodies(in.group, base); err != nil {
				return 0, err
			}
		default:
			return 0, fmt.Errorf("policy: plan statement %d", in.op)
		}
	}
	return fellThrough, nil
}

// scan runs in.body for each element of a collection, in ast's order
// (sorted sets and object keys); it yields fellThrough to go on after the
// scan.
func (m *machine) scan(in *instr, base int) (int, error) {
	src := m.stack[base+in.target]
	var n int
	switch src.k {
	case kArr:
		n = len(src.c.vals)
	case kObj, kSet:
		n = len(src.c.keys)
	default:
		return fellThrough, nil
	}
	for i := range n {
		if err := m.cancelled(); err != nil {
			return 0, err
		}
		switch src.k {
		case kArr:
			m.stack[base+in.key], m.stack[base+in.val] = vInt(int64(i)), src.c.vals[i]
		case kObj:
			m.stack[base+in.key], m.stack[base+in.val] = src.c.keys[i], src.c.vals[i]
		case kSet:
			m.stack[base+in.key], m.stack[base+in.val] = src.c.keys[i], src.c.keys[i]
		}
		r, err := m.exec(in.body, base)
		switch {
		case err != nil || r == returned:
			return r, err
		case r >= 2:
			return r - 2, nil
		case r == 1:
			return fellThrough, nil
		}
	}
	return fellThrough, nil
}

// call calls a planned function; it yields 0 when its result is undefined.
func (m *machine) call(in *instr, base int) (int, error) {
	fn := in.fn
	if slot := fn.memo; slot >= 0 || in.cslot > 0 {
		if slot < 0 {
			slot = in.cslot - 1
		}
		if m.memoOK[slot] {
			v := m.memo[slot]
			if v.k == kUndef {
				return 0, nil
			}
			m.stack[base+in.target] = v
			return fellThrough, nil
		}
	}
	// The key of a remembered call is m.key[start:end]; the calls it
	// makes append theirs after it.
	var calls *callMemo
	start, end, fixed := len(m.key), 0, -1
	if fn.scope != scopeNone {
		// A rule, or a call with constant arguments: its memo slot is
		// its key, with input.now's for the clock's.
		slot := in.cslot - 1
		if fn.memo >= 0 {
			slot = fn.memo
		}
		if calls = m.mem.calls[fn.scope]; calls != nil && calls.fixed != nil && slot >= 0 {
			if !m.ownArgs(in, base) || fn.scope == scopeClock && m.mem.now == "" {
				calls = nil
			} else if p := calls.fixed[slot].Load(); p != nil && (fn.scope != scopeClock || p.now == m.mem.now) {
				return m.yield(fn, in, base, p.v), nil
			} else {
				fixed = slot
			}
		} else if calls != nil {
			var ok bool
			m.key, ok = m.appendCallKey(m.key, fn, in, base)
			end = len(m.key)
			if !ok {
				calls = nil
				m.key = m.key[:start]
			} else if v, hit := calls.get(m.key[start:end]); hit {
				m.key = m.key[:start]
				return m.yield(fn, in, base, v), nil
			}
		}
	}
	if fn.ofRule > 0 && m.p.ofRules != nil && m.memoOK[fn.ofRule-1] && recurs(m.memo[fn.ofRule-1]) {
		return m.callOfRule(fn, in, base)
	}
	var shared *atomic.Pointer[val]
	if fn.session >= 0 && m.mem.rules != nil {
		shared = &m.mem.rules[fn.session]
		if p := shared.Load(); p != nil {
			return m.yield(fn, in, base, *p), nil
		}
	}
	v, err := m.invoke(fn, in.args, base)
	if err != nil {
		return 0, err
	}
	if fixed >= 0 {
		if m.berr == nil {
			kept, n := m.share(v)
			now := ""
			if fn.scope == scopeClock {
				now = m.mem.now
			}
			calls.putFixed(fixed, now, kept, n)
			v = kept
		}
	} else if calls != nil {
		// As a session rule's: only when no builtin has failed.
		if m.berr == nil {
			kept, n := m.share(v)
			calls.put(m.key[start:end], kept, n)
			v = kept
		}
		m.key = m.key[:start]
	}
	// Shared only when no builtin has failed: a failed call is undefined
	// here, and this evaluation goes to topdown. A value over maxEntry is
	// made again by each evaluation, not kept with the session.
	if shared != nil && m.berr == nil {
		if kept := persist(v); valSize(kept, maxEntry) <= maxEntry {
			shared.Store(&kept)
			v = kept
		}
	}
	return m.yield(fn, in, base, v), nil
}

// recurs: v is defined and its elements were kept by a memo, not made by
// this evaluation: a value that recurs (a denial of remembered bodies),
// worth remembering by, unlike one made now (a denial naming the
// literal's size), which would only churn program.ofRules.
func recurs(v val) bool {
	if v.k == kUndef {
		return false
	}
	if v.c != nil {
		for _, e := range v.c.keys {
			if e.c != nil && e.c.arena {
				return false
			}
		}
		for _, e := range v.c.vals {
			if e.c != nil && e.c.arena {
				return false
			}
		}
	}
	return true
}

// callOfRule calls a rule of a rule (function.ofRule) whose rule's value
// this evaluation has: remembered by that value's exact key, as a call by
// its arguments, and likewise only when no builtin has failed.
func (m *machine) callOfRule(fn *function, in *instr, base int) (int, error) {
	start := len(m.key)
	key := binary.AppendUvarint(m.key, uint64(fn.index))
	key, ok := appendValKey(key, m.memo[fn.ofRule-1], start+maxCallKey)
	m.key = key
	end := len(key)
	if ok {
		if v, hit := m.p.ofRules.get(key[start:end]); hit {
			m.key = m.key[:start]
			return m.yield(fn, in, base, v), nil
		}
	}
	v, err := m.invoke(fn, in.args, base)
	if err != nil {
		return 0, err
	}
	if ok && m.berr == nil {
		kept, n := m.share(v)
		m.p.ofRules.put(m.key[start:end], kept, n)
		v = kept
	}
	m.key = m.key[:start]
	return m.yield(fn, in, base, v), nil
}

// yield ends a call of fn with its value v: remembered for the rest of
// the evaluation when fn is a rule, then in the target; 0 (the statement
// fails) when v is undefined.
func (m *machine) yield(fn *function, in *instr, base int, v val) int {
	if fn.memo >= 0 {
		m.memo[fn.memo], m.memoOK[fn.memo] = v, true
	} else if in.cslot > 0 {
		m.memo[in.cslot-1], m.memoOK[in.cslot-1] = v, true
	}
	if v.k == kUndef {
		return 0
	}
	m.stack[base+in.target] = v
	return fellThrough
}

func (m *machine) invoke(fn *function, args []operand, base int) (val, error) {
	if err := m.cancelled(); err != nil {
		return val{}, err
	}
	fb := m.push(fn.nlocals)
	if fb < 0 {
		return val{}, errStackOverflow
	}
	for i := range args {
		m.stack[fb+fn.params[i]] = m.get(&args[i], base)
	}
	var v val
	for _, b := range fn.blocks {
		r, err := m.exec(b, fb)
		if err != nil {
			return val{}, err
		}
		if r == returned {
			v = m.ret
			break
		}
		if r > 0 {
			return val{}, fmt.Errorf("policy: plan function %s breaks out of its body", fn.name)
		}
	}
	m.stack = m.stack[:fb] // cleared by the next push, or by release
	return v, nil
}

// callBuiltin calls a builtin and reports whether it yielded a value: its
// native form (natives) when it has one for these arguments, else
// topdown's own on the arguments converted.
func (m *machine) callBuiltin(in *instr, base int) bool {
	vargs := m.vargs[:0]
	for i := range in.args {
		v := m.get(&in.args[i], base)
		if v.k == kUndef {
			m.vargs = vargs
			return false
		}
		vargs = append(vargs, v)
	}
	m.vargs = vargs
	if in.native != nil {
		if out, ok := in.native(m, vargs); ok {
			if out.k == kUndef {
				return false
			}
			m.stack[base+in.target] = out
			return true
		}
	}
	args := m.args[:0]
	for _, v := range vargs {
		args = append(args, toAST(v))
	}
	m.args = args
	m.out = nil
	if err := in.builtin(m.bctx, args, m.outFn); err != nil {
		if m.berr == nil {
			m.berr = err
		}
		return false
	}
	if m.out == nil {
		return false
	}
	out, err := fromAST(m.out)
	if err != nil {
		if m.berr == nil {
			m.berr = err
		}
		return false
	}
	m.stack[base+in.target] = out
	return true
}

// The builtins exec answers itself (an opCallBuiltin's instr.n; 0:
// callBuiltin): count and the comparisons, the shipped policies' most
// frequent, as their natives do, without the arguments' slice and the
// native's indirect call.
const (
	fastNone = iota
	fastCount
	fastGT
	fastGTE
	fastLT
	fastLTE
)

// fastBuiltins are the builtins with a fast form, by name.
var fastBuiltins = map[string]int64{
	ast.Count.Name: fastCount, ast.GreaterThan.Name: fastGT, ast.GreaterThanEq.Name: fastGTE,
	ast.LessThan.Name: fastLT, ast.LessThanEq.Name: fastLTE,
}

// fastBuiltin is callBuiltin for the builtins of fastBuiltins: the same
// results as their natives, and callBuiltin's (topdown's) for the
// arguments a native leaves to it.
func (m *machine) fastBuiltin(in *instr, base int) bool {
	a := m.get(&in.args[0], base)
	if a.k == kUndef {
		return false
	}
	var out val
	if in.n == fastCount {
		switch a.k {
		case kArr, kObj, kSet:
			out = vInt(int64(a.len()))
		case kStr:
			out = vInt(int64(utf8.RuneCountInString(a.s)))
		default:
			return m.callBuiltin(in, base)
		}
	} else {
		b := m.get(&in.args[1], base)
		if b.k == kUndef {
			return false
		}
		c := compareVal(a, b)
		switch in.n {
		case fastGT:
			out = vBool(c > 0)
		case fastGTE:
			out = vBool(c >= 0)
		case fastLT:
			out = vBool(c < 0)
		default:
			out = vBool(c <= 0)
		}
	}
	m.stack[base+in.target] = out
	return true
}

// dot looks key up in src: an object's value, an array's element, a set's
// member; undefined otherwise.
func dot(src, key val) val {
	switch src.k {
	case kObj:
		if key.k != kUndef {
			return src.c.get(key)
		}
	case kArr:
		if key.k == kNum && key.n >= 0 && key.n < int64(len(src.c.vals)) {
			return src.c.vals[key.n]
		}
	case kSet:
		if key.k != kUndef {
			if _, ok := find(src.c.keys, key); ok {
				return key
			}
		}
	}
	return val{}
}

// merge is ObjectMergeStmt's: a with b's keys added, objects under the
// same key merged; a when either is not an object.
func (m *machine) merge(a, b val) val {
	if a.k != kObj || b.k != kObj {
		return a
	}
	out := m.newVal(kObj, len(a.c.keys)+len(b.c.keys))
	for i, k := range a.c.keys {
		v := a.c.vals[i]
		if other := b.c.get(k); other.k != kUndef {
			v = m.merge(v, other)
		}
		out.c.insert(k, v, false)
	}
	for i, k := range b.c.keys {
		if a.c.get(k).k == kUndef {
			out.c.insert(k, b.c.vals[i], false)
		}
	}
	return out
}

// maxLowerCache bounds machine.lowerCache, concatCache and sprintfCache.
const maxLowerCache = 256

// remember puts k's result v into the machine's memo *c, made anew when
// full: simpler than LRU, and the working set (names, reasons) refills at
// once.
func remember[K comparable](c *map[K]string, k K, v string) {
	if *c == nil || len(*c) >= maxLowerCache {
		*c = make(map[K]string, maxLowerCache)
	}
	(*c)[k] = v
}

// lower is strings.ToLower, remembered by the machine: the names of the
// input (users, mailboxes) recur from one decision to the next.
func (m *machine) lower(s string) string {
	i := 0
	for i < len(s) && s[i] < utf8.RuneSelf && (s[i] < 'A' || s[i] > 'Z') {
		i++
	}
	if i == len(s) {
		return s // lower-case ASCII: strings.ToLower makes nothing either
	}
	if c, ok := m.lowerCache[s]; ok {
		return c
	}
	l := strings.ToLower(s)
	remember(&m.lowerCache, s, l)
	return l
}

// concat2 is a+sep+b, remembered by the machine as lower is: policies
// join a name and a delimiter (mailbox_under) at every decision.
func (m *machine) concat2(a, sep, b string) string {
	k := [3]string{a, sep, b}
	if c, ok := m.concatCache[k]; ok {
		return c
	}
	c := a + sep + b
	remember(&m.concatCache, k, c)
	return c
}

// union is object.union's (topdown's mergeWithOverwrite): b's keys over
// a's, objects under the same key merged.
func (m *machine) union(a, b val) val {
	switch {
	case len(a.c.keys) == 0:
		return b
	case len(b.c.keys) == 0 || equalVal(a, b):
		return a
	}
	out := m.newVal(kObj, len(a.c.keys)+len(b.c.keys))
	for i, k := range a.c.keys {
		out.c.insert(k, a.c.vals[i], false)
	}
	for i, k := range b.c.keys {
		v := b.c.vals[i]
		if cur := a.c.get(k); cur.k == kObj && v.k == kObj {
			v = m.union(cur, v)
		}
		out.c.insert(k, v, false)
	}
	return out
}

// native is a builtin for the arguments it knows, with the result and
// the errors of topdown's; ok false leaves the call to topdown.
type native func(m *machine, args []val) (out val, ok bool)

// natives are the builtins of the shipped policies, written for flat
// values. Each handles only the arguments it is sure of (no error, no
// collection compared by equality, no number but an integer summed) and
// leaves the rest to topdown. TestPlanMatchesTopdown
// and TestNativesMatchTopdown cover them.
var natives = map[string]native{
	ast.Count.Name: func(_ *machine, a []val) (val, bool) {
		switch a[0].k {
		case kArr, kObj, kSet:
			return vInt(int64(a[0].len())), true
		case kStr:
			return vInt(int64(utf8.RuneCountInString(a[0].s))), true
		}
		return val{}, false
	},
	ast.GreaterThan.Name:   func(_ *machine, a []val) (val, bool) { return vBool(compareVal(a[0], a[1]) > 0), true },
	ast.GreaterThanEq.Name: func(_ *machine, a []val) (val, bool) { return vBool(compareVal(a[0], a[1]) >= 0), true },
	ast.LessThan.Name:      func(_ *machine, a []val) (val, bool) { return vBool(compareVal(a[0], a[1]) < 0), true },
	ast.LessThanEq.Name:    func(_ *machine, a []val) (val, bool) { return vBool(compareVal(a[0], a[1]) <= 0), true },
	ast.Equal.Name: func(_ *machine, a []val) (val, bool) {
		if !plainScalar(a[0]) || !plainScalar(a[1]) {
			return val{}, false
		}
		return vBool(equalVal(a[0], a[1])), true
	},
	ast.NotEqual.Name: func(_ *machine, a []val) (val, bool) {
		if !plainScalar(a[0]) || !plainScalar(a[1]) {
			return val{}, false
		}
		return vBool(!equalVal(a[0], a[1])), true
	},
	ast.Member.Name: func(_ *machine, a []val) (val, bool) {
		x, c := a[0], a[1]
		if !plainScalar(x) {
			return val{}, false
		}
		switch c.k {
		case kSet:
			_, ok := find(c.c.keys, x)
			return vBool(ok), true
		case kArr, kObj:
			return vBool(slices.ContainsFunc(c.c.vals, func(e val) bool { return equalVal(e, x) })), true
		}
		return vFalse, true
	},
	ast.StartsWith.Name: func(_ *machine, a []val) (val, bool) {
		if a[0].k != kStr || a[1].k != kStr {
			return val{}, false
		}
		return vBool(strings.HasPrefix(a[0].s, a[1].s)), true
	},
	ast.Lower.Name: func(m *machine, a []val) (val, bool) {
		if a[0].k != kStr {
			return val{}, false
		}
		if l, ok := m.p.lowered[a[0].s]; ok {
			return vStr(l), true
		}
		return vStr(m.lower(a[0].s)), true
	},
	ast.Concat.Name: func(m *machine, a []val) (val, bool) {
		var elems []val
		switch a[1].k {
		case kArr:
			elems = a[1].c.vals
		case kSet:
			elems = a[1].c.keys
		default:
			return val{}, false
		}
		if a[0].k != kStr || len(elems) > 16 {
			return val{}, false
		}
		if len(elems) == 2 && elems[0].k == kStr && elems[1].k == kStr {
			return vStr(m.concat2(elems[0].s, a[0].s, elems[1].s)), true
		}
		var parts [16]string
		for i, e := range elems {
			if e.k != kStr {
				return val{}, false
			}
			parts[i] = e.s
		}
		return vStr(strings.Join(parts[:len(elems)], a[0].s)), true
	},
	ast.ObjectGet.Name: func(_ *machine, a []val) (val, bool) {
		if a[0].k != kObj || a[1].k == kArr {
			return val{}, false
		}
		if v := a[0].c.get(a[1]); v.k != kUndef {
			return v, true
		}
		return a[2], true
	},
	ast.Substring.Name: func(_ *machine, a []val) (val, bool) {
		s, start, n := a[0], a[1], a[2]
		if s.k != kStr || start.k != kNum || n.k != kNum || start.n < 0 || !isASCII(s.s) {
			return val{}, false
		}
		switch {
		case start.n >= int64(len(s.s)):
			return vStr(""), true
		case n.n < 0:
			return vStr(s.s[start.n:]), true
		}
		return vStr(s.s[start.n : start.n+min(n.n, int64(len(s.s))-start.n)]), true
	},
	ast.ArrayConcat.Name: func(m *machine, a []val) (val, bool) {
		if a[0].k != kArr || a[1].k != kArr {
			return val{}, false
		}
		out := m.newVal(kArr, len(a[0].c.vals)+len(a[1].c.vals))
		out.c.vals = append(append(out.c.vals, a[0].c.vals...), a[1].c.vals...)
		return out, true
	},
	ast.ObjectUnion.Name: func(m *machine, a []val) (val, bool) {
		if a[0].k != kObj || a[1].k != kObj {
			return val{}, false
		}
		return m.union(a[0], a[1]), true
	},
	ast.Sprintf.Name: func(m *machine, a []val) (val, bool) {
		if a[0].k != kStr || a[1].k != kArr || len(a[1].c.vals) > 8 {
			return val{}, false
		}
		for _, e := range a[1].c.vals {
			if e.k != kStr && e.k != kNum {
				return val{}, false
			}
		}
		key, keep := appendValKey(m.vkey[:0], a[0], maxCallKey)
		if keep {
			key, keep = appendValKey(key, a[1], maxCallKey)
		}
		m.vkey = key
		if keep {
			if s, ok := m.sprintfCache[string(key)]; ok {
				return vStr(s), true
			}
		}
		// As topdown's: strings as strings, integers as int64; other
		// arguments are left to it.
		var buf [8]any
		args := buf[:len(a[1].c.vals)]
		for i, e := range a[1].c.vals {
			if e.k == kStr {
				args[i] = e.s
			} else {
				args[i] = e.n
			}
		}
		s := fmt.Sprintf(a[0].s, args...)
		if keep {
			remember(&m.sprintfCache, string(key), s)
		}
		return vStr(s), true
	},
	ast.Max.Name: func(_ *machine, a []val) (val, bool) {
		var elems []val
		switch a[0].k {
		case kArr:
			elems = a[0].c.vals
		case kSet:
			elems = a[0].c.keys
		}
		if len(elems) == 0 {
			return val{}, false
		}
		for _, e := range elems {
			if e.k != kNum && e.k != kStr {
				return val{}, false
			}
		}
		return slices.MaxFunc(elems, compareVal), true
	},
}

// plainScalar: not a collection (whose equality the natives leave to
// topdown).
func plainScalar(v val) bool {
	switch v.k {
	case kNull, kBool, kNum, kNumX, kStr:
		return true
	}
	return false
}

func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= utf8.RuneSelf {
			return false
		}
	}
	return true
}
