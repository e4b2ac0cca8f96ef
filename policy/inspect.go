package policy

import (
	"path/filepath"
	"slices"
	"strings"

	"github.com/open-policy-agent/opa/v1/ast"
)

// denyRef is the document the policies of a tree add their denials to.
var denyRef = ast.MustParseRef("data.imapwarden.deny")

// uninspectedPolicies returns the policies of the unit at root that add to
// deny, where it may hold at the command point, without an inspect or
// inspect_effects rule of their own. The inspect set is the union of every
// policy's (ARCHITECTURE.md §10): one that names nothing would be asked
// only about the commands the others inspect, so each of these makes the
// unit inspect every command (policies/README.md: "Without an inspect
// document every command is evaluated").
//
// A policy is a directory of the tree (its first level under root), or
// root's own files; a file outside root (the framework of a subdirectory
// loaded alone) is its own.
func uninspectedPolicies(c *ast.Compiler, root string) []string {
	declares := map[string]bool{}
	for _, ref := range []ast.Ref{inspectRef, inspectEffectsRef} {
		for _, r := range append(c.GetRules(ref), c.GetRulesWithPrefix(ref)...) {
			declares[policyOf(root, r)] = true
		}
	}
	var out []string
	for _, r := range append(c.GetRules(denyRef), c.GetRulesWithPrefix(denyRef)...) {
		name := policyOf(root, r)
		if declares[name] || slices.Contains(out, name) || !mayHoldAtCommand(r) {
			continue
		}
		out = append(out, name)
	}
	slices.Sort(out)
	return out
}

// policyOf names the policy a rule belongs to: the path of its directory
// under root, or its file's when it is outside root.
func policyOf(root string, r *ast.Rule) string {
	if r.Location == nil {
		return root
	}
	file := r.Location.File
	rel, err := filepath.Rel(root, file)
	if err != nil || rel == ".." || strings.HasPrefix(rel, ".."+string(filepath.Separator)) {
		return file
	}
	if i := strings.IndexRune(rel, filepath.Separator); i >= 0 {
		return filepath.Join(root, rel[:i])
	}
	return root
}

// mayHoldAtCommand reports whether a rule may hold at the command point:
// unless each of its bodies tests input.point against constants other than
// "command" (input.point == "auth", input.point in {"auth", "route"},
// input.point != "command"). Anything else may: the test fails closed.
func mayHoldAtCommand(r *ast.Rule) bool {
	for ; r != nil; r = r.Else {
		if !notAtCommand(r.Body) {
			return true
		}
	}
	return false
}

func notAtCommand(body ast.Body) bool {
	// The compiler reads input.point into a local before comparing it
	// (__local0__ = input.point; neq(__local0__, "command")): unified, the
	// local is input.point.
	point := map[ast.Var]bool{}
	isPoint := func(t *ast.Term) bool {
		switch v := t.Value.(type) {
		case ast.Ref:
			return v.Equal(pointRef)
		case ast.Var:
			return point[v]
		}
		return false
	}
	compares := func(e *ast.Expr) bool {
		return !e.Negated && len(e.With) == 0 && e.IsCall() && len(e.Operands()) == 2
	}
	for _, e := range body {
		if compares(e) && e.Operator().Equal(ast.Equality.Ref()) {
			for _, pair := range [][2]*ast.Term{{e.Operand(0), e.Operand(1)}, {e.Operand(1), e.Operand(0)}} {
				if v, ok := pair[0].Value.(ast.Var); ok && isPoint(pair[1]) {
					point[v] = true
				}
			}
		}
	}
	for _, e := range body {
		if !compares(e) {
			continue
		}
		a, b := e.Operand(0), e.Operand(1)
		op := e.Operator()
		switch {
		case op.Equal(ast.Equal.Ref()) || op.Equal(ast.Equality.Ref()):
			if isPoint(a) && otherPoints(b) || isPoint(b) && otherPoints(a) {
				return true
			}
		case op.Equal(ast.NotEqual.Ref()):
			if isPoint(a) && b.Equal(commandPoint) || isPoint(b) && a.Equal(commandPoint) {
				return true
			}
		case op.Equal(ast.Member.Ref()):
			if isPoint(a) && otherPoints(b) {
				return true
			}
		}
	}
	return false
}

var (
	pointRef     = ast.MustParseRef("input.point")
	commandPoint = ast.StringTerm("command")
)

// otherPoints reports whether t is a string, or a set or array of strings,
// none of them "command".
func otherPoints(t *ast.Term) bool {
	ok := true
	each := func(t *ast.Term) {
		if _, s := t.Value.(ast.String); !s || t.Equal(commandPoint) {
			ok = false
		}
	}
	switch v := t.Value.(type) {
	case ast.String:
		each(t)
	case ast.Set:
		v.Foreach(each)
	case *ast.Array:
		v.Foreach(each)
	default:
		return false
	}
	return ok
}
