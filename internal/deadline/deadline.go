// Package deadline provides a context.Context bounded by a timeout whose
// expiry is driven by one shared, coarse runtime timer instead of one timer
// per context.
//
// context.WithTimeout arms a runtime timer per call. When that timer is
// earlier than the network poller's current sleep, arming it wakes the
// poller (an eventfd write) and often an idle OS thread: about a microsecond
// or more on every call, which is a tenth of a loopback Redis round trip.
//
// Here every pending context sits in one min-heap ordered by deadline. A
// single time.AfterFunc timer is armed for the earliest pending deadline,
// rounded up to the next millisecond (Granularity). A new context whose
// deadline is not earlier than the armed time (the usual case: every call
// uses the same timeout, so each new deadline is later than the pending
// ones) touches only the heap, under a mutex, and never the runtime timer.
// When the timer fires, its callback closes the Done channel of every
// expired context and re-arms the timer for the next pending deadline, if
// any; otherwise it leaves the timer unarmed. So nothing runs while nothing
// is pending: there is no service goroutine, only the short-lived callback.
//
// A context's Done channel closes at most about Granularity (plus timer
// latency) after its deadline; Err reports context.DeadlineExceeded as soon
// as the deadline has passed by the clock, and closes Done at that moment
// if the timer has not yet done it, so "Err != nil" and "Done closed" never
// disagree for an observer that calls Err.
//
// Contexts are not pooled: a holder may keep a released context (a derived
// context, context.WithoutCancel wrappers in go-redis's autopipeline, a
// goroutine still selecting on Done), so reusing one could make a finished
// context look alive again with another deadline.
package deadline

import (
	"context"
	"sync"
	"sync/atomic"
	"time"
)

// Granularity is the resolution of the shared timer: Done closes at the
// first multiple of Granularity (on the package's monotonic clock) at or
// after the deadline, plus the runtime's timer latency.
const Granularity = time.Millisecond

// epoch is the origin of the package's monotonic clock.
var epoch = time.Now()

// now returns monotonic nanoseconds since epoch.
func now() int64 { return int64(time.Since(epoch)) }

// closedchan is a reusable closed channel, handed out by Done when a
// context ended before anyone asked for its channel.
var closedchan = make(chan struct{})

func init() { close(closedchan) }

// Context is a context.Context that ends at its deadline, when its parent
// ends, or when Release is called, whichever comes first. Create it with
// New, WithTimeout or WithDeadline; the zero value is not usable.
type Context struct {
	parent context.Context
	when   int64 // the deadline on the package clock (ns since epoch)

	// stopParent unregisters the context.AfterFunc set on the parent; it is
	// nil when the parent cannot end (parent.Done() == nil). Written once
	// before the context is published.
	stopParent func() bool

	// idx is the context's position in the wheel's heap, -1 when it is not
	// there. Guarded by wheel.mu.
	idx int32

	ended atomic.Bool // set (after err) when the context has ended

	// parentDeadline: the deadline is the parent's, which Deadline returns
	// as it is.
	parentDeadline bool

	mu     sync.Mutex
	done   atomic.Value // chan struct{}, created lazily by Done
	err    error
	afters *[]*afterFunc // registered by AfterFunc, run when the context ends
}

type afterFunc struct{ f func() }

var _ context.Context = (*Context)(nil)

// New returns a context that ends d after now, or at parent's deadline if
// that is earlier, or when parent ends, or when Release is called. Release
// must be called when the work it bounds is done, as with the cancel
// function of context.WithTimeout; it is cheap.
//
// New and Release allocate nothing beyond the Context itself (and its Done
// channel, once Done is called); WithTimeout additionally allocates the
// CancelFunc it returns.
func New(parent context.Context, d time.Duration) *Context {
	t := now() // the monotonic clock alone: half the cost of time.Now
	when := t + int64(d)
	if d > 0 && when < t {
		when = 1<<63 - 1
	}
	return newContext(parent, when, t)
}

// WithTimeout is New returning the context.WithTimeout signature.
func WithTimeout(parent context.Context, d time.Duration) (context.Context, context.CancelFunc) {
	c := New(parent, d)
	return c, c.Release
}

// WithDeadline is like WithTimeout with an absolute deadline.
func WithDeadline(parent context.Context, deadline time.Time) (context.Context, context.CancelFunc) {
	c := newContext(parent, int64(deadline.Sub(epoch)), now())
	return c, c.Release
}

