package policy

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/topdown"
)

// The interpreter of programs (plan.go). Locals of every active function
// live on one stack of terms, a frame per call; nil is undefined.
// Executing a block yields fellThrough, returned (a ReturnLocalStmt ran),
// or the number of enclosing blocks still to leave: an undefined statement
// leaves its block (0), BreakStmt{Index: n} leaves n more. The structure is
// that of OPA's Wasm compiler: the blocks of a BlockStmt run one after the
// other whatever each yields; a ScanStmt is two levels (0 is the next
// element, 1 ends the scan); NotStmt wraps its block in one.

const (
	fellThrough = -1
	returned    = -2
)

// machine is one evaluation's state, pooled.
type machine struct {
	p       *program
	done    <-chan struct{}
	ctx     context.Context
	steps   uint
	stack   []*ast.Term
	high    int // of the stack, to clear on release
	memo    []*ast.Term
	memoOK  []bool
	ret     *ast.Term
	result  *ast.Term
	nres    int
	bctx    topdown.BuiltinContext
	args    []*ast.Term
	out     *ast.Term
	outFn   func(*ast.Term) error
	sess    ruleMemo
	sc      scanState
	objStep func(k, v *ast.Term) bool
	// berr is the first builtin error: as topdown does with strict
	// builtin errors, the call is undefined, evaluation goes on, and the
	// evaluation fails at the end.
	berr error
}

var machinePool = sync.Pool{New: func() any {
	m := &machine{}
	m.outFn = func(t *ast.Term) error {
		if m.out == nil {
			m.out = t
		}
		return nil
	}
	m.objStep = m.step
	return m
}}

var errStackOverflow = errors.New("policy: plan nests calls too deeply")

// maxStack bounds the locals of active calls (Rego has no recursion; a
// plan this deep is broken).
const maxStack = 1 << 20

// eval runs the program for input and returns the single value of the
// plan's result set, or an error (undefined included).
//
// sess, when not nil, holds the session rules' values for input's session,
// and receives those computed here.
func (p *program) eval(ctx context.Context, input *ast.Term, sess ruleMemo) (_ ast.Value, err error) {
	m := machinePool.Get().(*machine)
	defer m.release()
	m.sess = sess
	defer func() {
		// A fault of the interpreter is not a decision: topdown decides.
		if r := recover(); r != nil {
			err = fmt.Errorf("policy: plan failed: %v", r)
		}
	}()
	m.p, m.ctx, m.done = p, ctx, ctx.Done()
	// The builtins the interpreter calls (planBuiltins) read neither the
	// time nor a seed.
	m.bctx = topdown.BuiltinContext{Context: ctx, Metrics: noMetrics, Capabilities: p.caps}
	if cap(m.memo) < p.nmemo {
		m.memo, m.memoOK = make([]*ast.Term, p.nmemo), make([]bool, p.nmemo)
	} else {
		m.memo, m.memoOK = m.memo[:p.nmemo], m.memoOK[:p.nmemo]
	}
	base := m.push(p.nlocals)
	if base < 0 {
		return nil, errStackOverflow
	}
	m.stack[base+0], m.stack[base+1] = input, p.data
	for _, b := range p.entry {
		r, err := m.exec(b, base)
		if err != nil {
			return nil, err
		}
		if r == returned || r > 0 {
			return nil, errors.New("policy: plan left its body")
		}
	}
	if m.berr != nil {
		return nil, m.berr
	}
	switch {
	case m.nres == 0:
		return nil, errors.New("data.imapwarden.decision is undefined")
	case m.nres > 1:
		return nil, errors.New("data.imapwarden.decision has several values")
	}
	obj, ok := m.result.Value.(ast.Object)
	if !ok || obj.Len() != 1 {
		return nil, errors.New("policy: plan result is not a binding")
	}
	var v ast.Value
	obj.Foreach(func(_, t *ast.Term) { v = t.Value })
	return v, nil
}

