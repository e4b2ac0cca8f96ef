//go:build race

package ratelimit

// raceEnabled: the race detector allocates on its own; allocation counts
// are checked without it.
const raceEnabled = true
