package deadline

import (
	"context"
	"errors"
	"math/rand/v2"
	"runtime"
	"slices"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"
)

// The shared timer is a runtime timer, not a goroutine, and its callback
// exits at once: nothing of this package may be left running.
func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// lateSlack bounds how late Done may close after the deadline, beyond what
// a context.WithTimeout made at the same moment shows: Granularity plus
// room for a loaded machine. Comparing with context.WithTimeout keeps the
// tests meaningful when other processes starve this one (then both are
// late); the measured lateness is logged.
const lateSlack = 5 * time.Millisecond

func isDone(c context.Context) bool {
	select {
	case <-c.Done():
		return true
	default:
		return false
	}
}

// waitDone waits for c.Done at most max and reports how long it took.
func waitDone(t *testing.T, c context.Context, max time.Duration) time.Duration {
	t.Helper()
	start := time.Now()
	select {
	case <-c.Done():
		return time.Since(start)
	case <-time.After(max):
		t.Fatalf("Done not closed after %v", max)
		return 0
	}
}

func TestDoneClosesAtDeadline(t *testing.T) {
	for _, d := range []time.Duration{2 * time.Millisecond, 10 * time.Millisecond, 50 * time.Millisecond, 100 * time.Millisecond} {
		// Up to 5 attempts: one in which this package's lateness is within
		// lateSlack of the standard library's passes.
		for attempt := 1; ; attempt++ {
			start := time.Now()
			c := New(context.Background(), d)
			std, cancel := context.WithTimeout(context.Background(), d)
			if dl, ok := c.Deadline(); !ok || dl.Sub(start) < d || dl.Sub(start) > d+time.Millisecond {
				t.Errorf("%v: Deadline() = %v (%v after start), %v", d, dl, dl.Sub(start), ok)
			}
			if err := c.Err(); err != nil && time.Since(start) < d {
				t.Fatalf("%v: Err() = %v before the deadline", d, err)
			}
			var late, stdLate time.Duration
			var wg sync.WaitGroup
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-std.Done()
				stdLate = time.Since(start) - d
			}()
			waitDone(t, c, d+5*time.Second)
			late = time.Since(start) - d
			wg.Wait()
			cancel()
			if late < 0 {
				t.Errorf("%v: Done closed %v before the deadline", d, -late)
			}
			if err := c.Err(); err != context.DeadlineExceeded {
				t.Errorf("%v: Err() = %v, want DeadlineExceeded", d, err)
			}
			c.Release()
			if err := c.Err(); err != context.DeadlineExceeded {
				t.Errorf("%v: Err() after Release = %v, want DeadlineExceeded (the first error sticks)", d, err)
			}
			t.Logf("timeout %v: Done closed %v after the deadline (context.WithTimeout: %v)", d, late, stdLate)
			if late <= stdLate+lateSlack {
				break
			}
			if attempt == 5 {
				t.Errorf("%v: Done closed %v after the deadline, context.WithTimeout's %v", d, late, stdLate)
				break
			}
		}
	}
	if n := pending(); n != 0 {
		t.Errorf("%d contexts still pending", n)
	}
}

// Err reports the deadline by the clock, before the shared timer fires,
// and closes Done as it does so.
func TestErrByClock(t *testing.T) {
	pauseTimer()
	defer resumeTimer()
	for attempt := 0; ; attempt++ {
		c := New(context.Background(), time.Millisecond)
		dl, _ := c.Deadline()
		for time.Now().Before(dl) {
		}
		if isDone(c) {
			// A callback already under way when the timer was paused.
			c.Release()
			if attempt == 10 {
				t.Fatal("the paused timer keeps firing")
			}
			continue
		}
		if err := c.Err(); err != context.DeadlineExceeded {
			t.Fatalf("Err() past the deadline = %v, want DeadlineExceeded", err)
		}
		if !isDone(c) {
			t.Fatal("Err() reported the deadline but Done is open")
		}
		if n := pending(); n != 0 {
			t.Fatalf("%d pending after Err ended the context", n)
		}
		c.Release()
		if err := c.Err(); err != context.DeadlineExceeded {
			t.Fatalf("Err() after Release = %v", err)
		}
		return
	}
}

