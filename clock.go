package memo

import (
	"time"

	"github.com/gomemo/memo/internal/clocktest"
)

// The one clock rule. Freshness that crosses processes (the fresh-until an
// envelope carries) is wall-clock time, the only time processes share. A
// local copy's deadline is monotonic, taken from the monotonic clock and
// only ever compared with it. So a wall-clock step back never stops hits on
// local copies, and a step forward never extends an entry: a local copy
// made from a stored entry gets the entry's remaining time, measured once
// on the wall clock, as its monotonic lifetime.

// clock reads both clocks. Tests replace it with a clocktest.Clock.
type clock interface {
	// Wall returns the wall-clock time in Unix nanoseconds.
	Wall() int64
	// Mono returns a monotonic reading in nanoseconds since an arbitrary
	// origin, fixed for the process.
	Mono() int64
}

type systemClock struct{}

var monoBase = time.Now()

func (systemClock) Wall() int64 { return time.Now().UnixNano() }
func (systemClock) Mono() int64 { return monoNow() }

// monoNow is the system's monotonic clock; never 0, which means "no
// deadline".
func monoNow() int64 { return int64(time.Since(monoBase)) + 1 }

func unixTime(ns int64) time.Time {
	if ns == 0 {
		return time.Time{}
	}
	return time.Unix(0, ns)
}

func init() {
	clocktest.Option = func(c *clocktest.Clock) any {
		return Option{"clock", func(cf *config) { cf.clock = c }}
	}
}

// checkedAt is an Entry's CheckedAt: at, the wall time an entry that is
// fresh until freshUntil was judged at, or zero for one that never expires.
func checkedAt(freshUntil, at int64) time.Time {
	if freshUntil == 0 {
		return time.Time{}
	}
	return unixTime(at)
}
