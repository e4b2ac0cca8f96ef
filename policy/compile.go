package policy

import (
	"github.com/imapwarden/imapwarden/proxy/imapwire"

	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/loader"
	"github.com/open-policy-agent/opa/v1/metrics"
	"github.com/open-policy-agent/opa/v1/storage"
	"github.com/open-policy-agent/opa/v1/storage/inmem"
	"github.com/open-policy-agent/opa/v1/topdown"
)

// The documents imapwarden reads from a policy.
var (
	decisionRef       = ast.MustParseRef("data.imapwarden.decision")
	inspectRef        = ast.MustParseRef("data.imapwarden.inspect")
	inspectEffectsRef = ast.MustParseRef("data.imapwarden.inspect_effects")
	dataErrorsRef     = ast.MustParseRef("data.imapwarden.data_errors")
	resultVar         = ast.Var("result")
	// noMetrics: the engine does not report OPA's timers, and a fresh
	// metrics set would cost allocations on every evaluation.
	noMetrics = metrics.NoOp()
)

// Problem is one reason a policy directory did not load.
type Problem struct {
	File    string // "" when the problem is not in one file
	Line    int    // 0 when unknown
	Message string
}

func (p Problem) String() string {
	switch {
	case p.File != "" && p.Line > 0:
		return fmt.Sprintf("%s:%d: %s", p.File, p.Line, p.Message)
	case p.File != "":
		return p.File + ": " + p.Message
	}
	return p.Message
}

// LoadError reports a policy directory that failed to load or compile;
// the engine keeps the policy it had.
type LoadError struct {
	Dir      string
	Problems []Problem
}

func (e *LoadError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "policy %s:", e.Dir)
	for _, p := range e.Problems {
		b.WriteString("\n\t")
		b.WriteString(p.String())
	}
	return b.String()
}

func loadError(dir string, err error) *LoadError {
	le := &LoadError{Dir: dir}
	var add func(error)
	add = func(err error) {
		var asts ast.Errors
		var ae *ast.Error
		var lerrs loader.Errors
		switch {
		case errors.As(err, &lerrs):
			for _, e := range lerrs {
				add(e)
			}
		case errors.As(err, &asts):
			for _, e := range asts {
				add(e)
			}
		case errors.As(err, &ae):
			p := Problem{Message: ae.Code + ": " + ae.Message}
			if ae.Location != nil {
				p.File, p.Line = ae.Location.File, ae.Location.Row
			}
			le.Problems = append(le.Problems, p)
		default:
			le.Problems = append(le.Problems, Problem{Message: err.Error()})
		}
	}
	add(err)
	return le
}

// compiled is one policy directory, compiled once per load and then
// evaluated concurrently by every session.
type compiled struct {
	dir      string
	shadow   bool
	revision string // hash of the loaded modules and data
	compiler *ast.Compiler
	store    storage.Store
	// txn is a read transaction held for the policy's life: the store is
	// never written after loading, and opening one per decision costs.
	txn   storage.Transaction
	query ast.Body // result = data.imapwarden.decision, compiled
	// inspectAll: the policy has no inspect document, or one of its
	// policies adds denials without one of its own (inspectAllBy names
	// them, for the load log), so every command is evaluated; otherwise
	// only those in inspect.
	inspectAll   bool
	inspectAllBy []string
	inspect      map[string]struct{}
	// inspectEffects: the effects inspected (inspect_effects), a bit per
	// imapwire.Effect: a command that has one is evaluated, whatever its
	// name. A FETCH of flags has none of the readonly policy's.
	inspectEffects uint32
	// uses are the input slots the policy reads; nondet names a
	// nondeterministic builtin it calls ("" if none), which makes its
	// decisions uncacheable.
	uses   slotSet
	ids    idUse
	nondet string
	// policyNames are the constant "policy" names of its deny rules.
	policyNames []string
	// prog is the policy compiled ahead (plan.go), nil when topdown
	// evaluates it; planErr says why.
	prog    *program
	planErr string
	// verdicts remembers the verdicts of the decisions prog made, by
	// their exact key (verdictOf).
	verdicts *keyCache[*sharedVerdict]
}