func TestRelease(t *testing.T) {
	c := New(context.Background(), time.Hour)
	if isDone(c) || c.Err() != nil {
		t.Fatal("a fresh context has ended")
	}
	if n := pending(); n != 1 {
		t.Fatalf("pending = %d, want 1", n)
	}
	ch := c.Done()
	c.Release()
	select {
	case <-ch:
	default:
		t.Fatal("Release did not close the Done channel handed out before")
	}
	if err := c.Err(); err != context.Canceled {
		t.Fatalf("Err() after Release = %v, want Canceled", err)
	}
	if n := pending(); n != 0 {
		t.Fatalf("pending after Release = %d", n)
	}
	c.Release() // twice is harmless

	// Done asked for only after Release.
	c2, cancel := WithTimeout(context.Background(), time.Hour)
	cancel()
	if !isDone(c2) || c2.Err() != context.Canceled {
		t.Fatalf("after cancel: done %v, Err %v", isDone(c2), c2.Err())
	}
}

func TestPastDeadline(t *testing.T) {
	for _, d := range []time.Duration{0, -time.Second} {
		c := New(context.Background(), d)
		if !isDone(c) || c.Err() != context.DeadlineExceeded {
			t.Errorf("New(bg, %v): done %v, Err %v", d, isDone(c), c.Err())
		}
		c.Release()
	}
	c, cancel := WithDeadline(context.Background(), time.Now().Add(-time.Minute))
	defer cancel()
	if !isDone(c) || c.Err() != context.DeadlineExceeded {
		t.Errorf("WithDeadline(past): done %v, Err %v", isDone(c), c.Err())
	}
	if n := pending(); n != 0 {
		t.Errorf("pending = %d", n)
	}
}

type key struct{}

func TestParent(t *testing.T) {
	t.Run("value", func(t *testing.T) {
		p := context.WithValue(context.Background(), key{}, "v")
		c := New(p, time.Hour)
		defer c.Release()
		if v := c.Value(key{}); v != "v" {
			t.Errorf("Value = %v", v)
		}
	})
	t.Run("cancel propagates", func(t *testing.T) {
		p, cancel := context.WithCancelCause(context.Background())
		c := New(p, time.Hour)
		defer c.Release()
		cause := errors.New("cause")
		cancel(cause)
		// Err sees the parent at once, even before its AfterFunc has run.
		if err := c.Err(); err != context.Canceled {
			t.Errorf("Err() = %v, want the parent's Canceled", err)
		}
		waitDone(t, c, time.Second)
		if got := context.Cause(c); got != cause {
			t.Errorf("Cause = %v, want the parent's cause", got)
		}
		if n := pending(); n != 0 {
			t.Errorf("pending = %d", n)
		}
	})
	t.Run("cancel propagates to Done", func(t *testing.T) {
		p, cancel := context.WithCancel(context.Background())
		c := New(p, time.Hour)
		defer c.Release()
		done := c.Done()
		cancel()
		select {
		case <-done:
		case <-time.After(time.Second):
			t.Fatal("Done did not close after the parent was canceled")
		}
		if err := c.Err(); err != context.Canceled {
			t.Errorf("Err() = %v", err)
		}
	})
	t.Run("parent already canceled", func(t *testing.T) {
		p, cancel := context.WithCancel(context.Background())
		cancel()
		c := New(p, time.Hour)
		defer c.Release()
		if !isDone(c) || c.Err() != context.Canceled {
			t.Errorf("done %v, Err %v", isDone(c), c.Err())
		}
		if n := pending(); n != 0 {
			t.Errorf("pending = %d", n)
		}
	})
	t.Run("earlier parent deadline", func(t *testing.T) {
		p, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
		defer cancel()
		pd, _ := p.Deadline()
		c := New(p, time.Hour)
		defer c.Release()
		if d, _ := c.Deadline(); !d.Equal(pd) {
			t.Errorf("Deadline = %v, want the parent's %v", d, pd)
		}
		waitDone(t, c, time.Second)
		if err := c.Err(); err != context.DeadlineExceeded {
			t.Errorf("Err() = %v", err)
		}
	})
	t.Run("later parent deadline", func(t *testing.T) {
		p, cancel := context.WithTimeout(context.Background(), time.Hour)
		defer cancel()
		start := time.Now()
		c := New(p, 10*time.Millisecond)
		defer c.Release()
		if d, _ := c.Deadline(); d.Sub(start) > 11*time.Millisecond {
			t.Errorf("Deadline %v after start, want 10ms", d.Sub(start))
		}
		waitDone(t, c, time.Second)
		if err := c.Err(); err != context.DeadlineExceeded {
			t.Errorf("Err() = %v", err)
		}
		if p.Err() != nil {
			t.Error("the child ended the parent")
		}
	})
	t.Run("release unregisters from the parent", func(t *testing.T) {
		p, cancel := context.WithCancel(context.Background())
		c := New(p, time.Hour)
		c.Release()
		cancel()
		time.Sleep(10 * time.Millisecond)
		if err := c.Err(); err != context.Canceled {
			t.Errorf("Err() = %v", err)
		}
	})
	t.Run("deadline-only parent", func(t *testing.T) {
		// A parent with a deadline but a nil Done: the shared timer still
		// closes Done at that deadline.
		p := &deadlineOnly{Context: context.Background(), d: time.Now().Add(10 * time.Millisecond)}
		c := New(p, time.Hour)
		defer c.Release()
		waitDone(t, c, time.Second)
		if err := c.Err(); err != context.DeadlineExceeded {
			t.Errorf("Err() = %v", err)
		}
	})
}

