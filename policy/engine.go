package policy

import (
	"github.com/imapwarden/imapwarden/internal/filemode"
	"github.com/imapwarden/imapwarden/proxy/imapwire"

	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/open-policy-agent/opa/v1/ast"
	"go.uber.org/zap"

	"github.com/imapwarden/imapwarden/proxy"
)

// PointRoute is the decision point of routing: after the auth decision,
// before the backend is chosen (see Engine.Route).
const PointRoute proxy.Point = "route"

// Annotation keys the engine adds to decisions.
const (
	// AnnotationRevision is the policy revision that decided.
	AnnotationRevision = "policy_revision"
	// AnnotationShadowDeny describes what a shadow policy would have
	// denied: {"dir", "reason", "code", "disconnect", "annotations"}.
	AnnotationShadowDeny = "shadow_deny"
	// AnnotationError marks a decision denied because evaluation failed.
	AnnotationError = "policy_error"
)

// Defaults of Options.
const (
	DefaultPollInterval = 2 * time.Second
	DefaultCacheSize    = 8192
	// DefaultEvalTimeout bounds one decision's evaluation: the shipped
	// policies take microseconds, and the session waits for it; far
	// above that, so that a starved host's scheduling never denies.
	DefaultEvalTimeout = 5 * time.Second
)

// Dir is one policy directory: Rego modules (package imapwarden, defining
// data.imapwarden.decision, or one policy of a tree that gets the framework
// from its parent or the binary: see loadPath) and JSON or YAML data
// documents, in subdirectories too. Files named *_test.rego are tests, not
// policy.
type Dir struct {
	Path string
	// Shadow evaluates the policy and records what it would deny (in the
	// log and the decision's annotations) without enforcing it, so that a
	// rule can be trialled on live traffic.
	Shadow bool
}

// Options configure an Engine.
type Options struct {
	// Dirs are the policies. Every enforced one must allow; shadow ones
	// never change a decision. At least one is required.
	Dirs []Dir
	// Groups maps a user name to its groups (input.session.groups).
	Groups map[string][]string
	// GroupsFile, when set, is read with LoadGroups and merged with
	// Groups; it is reloaded with the policies.
	GroupsFile string
	// Location is the time zone of input.now; nil means UTC.
	Location *time.Location
	// PollInterval is how often the files are checked for changes: 0
	// means DefaultPollInterval, negative never (Reload still works).
	PollInterval time.Duration
	// CacheSize bounds the decisions remembered per revision, and as
	// many parts of inputs (input.session with its session rules,
	// input.now, input.command.effects), each value at most maxEntry
	// and their keys keyBytes each on average (keyCache), and sessions'
	// parts of the key (sessionTable, CacheSize rounded up to a power of
	// two): 0 means DefaultCacheSize, negative disables them all.
	CacheSize int
	// EvalTimeout bounds the evaluation of one decision (every policy
	// asked): past it the decision is denied, UNAVAILABLE, and logged, so
	// that a slow policy cannot stall sessions. 0 means
	// DefaultEvalTimeout; New refuses a negative one.
	EvalTimeout time.Duration
	// OnEvaluation, when set, receives the time of each Rego evaluation
	// (cache hits and the fast path are not evaluations), for a metric.
	OnEvaluation func(time.Duration)
	Logger       *zap.Logger
	// Now replaces time.Now, for tests.
	Now func() time.Time
}

