//go:build !unix

package imapwire

import (
	"testing"
	"time"
)

// processCPU is not measured here: benchmarks report 0.
func processCPU(testing.TB) time.Duration { return 0 }
