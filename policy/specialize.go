package policy

import "github.com/open-policy-agent/opa/v1/ast"

// Programs specialized by decision point (ARCHITECTURE.md §10). Nearly
// every rule body starts with input.point == "...", and an evaluation runs
// every body of deny: at a command, the bodies of the connect, auth and
// route rules fail at their first test, at every decision. The point is
// known before the plan runs, so each program is also kept in one copy
// per point where input.point is that constant: a test of it that holds
// is dropped, and one that fails ends its block there, as it would at run
// time (what the block did before the test is kept). run takes the copy
// for the input's point; any other input runs the program as planned.
// TestSpecializedByPoint proves the shipped policies' are shorter;
// TestEngineMatchesTopdown and TestCallMemosMatchTopdown that they decide
// as topdown does.

// decisionPoints are the values of input.point programs are specialized
// for (proxy.Point and PointRoute).
var decisionPoints = []string{"connect", "auth", "route", "command"}

// numPoints is len(decisionPoints), program.points' length.
const numPoints = 4

// specialize makes prog's copies by point, unless some statement writes
// the input's local or a call passes other locals as input and data: the
// planner never does, and only then is local 0 the input everywhere.
func specialize(prog *program) {
	if !inputStable(prog) {
		return
	}
	prog.byPoint = map[string]*program{}
	for _, point := range decisionPoints {
		s := &specializer{prog: prog, funcs: map[*function]*function{}}
		prog.consts = append(prog.consts, vStr(point))
		s.point = operand{local: int32(-len(prog.consts))}
		v := *prog
		v.byPoint, v.points, v.funcs = nil, [numPoints]*program{}, nil
		for _, fn := range prog.funcs {
			c := *fn
			s.funcs[fn] = &c
			v.funcs = append(v.funcs, &c)
		}
		for _, fn := range prog.funcs {
			s.funcs[fn].blocks = s.blocks(fn.blocks)
		}
		v.entry = s.blocks(prog.entry)
		prog.byPoint[point] = &v
	}
	for i, point := range decisionPoints {
		prog.points[i] = prog.byPoint[point]
	}
	for _, v := range prog.byPoint {
		v.consts = prog.consts
	}
	next := 0
	prog.elements = &sharedVals{}
	for _, point := range decisionPoints {
		v := prog.byPoint[point]
		v.elements = prog.elements
		for _, fn := range v.funcs {
			groupBodies(v, fn, &next)
		}
		prog.bodies = prog.bodies || v.bodies
		rulesOfRules(v)
	}
}

// rulesOfRules marks the rules of a copy that read nothing of the input
// but the value of one other rule (the framework's first_denial reads
// deny's): within one policy state, such a rule's value is a function of
// that value alone (data is constant, the planned builtins deterministic),
// so it is remembered by it (program.ofRules), for every session, as a
// call by its arguments. Only in a copy (local 0 is the input everywhere,
// inputStable), and only when every read of the input is as the input of a
// call of that rule; opBodies and anything else unknown refuse.
func rulesOfRules(v *program) {
	for _, fn := range v.funcs {
		if fn.memo < 0 || fn.path == nil || fn.session >= 0 || fn.scope != scopeNone {
			continue
		}
		of := -1
		ok := true
		var walk func(b block)
		walk = func(b block) {
			for i := range b {
				in := &b[i]
				if !ok {
					return
				}
				reads := func(os ...operand) {
					for _, o := range os {
						if o.local == 0 {
							ok = false
						}
					}
				}
				target := operand{local: int32(in.target)}
				switch in.op {
				case opNop, opAssignInt, opMakeArray, opMakeObject, opMakeSet, opResetLocal, opBreak:
				case opAssignVar, opMakeConst, opLen, opIsArray, opIsObject, opIsSet:
					reads(in.a)
				case opAssignVarOnce, opArrayAppend, opSetAdd:
					reads(in.a, target)
				case opDot, opEqual, opNotEqual:
					reads(in.a, in.b)
				case opObjectInsert, opObjectInsertOnce:
					reads(in.a, in.b, target)
				case opIsDefined, opIsUndefined, opResultSetAdd, opReturn, opScan:
					reads(target)
				case opObjectMerge:
					reads(operand{local: int32(in.key)}, operand{local: int32(in.val)})
				case opCallBuiltin:
					reads(in.args...)
				case opCall:
					if d := in.fn; len(in.args) == 2 && in.args[0].local == 0 && in.args[1].local == 1 &&
						d.memo >= 0 && d != fn && (of < 0 || of == d.memo) {
						of = d.memo
					} else {
						reads(in.args...)
					}
				case opBlock, opNot:
				default: // opBodies, and any statement added later
					ok = false
				}
				if in.instrX != nil {
					for _, inner := range in.blocks {
						walk(inner)
					}
					walk(in.body)
				}
			}
		}
		for _, b := range fn.blocks {
			walk(b)
		}
		if ok && of >= 0 {
			fn.ofRule = of + 1
			if v.ofRules == nil {
				v.ofRules = &callMemo{}
			}
		}
	}
}

type specializer struct {
	prog  *program
	point operand // the constant of the point's value
	funcs map[*function]*function
}

func (s *specializer) blocks(bs []block) []block {
	out := make([]block, len(bs))
	for i, b := range bs {
		out[i] = s.block(b)
	}
	return out
}