func (m *machine) release() {
	clear(m.stack[:m.high])
	clear(m.memo)
	clear(m.memoOK)
	clear(m.args[:cap(m.args)])
	*m = machine{stack: m.stack[:0], memo: m.memo[:0], memoOK: m.memoOK[:0], args: m.args[:0], outFn: m.outFn, objStep: m.objStep}
	machinePool.Put(m)
}

// push makes a frame of n undefined locals and returns its base.
func (m *machine) push(n int) int {
	base := len(m.stack)
	if base+n > maxStack {
		return -1
	}
	m.stack = slices.Grow(m.stack, n)[:base+n]
	clear(m.stack[base:])
	if len(m.stack) > m.high {
		m.high = len(m.stack)
	}
	return base
}

func (m *machine) get(o *operand, base int) *ast.Term {
	if o.local >= 0 {
		return m.stack[base+o.local]
	}
	return o.term
}

// cancelled checks the context now and then: plans loop over data.
func (m *machine) cancelled() error {
	if m.done == nil {
		return nil
	}
	m.steps++
	if m.steps%64 != 0 {
		return nil
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

// exec runs a block: see the package comment above for what it yields.
func (m *machine) exec(b block, base int) (int, error) {
	for i := range b {
		in := &b[i]
		switch in.op {
		case opNop:
		case opAssignVar:
			v := m.get(&in.a, base)
			if v == nil {
				return 0, nil
			}
			m.stack[base+in.target] = v
		case opAssignVarOnce:
			v := m.get(&in.a, base)
			if v == nil {
				return 0, nil
			}
			if cur := m.stack[base+in.target]; cur != nil && !equal(cur, v) {
				return 0, conflict("complete rules must not produce multiple outputs")
			}
			m.stack[base+in.target] = v
		case opAssignInt:
			m.stack[base+in.target] = ast.InternedTerm(in.n)
		case opMakeConst:
			m.stack[base+in.target] = in.a.term
		case opMakeArray:
			m.stack[base+in.target] = ast.NewTerm(ast.NewArrayWithCapacity(int(in.n)))
		case opMakeObject:
			m.stack[base+in.target] = ast.NewTerm(ast.NewObjectWithCapacity(int(in.n)))
		case opMakeSet:
			m.stack[base+in.target] = ast.NewTerm(ast.NewSetWithCapacity(int(in.n)))
		case opResetLocal:
			m.stack[base+in.target] = nil
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
			if src == nil || key == nil {
				return 0, nil
			}
			v := dot(src, key)
			if v == nil {
				return 0, nil
			}
			m.stack[base+in.target] = v
		case opEqual, opNotEqual:
			a, b := m.get(&in.a, base), m.get(&in.b, base)
			if a == nil || b == nil || equal(a, b) != (in.op == opEqual) {
				return 0, nil
			}
		case opIsArray, opIsObject, opIsSet:
			v := m.get(&in.a, base)
			if v == nil {
				return 0, nil
			}
			var ok bool
			switch v.Value.(type) {
			case *ast.Array:
				ok = in.op == opIsArray
			case ast.Object:
				ok = in.op == opIsObject
			case ast.Set:
				ok = in.op == opIsSet
			}
			if !ok {
				return 0, nil
			}
		case opIsDefined:
			if m.stack[base+in.target] == nil {
				return 0, nil
			}
		case opIsUndefined:
			if m.stack[base+in.target] != nil {
				return 0, nil
			}
		case opLen:
			v := m.get(&in.a, base)
			if v == nil {
				return 0, nil
			}
			m.stack[base+in.target] = ast.InternedTerm(length(v.Value))
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
			if !m.callBuiltin(in, base) {
				return 0, nil
			}
		case opArrayAppend:
			v := m.get(&in.a, base)
			t := m.stack[base+in.target]
			if v == nil || t == nil {
				return 0, nil
			}
			arr, ok := t.Value.(*ast.Array)
			if !ok {
				return 0, fmt.Errorf("policy: plan appends to %s", ast.ValueName(t.Value))
			}
			t.Value = arr.Append(v) // t was made by this function (checkOwnership)
		case opSetAdd:
			v := m.get(&in.a, base)
			t := m.stack[base+in.target]
			if v == nil || t == nil {
				return 0, nil
			}
			s, ok := t.Value.(ast.Set)
			if !ok {
				return 0, fmt.Errorf("policy: plan adds to %s", ast.ValueName(t.Value))
			}
			s.Add(v)
		case opObjectInsert, opObjectInsertOnce:
			k, v := m.get(&in.a, base), m.get(&in.b, base)
			t := m.stack[base+in.target]
			if k == nil || v == nil || t == nil {
				return 0, nil
			}
			obj, ok := t.Value.(ast.Object)
			if !ok {
				return 0, fmt.Errorf("policy: plan inserts into %s", ast.ValueName(t.Value))
			}
			if in.op == opObjectInsertOnce {
				if cur := obj.Get(k); cur != nil && !equal(cur, v) {
					return 0, conflict("object keys must be unique")
				}
			}
			obj.Insert(k, v)
		case opObjectMerge:
			a, b := m.stack[base+in.key], m.stack[base+in.val]
			if a == nil || b == nil {
				return 0, nil
			}
			m.stack[base+in.target] = merge(a, b)
		case opResultSetAdd:
			v := m.stack[base+in.target]
			if v == nil {
				return 0, nil
			}
			if m.nres == 0 || !equal(m.result, v) {
				m.result = v
				m.nres++
			}
		case opReturn:
			m.ret = m.stack[base+in.target]
			return returned, nil
		default:
			return 0, fmt.Errorf("policy: plan statement %d", in.op)
		}
	}
	return fellThrough, nil
}

// scan runs in.body for each element of a collection; it yields
// fellThrough to go on after the scan. Arrays and sets are walked by
// index; objects through objStep, bound once per machine, with the scan's
// state in the machine (saved here, since bodies scan too) rather than in
// a closure that would be allocated on every scan.
func (m *machine) scan(in *instr, base int) (int, error) {
	src := m.stack[base+in.target]
	if src == nil {
		return fellThrough, nil
	}
	saved := m.sc
	m.sc = scanState{in: in, base: base}
	switch c := src.Value.(type) {
	case *ast.Array:
		for i := 0; i < c.Len(); i++ {
			if m.step(ast.InternedTerm(i), c.Elem(i)) {
				break
			}
		}
	case ast.Object:
		c.Until(m.objStep)
	case ast.Set:
		for _, e := range c.Slice() {
			if m.step(e, e) {
				break
			}
		}
	}
	r, err := m.sc.r, m.sc.err
	m.sc = saved
	switch {
	case err != nil || r == returned:
		return r, err
	case r >= 2:
		return r - 2, nil
	}
	return fellThrough, nil
}

// scanState is the scan in progress.
type scanState struct {
	in   *instr
	base int
	r    int
	err  error
}

// step runs the scan's body for one element and reports whether the scan
// ends: 0 or fellThrough go on to the next element, 1 ends the scan.
func (m *machine) step(k, v *ast.Term) bool {
	sc := &m.sc
	if sc.err = m.cancelled(); sc.err != nil {
		return true
	}
	m.stack[sc.base+sc.in.key], m.stack[sc.base+sc.in.val] = k, v
	in, base := sc.in, sc.base
	r, err := m.exec(in.body, base)
	m.sc.r, m.sc.err = r, err
	return err != nil || r == returned || r >= 1
}

// call calls a planned function; it yields 0 when its result is undefined.
func (m *machine) call(in *instr, base int) (int, error) {
	fn := in.fn
	if fn.memo >= 0 && m.memoOK[fn.memo] {
		v := m.memo[fn.memo]
		if v == nil {
			return 0, nil
		}
		m.stack[base+in.target] = v
		return fellThrough, nil
	}
	var shared *atomic.Pointer[ast.Term]
	if fn.session >= 0 && m.sess != nil {
		shared = &m.sess[fn.session]
		if v := shared.Load(); v != nil {
			if v == undefinedRule {
				v = nil
			}
			m.memo[fn.memo], m.memoOK[fn.memo] = v, true
			if v == nil {
				return 0, nil
			}
			m.stack[base+in.target] = v
			return fellThrough, nil
		}
	}
	v, err := m.invoke(fn, in.args, base)
	if err != nil {
		return 0, err
	}
	if fn.memo >= 0 {
		m.memo[fn.memo], m.memoOK[fn.memo] = v, true
	}
	// Shared only when no builtin has failed: a failed call is undefined
	// here, and this evaluation goes to topdown. A value over maxEntry is
	// made again by each evaluation, not kept with the session.
	if shared != nil && m.berr == nil && (v == nil || heapSize(v, maxEntry) <= maxEntry) {
		if v == nil {
			shared.Store(undefinedRule)
		} else {
			shared.Store(v)
		}
	}
	if v == nil {
		return 0, nil
	}
	m.stack[base+in.target] = v
	return fellThrough, nil
}

func (m *machine) invoke(fn *function, args []operand, base int) (*ast.Term, error) {
	if err := m.cancelled(); err != nil {
		return nil, err
	}
	fb := m.push(fn.nlocals)
	if fb < 0 {
		return nil, errStackOverflow
	}
	for i, a := range args {
		m.stack[fb+fn.params[i]] = m.get(&a, base)
	}
	var v *ast.Term
	for _, b := range fn.blocks {
		r, err := m.exec(b, fb)
		if err != nil {
			return nil, err
		}
		if r == returned {
			v = m.ret
			break
		}
		if r > 0 {
			return nil, fmt.Errorf("policy: plan function %s breaks out of its body", fn.name)
		}
	}
	clear(m.stack[fb:])
	m.stack = m.stack[:fb]
	return v, nil
}

// callBuiltin calls one of topdown's builtins and reports whether it
// yielded a value.
func (m *machine) callBuiltin(in *instr, base int) bool {
	args := m.args[:0]
	for i := range in.args {
		v := m.get(&in.args[i], base)
		if v == nil {
			m.args = args
			return false
		}
		args = append(args, v)
	}
	m.args = args
	if in.native != nil {
		if out := in.native(args); out != nil {
			m.stack[base+in.target] = out
			return true
		}
	}
	m.out = nil
	if err := in.builtin(m.bctx, args, m.outFn); err != nil {
		if m.berr == nil {
			m.berr = err
		}
		return false
	}
	out := m.out
	if out == nil {
		return false
	}
	m.stack[base+in.target] = out
	return true
}

// dot looks key up in src: an object's value, an array's element, a set's
// member; nil (undefined) otherwise.
func dot(src, key *ast.Term) *ast.Term {
	switch c := src.Value.(type) {
	case ast.Object:
		return c.Get(key)
	case *ast.Array:
		n, ok := key.Value.(ast.Number)
		if !ok {
			return nil
		}
		i, ok := n.Int()
		if !ok || i < 0 || i >= c.Len() {
			return nil
		}
		return c.Elem(i)
	case ast.Set:
		if c.Contains(key) {
			return key
		}
	}
	return nil
}

func equal(a, b *ast.Term) bool {
	if x, ok := a.Value.(ast.String); ok {
		y, ok := b.Value.(ast.String)
		return ok && x == y
	}
	return ast.Compare(a.Value, b.Value) == 0
}

// length is LenStmt's: elements of a collection, bytes of a string.
func length(v ast.Value) int {
	switch c := v.(type) {
	case *ast.Array:
		return c.Len()
	case ast.Object:
		return c.Len()
	case ast.Set:
		return c.Len()
	case ast.String:
		return len(c)
	}
	return 0
}

// merge is ObjectMergeStmt's: a with b's keys added, objects under the
// same key merged; a when either is not an object.
func merge(a, b *ast.Term) *ast.Term {
	oa, ok1 := a.Value.(ast.Object)
	ob, ok2 := b.Value.(ast.Object)
	if !ok1 || !ok2 {
		return a
	}
	out := ast.NewObject()
	oa.Foreach(func(k, v *ast.Term) {
		if other := ob.Get(k); other != nil {
			out.Insert(k, merge(v, other))
		} else {
			out.Insert(k, v)
		}
	})
	ob.Foreach(func(k, v *ast.Term) {
		if oa.Get(k) == nil {
			out.Insert(k, v)
		}
	})
	return ast.NewTerm(out)
}
