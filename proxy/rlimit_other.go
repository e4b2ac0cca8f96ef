//go:build !unix

package proxy

// openFileLimit is unknown here.
func openFileLimit() int { return 0 }