// block copies b for the point: input.point read as the constant, tests
// of constants decided.
func (s *specializer) block(b block) block {
	if b == nil {
		return nil
	}
	out := make(block, 0, len(b))
	known := constLocals{}
	constOf := known.of
	for _, in := range b {
		switch in.op {
		case opCall, opBlock, opNot, opScan:
			x := *in.instrX
			if in.op == opCall {
				x.fn = s.funcs[in.fn]
			}
			x.blocks = s.blocks(in.blocks)
			x.body = s.block(in.body)
			in.instrX = &x
		}
		switch in.op {
		case opDot:
			if k, ok := constOf(in.b); ok && in.a.local == 0 && s.isPoint(k) {
				in = instr{op: opMakeConst, target: in.target, a: s.point}
			}
		case opAssignVar:
			if c, ok := constOf(in.a); ok { // defined: it cannot fail
				in = instr{op: opMakeConst, target: in.target, a: c}
			}
		case opCallBuiltin:
			if v, ok := s.fold(&in, constOf); ok {
				if v.k == kUndef {
					// Fails: the block ends here, as the call would end it.
					return append(out, instr{op: opBreak, n: 0})
				}
				s.prog.consts = append(s.prog.consts, v)
				in = instr{op: opMakeConst, target: in.target, a: operand{local: int32(-len(s.prog.consts))}}
			}
		case opEqual, opNotEqual:
			a, okA := constOf(in.a)
			b, okB := constOf(in.b)
			if okA && okB {
				x, y := s.prog.consts[-1-a.local], s.prog.consts[-1-b.local]
				if x.k != kUndef && y.k != kUndef && equalVal(x, y) == (in.op == opEqual) {
					continue // holds: nothing to do
				}
				// Fails: the block ends here, as the test would end it.
				return append(out, instr{op: opBreak, n: 0})
			}
		}
		known.note(&in)
		out = append(out, in)
	}
	return out
}

// foldable are the builtins whose natives need no machine and whose
// value for constant arguments is decided at load: input.point's tests
// (input.point in {"auth", "route"}, input.point != "connect").
var foldable = map[string]bool{
	ast.Equal.Name: true, ast.NotEqual.Name: true, ast.GreaterThan.Name: true, ast.GreaterThanEq.Name: true,
	ast.LessThan.Name: true, ast.LessThanEq.Name: true, ast.Member.Name: true, ast.Count.Name: true,
	ast.StartsWith.Name: true,
}

// fold is the value of in, a builtin call, when its arguments are
// constants and its native decides it (undefined: the call fails).
func (s *specializer) fold(in *instr, constOf func(operand) (operand, bool)) (val, bool) {
	if in.native == nil || !foldable[in.name] {
		return val{}, false
	}
	args := make([]val, len(in.args))
	for i, a := range in.args {
		c, ok := constOf(a)
		if !ok {
			return val{}, false
		}
		args[i] = s.prog.consts[-1-c.local]
	}
	return in.native(nil, args)
}

// constLocals are the locals holding a constant (MakeConst) at a point of
// a block's straight line: a nested statement may write any local.
type constLocals map[int]operand

// of is o's constant: o itself, or the one local o holds.
func (known constLocals) of(o operand) (operand, bool) {
	if o.local < 0 {
		return o, true
	}
	c, ok := known[int(o.local)]
	return c, ok
}

// note follows in, the next statement of the block.
func (known constLocals) note(in *instr) {
	switch in.op {
	case opMakeConst:
		if in.a.local < 0 {
			known[in.target] = in.a
		} else {
			delete(known, in.target)
		}
	case opBlock, opNot, opScan:
		clear(known)
	case opIsDefined, opIsUndefined, opReturn, opResultSetAdd, opEqual, opNotEqual,
		opIsArray, opIsObject, opIsSet, opBreak, opNop:
	default:
		delete(known, in.target)
	}
}

// inputStable: no statement writes the input's or the data's local, and
// every call passes locals 0 and 1 as input and data (the planner never
// does otherwise). Then local 0 is the evaluation's input in every
// function, which specialize and constCalls rely on.
func inputStable(prog *program) bool {
	stable := true
	var check func(b block)
	check = func(b block) {
		for i := range b {
			in := &b[i]
			switch in.op {
			case opIsDefined, opIsUndefined, opReturn, opResultSetAdd, opScan,
				opEqual, opNotEqual, opIsArray, opIsObject, opIsSet, opBreak, opNop, opBlock, opNot:
				// read their target, or have none
			default:
				if in.target == 0 || in.target == 1 {
					stable = false
				}
			}
			if in.op == opScan && (in.key == 0 || in.val == 0 || in.key == 1 || in.val == 1) {
				stable = false
			}
			if in.op == opCall && (len(in.args) < 2 || in.args[0].local != 0 || in.args[1].local != 1) {
				stable = false
			}
			if in.instrX != nil {
				for _, inner := range in.blocks {
					check(inner)
				}
				check(in.body)
			}
		}
	}
	for _, b := range prog.entry {
		check(b)
	}
	for _, fn := range prog.funcs {
		if len(fn.params) < 2 || fn.params[0] != 0 || fn.params[1] != 1 {
			stable = false
		}
		for _, b := range fn.blocks {
			check(b)
		}
	}
	return stable
}

// isPoint: o is the constant "point".
func (s *specializer) isPoint(o operand) bool {
	c := s.prog.consts[-1-o.local]
	return c.k == kStr && c.s == "point"
}