// newContext makes a context ending at when, t being now, both on the
// package clock.
func newContext(parent context.Context, when, t int64) *Context {
	if parent == nil {
		panic("deadline: nil parent context")
	}
	c := &Context{parent: parent, when: when, idx: -1}
	if pd, ok := parent.Deadline(); ok {
		// The offset from epoch: monotonic when pd has a monotonic reading
		// (deadlines made from time.Now), wall clock otherwise.
		if pw := int64(pd.Sub(epoch)); pw < when {
			c.when = pw
			c.parentDeadline = true
		}
	}

	if pdone := parent.Done(); pdone != nil {
		select {
		case <-pdone:
			c.cancel(parent.Err())
			return c
		default:
		}
		c.stopParent = context.AfterFunc(parent, func() { c.cancel(parent.Err()) })
	}
	if c.when <= t {
		c.cancel(context.DeadlineExceeded)
		return c
	}
	w.add(c)
	return c
}

// Release ends the context (its Err becomes context.Canceled unless it had
// already ended) and frees what it holds in the shared timer and in its
// parent. Calling it more than once is harmless.
func (c *Context) Release() {
	c.cancel(context.Canceled)
	if c.stopParent != nil {
		c.stopParent()
	}
}

// Deadline returns the earlier of the parent's deadline and the one given
// to New. Unless it is the parent's, it is derived from the monotonic clock
// read when the package was initialized (time.Since and time.Until, which
// the net package and go-redis use, read it as such); its wall-clock
// reading is off by any step of the system clock since then.
func (c *Context) Deadline() (time.Time, bool) {
	if c.parentDeadline {
		return c.parent.Deadline()
	}
	return epoch.Add(time.Duration(c.when)), true
}

// Done returns a channel that is closed when the context ends: within about
// Granularity after the deadline, soon after the parent ends (the parent's
// context.AfterFunc runs), or at Release.
func (c *Context) Done() <-chan struct{} {
	if d := c.done.Load(); d != nil {
		return d.(chan struct{})
	}
	d := make(chan struct{})
	if c.done.CompareAndSwap(nil, d) {
		return d
	}
	return c.done.Load().(chan struct{}) // another Done's, or cancel's closedchan

}

// Err returns nil while the context is live, context.DeadlineExceeded once
// the deadline has passed by the clock (even if the shared timer has not
// fired yet: Err then ends the context itself), the parent's error once the
// parent has ended, and context.Canceled after Release. The first of these
// sticks.
func (c *Context) Err() error {
	if c.ended.Load() {
		return c.err // written before ended was set
	}
	if c.stopParent != nil {
		if err := c.parent.Err(); err != nil {
			c.cancel(err)
			return c.loadErr()
		}
	}
	if now() >= c.when {
		c.cancel(context.DeadlineExceeded)
		return c.loadErr()
	}
	return nil
}

func (c *Context) loadErr() error {
	c.mu.Lock()
	err := c.err
	c.mu.Unlock()
	return err
}

// Value returns the parent's value for key.
func (c *Context) Value(key any) any { return c.parent.Value(key) }

// String describes the context, like the context package's contexts do.
func (c *Context) String() string {
	d, _ := c.Deadline()
	return "deadline.WithDeadline(" + contextName(c.parent) + ", " + d.String() + ")"
}

type stringer interface{ String() string }

func contextName(c context.Context) string {
	if s, ok := c.(stringer); ok {
		return s.String()
	}
	return "context"
}

// AfterFunc runs f in its own goroutine once the context has ended (at once
// if it already has). stop unregisters f; it reports whether it stopped f
// from being run. This method lets the context package attach contexts
// derived from c (context.WithCancel(c) and the like) without a goroutine
// per derived context.
func (c *Context) AfterFunc(f func()) (stop func() bool) {
	a := &afterFunc{f: f}
	c.mu.Lock()
	if c.err != nil {
		c.mu.Unlock()
		go f()
		return func() bool { return false }
	}
	if c.afters == nil {
		c.afters = new([]*afterFunc)
	}
	*c.afters = append(*c.afters, a)
	c.mu.Unlock()
	return func() bool {
		c.mu.Lock()
		defer c.mu.Unlock()
		if c.afters == nil {
			return false // ran, or about to
		}
		l := *c.afters
		for i, x := range l {
			if x == a {
				*c.afters = append(l[:i], l[i+1:]...)
				return true
			}
		}
		return false
	}
}

