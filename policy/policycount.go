package policy

import (
	"maps"
	"slices"
	"sync"
	"sync/atomic"

	"github.com/open-policy-agent/opa/v1/ast"
)

// Names in DeniesByPolicy for denials without a usable name.
const (
	// PolicyOther counts denials by names beyond MaxPolicyNames.
	PolicyOther = "other"
	// PolicyUnnamed counts denials whose deny has no "policy" string.
	PolicyUnnamed = "unnamed"
	// PolicyError counts commands denied because evaluation failed.
	PolicyError = "evaluation_error"
)

// MaxPolicyNames bounds the policy names counted apart: they come from
// Rego, which could compute them from input.
const MaxPolicyNames = 64

// maxPolicyNameLen bounds one name.
const maxPolicyNameLen = 64

// policyCounts counts denials by policy name, enforced and shadow. A
// denial by a name already known adds to its counters without a lock or a
// map write (one look-up in a map never modified once stored, as
// callMemo's): a decision's hot path, shared by every session.
type policyCounts struct {
	names atomic.Pointer[map[string]*policyCount] // never modified once stored
	mu    sync.Mutex                              // of writers of names
}

// policyCount is one name's counters.
type policyCount struct{ enforced, shadow atomic.Int64 }

// seed makes names visible at 0 before their first denial.
func (c *policyCounts) seed(names []string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, n := range append(names, PolicyOther) {
		c.counter(n)
	}
}

// counter is the counters of name, or of PolicyOther once MaxPolicyNames
// are known, made if new. Called with mu held.
func (c *policyCounts) counter(name string) *policyCount {
	if name == "" {
		name = PolicyUnnamed
	}
	old := c.known()
	if n, ok := old[name]; ok {
		return n
	}
	if len(name) > maxPolicyNameLen || len(old) >= MaxPolicyNames {
		name = PolicyOther
		if n, ok := old[name]; ok {
			return n
		}
	}
	m := make(map[string]*policyCount, len(old)+1)
	maps.Copy(m, old)
	n := &policyCount{}
	m[name] = n
	c.names.Store(&m)
	return n
}

// known is the names counted so far.
func (c *policyCounts) known() map[string]*policyCount {
	if m := c.names.Load(); m != nil {
		return *m
	}
	return nil
}

func (c *policyCounts) add(shadow bool, name string) {
	n := c.known()[name]
	if n == nil {
		c.mu.Lock()
		n = c.counter(name)
		c.mu.Unlock()
	}
	if shadow {
		n.shadow.Add(1)
	} else {
		n.enforced.Add(1)
	}
}

func (c *policyCounts) snapshot() (enforced, shadow map[string]int64) {
	m := c.known()
	enforced, shadow = make(map[string]int64, len(m)), make(map[string]int64, len(m))
	for k, n := range m {
		enforced[k], shadow[k] = n.enforced.Load(), n.shadow.Load()
	}
	return enforced, shadow
}

// policyName is the "policy" annotation of a denial.
func policyName(annotations map[string]any) string {
	s, _ := annotations["policy"].(string)
	return s
}

// denyNames finds the constant "policy" values the modules of package
// imapwarden write in objects ({"policy": "legal_hold", ...}), in deny
// rules and in the helpers that build denials alike.
func denyNames(c *ast.Compiler) []string {
	var names []string
	for _, m := range c.Modules {
		if !m.Package.Path.Equal(frameworkPackage) {
			continue
		}
		ast.WalkTerms(m, func(t *ast.Term) bool {
			if obj, ok := t.Value.(ast.Object); ok {
				if v := obj.Get(ast.StringTerm("policy")); v != nil {
					if s, ok := v.Value.(ast.String); ok && !slices.Contains(names, string(s)) {
						names = append(names, string(s))
					}
				}
			}
			return false
		})
	}
	return names
}
