package policy

import (
	"slices"

	"github.com/open-policy-agent/opa/v1/ast"
)

// refusedBuiltins may not be used by a policy: a decision runs on the
// session's goroutine before a command is forwarded, and must not wait on
// the network.
var refusedBuiltins = []string{"http.send", "net.lookup_ip_addr"}

// capabilities is OPA's builtin set without refusedBuiltins; a policy that
// calls one fails to compile with the file and line.
func capabilities() *ast.Capabilities {
	c := ast.CapabilitiesForThisVersion()
	c.Builtins = slices.DeleteFunc(slices.Clone(c.Builtins), func(b *ast.Builtin) bool {
		return slices.Contains(refusedBuiltins, b.Name)
	})
	return c
}
