package policy

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/ir"
	"github.com/open-policy-agent/opa/v1/rego"
	"github.com/open-policy-agent/opa/v1/storage"
	"github.com/open-policy-agent/opa/v1/topdown"
)

// A policy is compiled ahead, once per load, by OPA's own planner into its
// intermediate representation (the plan its Wasm compiler starts from;
// OPA's docs/docs/ir.md defines it), and each decision runs that plan in the
// small interpreter of machine.go (ARCHITECTURE.md §10). Topdown, OPA's
// interpreter of the Rego syntax tree, pays for generality on every
// evaluation (bindings, unification, rule index look-ups, virtual-document
// caches): 70-150 µs for the shipped policies. The plan is a flat program
// over numbered locals, and collections built from constants alone are
// built once, at load (fold).
//
// Semantics are the plan's, as OPA's Wasm compiler gives them
// (internal/compiler/wasm in OPA): same statements, same block and break
// structure, the same memoization of rules without arguments. Builtins are
// those in planBuiltins: natives (machine.go) where written, topdown's
// own implementations otherwise and for arguments a native leaves. A plan that
// fails (a builtin error, a conflict, an undefined decision) does not
// decide: topdown evaluates that input again (compiled.eval), so errors
// are topdown's. A policy the interpreter cannot run (a nondeterministic
// builtin, a builtin outside planBuiltins, with, a statement it does not
// know) is evaluated by topdown alone; the load log says so
// ("interpreted"). TestPlanMatchesTopdown holds the two to the same
// decisions.

// planTargetName is the rego target under which the planner's output is
// handed to planCapture.
const planTargetName = "imapwarden-plan"

var (
	// planMu serializes planning: the plan comes back through the rego
	// package's plugin hook, a process-wide registration.
	planMu       sync.Mutex
	planCaptured *ir.Policy
)

// planCapture receives the plan of a rego.PrepareForEval with
// rego.Target(planTargetName).
type planCapture struct{}

func (planCapture) IsTarget(t string) bool { return t == planTargetName }

func (planCapture) PrepareForEval(_ context.Context, pol *ir.Policy, _ ...rego.PrepareOption) (rego.TargetPluginEval, error) {
	planCaptured = pol // planMu is held by planPolicy
	return planCapture{}, nil
}

func (planCapture) Eval(context.Context, *rego.EvalContext, ast.Value) (ast.Value, error) {
	return nil, errors.New("policy: the plan capture does not evaluate")
}

func init() { rego.RegisterPlugin(planTargetName, planCapture{}) }

// planPolicy plans data.imapwarden.decision for a compiled policy. It
// returns an error saying why when the interpreter cannot run it.
func planPolicy(ctx context.Context, p *compiled) (*program, error) {
	if p.nondet != "" {
		return nil, fmt.Errorf("calls %s", p.nondet)
	}
	planMu.Lock()
	defer planMu.Unlock()
	planCaptured = nil
	// The rego package switches the compiler to IR mode (no rule
	// indices for later queries); topdown still evaluates with it.
	defer p.compiler.WithEvalMode(ast.EvalModeTopdown)
	_, err := rego.New(
		rego.Compiler(p.compiler),
		rego.Store(p.store),
		rego.Transaction(p.txn),
		rego.Query(decisionRef.String()),
		rego.Target(planTargetName),
	).PrepareForEval(ctx)
	if err != nil {
		return nil, fmt.Errorf("plan: %w", err)
	}
	// The global would otherwise keep the last plan's IR for the
	// process's life: a pointer-rich tree every collection marks.
	pol := planCaptured
	planCaptured = nil
	if pol == nil {
		return nil, errors.New("plan: none produced")
	}
	data, err := p.store.Read(ctx, p.txn, storage.RootPath)
	if err != nil {
		return nil, fmt.Errorf("plan: read data: %w", err)
	}
	prog, err := newProgram(pol, ast.NewTerm(data.(ast.Value)))
	if err != nil {
		return nil, err
	}
	sessionRules(p.compiler, prog)
	constCalls(prog)
	specialize(prog)
	return prog, nil
}

// ruleMemo holds the values of a policy's session rules for one session
// (by function.session; nil: not evaluated yet; kUndef: undefined), each
// persisted out of the arena that made it. Evaluations of that session's
// commands share it, concurrently.
type ruleMemo []atomic.Pointer[val]