// idUse is what a policy reads of input.session.client_id: the keys it
// names, or all of them. Policies look up one or two ID fields ("name");
// keying the cache on those alone spares sorting the whole map.
type idUse struct {
	all  bool
	keys []string // sorted
}

func (u idUse) union(o idUse) idUse {
	if u.all || o.all {
		return idUse{all: true}
	}
	keys := slices.Concat(u.keys, o.keys)
	slices.Sort(keys)
	return idUse{keys: slices.Compact(keys)}
}

// skipFile leaves tests and hidden files out of a policy: tests are not
// policy, and editors and version control keep their files there.
func skipFile(_ string, info fs.FileInfo, depth int) bool {
	name := info.Name()
	if depth > 0 && strings.HasPrefix(name, ".") {
		return true
	}
	return !info.IsDir() && strings.HasSuffix(name, "_test.rego")
}

// compileDir loads the Rego modules and data documents (JSON, YAML) under
// dir and compiles them.
func compileDir(ctx context.Context, dir string, shadow bool) (*compiled, error) {
	res, err := loadPath(dir, false)
	if err != nil {
		return nil, err
	}
	modules := res.ParsedModules()
	if len(modules) == 0 {
		return nil, &LoadError{Dir: dir, Problems: []Problem{{Message: "no Rego modules"}}}
	}
	c := ast.NewCompiler().
		WithCapabilities(capabilities()).
		WithDefaultRegoVersion(ast.RegoV1)
	if c.Compile(modules); c.Failed() {
		return nil, loadError(dir, c.Errors)
	}
	if len(c.GetRules(decisionRef)) == 0 {
		return nil, &LoadError{Dir: dir, Problems: []Problem{{Message: "no rule defines data.imapwarden.decision"}}}
	}
	store := inmem.NewFromObjectWithOpts(res.Documents,
		inmem.OptRoundTripOnWrite(false), inmem.OptReturnASTValuesOnRead(true))
	txn, err := store.NewTransaction(ctx)
	if err != nil {
		return nil, fmt.Errorf("policy %s: open store: %w", dir, err)
	}
	p := &compiled{dir: dir, shadow: shadow, compiler: c, store: store, txn: txn}
	if p.revision, err = revision(dir, res); err != nil {
		return nil, fmt.Errorf("policy %s: %w", dir, err)
	}
	if p.query, err = c.QueryCompiler().Compile(ast.NewBody(ast.Equality.Expr(ast.VarTerm(string(resultVar)), ast.NewTerm(decisionRef)))); err != nil {
		return nil, loadError(dir, err)
	}
	p.uses, p.ids, p.nondet = analyze(c)
	p.policyNames = denyNames(c)
	if err := p.loadInspect(ctx); err != nil {
		return nil, err
	}
	if err := p.checkData(ctx); err != nil {
		return nil, err
	}
	if p.prog, err = planPolicy(ctx, p); err != nil {
		p.planErr = err.Error()
	}
	p.verdicts = newKeyCache[*sharedVerdict](maxVerdicts)
	return p, nil
}

// revision hashes what was loaded (module sources and the merged data), so
// that equal policies have equal revisions wherever they are.
func revision(dir string, res *loader.Result) (string, error) {
	h := sha256.New()
	names := make([]string, 0, len(res.Modules))
	for name := range res.Modules {
		names = append(names, name)
	}
	slices.Sort(names)
	for _, name := range names {
		m := res.Modules[name]
		rel, err := filepath.Rel(dir, name)
		if err != nil {
			rel = name
		}
		fmt.Fprintf(h, "module %d %d\n%s", len(rel), len(m.Raw), rel)
		h.Write(m.Raw)
	}
	data, err := json.Marshal(res.Documents) // map keys sorted: stable
	if err != nil {
		return "", fmt.Errorf("hash data: %w", err)
	}
	h.Write([]byte("data\n"))
	h.Write(data)
	return hex.EncodeToString(h.Sum(nil))[:12], nil
}

