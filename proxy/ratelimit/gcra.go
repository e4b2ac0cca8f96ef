package ratelimit

import "math"

// gcra is a Rate prepared for the generic cell rate algorithm: a bucket is
// one number, its theoretical arrival time (TAT, unix ns). Charging n units
// moves TAT to max(TAT, now) + n·t; the charge conforms when the new TAT is
// at most tol ahead of now. A TAT in the past means a full bucket, so an
// entry whose TAT has passed can be forgotten: expiry is built in.
type gcra struct {
	on  bool
	t   float64 // ns per unit: Per/N
	tol int64   // ns: Burst·t
}

func newGCRA(r Rate) gcra {
	if r.N <= 0 || r.Per <= 0 {
		return gcra{}
	}
	t := float64(r.Per) / float64(r.N)
	return gcra{on: true, t: t, tol: satNs(float64(r.burst()) * t)}
}

// satNs converts to int64 nanoseconds, saturating far beyond any window
// (a 64 TiB APPEND at 1 ns per byte must not wrap around).
func satNs(f float64) int64 {
	const max = 1 << 62
	if f >= max || math.IsNaN(f) {
		return max
	}
	if f <= 0 {
		return 0
	}
	return int64(f)
}

func (g gcra) cost(n int64) int64 { return satNs(float64(n) * g.t) }

// take charges n units at now to a bucket at tat. When the bucket would be
// more than maxDelay over, the charge does not conform (ok false, tat
// unchanged) unless force, which records content already sent. wait is how
// long the caller must wait for the charge to conform (0 when it does now).
func (g gcra) take(tat, now, n, maxDelay int64, force bool) (newTAT, wait int64, ok bool) {
	base := max(tat, now)
	newTAT = base + g.cost(n)
	wait = newTAT - now - g.tol
	if wait > maxDelay && !force {
		return tat, wait, false
	}
	return newTAT, max(wait, 0), true
}

// over reports how far (ns) a bucket at tat is beyond its budget at now: a
// positive value is the wait until the next unit would conform.
func (g gcra) over(tat, now int64) int64 {
	return max(tat, now) - now - g.tol
}

// level reports the units charged and not yet refilled, the number a
// policy compares with the budget.
func (g gcra) level(tat, now int64) int64 {
	if !g.on || tat <= now || g.t <= 0 {
		return 0
	}
	return int64(math.Ceil(float64(tat-now) / g.t))
}
