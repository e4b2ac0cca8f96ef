package policy

import (
	"slices"
	"sync"

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

// policyCounts counts denials by policy name, enforced and shadow.
type policyCounts struct {
	mu       sync.Mutex
	enforced map[string]int64
	shadow   map[string]int64
}

// seed makes names visible at 0 before their first denial.
func (c *policyCounts) seed(names []string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.init()
	for _, n := range append(names, PolicyOther) {
		n = c.bound(n)
		if _, ok := c.enforced[n]; !ok {
			c.enforced[n] = 0
		}
		if _, ok := c.shadow[n]; !ok {
			c.shadow[n] = 0
		}
	}
}

func (c *policyCounts) init() {
	if c.enforced == nil {
		c.enforced, c.shadow = map[string]int64{}, map[string]int64{}
	}
}

// bound maps a name to itself or PolicyOther once MaxPolicyNames are
// known. Called with mu held.
func (c *policyCounts) bound(name string) string {
	if name == "" {
		name = PolicyUnnamed
	}
	if len(name) > maxPolicyNameLen {
		return PolicyOther
	}
	if _, ok := c.enforced[name]; ok || len(c.enforced) < MaxPolicyNames {
		return name
	}
	return PolicyOther
}

func (c *policyCounts) add(shadow bool, name string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.init()
	name = c.bound(name)
	if _, ok := c.enforced[name]; !ok {
		c.enforced[name], c.shadow[name] = 0, 0
	}
	if shadow {
		c.shadow[name]++
	} else {
		c.enforced[name]++
	}
}

func (c *policyCounts) snapshot() (enforced, shadow map[string]int64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	enforced, shadow = make(map[string]int64, len(c.enforced)), make(map[string]int64, len(c.shadow))
	for k, v := range c.enforced {
		enforced[k] = v
	}
	for k, v := range c.shadow {
		shadow[k] = v
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