type deadlineOnly struct {
	context.Context
	d time.Time
}

func (c *deadlineOnly) Deadline() (time.Time, bool) { return c.d, true }

// Contexts derived from a Context attach through its AfterFunc method:
// no goroutine per derived context, and they end with it.
func TestDerived(t *testing.T) {
	c := New(context.Background(), time.Hour)
	before := runtime.NumGoroutine()
	var derived []context.Context
	var cancels []context.CancelFunc
	for range 100 {
		d, cancel := context.WithCancel(c)
		derived = append(derived, d)
		cancels = append(cancels, cancel)
	}
	if n := runtime.NumGoroutine(); n > before+5 {
		t.Errorf("%d goroutines for 100 derived contexts", n-before)
	}
	// A derived context canceled on its own leaves c's list.
	cancels[0]()
	c.mu.Lock()
	n := len(*c.afters)
	c.mu.Unlock()
	if n != 99 {
		t.Errorf("%d AfterFuncs registered, want 99", n)
	}

	ran := make(chan struct{})
	stop := context.AfterFunc(c, func() { close(ran) })
	stopped := context.AfterFunc(c, func() { t.Error("stopped AfterFunc ran") })
	if !stopped() {
		t.Error("stop reported false before the context ended")
	}
	c.Release()
	for _, d := range derived {
		waitDone(t, d, time.Second)
		if d.Err() != context.Canceled {
			t.Errorf("derived Err = %v", d.Err())
		}
	}
	<-ran
	if stop() {
		t.Error("stop reported true after the func ran")
	}
	for _, cancel := range cancels {
		cancel()
	}

	// After the end, AfterFunc runs f at once.
	ran2 := make(chan struct{})
	context.AfterFunc(c, func() { close(ran2) })
	select {
	case <-ran2:
	case <-time.After(time.Second):
		t.Error("AfterFunc on an ended context did not run")
	}

	// A derived context of an expiring one ends with DeadlineExceeded.
	e := New(context.Background(), 5*time.Millisecond)
	defer e.Release()
	de, cancel := context.WithCancel(e)
	defer cancel()
	waitDone(t, de, time.Second)
	if de.Err() != context.DeadlineExceeded {
		t.Errorf("derived Err = %v", de.Err())
	}
}

// Many contexts with different deadlines, some released early, on many
// goroutines at once.
func TestManyConcurrent(t *testing.T) {
	// Up to 3 rounds: expiry is one goroutine closing a batch of channels,
	// which a starved process delays more than the standard library's
	// timer per context; a round in which the lateness stays within bounds
	// passes.
	for round := 1; ; round++ {
		p50, s50 := manyConcurrent(t)
		if t.Failed() || p50 <= 2*s50+lateSlack {
			return
		}
		if round == 3 {
			t.Errorf("lateness p50 %v, context.WithTimeout's %v", p50, s50)
			return
		}
	}
}

