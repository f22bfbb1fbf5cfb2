package memo

import "sync/atomic"

// Hooks for memo's own tests.

// WithLocalTier gives a function a local tier of its own, bounded to
// maxBytes, instead of the one shared by the process; LocalBytes reads
// what it counts.
func WithLocalTier(maxBytes int64) (Option, func() int64) {
	t := newLocalTier(maxBytes)
	return Option{"localTier", func(c *config) { c.local = t }}, t.s.Bytes
}

// FakeClock is a clock a test moves: Wall and Mono are what it returns.
type FakeClock struct{ wall, mono atomic.Int64 }

func NewFakeClock(wall int64) *FakeClock {
	c := &FakeClock{}
	c.wall.Store(wall)
	c.mono.Store(1)
	return c
}

func (c *FakeClock) Wall() int64 { return c.wall.Load() }
func (c *FakeClock) Mono() int64 { return c.mono.Load() }

// Advance moves both clocks by d nanoseconds, as time passing does.
func (c *FakeClock) Advance(d int64) { c.wall.Add(d); c.mono.Add(d) }

// StepWall moves the wall clock alone, as an NTP step or an operator does.
func (c *FakeClock) StepWall(d int64) { c.wall.Add(d) }

// WithClock makes a function read c instead of the system's clocks.
func WithClock(c *FakeClock) Option { return Option{"clock", func(cf *config) { cf.clock = c }} }
