package policy

import (
	"fmt"
	"strings"
	"sync"
	"testing"
)

// TestPolicyCounts: denials counted by name, exactly under concurrent
// adds; an empty name counts as unnamed, a long one and any beyond
// MaxPolicyNames as other, and seeded names show at 0.
func TestPolicyCounts(t *testing.T) {
	var c policyCounts
	c.seed([]string{"legal_hold", "acl"})
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Go(func() {
			for i := range 100 {
				c.add(g%2 == 1, "legal_hold")
				c.add(false, "")
				c.add(false, strings.Repeat("x", maxPolicyNameLen+1))
				c.add(false, fmt.Sprintf("p%d", i))
			}
		})
	}
	wg.Wait()
	enforced, shadow := c.snapshot()
	if len(enforced) != MaxPolicyNames || len(shadow) != MaxPolicyNames {
		t.Fatalf("%d and %d names, want %d", len(enforced), len(shadow), MaxPolicyNames)
	}
	// Seeded: legal_hold, acl, other; then unnamed and 60 of the p names.
	want := map[string]int64{"legal_hold": 200, "acl": 0, PolicyUnnamed: 400, "p0": 4, PolicyOther: 400 + 4*(100-(MaxPolicyNames-4))}
	for name, n := range want {
		if enforced[name] != n {
			t.Errorf("enforced[%q] = %d, want %d", name, enforced[name], n)
		}
	}
	if shadow["legal_hold"] != 200 || shadow["acl"] != 0 {
		t.Errorf("shadow %v", shadow)
	}
	var sum int64
	for _, n := range enforced {
		sum += n
	}
	if sum != 4*100*4-200 {
		t.Errorf("%d enforced denials counted, want %d", sum, 4*100*4-200)
	}
}
