package memo

import (
	"time"

	"github.com/gomemo/memo/internal/clocktest"
)

// Hooks for memo's own tests.

// OwnLocalTier gives a function a local tier of its own, bounded to
// maxBytes, instead of the one shared by the process; the second result
// reads what it counts.
func OwnLocalTier(maxBytes int64) (Option, func() int64) {
	t := NewLocalTier(maxBytes, nil)
	return WithLocalTier(t), t.Bytes
}

// FakeClock is a clock a test moves (see internal/clocktest).
type FakeClock = clocktest.Clock

func NewFakeClock(wall time.Time) *FakeClock { return clocktest.New(wall) }

// WithClock makes a function read c instead of the system's clocks.
func WithClock(c *FakeClock) Option { return clocktest.Option(c).(Option) }

// SetLogInterval sets how often the default OnError logs one kind of
// fault, until the returned func restores it.
func SetLogInterval(d time.Duration) (restore func()) {
	old := logInterval
	logInterval = d
	return func() { logInterval = old }
}