// sessionRules marks the rules (functions of input and data alone) that,
// with every rule they depend on, read nothing of input but
// input.session: within one policy state their values are functions of
// the session's slots, which is what the engine keys input.session by
// (inputPart). A partial evaluation per session, without a second
// evaluator: the plan computes them at the session's first decision and
// its later ones reuse them.
func sessionRules(c *ast.Compiler, prog *program) {
	// What each function reads, with every rule it depends on: the
	// memos below and groupBodies decide by it.
	for _, fn := range prog.funcs {
		if fn.path != nil {
			fn.uses, fn.usesOK = ruleSlots(c, fn.ref())
		}
	}
	for _, fn := range prog.funcs {
		if fn.memo < 0 || fn.path == nil {
			continue
		}
		if fn.usesOK && fn.uses&^sessionSlots == 0 {
			fn.session = prog.nsession
			prog.nsession++
		}
	}
	callScopes(prog)
}

// memoScope says by which part of the input a function with arguments is
// remembered (callMemo): the part holding every slot it reads.
type memoScope uint8

const (
	scopeNone    memoScope = iota
	scopeSession           // reads nothing of input but input.session
	scopeEffects           // reads nothing of input but input.command.effects
	// scopeClock: reads input.now, and nothing else of input but
	// input.session; remembered with the session, keyed by input.now's
	// key too (memos.now).
	scopeClock
	numScopes
)

// callScopes gives each function of the policy with arguments (held(name),
// effects_of(kinds)), and each rule that is no session rule but reads only
// the session and the clock (outside_hours) or only the effects, the scope
// it is remembered in: its value is a function of its arguments, data and
// the slots it reads (ruleSlots, with every rule it depends on), so within
// one policy state and one value of those slots the same arguments give
// the same value. A function the planner made on its own (no path) is
// never remembered.
func callScopes(prog *program) {
	for i, fn := range prog.funcs {
		fn.index = i
		if fn.path == nil || fn.session >= 0 || (len(fn.params) <= 2 && fn.memo < 0) {
			continue
		}
		uses, ok := fn.uses, fn.usesOK
		switch {
		case !ok:
		case uses&^sessionSlots == 0:
			if len(fn.params) > 2 {
				fn.scope = scopeSession
			}
		case uses&^setOf(slotEffects) == 0:
			fn.scope = scopeEffects
		case uses&^(sessionSlots|nowSlots) == 0:
			fn.scope = scopeClock
		}
		if fn.scope != scopeNone {
			prog.scoped[fn.scope] = true
		}
	}
}

// ref is the reference of a function planned from a rule of the policy.
func (fn *function) ref() ast.Ref {
	ref := ast.DefaultRootRef.Copy()
	for _, k := range fn.path {
		ref = append(ref, ast.StringTerm(k))
	}
	return ref
}

// program is a plan ready to run: operands resolved to locals or constant
// terms, calls resolved to functions or builtins.
type program struct {
	entry   []block
	nlocals int
	funcs   []*function
	nmemo   int
	// nsession counts the session rules (function.session).
	nsession int
	// scoped says which scopes hold functions remembered by their
	// arguments (function.scope).
	scoped [numScopes]bool
	consts []val
	data   val
	caps   *ast.Capabilities
	// lowered holds lower() of the strings of the data and the plan,
	// made at load: policies compare names case-insensitively.
	lowered map[string]string
	// verdicts are the decisions of the plan's constant objects
	// ({"allow": true}) without annotations, parsed at load: a
	// decision may be such a constant, and is then never modified.
	verdicts map[*coll]verdict
	// byPoint are the program's copies specialized by input.point
	// (specialize); nil in the copies.
	byPoint map[string]*program
	// points are byPoint's in decisionPoints' order, for run: a few
	// string comparisons, not a map's hash.
	points [numPoints]*program
	// bodies: some copy remembers bodies of a rule (groupBodies);
	// elements are what those bodies added, persisted once by their exact
	// key and shared by every session's memo (bodies.go), the program's
	// and its copies'.
	bodies   bool
	elements *sharedVals
	// ofRules remembers the rules of rules (function.ofRule) by the
	// value they read, for every session: nil when there are none.
	ofRules *callMemo
}