// analyze finds the input slots the compiled modules read, what they read
// of the client ID, and the first nondeterministic builtin they call.
func analyze(c *ast.Compiler) (uses slotSet, ids idUse, nondet string) {
	call := func(op ast.Ref) {
		if b, ok := ast.BuiltinMap[op.String()]; ok && b.Nondeterministic && nondet == "" {
			nondet = b.Name
		}
	}
	for _, m := range c.Modules {
		walkInput(m, func(ref ast.Ref) {
			s := slotsOfRef(ref)
			uses |= s
			if s.has(slotClientID) {
				ids = ids.union(idKeyOf(ref))
			}
		}, func() { uses, ids = allSlots, idUse{all: true} })
		ast.WalkTerms(m, func(t *ast.Term) bool {
			if v, ok := t.Value.(ast.Call); ok {
				if op, ok := v[0].Value.(ast.Ref); ok {
					call(op)
				}
			}
			return false
		})
		ast.WalkExprs(m, func(e *ast.Expr) bool {
			if e.IsCall() {
				call(e.Operator())
			}
			return false
		})
	}
	return uses, ids, nondet
}

// walkInput calls read with every reference into input in x (a module, a
// rule), and whole where x reads input itself.
func walkInput(x any, read func(ast.Ref), whole func()) {
	ast.WalkTerms(x, func(t *ast.Term) bool {
		switch v := t.Value.(type) {
		case ast.Ref:
			if v.HasPrefix(ast.InputRootRef) {
				read(v)
				return true // its head is input: not a read of all of it
			}
		case ast.Var:
			if v.Equal(ast.InputRootDocument.Value) {
				whole()
			}
		}
		return false
	})
}

// ruleSlots returns the input slots the rules at ref read, with every rule
// they depend on; ok is false when no rule is at ref.
func ruleSlots(c *ast.Compiler, ref ast.Ref) (uses slotSet, ok bool) {
	rules := append(c.GetRules(ref), c.GetRulesWithPrefix(ref)...)
	if len(rules) == 0 {
		return 0, false
	}
	eachDependency(c, rules, func(r *ast.Rule) bool {
		walkInput(r, func(ref ast.Ref) { uses |= slotsOfRef(ref) }, func() { uses = allSlots })
		return true
	})
	return uses, true
}

// eachDependency calls visit with each of rules and every rule they depend
// on, each once, until visit returns false.
func eachDependency(c *ast.Compiler, rules []*ast.Rule, visit func(*ast.Rule) bool) {
	seen := map[*ast.Rule]bool{}
	queue := slices.Clone(rules)
	for len(queue) > 0 {
		r := queue[0]
		queue = queue[1:]
		if seen[r] {
			continue
		}
		seen[r] = true
		if !visit(r) {
			return
		}
		for dep := range c.Graph.Dependencies(r) {
			if dr, ok := dep.(*ast.Rule); ok {
				queue = append(queue, dr)
			}
		}
	}
}

// idKeyOf returns what ref reads of the client ID: one named field, or all.
func idKeyOf(ref ast.Ref) idUse {
	if len(ref) >= 4 {
		if k, ok := ref[3].Value.(ast.String); ok {
			return idUse{keys: []string{string(k)}}
		}
	}
	return idUse{all: true}
}

// loadInspect evaluates data.imapwarden.inspect (command names) and
// data.imapwarden.inspect_effects (effect names, proxy/imapwire's table)
// once. They must not depend on input: they decide which commands are
// evaluated at all. A command is inspected when it is named, or when it
// may have one of the effects named (imapwire.Spec.MayEffect): a policy
// about expunges sees CLOSE and MOVE without listing them (ARCHITECTURE.md §10).
func (p *compiled) loadInspect(ctx context.Context) error {
	names, nameRules, namesUndef, err := p.loadStrings(ctx, inspectRef, "command name")
	if err != nil {
		return err
	}
	effects, effRules, effUndef, err := p.loadStrings(ctx, inspectEffectsRef, "effect name")
	if err != nil {
		return err
	}
	if (nameRules == nil && effRules == nil) || namesUndef || effUndef {
		// No inspect document, or one whose body failed: inspecting
		// nothing would let every command through unseen.
		p.inspectAll, p.inspectAllBy = true, []string{p.dir}
		return nil
	}
	if by := uninspectedPolicies(p.compiler, p.dir); len(by) > 0 {
		// The inspect set is per policy: another's would hide from
		// these the commands it does not name.
		p.inspectAll, p.inspectAllBy = true, by
		return nil
	}
	p.inspect = map[string]struct{}{}
	for _, n := range names {
		p.inspect[strings.ToUpper(n)] = struct{}{}
	}
	var mask uint32
	for _, n := range effects {
		e, ok := imapwire.EffectByName(n)
		if !ok {
			return &LoadError{Dir: p.dir, Problems: []Problem{{File: effRules[0].Location.File, Line: effRules[0].Location.Row,
				Message: fmt.Sprintf("inspect_effects holds %q, not an effect (%s)", n, strings.Join(imapwire.EffectNames(), ", "))}}}
		}
		mask |= 1 << e
	}
	p.inspectEffects = mask
	return nil
}