// Stats are the engine's counters since it was created.
type Stats struct {
	Revision string
	// Reloads counts policy swaps after the first load; ReloadFailures
	// the reloads that kept the old policy; LastError says why the last
	// one failed ("" after a success).
	Reloads, ReloadFailures int64
	LastError               string
	// LastSuccess is when the policies in force were loaded (or found
	// unchanged by a reload).
	LastSuccess time.Time
	// Evaluations counts Rego evaluations; CacheHits decisions reused;
	// Denies and ShadowDenies what was (or would have been) denied;
	// Errors the evaluations that failed and so denied.
	Evaluations, CacheHits, Denies, ShadowDenies, Errors int64
	// DeniesByPolicy and ShadowDeniesByPolicy split Denies and
	// ShadowDenies by the deny's "policy" name. Every name the loaded
	// policies write as a constant is present from the load on, at 0; at
	// most MaxPolicyNames names are kept, the rest count as "other".
	DeniesByPolicy, ShadowDeniesByPolicy map[string]int64
}

// Engine decides with OPA policies. It implements proxy.Decider and, with
// Router, routing; it is safe for concurrent use. Create it with New, stop
// it with Close.
type Engine struct {
	opts Options
	log  *zap.Logger
	loc  *time.Location
	now  func() time.Time

	state atomic.Pointer[state]

	reloadMu    sync.Mutex // one reload at a time
	fingerprint string     // of the files the current state was read from
	failedPrint string     // of the files that last failed, not retried
	lastError   atomic.Pointer[string]
	lastSuccess atomic.Int64 // unix nanoseconds

	reloads, reloadFailures                               atomic.Int64
	byPolicy                                              policyCounts
	evaluations, cacheHits, denies, shadowDenies, errorsN atomic.Int64

	stop chan struct{}
	done chan struct{}
}

var _ proxy.Decider = (*Engine)(nil)

// state is one loaded revision of every policy directory, swapped whole.
type state struct {
	revision string
	dirs     []*compiled // enforced ones first
	groups   map[string][]string
	// inspectAll or inspect: the commands some policy evaluates.
	inspectAll     bool
	inspect        map[string]struct{}
	inspectEffects uint32
	uses           slotSet
	ids            idUse
	cache          *keyCache[*outcome] // nil when a policy is nondeterministic
	// sessions are the sessions' parts of the key (sessionkey.go); nil
	// when docs is, or no entry could be exact.
	sessions *sessionTable
	// docs remembers parts of the input by the key of their slots (nil
	// when caching is off): input.session (a session's commands share
	// one, built at its first decision, with the values of the rules
	// that read nothing else), input.now (changing once a minute or a
	// second), input.command.effects.
	docs *keyCache[*inputPart]
	// allow answers commands no policy inspects. Its annotations map is
	// shared by every such decision: it must not be modified.
	allow proxy.Decision
	// allowed is the outcome of an evaluation every policy allowed with
	// nothing to add (verdict.size 0, no backend, no shadow denial).
	allowed *outcome
}

// New loads the policies and starts watching their files. It fails when a
// policy does not load: there is no older one to keep.
func New(opts Options) (*Engine, error) {
	if len(opts.Dirs) == 0 {
		return nil, errors.New("policy: no policy directory")
	}
	e := &Engine{opts: opts, log: opts.Logger, loc: opts.Location, now: opts.Now}
	if e.log == nil {
		e.log = zap.NewNop()
	}
	if e.loc == nil {
		e.loc = time.UTC
	}
	if e.now == nil {
		e.now = time.Now
	}
	if e.opts.CacheSize == 0 {
		e.opts.CacheSize = DefaultCacheSize
	}
	switch {
	case e.opts.EvalTimeout == 0:
		e.opts.EvalTimeout = DefaultEvalTimeout
	case e.opts.EvalTimeout < 0:
		return nil, fmt.Errorf("policy: evaluation timeout %v: must be positive", e.opts.EvalTimeout)
	}
	if err := e.Reload(); err != nil {
		return nil, err
	}
	if opts.PollInterval >= 0 {
		every := opts.PollInterval
		if every == 0 {
			every = DefaultPollInterval
		}
		e.stop, e.done = make(chan struct{}), make(chan struct{})
		go e.poll(every)
	}
	return e, nil
}