// function is a planned function: a rule, or a function of the policy.
// Params[0] and Params[1] are input and data.
type function struct {
	name    string
	params  []int
	blocks  []block
	nlocals int
	// memo indexes the evaluation's memo table for a function of input
	// and data alone (a rule); -1 otherwise.
	memo int
	// session indexes a session's ruleMemo for a rule that reads nothing
	// of input but input.session (sessionRules); -1 otherwise.
	session int
	// scope is the part of the input whose callMemo remembers the
	// function's values by argument (callScopes).
	scope memoScope
	index int      // in program.funcs: the first part of a callMemo key
	path  []string // of the rule under data, after the planner's group
	// uses are the input slots it reads, with the functions it calls,
	// when usesOK (a function planned from a rule of the policy).
	uses   slotSet
	usesOK bool
	// ofRule, when > 0, is 1 + the memo slot of the one rule whose value
	// this rule reads the input through (first_denial reads deny):
	// remembered by that value (rulesOfRules).
	ofRule int
}

type block []instr

type opcode uint8

const (
	opNop opcode = iota
	opArrayAppend
	opAssignInt
	opAssignVar
	opAssignVarOnce
	opBlock
	opBreak
	opCall
	opCallBuiltin
	opDot
	opEqual
	opIsArray
	opIsDefined
	opIsObject
	opIsSet
	opIsUndefined
	opLen
	opMakeArray
	opMakeConst // MakeNull, MakeNumberInt, MakeNumberRef: an immutable term
	opMakeObject
	opMakeSet
	opNot
	opNotEqual
	opObjectInsert
	opObjectInsertOnce
	opObjectMerge
	opResetLocal
	opResultSetAdd
	opReturn
	opScan
	opSetAdd
	opBodies // bodies of a set rule remembered together (bodies.go)
)

// operand is a local (local >= 0) or the constant program.consts[-1-local]:
// small, since instructions are many.
type operand struct{ local int32 }

// instr is one statement. Which fields are used depends on op; target is
// the local written (or read, for IsDefined, Return, ResultSetAdd, Scan's
// source).
type instr struct {
	op       opcode
	a, b     operand
	target   int
	key, val int   // Scan: the locals of each element; ObjectMerge: A and B
	n        int64 // AssignInt: the value; Make*: the capacity; Break: the index; CallBuiltin: fastBuiltins'
	*instrX        // the rest, apart: instructions are many, and small ones run faster
}

// instrX holds the fields of the statements that nest or call.
type instrX struct {
	blocks []block // BlockStmt
	body   block   // Scan, Not
	fn     *function
	// cslot, when > 0, is 1 + the memo slot of a call whose arguments
	// past input and data are constants (constCalls), and cargs their
	// part of a callMemo key (appendCallKey).
	cslot   int
	cargs   []byte
	builtin topdown.BuiltinFunc
	// native, when set, answers a builtin call without topdown for the
	// arguments it knows (natives; nil: ask builtin).
	native native
	name   string // the builtin's
	args   []operand
	group  *bodyGroup // opBodies'
}