// checkData evaluates data.imapwarden.data_errors once per load: what the
// policies find wrong in their data, such as a key that would never match
// (routing.users keyed by a login not folded, ARCHITECTURE.md §17). Any
// refuses the load, so a reload keeps the policy in force and says why.
func (p *compiled) checkData(ctx context.Context) error {
	msgs, rules, undef, err := p.loadStrings(ctx, dataErrorsRef, "message")
	if err != nil || rules == nil {
		return err
	}
	if undef {
		msgs = []string{"data_errors is undefined"}
	}
	if len(msgs) == 0 {
		return nil
	}
	slices.Sort(msgs)
	le := &LoadError{Dir: p.dir}
	for _, m := range msgs {
		le.Problems = append(le.Problems, Problem{Message: m})
	}
	return le
}

// loadStrings evaluates a set (or array) of strings under data once. It
// returns the rules defining it (nil: none) and whether it was undefined.
func (p *compiled) loadStrings(ctx context.Context, ref ast.Ref, what string) (vals []string, rules []*ast.Rule, undef bool, err error) {
	rules = p.compiler.GetRules(ref)
	if len(rules) == 0 {
		return nil, nil, false, nil
	}
	if r := readsInput(p.compiler, rules); r != nil {
		return nil, rules, false, &LoadError{Dir: p.dir, Problems: []Problem{{
			File: r.Location.File, Line: r.Location.Row,
			Message: fmt.Sprintf("%v must not depend on input: it is evaluated once per load", ref),
		}}}
	}
	q, err := p.compiler.QueryCompiler().Compile(ast.NewBody(ast.Equality.Expr(ast.VarTerm(string(resultVar)), ast.NewTerm(ref))))
	if err != nil {
		return nil, rules, false, loadError(p.dir, err)
	}
	var v ast.Value
	err = topdown.NewQuery(q).WithCompiler(p.compiler).WithStore(p.store).WithTransaction(p.txn).
		WithStrictBuiltinErrors(true).
		Iter(ctx, func(qr topdown.QueryResult) error {
			v = qr[resultVar].Value
			return nil
		})
	if err != nil {
		return nil, rules, false, loadError(p.dir, err)
	}
	add := func(t *ast.Term) error {
		s, ok := t.Value.(ast.String)
		if !ok {
			return fmt.Errorf("%v holds %v, not a %s", ref, t, what)
		}
		vals = append(vals, string(s))
		return nil
	}
	switch v := v.(type) {
	case nil:
		return nil, rules, true, nil
	case ast.Set:
		err = v.Iter(add)
	case *ast.Array:
		err = v.Iter(add)
	default:
		err = fmt.Errorf("%v is %v, not a set of %ss", ref, ast.ValueName(v), what)
	}
	if err != nil {
		return nil, rules, false, &LoadError{Dir: p.dir, Problems: []Problem{{File: rules[0].Location.File, Line: rules[0].Location.Row, Message: err.Error()}}}
	}
	return vals, rules, false, nil
}

// readsInput returns a rule among rules, or among those they depend on,
// that reads input, or nil.
func readsInput(c *ast.Compiler, rules []*ast.Rule) (reader *ast.Rule) {
	eachDependency(c, rules, func(r *ast.Rule) bool {
		ast.WalkRefs(r, func(ref ast.Ref) bool {
			if ref.HasPrefix(ast.InputRootRef) {
				reader = r
			}
			return reader != nil
		})
		return reader == nil
	})
	return reader
}