// Close stops watching the files. Decisions keep working.
func (e *Engine) Close() error {
	if e.stop != nil {
		close(e.stop)
		<-e.done
		e.stop = nil
	}
	return nil
}

// Revision identifies the policies in force: a hash of every directory's
// modules and data and of the groups.
func (e *Engine) Revision() string { return e.state.Load().revision }

// Groups returns the groups of user in the policies in force (Options.Groups
// and the groups file, as last read), by its folded name (proxy.FoldUser,
// ARCHITECTURE.md §17), as input.session.groups has them before a
// directory's. The slice is shared: the caller must not modify it.
func (e *Engine) Groups(user string) []string {
	return e.state.Load().groups[proxy.FoldUser(user)]
}

// Stats returns the counters.
func (e *Engine) Stats() Stats {
	s := Stats{
		Revision:       e.Revision(),
		Reloads:        e.reloads.Load(),
		ReloadFailures: e.reloadFailures.Load(),
		Evaluations:    e.evaluations.Load(),
		CacheHits:      e.cacheHits.Load(),
		Denies:         e.denies.Load(),
		ShadowDenies:   e.shadowDenies.Load(),
		Errors:         e.errorsN.Load(),
	}
	if p := e.lastError.Load(); p != nil {
		s.LastError = *p
	}
	s.DeniesByPolicy, s.ShadowDeniesByPolicy = e.byPolicy.snapshot()
	if ns := e.lastSuccess.Load(); ns != 0 {
		s.LastSuccess = time.Unix(0, ns)
	}
	return s
}

// Reload reads and compiles the policies and groups again, off the
// decision path, and swaps them in at once. On error the policies in force
// stay, and the error (a *LoadError for a policy) says where and why. For
// SIGHUP.
func (e *Engine) Reload() error {
	e.reloadMu.Lock()
	defer e.reloadMu.Unlock()
	return e.reload(e.filesFingerprint())
}

var errFilesChanging = errors.New("policy: files changed while loading; try again")

func (e *Engine) reload(print string) error {
	old := e.state.Load()
	st, err := e.load()
	if old != nil && e.filesFingerprint() != print {
		// The files changed while they were read (an editor still
		// writing): this result belongs to no fingerprint. Record nothing;
		// the next poll or Reload sees them whole.
		return errFilesChanging
	}
	if err != nil {
		e.failedPrint = print
		msg := err.Error()
		e.lastError.Store(&msg)
		if old == nil {
			return err
		}
		e.reloadFailures.Add(1)
		fields := []zap.Field{zap.String("revision", old.revision), zap.Error(err)}
		var le *LoadError
		if errors.As(err, &le) && len(le.Problems) > 0 {
			p := le.Problems[0]
			fields = append(fields, zap.String("dir", le.Dir), zap.String("file", p.File), zap.Int("line", p.Line))
		}
		e.log.Error("policy reload failed, keeping the policy in force", fields...)
		return err
	}
	e.fingerprint, e.failedPrint = print, ""
	e.lastError.Store(nil)
	e.lastSuccess.Store(time.Now().UnixNano())
	if old != nil && old.revision == st.revision {
		return nil // the files were touched, not changed: keep the warm cache
	}
	e.state.Store(st)
	inspect := "all"
	if !st.inspectAll {
		inspect = strings.Join(slices.Sorted(mapKeys(st.inspect)), " ")
		for e := range imapwire.EffectNames() {
			if st.inspectEffects&(1<<(e+1)) != 0 {
				inspect += " effect:" + imapwire.EffectNames()[e]
			}
		}
	}
	fields := []zap.Field{zap.String("revision", st.revision), zap.String("inspect", inspect), zap.Bool("cache", st.cache != nil)}
	var all []string
	for _, p := range st.dirs {
		all = append(all, p.inspectAllBy...)
	}
	if len(all) > 0 {
		// Policies without an inspect document of their own: every
		// command is evaluated for them (ARCHITECTURE.md §10).
		fields = append(fields, zap.Strings("inspect_all_by", all))
	}
	for _, p := range st.dirs {
		if p.nondet != "" {
			fields = append(fields, zap.String("uncacheable", p.dir+" calls "+p.nondet))
		}
		if p.prog == nil {
			// Evaluated by topdown, slower: say why (plan.go).
			fields = append(fields, zap.String("interpreted", p.dir+": "+p.planErr))
		}
	}
	if old != nil {
		e.reloads.Add(1)
		fields = append(fields, zap.String("previous", old.revision))
		e.log.Info("policy reloaded", fields...)
	} else {
		e.log.Info("policy loaded", fields...)
	}
	return nil
}