// newProgram translates a plan. Anything it does not know is an error,
// and the policy is evaluated by topdown instead.
func newProgram(pol *ir.Policy, data *ast.Term) (*program, error) {
	if pol.Plans == nil || len(pol.Plans.Plans) != 1 {
		return nil, errors.New("plan: not exactly one plan")
	}
	dv, err := fromAST(data)
	if err != nil {
		return nil, fmt.Errorf("plan: data: %w", err)
	}
	prog := &program{data: dv, caps: capabilities(), lowered: map[string]string{}}
	t := &translator{pol: pol, prog: prog, funcs: map[string]*function{}}
	lower := func(s string) {
		if len(prog.lowered) < maxLowered {
			if _, ok := prog.lowered[s]; !ok {
				prog.lowered[s] = strings.ToLower(s)
			}
		}
	}
	if pol.Static != nil {
		t.strings = make([]*ast.Term, len(pol.Static.Strings))
		for i, s := range pol.Static.Strings {
			t.strings[i] = ast.StringTerm(s.Value)
			lower(s.Value)
		}
	}
	ast.WalkTerms(data, func(x *ast.Term) bool {
		if s, ok := x.Value.(ast.String); ok {
			lower(string(s))
		}
		return false
	})
	if pol.Funcs != nil {
		for _, f := range pol.Funcs.Funcs {
			if len(f.Params) < 2 {
				return nil, fmt.Errorf("plan: function %s has %d parameters", f.Name, len(f.Params))
			}
			fn := &function{name: f.Name, memo: -1, session: -1}
			if len(f.Path) > 1 && f.Name == f.Path[0]+".data."+strings.Join(f.Path[1:], ".") {
				fn.path = f.Path[1:]
			}
			if len(f.Params) == 2 {
				fn.memo = prog.nmemo
				prog.nmemo++
			}
			t.funcs[f.Name] = fn
			prog.funcs = append(prog.funcs, fn)
		}
		for _, f := range pol.Funcs.Funcs {
			fn := t.funcs[f.Name]
			t.maxLocal = 0
			for _, l := range f.Params {
				fn.params = append(fn.params, t.local(l))
			}
			t.local(f.Return)
			if err := t.own(f.Blocks, f.Params); err != nil {
				return nil, fmt.Errorf("plan: %s: %w", f.Name, err)
			}
			var err error
			if fn.blocks, err = t.blocks(f.Blocks); err != nil {
				return nil, fmt.Errorf("plan: %s: %w", f.Name, err)
			}
			fn.nlocals = t.maxLocal + 1
		}
	}
	plan := pol.Plans.Plans[0]
	t.maxLocal = int(ir.Data)
	if err := t.own(plan.Blocks, []ir.Local{ir.Input, ir.Data}); err != nil {
		return nil, fmt.Errorf("plan: %w", err)
	}
	if prog.entry, err = t.blocks(plan.Blocks); err != nil {
		return nil, fmt.Errorf("plan: %w", err)
	}
	prog.nlocals = t.maxLocal + 1
	prog.verdicts = map[*coll]verdict{}
	for _, v := range prog.consts {
		if v.k == kObj {
			if d, err := parseDecision(v.c.term.Value); err == nil && d.annotations == nil {
				prog.verdicts[v.c] = d
			}
		}
	}
	return prog, nil
}

type translator struct {
	pol      *ir.Policy
	prog     *program
	strings  []*ast.Term
	funcs    map[string]*function
	maxLocal int
	// folds are the constant collections of the function being
	// translated, by the Make statement that starts each (fold).
	folds map[ir.Stmt]folded
}

// folded is a collection made of constants: the local it is made in, its
// term, and the number of statements (the Make and the inserts) it
// replaces.
type folded struct {
	target ir.Local
	term   *ast.Term
	n      int
}

// own finds the constant collections of a function (folds) and checks
// the ownership of what it modifies in place (checkOwnership) with them
// folded: a folded collection is shared by every evaluation, so it must
// never be modified. A local modified after it may have received a folded
// collection (an empty one a comprehension then fills) is not folded.
func (t *translator) own(blocks []*ir.Block, params []ir.Local) error {
	t.folds = map[ir.Stmt]folded{}
	var find func(b *ir.Block)
	find = func(b *ir.Block) {
		if b == nil {
			return
		}
		for i, s := range b.Stmts {
			if f := t.fold(b.Stmts[i:]); f.n > 0 {
				t.folds[s] = f
			}
			switch s := s.(type) {
			case *ir.BlockStmt:
				for _, b := range s.Blocks {
					find(b)
				}
			case *ir.ScanStmt:
				find(s.Block)
			case *ir.NotStmt:
				find(s.Block)
			}
		}
	}
	for _, b := range blocks {
		find(b)
	}
	for {
		err := checkOwnership(blocks, params, t.folds)
		var oe *ownershipError
		if err == nil || !errors.As(err, &oe) {
			return err
		}
		n := len(t.folds)
		maps.DeleteFunc(t.folds, func(_ ir.Stmt, f folded) bool { return f.target == oe.local })
		if len(t.folds) == n {
			return err // not a fold's: the function modifies what it must not
		}
	}
}

// constOperand is an operand for v.
func (t *translator) constOperand(v val) operand {
	t.prog.consts = append(t.prog.consts, v)
	return operand{local: int32(-len(t.prog.consts))}
}

func (t *translator) local(l ir.Local) int {
	if int(l) > t.maxLocal {
		t.maxLocal = int(l)
	}
	return int(l)
}