// inspects reports whether the policy evaluates a command: it is named,
// or it has one of the effects inspected (effects, a bit per
// imapwire.Effect, as imapwire.Effects.Mask gives them).
func (p *compiled) inspects(name string, effects uint32) bool {
	if p.inspectAll || effects&p.inspectEffects != 0 {
		return true
	}
	_, ok := p.inspect[name]
	return ok
}

// eval evaluates data.imapwarden.decision for input, with the compiled
// plan when there is one. When the plan fails (a builtin error, a
// conflict, an undefined decision) topdown evaluates the input again:
// topdown's rule index skips bodies the plan enters, so only topdown can
// say whether that failure is the decision's (plan.go).
//
// memo, when not nil, holds the values of the policy's session rules and
// remembered calls for input's parts (inputPart).
func (p *compiled) eval(ctx context.Context, input *ast.Term, now time.Time, memo memos) (ast.Value, error) {
	if p.prog != nil {
		if v, err := p.prog.eval(ctx, input, memo); err == nil {
			return v, nil
		}
	}
	return p.evalTopdown(ctx, input, now)
}

// decide is eval and parseDecision for the engine: input is flat, in m's
// arena, and *inputTerm is its term, made at topdown's first need of it.
func (p *compiled) decide(ctx context.Context, m *machine, input val, inputTerm **ast.Term, now time.Time, memo memos) (verdict, error) {
	if p.prog != nil {
		v, err := p.prog.run(ctx, m, input, memo)
		if err == nil {
			if v.c != nil && v.c.term != nil {
				if d, ok := p.prog.verdicts[v.c]; ok {
					return d, nil
				}
			}
			return p.verdictOf(m, v)
		}
		if errors.Is(err, errEvalTimeout) {
			return verdict{}, err // topdown would take as long again
		}
	}
	if *inputTerm == nil {
		*inputTerm = toAST(input)
	}
	v, err := p.evalTopdownUntil(ctx, *inputTerm, now, m.deadline)
	if err != nil {
		return verdict{}, err
	}
	return parseDecision(v)
}

// errEvalTimeout is the error of a decision past its deadline
// (Options.EvalTimeout): it denies, as every evaluation error does.
var errEvalTimeout = errors.New("policy: evaluation timed out")

// evalTopdown evaluates data.imapwarden.decision for input with OPA's
// topdown interpreter.
func (p *compiled) evalTopdown(ctx context.Context, input *ast.Term, now time.Time) (ast.Value, error) {
	return p.evalTopdownUntil(ctx, input, now, time.Time{})
}

// evalTopdownUntil is evalTopdown stopped at deadline (none when zero).
func (p *compiled) evalTopdownUntil(ctx context.Context, input *ast.Term, now, deadline time.Time) (ast.Value, error) {
	var out ast.Value
	q := topdown.NewQuery(p.query).
		WithCompiler(p.compiler).
		WithStore(p.store).
		WithTransaction(p.txn).
		WithInput(input).
		WithTime(now).
		WithMetrics(noMetrics).
		WithStrictBuiltinErrors(true)
	if !deadline.IsZero() {
		q = q.WithCancel(deadlineCancel{deadline})
	}
	err := q.Iter(ctx, func(qr topdown.QueryResult) error {
		if t := qr[resultVar]; t != nil {
			out = t.Value
		}
		return nil
	})
	if err != nil {
		if !deadline.IsZero() && time.Now().After(deadline) {
			return nil, fmt.Errorf("%w: %w", errEvalTimeout, err)
		}
		return nil, err
	}
	if out == nil {
		return nil, errors.New("data.imapwarden.decision is undefined")
	}
	return out, nil
}

// deadlineCancel stops a topdown evaluation at a deadline: topdown asks it
// at each step.
type deadlineCancel struct{ at time.Time }

func (deadlineCancel) Cancel() {}

func (d deadlineCancel) Cancelled() bool { return time.Now().After(d.at) }