func mapKeys(m map[string]struct{}) func(func(string) bool) {
	return func(yield func(string) bool) {
		for k := range m {
			if !yield(k) {
				return
			}
		}
	}
}

// load builds a new state from the files.
func (e *Engine) load() (*state, error) {
	ctx := context.Background()
	st := &state{inspect: map[string]struct{}{}}
	h := sha256.New()
	var errs []error
	for _, d := range e.opts.Dirs {
		if err := trustedTree(d.Path); err != nil {
			errs = append(errs, err)
			continue
		}
		p, err := compileDir(ctx, d.Path, d.Shadow)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		st.dirs = append(st.dirs, p)
		e.byPolicy.seed(p.policyNames)
		fmt.Fprintf(h, "%s %t\n", p.revision, p.shadow)
	}
	if f := e.opts.GroupsFile; f != "" && len(errs) > 0 {
		// Said with the directories' problems, not after they are fixed.
		if err := filemode.Trusted(f); err != nil {
			errs = append(errs, fmt.Errorf("policy: groups file: %w", err))
		}
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	// Enforced policies decide first; shadow ones only annotate.
	slices.SortStableFunc(st.dirs, func(a, b *compiled) int {
		switch {
		case a.shadow == b.shadow:
			return 0
		case b.shadow:
			return -1
		}
		return 1
	})
	groups := e.opts.Groups
	var fileGroups map[string][]string
	if e.opts.GroupsFile != "" {
		var err error
		if fileGroups, err = LoadGroups(e.opts.GroupsFile); err != nil {
			return nil, err
		}
	}
	st.groups = normalizeGroups(groups, fileGroups)
	users := slices.Sorted(func(yield func(string) bool) {
		for u := range st.groups {
			if !yield(u) {
				return
			}
		}
	})
	for _, u := range users {
		fmt.Fprintf(h, "group %q %q\n", u, st.groups[u])
	}
	cacheable := e.opts.CacheSize > 0
	for _, p := range st.dirs {
		st.uses |= p.uses
		st.ids = st.ids.union(p.ids)
		if p.nondet != "" {
			cacheable = false
		}
		if p.inspectAll {
			st.inspectAll = true
		}
		st.inspectEffects |= p.inspectEffects
		for name := range p.inspect {
			st.inspect[name] = struct{}{}
		}
	}
	if cacheable {
		st.cache = newKeyCache[*outcome](e.opts.CacheSize)
	}
	if e.opts.CacheSize > 0 {
		st.docs = newKeyCache[*inputPart](e.opts.CacheSize)
		st.sessions = newSessionTable(st, e.opts.CacheSize)
	}
	st.revision = hex.EncodeToString(h.Sum(nil))[:12]
	st.allow = proxy.Decision{Allow: true, Annotations: map[string]any{AnnotationRevision: st.revision}}
	st.allowed = &outcome{decision: st.allow}
	return st, nil
}

// filesFingerprint summarizes names, sizes and times of the files a reload
// would read, to notice changes without reading them.
func (e *Engine) filesFingerprint() string {
	h := sha256.New()
	stat := func(path string, info fs.FileInfo) {
		fmt.Fprintf(h, "%s %d %d %v\n", path, info.Size(), info.ModTime().UnixNano(), info.Mode())
	}
	for _, d := range e.opts.Dirs {
		err := filepath.WalkDir(d.Path, func(path string, de fs.DirEntry, err error) error {
			if err != nil {
				fmt.Fprintf(h, "error %s\n", path)
				return nil
			}
			info, err := de.Info()
			if err != nil {
				return nil
			}
			if skipFile(path, info, 1) && path != d.Path {
				if de.IsDir() {
					return filepath.SkipDir
				}
				return nil
			}
			stat(path, info)
			return nil
		})
		if err != nil {
			fmt.Fprintf(h, "error %s\n", d.Path)
		}
		// A policy of a tree reads the framework from its parent.
		if info, err := os.Stat(frameworkPath(d.Path)); err == nil {
			stat(frameworkPath(d.Path), info)
		}
	}
	if f := e.opts.GroupsFile; f != "" {
		if info, err := os.Stat(f); err == nil {
			stat(f, info)
		} else {
			fmt.Fprintf(h, "error %s\n", f)
		}
	}
	return hex.EncodeToString(h.Sum(nil))
}

// poll reloads when the files change.
func (e *Engine) poll(every time.Duration) {
	defer close(e.done)
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-e.stop:
			return
		case <-t.C:
		}
		e.pollOnce()
	}
}

