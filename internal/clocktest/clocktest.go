// Package clocktest gives memo's tests, in any package of the module, a
// clock they move by hand: memo reads it for every freshness decision
// (fresh-until, stale windows, backoffs) in place of the system's clocks.
package clocktest

import (
	"sync/atomic"
	"time"
)

// Clock is a wall clock and a monotonic clock that move only when a test
// says so. It is safe for concurrent use.
type Clock struct{ wall, mono atomic.Int64 }

// New returns a Clock whose wall clock reads wall.
func New(wall time.Time) *Clock {
	c := &Clock{}
	c.wall.Store(wall.UnixNano())
	c.mono.Store(1)
	return c
}

// Wall returns the wall-clock time in Unix nanoseconds.
func (c *Clock) Wall() int64 { return c.wall.Load() }

// Mono returns the monotonic reading in nanoseconds (never 0).
func (c *Clock) Mono() int64 { return c.mono.Load() }

// Now returns the wall-clock time.
func (c *Clock) Now() time.Time { return time.Unix(0, c.wall.Load()) }

// Advance moves both clocks by d, as time passing does.
func (c *Clock) Advance(d time.Duration) { c.wall.Add(int64(d)); c.mono.Add(int64(d)) }

// StepWall moves the wall clock alone, as an NTP step or an operator does.
func (c *Clock) StepWall(d time.Duration) { c.wall.Add(int64(d)) }

// Option returns the memo.Option (as an any: this package cannot name
// memo's types) that makes a function read c. memo sets it at init.
var Option func(c *Clock) any

// MemoOption is Option for callers that know memo: it panics when memo
// was not linked in.
func MemoOption(c *Clock) any {
	if Option == nil {
		panic("clocktest: memo is not linked in")
	}
	return Option(c)
}
