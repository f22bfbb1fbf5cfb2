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

// OwedRetry reports whether l has a retry of what it owes scheduled, and,
// when run is set, runs it now instead of at its time (as its timer would:
// nothing while the subscription is lost, and another retry if it fails).
func OwedRetry(l *LocalTier, run bool) (pending bool) {
	o, t := &l.t.owed, l.t
	o.mu.Lock()
	tm := o.timer
	pending = tm != nil
	if run && pending && tm.Stop() {
		o.timer = nil
		o.mu.Unlock()
		o.wg.Done()
		if !t.bypass.Load() && o.owing.Load() && !o.settle(t) {
			o.schedule(t, owedRetry)
		}
		return pending
	}
	o.mu.Unlock()
	return pending
}