// pollOnce reloads when the files changed since the last load or failure.
func (e *Engine) pollOnce() {
	e.reloadMu.Lock()
	defer e.reloadMu.Unlock()
	// Files back as they were in force after a failure (a chmod undone)
	// are read again too, so that the failure stops being reported.
	if fp := e.filesFingerprint(); fp != e.failedPrint && (fp != e.fingerprint || e.failedPrint != "") {
		_ = e.reload(fp) // logged by reload
	}
}

// Decide implements proxy.Decider. A command no policy inspects is allowed
// at once, without evaluation or allocation.
func (e *Engine) Decide(ctx context.Context, in *proxy.DecisionInput) proxy.Decision {
	st := e.state.Load()
	if in.Point == proxy.PointCommand && in.Command != nil && !st.inspectAll &&
		in.Command.Effects.Mask()&st.inspectEffects == 0 {
		if _, ok := st.inspect[in.Command.Name]; !ok {
			return st.allow
		}
	}
	return e.decide(ctx, st, in).decision
}

// outcome is a decision with what the engine needs to know of it. Cached
// outcomes are shared: never modified.
type outcome struct {
	decision proxy.Decision
	backend  string // at the route point, the backend a policy named
	denied   bool   // by an enforced policy
	shadow   bool   // a shadow policy would have denied
	failed   bool   // evaluation failed: denied, not cached
	size     int    // of the verdicts' annotations and texts (verdict.size)
	st       *state // that made it, when it is kept with a sharedVerdict
	// policy and shadowPolicy name what denied, for the metrics.
	policy, shadowPolicy string
}

var keyPool = sync.Pool{New: func() any { b := make([]byte, 0, 256); return &b }}

// maxKey bounds cache keys; inputs with longer ones (long mailbox names)
// are evaluated every time.
const maxKey = 1024

// maxEntry bounds what one remembered value may hold (heapSize): a part of
// the input, a session rule's value, a decision's annotations. Parts of
// them have no key (the groups file's groups are keyed by the user alone),
// so maxKey alone does not bound them; a larger one is made again each
// time instead, so that CacheSize entries stay CacheSize small ones.
const maxEntry = 16 << 10

