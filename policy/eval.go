package policy

import (
	"github.com/imapwarden/imapwarden/proxy/imapwire"

	"bytes"
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/open-policy-agent/opa/v1/ast"
)

// EvalResult is one evaluation of a policy for a given input, as
// "imapwarden policy eval" prints it.
type EvalResult struct {
	Revision string `json:"revision"`
	// Inspected is false for a command the policy does not inspect: the
	// engine allows it without evaluating, whatever Decision says.
	Inspected bool `json:"inspected"`
	// Decision is data.imapwarden.decision as the policy made it.
	Decision any `json:"decision,omitempty"`
	// Error says why the engine would fail closed (deny) on this input.
	Error string `json:"error,omitempty"`
}

// EvalInput evaluates the policy in dir for input, a JSON document shaped
// like the engine's input (see policies/README.md). It is for trying a
// policy by hand: the engine builds its input itself.
func EvalInput(ctx context.Context, dir string, input []byte) (*EvalResult, error) {
	v, err := ast.ValueFromReader(bytes.NewReader(input))
	if err != nil {
		return nil, fmt.Errorf("policy: input: %w", err)
	}
	obj, ok := v.(ast.Object)
	if !ok {
		return nil, fmt.Errorf("policy: input is %s, not an object", ast.ValueName(v))
	}
	p, err := compileDir(ctx, dir, false)
	if err != nil {
		return nil, err
	}
	res := &EvalResult{Revision: p.revision, Inspected: true}
	if pt, ok := member(obj, docPoint).(ast.String); ok && pt == "command" {
		if cmd, ok := member(obj, docCommand).(ast.Object); ok {
			if name, ok := member(cmd, "name").(ast.String); ok {
				res.Inspected = p.inspects(strings.ToUpper(string(name)), effectsMask(member(cmd, "effects")))
			}
		}
	}
	d, err := p.eval(ctx, ast.NewTerm(obj), time.Now(), memos{})
	if err == nil {
		res.Decision, err = ast.JSON(d)
		if err == nil {
			_, err = parseDecision(d)
		}
	}
	if err != nil {
		res.Error = err.Error()
	}
	return res, nil
}

// member returns obj[key], or nil.
func member(obj ast.Object, key string) ast.Value {
	if t := obj.Get(ast.StringTerm(key)); t != nil {
		return t.Value
	}
	return nil
}

// effectsMask reads the effect kinds of an input's command.effects.
func effectsMask(v ast.Value) uint32 {
	arr, ok := v.(*ast.Array)
	if !ok {
		return 0
	}
	var m uint32
	arr.Foreach(func(t *ast.Term) {
		if o, ok := t.Value.(ast.Object); ok {
			if k, ok := member(o, "kind").(ast.String); ok {
				if e, ok := imapwire.EffectByName(string(k)); ok {
					m |= 1 << e
				}
			}
		}
	})
	return m
}