// cancel ends the context with err unless it has ended already, and takes
// it out of the shared timer.
func (c *Context) cancel(err error) {
	c.mu.Lock()
	if c.err != nil {
		c.mu.Unlock()
		return
	}
	c.err = err
	c.ended.Store(true)
	if !c.done.CompareAndSwap(nil, closedchan) {
		close(c.done.Load().(chan struct{}))
	}
	afters := c.afters
	c.afters = nil
	c.mu.Unlock()

	w.remove(c)
	if afters != nil {
		for _, a := range *afters {
			go a.f()
		}
	}
}

// wheel holds every pending context in a min-heap by deadline and owns the
// one runtime timer.
type wheel struct {
	mu    sync.Mutex
	heap  []*Context
	timer *time.Timer // created on first use; its callback is fire
	armed int64       // package-clock time the timer is armed for; 0 if not armed
}

var w wheel

// fireAt rounds a deadline up to the wheel's granularity.
func fireAt(when int64) int64 {
	g := int64(Granularity)
	return (when + g - 1) / g * g
}

func (w *wheel) add(c *Context) {
	w.mu.Lock()
	if c.ended.Load() {
		// Ended (parent's AfterFunc) between its check and here.
		w.mu.Unlock()
		return
	}
	c.idx = int32(len(w.heap))
	w.heap = append(w.heap, c)
	w.up(int(c.idx))
	// Invariant, on every release of w.mu: if the heap is not empty, the
	// timer is armed no later than fireAt(heap[0].when).
	if at := fireAt(c.when); w.armed == 0 || at < w.armed {
		w.arm(at, now())
	}
	w.mu.Unlock()
}

// arm (re)arms the timer for at. w.mu is held.
func (w *wheel) arm(at, now int64) {
	w.armed = at
	d := time.Duration(at - now)
	if d < 0 {
		d = 0
	}
	if w.timer == nil {
		w.timer = time.AfterFunc(d, w.fire)
		return
	}
	w.timer.Reset(d)
}

func (w *wheel) remove(c *Context) {
	w.mu.Lock()
	if i := c.idx; i >= 0 {
		w.removeAt(int(i))
	}
	// The timer stays armed even if the heap is now empty: stopping it and
	// arming it again on the next call would cost what this package saves.
	// It fires once, finds nothing, and stays unarmed.
	w.mu.Unlock()
}

// fire is the timer's callback: it ends every expired context and re-arms
// the timer for the earliest pending one.
func (w *wheel) fire() {
	var expired []*Context
	w.mu.Lock()
	w.armed = 0
	t := now()
	for len(w.heap) > 0 && w.heap[0].when <= t {
		expired = append(expired, w.heap[0])
		w.removeAt(0)
	}
	if len(w.heap) > 0 {
		w.arm(fireAt(w.heap[0].when), t)
	}
	if len(w.heap) == 0 && cap(w.heap) > 1024 {
		w.heap = nil // do not hold a burst's worth of memory while idle
	}
	w.mu.Unlock()
	for _, c := range expired {
		c.cancel(context.DeadlineExceeded)
	}
}

// Heap operations; w.mu is held.

func (w *wheel) removeAt(i int) {
	h := w.heap
	n := len(h) - 1
	c := h[i]
	if i != n {
		h[i] = h[n]
		h[i].idx = int32(i)
	}
	h[n] = nil
	w.heap = h[:n]
	c.idx = -1
	if i != n {
		if !w.down(i) {
			w.up(i)
		}
	}
}

func (w *wheel) up(i int) {
	h := w.heap
	for i > 0 {
		p := (i - 1) / 2
		if h[p].when <= h[i].when {
			break
		}
		h[p], h[i] = h[i], h[p]
		h[p].idx = int32(p)
		h[i].idx = int32(i)
		i = p
	}
}

// down sifts h[i] down and reports whether it moved.
func (w *wheel) down(i int) bool {
	h := w.heap
	n := len(h)
	i0 := i
	for {
		l := 2*i + 1
		if l >= n {
			break
		}
		j := l
		if r := l + 1; r < n && h[r].when < h[l].when {
			j = r
		}
		if h[i].when <= h[j].when {
			break
		}
		h[i], h[j] = h[j], h[i]
		h[i].idx = int32(i)
		h[j].idx = int32(j)
		i = j
	}
	return i > i0
}
