package policy

import (
	"github.com/imapwarden/imapwarden/proxy"
	"github.com/imapwarden/imapwarden/proxy/imapwire"
)

// announcedLiteral returns the literal announced where the decision is
// asked, or nil. Its size belongs in input.command.literal_bytes: at an
// APPEND's decision point the message has only been announced, and a size
// limit must hold before "+" is sent (ARCHITECTURE.md §10).
func announcedLiteral(in *proxy.DecisionInput) *imapwire.Literal {
	if in == nil {
		return nil
	}
	return in.Literal
}