func (t *translator) str(i int) (*ast.Term, error) {
	if i < 0 || i >= len(t.strings) {
		return nil, fmt.Errorf("string constant %d out of range", i)
	}
	return t.strings[i], nil
}

func (t *translator) operand(o ir.Operand) (operand, error) {
	switch v := o.Value.(type) {
	case ir.Local:
		return operand{local: int32(t.local(v))}, nil
	case ir.StringIndex:
		s, err := t.str(int(v))
		if err != nil {
			return operand{}, err
		}
		return t.constOperand(vStr(string(s.Value.(ast.String)))), nil
	case ir.Bool:
		return t.constOperand(vBool(bool(v))), nil
	}
	return operand{}, fmt.Errorf("operand %v", o.Value)
}

func (t *translator) blocks(bs []*ir.Block) ([]block, error) {
	out := make([]block, len(bs))
	for i, b := range bs {
		var err error
		if out[i], err = t.block(b); err != nil {
			return nil, err
		}
	}
	return out, nil
}

func (t *translator) block(b *ir.Block) (block, error) {
	if b == nil {
		return nil, nil
	}
	out := make(block, 0, len(b.Stmts))
	for i := 0; i < len(b.Stmts); i++ {
		if f, ok := t.folds[b.Stmts[i]]; ok {
			v, err := fromAST(f.term)
			if err != nil {
				return nil, err
			}
			out = append(out, instr{op: opMakeConst, target: t.local(f.target), a: t.constOperand(v)})
			i += f.n - 1
			continue
		}
		in, err := t.stmt(b.Stmts[i])
		if err != nil {
			return nil, err
		}
		if in.op == opMakeObject || in.op == opMakeSet {
			in.n = int64(inserts(b.Stmts[i+1:], ir.Local(in.target)))
		}
		out = append(out, in)
	}
	return out, nil
}

// inserts counts the inserts into local l that follow its Make in the same
// block, to make the object or set that size at once.
func inserts(stmts []ir.Stmt, l ir.Local) int {
	n := 0
	for _, s := range stmts {
		switch s := s.(type) {
		case *ir.ObjectInsertStmt:
			if s.Object == l {
				n++
			}
		case *ir.ObjectInsertOnceStmt:
			if s.Object == l {
				n++
			}
		case *ir.SetAddStmt:
			if s.Set == l {
				n++
			}
		}
	}
	return n
}

// fold makes a collection built from constants alone (a MakeArray,
// MakeObject or MakeSet followed by appends or inserts of constants, as
// the planner writes a literal such as {"expunge", "mark-deleted"}) at
// load time, and says how many statements it replaces (0: it is not such
// a collection). own decides whether it is folded.
func (t *translator) fold(stmts []ir.Stmt) folded {
	var target ir.Local
	var coll ast.Value
	switch s := stmts[0].(type) {
	case *ir.MakeArrayStmt:
		target, coll = s.Target, ast.NewArrayWithCapacity(int(s.Capacity))
	case *ir.MakeObjectStmt:
		target, coll = s.Target, ast.NewObject()
	case *ir.MakeSetStmt:
		target, coll = s.Target, ast.NewSet()
	default:
		return folded{}
	}
	n := 1
	for ; n < len(stmts); n++ {
		ok := false
		switch s := stmts[n].(type) {
		case *ir.ArrayAppendStmt:
			arr, isArr := coll.(*ast.Array)
			if v := t.constant(s.Value); isArr && s.Array == target && v != nil {
				coll, ok = arr.Append(v), true
			}
		case *ir.SetAddStmt:
			set, isSet := coll.(ast.Set)
			if v := t.constant(s.Value); isSet && s.Set == target && v != nil {
				set.Add(v)
				ok = true
			}
		case *ir.ObjectInsertStmt:
			ok = t.foldInsert(coll, target, s.Object, s.Key, s.Value, false)
		case *ir.ObjectInsertOnceStmt:
			ok = t.foldInsert(coll, target, s.Object, s.Key, s.Value, true)
		}
		if !ok {
			break
		}
	}
	return folded{target: target, term: ast.NewTerm(coll), n: n}
}