func (e *Engine) decide(ctx context.Context, st *state, in *proxy.DecisionInput) *outcome {
	c := newInputCtx(string(in.Point), in)
	if st.uses&(nowSlots|setOf(slotStartedAt)) != 0 || st.cache == nil {
		c.now = e.now().In(e.loc)
		c.zone = e.loc.String()
	}
	c.groups, c.ids = st.groups, st.ids
	if st.sessions != nil {
		if c.sess = st.sessions.entry(st, &c); c.sess != nil {
			c.keys[partSession] = c.sess.key
		}
	}
	var kp *[]byte
	var hash uint64
	if st.cache != nil {
		kp = keyPool.Get().(*[]byte)
		defer keyPool.Put(kp)
		key := c.appendDecisionKey((*kp)[:0], st.uses)
		*kp = key
		var o *outcome
		if o, hash = st.cache.lookup(key); o != nil {
			e.cacheHits.Add(1)
			e.count(o)
			return o
		}
	}
	o := e.evaluate(ctx, st, &c)
	e.count(o)
	if kp != nil && !o.failed && len(*kp) <= maxKey && o.size <= maxEntry {
		st.cache.putHashed(*kp, hash, o)
	}
	return o
}

// inputPart is a part of the input the engine remembers. input.session's
// also holds, per policy (by its index in state.dirs), the values of the
// rules that read nothing but the session and data (function.session):
// the same session key, the same values. input.session's and
// input.command.effects' hold the values of the functions of that scope
// by argument (callScopes), per policy likewise.
type inputPart struct {
	v     val // sealed
	rules []ruleMemo
	calls []*callMemo
	key   string // input.now's: part of the key of calls of scopeClock
	// bodies, input.session's, remember bodies of rules by the effects'
	// part (bodies.go), per policy; id, input.command.effects', names
	// this part there (0: not remembered, so never met again).
	bodies []*callMemo
	id     uint64
}

// partIDs numbers the remembered parts (inputPart.id).
var partIDs atomic.Uint64

// cachedDoc returns the part of the input made of the slots in uses (the
// session's, now's, or one slot's) from st's cache, built and remembered
// on a miss. Keys of different parts never collide: each begins with its
// first slot. The part's key is read from the decision's key (c.keys,
// appendDecisionKey) when the decision has one.
func cachedDoc(st *state, c *inputCtx, uses slotSet, which inputPartKind) *inputPart {
	key := c.keys[which]
	if key == nil {
		kp := keyPool.Get().(*[]byte)
		defer keyPool.Put(kp)
		key = c.appendSlots((*kp)[:0], uses)
		*kp = key
	}
	if part := st.docs.get(key); part != nil {
		return part
	}
	part := &inputPart{}
	switch {
	case uses&^sessionSlots == 0:
		part.v = c.object(uses, nil)
		part.rules = make([]ruleMemo, len(st.dirs))
		for i, p := range st.dirs {
			if p.prog != nil && p.prog.nsession > 0 {
				part.rules[i] = make(ruleMemo, p.prog.nsession)
			}
		}
		part.calls = newCallMemos(st, scopeSession, scopeClock)
		for i, p := range st.dirs {
			if p.prog != nil && p.prog.bodies {
				if part.bodies == nil {
					part.bodies = make([]*callMemo, len(st.dirs))
				}
				part.bodies[i] = &callMemo{}
			}
		}
	case uses&^nowSlots == 0:
		part.v = c.object(uses, nil)
		part.key = string(key)
	default:
		part.v = c.flatValue(firstSlot(uses), nil)
		if uses == setOf(slotEffects) {
			part.calls = newCallMemos(st, scopeEffects)
		}
	}
	part.v = seal(part.v)
	if len(key) <= maxKey && valSize(part.v, maxEntry) <= maxEntry {
		part.id = partIDs.Add(1)
		st.docs.put(key, part)
	}
	return part
}

func (e *Engine) count(o *outcome) {
	if o.denied {
		e.denies.Add(1)
		e.byPolicy.add(false, o.policy)
	}
	if o.shadow {
		e.shadowDenies.Add(1)
		e.byPolicy.add(true, o.shadowPolicy)
	}
}

