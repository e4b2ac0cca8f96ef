// Package policy is imapwarden's policy engine: OPA/Rego decisions on
// connect, login, routing and every command (ARCHITECTURE.md §10). policies/README.md
// is the contract policies are written against; Engine implements
// proxy.Decider, and Router routes by policy.
//
// Implementation notes — invariants a reader must keep:
//
//   - Fail closed: an evaluation error, an undefined or malformed decision
//     denies (UNAVAILABLE) and is logged with its cause; such a decision is
//     never cached. A shadow policy never denies, not even when it fails.
//   - Each policy directory is compiled once per load (loader, compiler, an
//     in-memory store holding AST values, one read transaction held for the
//     policy's life) and swapped in whole, with every other directory and
//     the groups, through one atomic pointer. A load that fails keeps the
//     state in force; decisions in flight finish on the state they began
//     with.
//   - The input is built by hand (input.go), never through JSON, and only
//     in the parts the loaded policies read: the compiled modules are
//     searched for references into input (analyze). It is built once per
//     decision as the interpreter's flat values (flat.go), in the arena of
//     the machine that decides, and converted to ast.Value only when
//     topdown must evaluate it.
//   - Decisions are cached by a key made of exactly those parts. That is
//     sound because, within one state, an evaluation depends on nothing
//     else: the store is never written, groups are a function of the user,
//     and a policy calling a nondeterministic builtin (time.now_ns, ...)
//     turns the cache off. Every variable-length part of the key is
//     length-prefixed, so two inputs never share a key. Parts of the
//     input (input.session, input.now, input.command.effects) are
//     remembered the same way, by the key of their own slots (read from
//     the decision's key, which holds them), so a miss builds little more
//     than the rest of the command's part. With
//     input.session go the values of the rules that read nothing of the
//     input but the session (sessionRules): a partial evaluation per
//     session, which the plan fills at the session's first decision.
//     Likewise the values of the functions that read nothing of the input
//     but the session, the session and input.now, or input.command.effects
//     (callScopes), are remembered with that part by their arguments (and
//     input.now's key), keyed exactly (appendValKey: 1 and 1.0 apart), and
//     only when no builtin failed. Each plan is kept in one copy per
//     decision point too, input.point a constant there (specialize); in
//     it, a run of a set rule's bodies (deny's) that reads nothing of the
//     input but the session and the effects is remembered with the
//     session by the effects' part: what it adds to the set (bodies.go).
//     Only where skipping those bodies changes nothing else: none reads a
//     local it did not write, and no later body one they leave.
//   - The fast path (a command no policy inspects) is a map lookup
//     returning a shared Decision: no evaluation, no allocation. Shared
//     Decisions and cached ones are never modified, and neither may a
//     caller modify their Annotations.
//   - Each policy is also planned at load (plan.go) and decided by a small
//     interpreter of the plan (machine.go) over flat values: strings and
//     integers inline, collections as sorted slices from a per-decision
//     arena, the builtins of the shipped policies written for them
//     (natives), the decision read without conversion (parseVerdict), or
//     once when evaluations share it (sharedVerdict, with the outcome it
//     decides alone). An uncached decision allocates only what it keeps
//     (TestUncachedDecisionAllocates): the caches copy keys into bytes
//     they keep (keyCache), and a decision value the plan makes again is
//     read once, by its exact key (verdictOf), its outcome with it, so a
//     warm miss allocates nothing. The interpreter never has the last
//     word on a failure: when the plan errs, topdown evaluates the same
//     input; a native unsure of its arguments calls topdown's builtin; and
//     a policy it cannot run (a builtin outside planBuiltins, with,
//     nondeterminism) is topdown's alone. TestPlanMatchesTopdown,
//     TestEngineMatchesTopdown and TestNativesMatchTopdown keep the two
//     equal.
//   - Topdown is used directly rather than through the rego package: it
//     saves converting results to Go values and a store transaction per
//     decision.
//   - Nothing the engine logs or puts in the input carries a password,
//     search text, message content or argument content (args is a summary
//     of kinds and sizes).
package policy