// foldInsert inserts a constant key and value into coll, an object being
// folded, and reports whether it could. A conflicting insert once is left
// to the interpreter to report.
func (t *translator) foldInsert(coll ast.Value, target, into ir.Local, key, val ir.Operand, once bool) bool {
	obj, isObj := coll.(ast.Object)
	k, v := t.constant(key), t.constant(val)
	if !isObj || into != target || k == nil || v == nil {
		return false
	}
	if cur := obj.Get(k); once && cur != nil && ast.Compare(cur, v) != 0 {
		return false
	}
	obj.Insert(k, v)
	return true
}

// constant is the term of a constant operand, nil for a local.
func (t *translator) constant(o ir.Operand) *ast.Term {
	switch v := o.Value.(type) {
	case ir.StringIndex:
		s, err := t.str(int(v))
		if err != nil {
			return nil
		}
		return s
	case ir.Bool:
		return ast.InternedTerm(bool(v))
	}
	return nil
}

// stmt translates one statement (OPA's ir package documents each).
func (t *translator) stmt(s ir.Stmt) (instr, error) {
	in := instr{instrX: &instrX{}}
	var err error
	two := func(a, b ir.Operand) {
		if in.a, err = t.operand(a); err == nil {
			in.b, err = t.operand(b)
		}
	}
	switch s := s.(type) {
	case *ir.NopStmt:
		in.op = opNop
	case *ir.ArrayAppendStmt:
		in.op, in.target = opArrayAppend, t.local(s.Array)
		in.a, err = t.operand(s.Value)
	case *ir.AssignIntStmt:
		in.op, in.target, in.n = opAssignInt, t.local(s.Target), s.Value
	case *ir.AssignVarStmt:
		in.op, in.target = opAssignVar, t.local(s.Target)
		in.a, err = t.operand(s.Source)
	case *ir.AssignVarOnceStmt:
		in.op, in.target = opAssignVarOnce, t.local(s.Target)
		in.a, err = t.operand(s.Source)
	case *ir.BlockStmt:
		in.op = opBlock
		in.blocks, err = t.blocks(s.Blocks)
	case *ir.BreakStmt:
		in.op, in.n = opBreak, int64(s.Index)
	case *ir.CallStmt:
		in.target = t.local(s.Result)
		for _, a := range s.Args {
			o, err := t.operand(a)
			if err != nil {
				return in, err
			}
			in.args = append(in.args, o)
		}
		if fn, ok := t.funcs[s.Func]; ok {
			in.op, in.fn = opCall, fn
			if len(in.args) != len(t.pol.Funcs.Funcs[t.funcIndex(fn)].Params) {
				return in, fmt.Errorf("call of %s with %d arguments", s.Func, len(in.args))
			}
			break
		}
		bi := topdown.GetBuiltin(s.Func)
		if bi == nil || !planBuiltins[s.Func] {
			return in, fmt.Errorf("builtin %s is not available to the interpreter", s.Func)
		}
		in.op, in.builtin, in.native, in.name = opCallBuiltin, bi, natives[s.Func], s.Func
		if fast := fastBuiltins[s.Func]; fast == fastCount && len(in.args) == 1 || fast > fastCount && len(in.args) == 2 {
			in.n = fast
		}
	case *ir.DotStmt:
		in.op, in.target = opDot, t.local(s.Target)
		two(s.Source, s.Key)
	case *ir.EqualStmt:
		in.op = opEqual
		two(s.A, s.B)
	case *ir.NotEqualStmt:
		in.op = opNotEqual
		two(s.A, s.B)
	case *ir.IsArrayStmt:
		in.op = opIsArray
		in.a, err = t.operand(s.Source)
	case *ir.IsObjectStmt:
		in.op = opIsObject
		in.a, err = t.operand(s.Source)
	case *ir.IsSetStmt:
		in.op = opIsSet
		in.a, err = t.operand(s.Source)
	case *ir.IsDefinedStmt:
		in.op, in.target = opIsDefined, t.local(s.Source)
	case *ir.IsUndefinedStmt:
		in.op, in.target = opIsUndefined, t.local(s.Source)
	case *ir.LenStmt:
		in.op, in.target = opLen, t.local(s.Target)
		in.a, err = t.operand(s.Source)
	case *ir.MakeArrayStmt:
		in.op, in.target, in.n = opMakeArray, t.local(s.Target), int64(s.Capacity)
	case *ir.MakeNullStmt:
		in.op, in.target = opMakeConst, t.local(s.Target)
		in.a = t.constOperand(vNull)
	case *ir.MakeNumberIntStmt:
		in.op, in.target = opMakeConst, t.local(s.Target)
		in.a = t.constOperand(vInt(s.Value))
	case *ir.MakeNumberRefStmt:
		in.op, in.target = opMakeConst, t.local(s.Target)
		var str *ast.Term
		if str, err = t.str(s.Index); err == nil {
			in.a = t.constOperand(numVal(string(str.Value.(ast.String))))
		}
	case *ir.MakeObjectStmt:
		in.op, in.target = opMakeObject, t.local(s.Target)
	case *ir.MakeSetStmt:
		in.op, in.target = opMakeSet, t.local(s.Target)
	case *ir.NotStmt:
		in.op = opNot
		in.body, err = t.block(s.Block)
	case *ir.ObjectInsertStmt:
		in.op, in.target = opObjectInsert, t.local(s.Object)
		two(s.Key, s.Value)
	case *ir.ObjectInsertOnceStmt:
		in.op, in.target = opObjectInsertOnce, t.local(s.Object)
		two(s.Key, s.Value)
	case *ir.ObjectMergeStmt:
		in.op, in.target = opObjectMerge, t.local(s.Target)
		in.key, in.val = t.local(s.A), t.local(s.B)
	case *ir.ResetLocalStmt:
		in.op, in.target = opResetLocal, t.local(s.Target)
	case *ir.ResultSetAddStmt:
		in.op, in.target = opResultSetAdd, t.local(s.Value)
	case *ir.ReturnLocalStmt:
		in.op, in.target = opReturn, t.local(s.Source)
	case *ir.ScanStmt:
		in.op, in.target, in.key, in.val = opScan, t.local(s.Source), t.local(s.Key), t.local(s.Value)
		in.body, err = t.block(s.Block)
	case *ir.SetAddStmt:
		in.op, in.target = opSetAdd, t.local(s.Set)
		in.a, err = t.operand(s.Value)
	default:
		return in, fmt.Errorf("statement %T", s)
	}
	return in, err
}