// evaluate runs every policy that concerns the input.
func (e *Engine) evaluate(ctx context.Context, st *state, c *inputCtx) *outcome {
	var rules []ruleMemo
	var sessionCalls, effectsCalls, bodies []*callMemo
	var nowKey string
	var effectsID uint64
	if st.docs != nil {
		if st.uses&sessionSlots != 0 {
			part := c.sessionPart()
			if part == nil {
				part = cachedDoc(st, c, st.uses&sessionSlots, partSession)
			}
			c.session, rules, sessionCalls, bodies = part.v, part.rules, part.calls, part.bodies
		}
		if st.uses&nowSlots != 0 {
			part := cachedDoc(st, c, st.uses&nowSlots, partNow)
			c.nowDoc, nowKey = part.v, part.key
		}
		if st.uses.has(slotEffects) && c.cmd != nil {
			part := cachedDoc(st, c, setOf(slotEffects), partEffects)
			c.effects, effectsCalls, effectsID = part.v, part.calls, part.id
		}
	}
	// The input is built once, in the machine's arena, for every policy;
	// as a term only if topdown must evaluate it.
	m := getMachine()
	defer m.release()
	// One deadline for every policy asked: the session waits for all.
	m.deadline = time.Now().Add(e.opts.EvalTimeout)
	input := c.flat(st.uses, m)
	var inputTerm *ast.Term
	// deny and shadow point into verdicts, not at the loop's variable
	// (which would then be allocated at every evaluation).
	var verdicts [2]verdict
	var deny, shadow *verdict
	var shadowDir, backend string
	var annotations map[string]any
	size := 0 // of every verdict: more than the outcome keeps
	for i, p := range st.dirs {
		if c.cmd != nil && !p.inspects(c.cmd.Name, c.cmd.Effects.Mask()) {
			continue
		}
		if p.shadow && deny != nil {
			break // denied anyway: what a trial would say does not matter
		}
		e.evaluations.Add(1)
		var t0 time.Time
		if e.opts.OnEvaluation != nil {
			t0 = time.Now()
		}
		memo := memos{now: nowKey}
		if rules != nil {
			memo.rules = rules[i]
		}
		if sessionCalls != nil {
			memo.calls[scopeSession] = sessionCalls[i]
			memo.calls[scopeClock] = sessionCalls[i]
		}
		if effectsCalls != nil {
			memo.calls[scopeEffects] = effectsCalls[i]
		}
		if bodies != nil {
			memo.bodies, memo.effects = bodies[i], effectsID
		}
		d, err := p.decide(ctx, m, input, &inputTerm, c.now, memo)
		if e.opts.OnEvaluation != nil {
			e.opts.OnEvaluation(time.Since(t0))
		}
		if err == nil {
			size += d.size
		}
		if err != nil {
			if p.shadow {
				e.log.Warn("shadow policy evaluation failed", e.fields(p, c, err)...)
				continue
			}
			e.errorsN.Add(1)
			reason := "Policy evaluation failed"
			if errors.Is(err, errEvalTimeout) {
				reason = "Policy evaluation timed out"
				e.log.Error("policy evaluation timed out, denied", append(e.fields(p, c, err), zap.Duration("eval_timeout", e.opts.EvalTimeout))...)
			} else {
				e.log.Error("policy evaluation failed, denied", e.fields(p, c, err)...)
			}
			return &outcome{failed: true, denied: true, policy: PolicyError, decision: proxy.Decision{
				Code: "UNAVAILABLE", Reason: reason,
				Annotations: map[string]any{AnnotationRevision: st.revision, AnnotationError: true},
			}}
		}
		switch {
		case p.shadow && !d.allow && shadow == nil:
			verdicts[1] = d
			shadow, shadowDir = &verdicts[1], p.dir
			e.log.Info("shadow policy would deny", append(e.fields(p, c, nil),
				zap.String("reason", d.reason), zap.String("code", d.code), zap.Bool("disconnect", d.disconnect))...)
		case p.shadow:
		case !d.allow:
			verdicts[0] = d
			deny = &verdicts[0]
		default:
			if backend == "" {
				backend = d.backend
			}
			for k, v := range d.annotations {
				if annotations == nil {
					annotations = map[string]any{}
				}
				annotations[k] = v
			}
		}
	}
	// An outcome that depends on nothing but the state and one shared
	// verdict is made once (sharedVerdict.alone, state.allowed): a miss
	// then allocates nothing (keyCache keeps the key).
	var alone *sharedVerdict
	switch {
	case deny != nil && shadow == nil && deny.shared != nil:
		alone = deny.shared
		if o := alone.alone.Load(); o != nil && o.st == st && o.size == size {
			return o
		}
	case deny == nil && shadow == nil && annotations == nil && backend == "" && size == 0:
		return st.allowed
	}
	o := &outcome{shadow: shadow != nil, size: size, st: st}
	if shadow != nil {
		o.shadowPolicy = policyName(shadow.annotations)
	}
	switch {
	case deny != nil:
		o.denied = true
		o.policy = policyName(deny.annotations)
		annotations = deny.annotations
		o.decision = proxy.Decision{Reason: deny.reason, Code: deny.code, Disconnect: deny.disconnect}
	case shadow == nil && annotations == nil:
		o.decision, o.backend = st.allow, backend
		return o
	default:
		o.decision, o.backend = proxy.Decision{Allow: true}, backend
	}
	out := make(map[string]any, len(annotations)+2)
	for k, v := range annotations {
		out[k] = v
	}
	out[AnnotationRevision] = st.revision
	if shadow != nil {
		out[AnnotationShadowDeny] = map[string]any{
			"dir": shadowDir, "reason": shadow.reason, "code": shadow.code,
			"disconnect": shadow.disconnect, "annotations": shadow.annotations,
		}
	}
	o.decision.Annotations = out
	if alone != nil {
		alone.alone.Store(o)
	}
	return o
}