func manyConcurrent(t *testing.T) (p50, s50 time.Duration) {
	const n = 2000
	var (
		wg          sync.WaitGroup
		mu          sync.Mutex
		lateness    []time.Duration
		stdLateness []time.Duration
	)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			d := time.Duration(1+rand.IntN(80)) * time.Millisecond
			start := time.Now()
			c := New(context.Background(), d)
			defer c.Release()
			if i%3 != 0 {
				// The control: the standard library's lateness under the
				// same load, waited for on a goroutine of its own.
				std, cancel := context.WithTimeout(context.Background(), d)
				wg.Add(1)
				go func() {
					defer wg.Done()
					defer cancel()
					<-std.Done()
					mu.Lock()
					stdLateness = append(stdLateness, time.Since(start)-d)
					mu.Unlock()
				}()
			}
			if i%3 == 0 {
				// Released early, by another goroutine, while this one waits.
				go func() {
					time.Sleep(d / 2)
					c.Release()
				}()
				select {
				case <-c.Done():
				case <-time.After(d + time.Second):
					t.Error("Done not closed after Release")
					return
				}
				if err := c.Err(); err != context.Canceled && err != context.DeadlineExceeded {
					t.Errorf("released early: Err = %v", err)
				}
				return
			}
			select {
			case <-c.Done():
			case <-time.After(d + time.Second):
				t.Errorf("Done not closed %v after a %v deadline", time.Second, d)
				return
			}
			el := time.Since(start)
			if el < d {
				t.Errorf("closed after %v, before the %v deadline", el, d)
			}
			if err := c.Err(); err != context.DeadlineExceeded {
				t.Errorf("Err = %v", err)
			}
			mu.Lock()
			lateness = append(lateness, el-d)
			mu.Unlock()
		}()
	}
	wg.Wait()
	if len(lateness) == 0 || len(stdLateness) == 0 {
		t.Fatal("no lateness measured")
	}
	p50, p99, max := quantiles(lateness)
	s50, s99, smax := quantiles(stdLateness)
	t.Logf("%d expiring contexts: Done closed after the deadline by p50 %v, p99 %v, max %v (context.WithTimeout, %d: p50 %v, p99 %v, max %v)",
		len(lateness), p50, p99, max, len(stdLateness), s50, s99, smax)
	if n := pending(); n != 0 {
		t.Errorf("%d contexts still pending", n)
	}
	// On a quiet machine p50 is about 1 ms and context.WithTimeout's 0.1
	// ms; when other processes starve this one, both grow.
	return p50, s50
}

func quantiles(xs []time.Duration) (p50, p99, max time.Duration) {
	slices.Sort(xs)
	return xs[len(xs)/2], xs[len(xs)*99/100], xs[len(xs)-1]
}

// Every method used from many goroutines at once on one context (for
// -race), against Release and expiry.
func TestConcurrentUse(t *testing.T) {
	for range 200 {
		p, pcancel := context.WithCancel(context.Background())
		c := New(p, time.Duration(rand.IntN(200))*time.Microsecond)
		var wg sync.WaitGroup
		for g := range 4 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for range 50 {
					_ = c.Err()
					_, _ = c.Deadline()
					_ = c.Done()
					_ = c.Value(key{})
				}
				switch g {
				case 0:
					c.Release()
				case 1:
					pcancel()
				case 2:
					stop := context.AfterFunc(c, func() {})
					stop()
				}
			}()
		}
		wg.Wait()
		c.Release()
		pcancel()
		if !isDone(c) || c.Err() == nil {
			t.Fatal("context not ended")
		}
	}
	if n := pending(); n != 0 {
		t.Errorf("%d pending", n)
	}
}

// Once nothing is pending, the timer fires at most once more and is left
// unarmed, and no goroutine remains.
func TestIdle(t *testing.T) {
	c := New(context.Background(), 30*time.Millisecond)
	c.Release()
	deadline := time.Now().Add(2 * time.Second)
	for armed() {
		if time.Now().After(deadline) {
			t.Fatal("timer still armed 2s after the last context was released")
		}
		time.Sleep(time.Millisecond)
	}
	goleak.VerifyNone(t)
}