func (t *translator) funcIndex(fn *function) int {
	for i, f := range t.pol.Funcs.Funcs {
		if f.Name == fn.name {
			return i
		}
	}
	return -1
}

// checkOwnership makes sure that the statements modifying a value in place
// (ArrayAppend, ObjectInsert, SetAdd) only ever modify one that the
// function made (MakeArray, MakeObject, MakeSet) on every path to them:
// the interpreter shares terms with the input, the data and other
// evaluations, which must never change. The planner reuses locals across
// the branches of a rule, so this follows the flow: a local is "foreign"
// at a statement when some path reaches it with a value set otherwise.
//
// folds are the collections that will be constants: their Make makes a
// foreign value, their inserts are not run.
func checkOwnership(blocks []*ir.Block, params []ir.Local, folds map[ir.Stmt]folded) error {
	st := ownState{}
	for _, p := range params {
		st[p] = true
	}
	o := owner{folds: folds}
	for _, b := range blocks {
		// The blocks run in turn, and each may be left at any statement.
		anyExit, err := o.block(b, st)
		if err != nil {
			return err
		}
		st = anyExit
	}
	return nil
}

// ownershipError is a statement that may modify a value the function did
// not make.
type ownershipError struct{ local ir.Local }

func (e *ownershipError) Error() string {
	return fmt.Sprintf("local %d is modified in place but may hold a value the function did not make", e.local)
}

// owner follows ownership through a function.
type owner struct{ folds map[ir.Stmt]folded }

// ownState holds the locals that may hold a value the function did not
// make (true).
type ownState map[ir.Local]bool

func (st ownState) clone() ownState { return maps.Clone(st) }

func (st ownState) join(o ownState) {
	for l, foreign := range o {
		if foreign {
			st[l] = true
		}
	}
}

// block advances st through b and returns the join of the states at
// every statement (a block may be left at any of them).
func (o owner) block(b *ir.Block, st ownState) (ownState, error) {
	anyExit := st.clone()
	if b == nil {
		return anyExit, nil
	}
	for i := 0; i < len(b.Stmts); i++ {
		if f, ok := o.folds[b.Stmts[i]]; ok {
			st[f.target] = true // shared: never to be modified
			i += f.n - 1
		} else if err := o.stmt(b.Stmts[i], st); err != nil {
			return nil, err
		}
		anyExit.join(st)
	}
	return anyExit, nil
}