// fields describe a decision for the log: never a password, message
// content or mailbox name.
func (e *Engine) fields(p *compiled, c *inputCtx, err error) []zap.Field {
	f := []zap.Field{zap.String("dir", p.dir), zap.String("revision", p.revision),
		zap.String("point", c.point), zap.String("session", c.s.ID), zap.String("user", c.s.User)}
	if c.cmd != nil {
		f = append(f, zap.String("command", c.cmd.Name))
	}
	if err != nil {
		f = append(f, zap.Error(err))
	}
	return f
}

// heapSize estimates the bytes t holds on the heap, from the layout of
// OPA's values on a 64-bit machine; it stops counting once over limit, so
// that a huge term costs no more than a small one to measure. Shallow, it
// does not count the terms of collections t holds (valSize counts them).
func heapSize(t *ast.Term, shallow bool, limit int) int {
	n := 32 // the Term and its interface
	elem := func(e *ast.Term) int {
		if shallow {
			switch e.Value.(type) {
			case *ast.Array, ast.Object, ast.Set:
				return 0
			}
		}
		return heapSize(e, shallow, limit-n)
	}
	switch v := t.Value.(type) {
	case ast.String:
		n += 16
		if !shallow { // else the val's string, whose bytes it shares
			n += len(v)
		}
	case ast.Number:
		n += 16 + len(v)
	case ast.Boolean, ast.Null:
	case *ast.Array:
		n += 64
		v.Until(func(e *ast.Term) bool {
			n += 16 + elem(e)
			return n > limit
		})
	case ast.Object:
		n += 256
		v.Until(func(k, e *ast.Term) bool {
			n += 56 + elem(k)
			n += elem(e)
			return n > limit
		})
	case ast.Set:
		n += 256
		v.Until(func(e *ast.Term) bool {
			n += 40 + elem(e)
			return n > limit
		})
	default:
		n += 64
	}
	return n
}