func (o owner) stmt(s ir.Stmt, st ownState) error {
	modify := func(l ir.Local) error {
		if st[l] {
			return &ownershipError{local: l}
		}
		return nil
	}
	switch s := s.(type) {
	case *ir.ArrayAppendStmt:
		return modify(s.Array)
	case *ir.ObjectInsertStmt:
		return modify(s.Object)
	case *ir.ObjectInsertOnceStmt:
		return modify(s.Object)
	case *ir.SetAddStmt:
		return modify(s.Set)
	case *ir.MakeArrayStmt:
		st[s.Target] = false
	case *ir.MakeObjectStmt:
		st[s.Target] = false
	case *ir.MakeSetStmt:
		st[s.Target] = false
	case *ir.ResetLocalStmt:
		st[s.Target] = false // undefined: nothing to modify
	case *ir.AssignIntStmt:
		st[s.Target] = true
	case *ir.AssignVarStmt:
		st[s.Target] = true
	case *ir.AssignVarOnceStmt:
		st[s.Target] = true
	case *ir.CallStmt:
		st[s.Result] = true
	case *ir.DotStmt:
		st[s.Target] = true
	case *ir.LenStmt:
		st[s.Target] = true
	case *ir.MakeNullStmt:
		st[s.Target] = true
	case *ir.MakeNumberIntStmt:
		st[s.Target] = true
	case *ir.MakeNumberRefStmt:
		st[s.Target] = true
	case *ir.ObjectMergeStmt:
		st[s.Target] = true // may be A itself
	case *ir.BlockStmt:
		// Each block starts where the one before it was left.
		cur := st.clone()
		for _, b := range s.Blocks {
			anyExit, err := o.block(b, cur.clone())
			if err != nil {
				return err
			}
			cur = anyExit
		}
		st.join(cur)
	case *ir.NotStmt:
		anyExit, err := o.block(s.Block, st.clone())
		if err != nil {
			return err
		}
		st.join(anyExit)
	case *ir.ScanStmt:
		// The body runs any number of times: to a fixed point.
		st[s.Key], st[s.Value] = true, true
		for {
			before := st.clone()
			anyExit, err := o.block(s.Block, st.clone())
			if err != nil {
				return err
			}
			st.join(anyExit)
			if maps.Equal(before, st) {
				break
			}
		}
	}
	return nil
}

// planBuiltins are the builtins the interpreter calls: deterministic
// functions of their arguments alone, which need nothing of topdown's
// evaluation (no caches, no runtime, no time, no tracing) and yield one
// value. A policy calling any other is evaluated by topdown: a builtin
// added here is trusted to behave identically outside topdown, and the
// differential test (TestPlanMatchesTopdown) must cover it.
var planBuiltins = func() map[string]bool {
	m := map[string]bool{}
	for _, n := range []string{
		// comparison, arithmetic, aggregates
		"equal", "neq", "lt", "lte", "gt", "gte",
		"plus", "minus", "mul", "div", "rem", "abs", "round", "ceil", "floor",
		"count", "sum", "product", "max", "min", "sort", "all", "any",
		"internal.member_2", "internal.member_3",
		// strings
		"concat", "contains", "endswith", "startswith", "format_int", "indexof",
		"lower", "upper", "replace", "split", "sprintf", "substring",
		"trim", "trim_left", "trim_prefix", "trim_right", "trim_space", "trim_suffix",
		"strings.any_prefix_match", "strings.any_suffix_match", "strings.count",
		"strings.replace_n", "to_number", "regex.match", "glob.match",
		// collections and types
		"array.concat", "array.slice", "array.reverse",
		"and", "or", "intersection", "union",
		"object.get", "object.keys", "object.remove", "object.union", "object.union_n", "object.filter",
		"is_array", "is_boolean", "is_null", "is_number", "is_object", "is_set", "is_string", "type_name",
		// networks and time given as arguments
		"net.cidr_contains", "net.cidr_intersects", "net.cidr_is_valid",
		"time.parse_rfc3339_ns", "time.clock", "time.date", "time.weekday",
	} {
		m[n] = true
	}
	return m
}()

// maxLowered bounds program.lowered: data is small, but need not be.
const maxLowered = 1 << 14
