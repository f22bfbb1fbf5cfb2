package backendtest

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gomemo/memo"
	"github.com/gomemo/memo/internal/clocktest"
)

// RunFreshness runs memo's freshness options over the backends f opens, or,
// when f is nil, over no backend (the local tier), each case as a subtest of
// t with a clock the suite moves by hand: StaleWhileRevalidate (a stale call
// answers at once while fn is held, one refresh for 100 stale callers, the
// refresh's context, the new value once it lands, a plain miss past the
// window; a failed refresh keeps the stale entry, is reported and waits for
// its backoff), StaleIfError (the stale value for fn's error within the
// window, fn's error past it, context errors and not-found answers never
// masked), EarlyRefresh (a hit near expiry refreshes in the background, one
// far from it does not), NegativeCache and CacheErrors (remembered for
// their ttl, answered by a second instance without running fn), ExpireFunc,
// ExpireJitter, Peek, Set, and stale answers shared by two instances.
//
// Every case writes fake-clock times into the entries, while the store's
// own expiry runs in real time: a stale entry is still stored because its
// physical TTL covers the stale windows, which the cases keep in the range
// of seconds to minutes. With f nil, functions share the process's local
// tier; each case has namespaces of its own. No field of o bears on these
// cases yet. [Run] calls it as the subtest "Freshness"; a case takes well
// under a second, but a call that must answer at once and does not fails
// only after 5 s.
func RunFreshness(t *testing.T, f Factory, o Options) {
	_ = o // no field of Options bears on these cases yet
	cases := []struct {
		name string
		fn   func(*testing.T, *freshEnv)
	}{
		{"StaleWhileRevalidate", testSWR},
		{"StaleWhileRevalidateFailedRefresh", testSWRFailedRefresh},
		{"StaleIfError", testStaleIfError},
		{"EarlyRefresh", testEarlyRefresh},
		{"NegativeCache", testNegativeCache},
		{"CacheErrors", testCacheErrors},
		{"ExpireFunc", testExpireFunc},
		{"ExpireJitter", testExpireJitter},
		{"Peek", testPeek},
		{"Set", testSet},
		{"CrossInstance", testStaleCrossInstance},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var b memo.Backend
			if f != nil {
				b = f(t)
			}
			e := &freshEnv{b: b, clk: clocktest.New(time.Now())}
			t.Cleanup(e.releaseAll)
			c.fn(t, e)
		})
	}
}

// Limits of the waits for what runs in the background, and of calls that
// must answer without waiting for fn: generous, for a loaded machine under
// -race and a store with slow round trips.
const (
	atOnceLimit = 5 * time.Second
	pollLimit   = 5 * time.Second
)

var (
	errOrigin   = errors.New("backendtest: origin down")
	errNotFound = errors.New("backendtest: not found")
)

// freshEnv is one case's world: the backend (nil: the local tier), the
// clock, what memo reported, and the gates the case's origins hold.
type freshEnv struct {
	b   memo.Backend
	clk *clocktest.Clock
	fl  faults

	mu    sync.Mutex
	gates []*gate
}

// options returns the options of a function in namespace ns of the case,
// then extra.
func (e *freshEnv) options(ns string, extra ...memo.Option) []memo.Option {
	opts := []memo.Option{
		memo.Namespace(ns), clocktest.MemoOption(e.clk).(memo.Option),
		memo.OnError(e.fl.hook), memo.Timeout(testTimeout),
	}
	if e.b != nil {
		opts = append(opts, memo.WithBackend(e.b))
	}
	return append(opts, extra...)
}

// releaseAll lets every run of fn held by the case go on.
func (e *freshEnv) releaseAll() {
	e.mu.Lock()
	defer e.mu.Unlock()
	for _, g := range e.gates {
		g.release()
	}
}

// gate holds the runs of fn that start while it is set until released.
type gate struct {
	ch   chan struct{}
	once sync.Once
}

func (g *gate) release() { g.once.Do(func() { close(g.ch) }) }

// origin is the function behind the cache: it counts its runs, answers
// val or fails with err, waits at its gate when one is set, and moves the
// clock by took on its next run (so that the entry records a compute
// duration).
type origin struct {
	e       *freshEnv
	runs    atomic.Int64
	val     atomic.Int64
	err     atomic.Pointer[error]
	gate    atomic.Pointer[gate]
	took    atomic.Int64
	lastCtx atomic.Pointer[context.Context]
	started chan int64 // the key of each run, as it starts
}

func (e *freshEnv) origin() *origin {
	return &origin{e: e, started: make(chan int64, 1024)}
}

func (o *origin) fn(ctx context.Context, k int64) (int64, error) {
	o.runs.Add(1)
	o.lastCtx.Store(&ctx)
	select {
	case o.started <- k:
	default:
	}
	if g := o.gate.Load(); g != nil {
		<-g.ch // released by the case, or at its end
	}
	if d := o.took.Swap(0); d != 0 {
		o.e.clk.Advance(time.Duration(d))
	}
	if p := o.err.Load(); p != nil {
		return 0, *p
	}
	return o.val.Load(), nil
}

// fail makes the next runs fail with err; nil makes them answer again.
func (o *origin) fail(err error) {
	if err == nil {
		o.err.Store(nil)
		return
	}
	o.err.Store(&err)
}

// hold makes the runs of fn that start from now on wait until the
// returned func is called (or the case ends).
func (o *origin) hold() (release func()) {
	g := &gate{ch: make(chan struct{})}
	o.e.mu.Lock()
	o.e.gates = append(o.e.gates, g)
	o.e.mu.Unlock()
	o.gate.Store(g)
	return g.release
}

// drain forgets the runs that started so far.
func (o *origin) drain() {
	for {
		select {
		case <-o.started:
		default:
			return
		}
	}
}

// waitStarted waits for a run of fn to start, failing t after pollLimit.
func (o *origin) waitStarted(t *testing.T, what string) {
	t.Helper()
	select {
	case <-o.started:
	case <-time.After(pollLimit):
		t.Fatalf("%s: fn did not run within %v", what, pollLimit)
	}
}

func (o *origin) wantRuns(t *testing.T, want int64, when string) {
	t.Helper()
	if n := o.runs.Load(); n != want {
		t.Fatalf("%s: fn ran %d times, want %d", when, n, want)
	}
}

// atOnce runs f and fails t unless it returns within atOnceLimit: a call
// that waits for a run of fn the case holds does not.
func (e *freshEnv) atOnce(t *testing.T, what string, f func()) {
	t.Helper()
	done := make(chan struct{})
	go func() {
		defer close(done)
		f()
	}()
	select {
	case <-done:
	case <-time.After(atOnceLimit):
		e.releaseAll()
		<-done
		t.Fatalf("%s did not return within %v while fn was held: it waited for fn", what, atOnceLimit)
	}
}

// callAtOnce fails t unless fn.Call(k) returns want and a nil error
// within atOnceLimit.
func (e *freshEnv) callAtOnce(t *testing.T, fn *memo.Func[int64, int64], k, want int64, when string) {
	t.Helper()
	var v int64
	var err error
	e.atOnce(t, when, func() { v, err = fn.Call(context.Background(), k) })
	if v != want || err != nil {
		t.Fatalf("%s: Call(%d) = %d, %v; want %d, nil", when, k, v, err, want)
	}
}

// eventually polls cond until it holds, failing t after pollLimit.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(pollLimit)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %v", what, pollLimit)
		}
		time.Sleep(time.Millisecond)
	}
}

// peeks reports whether fn holds a fresh answer want for k.
func peeks(fn *memo.Func[int64, int64], k, want int64) func() bool {
	return func() bool {
		v, ok, err := fn.Peek(context.Background(), k)
		return err == nil && ok && v == want
	}
}

// wantCall fails t unless fn.Call(k) returns want and a nil error.
func wantCall(t *testing.T, fn *memo.Func[int64, int64], k, want int64, when string) {
	t.Helper()
	if v, err := fn.Call(context.Background(), k); v != want || err != nil {
		t.Fatalf("%s: Call(%d) = %d, %v; want %d, nil", when, k, v, err, want)
	}
}

// wantCallErr fails t unless fn.Call(k) returns an error matching target.
func wantCallErr(t *testing.T, fn *memo.Func[int64, int64], k int64, target error, when string) error {
	t.Helper()
	v, err := fn.Call(context.Background(), k)
	if !errors.Is(err, target) {
		t.Fatalf("%s: Call(%d) = %d, %v; want an error matching %v", when, k, v, err, target)
	}
	return err
}

// reported counts the reports matching target.
func (e *freshEnv) reported(target error) int {
	n := 0
	for _, err := range e.fl.all() {
		if errors.Is(err, target) {
			n++
		}
	}
	return n
}

// wantNoFaults fails t when memo reported anything but errors matching
// expected.
func (e *freshEnv) wantNoFaults(t *testing.T, expected ...error) {
	t.Helper()
next:
	for _, err := range e.fl.all() {
		for _, x := range expected {
			if errors.Is(err, x) {
				continue next
			}
		}
		t.Errorf("memo reported %v", err)
	}
}

func testSWR(t *testing.T, e *freshEnv) {
	o := e.origin()
	fn := memo.New(o.fn, e.options(ns(t, "swr"), memo.Expire(30*time.Second),
		memo.StaleWhileRevalidate(30*time.Second), memo.RefreshTimeout(20*time.Second))...)
	ctx := context.Background()
	o.val.Store(1)
	// Key 1 goes stale and is refreshed; key 2, stored at the same time,
	// is left alone until past the window. (Key 1's refresh may still be
	// ending after its write has landed: a call would share its answer.)
	for _, k := range []int64{1, 2} {
		wantCall(t, fn, k, 1, "first call")
	}
	if ent, err := fn.Lookup(ctx, 1, memo.UseCache); err != nil || !ent.Hit || ent.Stale {
		t.Fatalf("Lookup of a fresh entry = %+v, %v; want a hit, not stale", ent, err)
	}

	e.clk.Advance(31 * time.Second)
	o.val.Store(2)
	o.drain()
	release := o.hold()
	type ctxKey struct{}
	vctx := context.WithValue(ctx, ctxKey{}, "first stale caller")
	var v int64
	var err error
	e.atOnce(t, "the first stale Call", func() { v, err = fn.Call(vctx, 1) })
	if v != 1 || err != nil {
		t.Fatalf("stale Call(1) = %d, %v; want the old value 1, nil", v, err)
	}
	o.waitStarted(t, "the refresh after a stale Call")

	var ent *memo.Entry
	e.atOnce(t, "Lookup while the refresh is under way", func() { ent, err = fn.Lookup(ctx, 1, memo.UseCache) })
	if err != nil || !ent.Hit || !ent.Stale {
		t.Fatalf("Lookup while the refresh is under way = %+v, %v; want a stale hit", ent, err)
	}
	if got, err := fn.Decode(ent); got != 1 || err != nil {
		t.Fatalf("Lookup's stale entry decodes to %d, %v; want 1", got, err)
	}
	if ent.StaleWhileRevalidate != 30*time.Second || ent.StaleIfError != 0 {
		t.Errorf("Lookup's Entry windows = %v, %v; want 30s, 0", ent.StaleWhileRevalidate, ent.StaleIfError)
	}

	// 100 callers seeing the stale entry: answered at once, one refresh.
	const callers = 100
	var bad atomic.Int64
	e.atOnce(t, "100 concurrent stale Calls", func() {
		var wg sync.WaitGroup
		for range callers {
			wg.Go(func() {
				if v, err := fn.Call(ctx, 1); v != 1 || err != nil {
					bad.Add(1)
				}
			})
		}
		wg.Wait()
	})
	if n := bad.Load(); n > 0 {
		t.Errorf("%d of %d concurrent stale calls did not return 1, nil", n, callers)
	}
	o.wantRuns(t, 3, "100 stale callers during one refresh")

	// The refresh keeps the first stale caller's values, not its
	// cancellation, and is bounded by RefreshTimeout.
	rctx := *o.lastCtx.Load()
	if got := rctx.Value(ctxKey{}); got != "first stale caller" {
		t.Errorf("the refresh's context value = %v, want the first stale caller's", got)
	}
	if d, ok := rctx.Deadline(); !ok || time.Until(d) <= 0 || time.Until(d) > 20*time.Second {
		t.Errorf("the refresh's deadline = %v, %v away; want within RefreshTimeout (20s)", ok, time.Until(d))
	}

	release()
	eventually(t, "the refreshed value 2 in the cache", peeks(fn, 1, 2))
	wantCall(t, fn, 1, 2, "after the refresh landed")
	o.wantRuns(t, 3, "after the refresh landed")

	// Past the window: a plain miss, answered by fn.
	e.clk.Advance(30 * time.Second)
	o.val.Store(3)
	wantCall(t, fn, 2, 3, "past the stale window")
	o.wantRuns(t, 4, "past the stale window")
	e.wantNoFaults(t)
}

func testSWRFailedRefresh(t *testing.T, e *freshEnv) {
	o := e.origin()
	fn := memo.New(o.fn, e.options(ns(t, "swrfail"), memo.Expire(30*time.Second), memo.StaleWhileRevalidate(time.Minute))...)
	ctx := context.Background()
	o.val.Store(1)
	wantCall(t, fn, 1, 1, "first call")

	e.clk.Advance(31 * time.Second)
	o.fail(fmt.Errorf("refresh of 1: %w", errOrigin))
	wantCall(t, fn, 1, 1, "stale call, refresh failing")
	eventually(t, "the failed refresh reported to OnError", func() bool { return e.reported(errOrigin) == 1 })
	o.wantRuns(t, 2, "after the failed refresh")

	// Within the backoff (1 s): the stale entry, no new refresh.
	for i := range 3 {
		wantCall(t, fn, 1, 1, fmt.Sprintf("stale call #%d within the backoff", i))
	}
	if ent, err := fn.Lookup(ctx, 1, memo.UseCache); err != nil || !ent.Stale {
		t.Fatalf("Lookup within the backoff = %+v, %v; want a stale hit", ent, err)
	}
	o.wantRuns(t, 2, "stale calls within the backoff")

	// Past the backoff: retried.
	e.clk.Advance(2 * time.Second)
	o.fail(nil)
	o.val.Store(2)
	wantCall(t, fn, 1, 1, "stale call past the backoff")
	eventually(t, "the retried refresh's value 2 in the cache", peeks(fn, 1, 2))
	wantCall(t, fn, 1, 2, "after the retry landed")
	o.wantRuns(t, 3, "after the retry")
	if n := e.reported(errOrigin); n != 1 {
		t.Errorf("the origin's error was reported %d times, want once (one failed refresh)", n)
	}
	e.wantNoFaults(t, errOrigin)
}

func testStaleIfError(t *testing.T, e *freshEnv) {
	o := e.origin()
	fn := memo.New(o.fn, e.options(ns(t, "sie"), memo.Expire(30*time.Second), memo.StaleIfError(30*time.Second),
		memo.NegativeCache(time.Minute, errNotFound))...)
	o.val.Store(1)
	for k := range int64(4) {
		wantCall(t, fn, k, 1, "first call")
	}
	e.clk.Advance(31 * time.Second)

	// Within the window, fn's error: the stale value, fn's error reported.
	o.fail(fmt.Errorf("fetch 0: %w", errOrigin))
	wantCall(t, fn, 0, 1, "fn failing within StaleIfError's window")
	o.wantRuns(t, 5, "fn failing within the window")
	if n := e.reported(errOrigin); n != 1 {
		t.Fatalf("fn's error reported %d times by the time Call returned, want once: %v", n, e.fl.all())
	}
	if ent, err := fn.Lookup(context.Background(), 0, memo.UseCache); err != nil || !ent.Stale || ent.StaleIfError != 30*time.Second {
		t.Fatalf("Lookup within the backoff = %+v, %v; want a stale hit with StaleIfError 30s", ent, err)
	}
	wantCall(t, fn, 0, 1, "within the backoff")
	o.wantRuns(t, 5, "within the backoff (fn must not be called)")
	e.clk.Advance(2 * time.Second)
	wantCall(t, fn, 0, 1, "past the backoff, fn failing")
	o.wantRuns(t, 6, "past the backoff")

	// Context errors and not-found answers are never masked.
	o.fail(fmt.Errorf("fetch 1: %w", context.DeadlineExceeded))
	wantCallErr(t, fn, 1, context.DeadlineExceeded, "fn's deadline error within the window")
	o.fail(fmt.Errorf("fetch 2: %w", context.Canceled))
	wantCallErr(t, fn, 2, context.Canceled, "fn's cancellation within the window")
	nf := fmt.Errorf("item 3: %w", errNotFound)
	o.fail(nf)
	if err := wantCallErr(t, fn, 3, errNotFound, "a not-found within the window"); err.Error() != nf.Error() {
		t.Errorf("not-found error text = %q, want %q", err, nf)
	}

	// Past the window: fn's error.
	e.clk.Advance(30 * time.Second)
	o.fail(fmt.Errorf("fetch 0: %w", errOrigin))
	wantCallErr(t, fn, 0, errOrigin, "past StaleIfError's window")
	e.wantNoFaults(t, errOrigin)
}

func testEarlyRefresh(t *testing.T, e *freshEnv) {
	o := e.origin()
	// The entry took 100ms to compute and lives 2 min: with beta 10, a hit
	// with t left refreshes with probability exp(-t/1s): never (x > 40,
	// no draw) far from expiry, about 95% of hits 50ms before it.
	fn := memo.New(o.fn, e.options(ns(t, "early"), memo.Expire(2*time.Minute), memo.EarlyRefresh(10))...)
	o.val.Store(1)
	o.took.Store(int64(100 * time.Millisecond))
	wantCall(t, fn, 1, 1, "first call")
	for i := range 50 {
		wantCall(t, fn, 1, 1, fmt.Sprintf("hit #%d far from expiry", i))
	}
	e.clk.Advance(time.Minute)
	for i := range 50 {
		wantCall(t, fn, 1, 1, fmt.Sprintf("hit #%d a minute from expiry", i))
	}
	o.wantRuns(t, 1, "hits far from expiry")

	e.clk.Advance(time.Minute - 50*time.Millisecond)
	o.val.Store(2)
	o.drain()
	release := o.hold()
	for i := range 20 {
		e.callAtOnce(t, fn, 1, 1, fmt.Sprintf("hit #%d near expiry", i))
	}
	o.waitStarted(t, "early refresh of a hit 50ms before expiry (beta 10, compute 100ms)")
	// Callers during the refresh still get the fresh value at once.
	for i := range 5 {
		e.callAtOnce(t, fn, 1, 1, fmt.Sprintf("hit #%d during the early refresh", i))
	}
	o.wantRuns(t, 2, "hits during one early refresh")
	release()
	eventually(t, "the early refresh's value 2 in the cache", peeks(fn, 1, 2))
	wantCall(t, fn, 1, 2, "after the early refresh landed")
	o.wantRuns(t, 2, "after the early refresh landed")
	e.wantNoFaults(t)
}

func testNegativeCache(t *testing.T, e *freshEnv) {
	name := ns(t, "neg")
	oa, ob, oc := e.origin(), e.origin(), e.origin()
	opts := e.options(name, memo.Expire(time.Minute), memo.NegativeCache(30*time.Second, errNotFound),
		memo.StaleWhileRevalidate(time.Minute))
	a, b := memo.New(oa.fn, opts...), memo.New(ob.fn, opts...)
	ctx := context.Background()

	nf := fmt.Errorf("user 1: %w", errNotFound)
	oa.fail(nf)
	if _, err := a.Call(ctx, 1); err != nf {
		t.Fatalf("a.Call(1) = %v, want fn's own error %v", err, nf)
	}
	for _, f := range []struct {
		name string
		fn   *memo.Func[int64, int64]
	}{{"b", b}, {"a", a}} {
		err := wantCallErr(t, f.fn, 1, errNotFound, f.name+" (the not-found is remembered)")
		if err.Error() != nf.Error() {
			t.Errorf("%s.Call(1) error text = %q, want fn's %q", f.name, err, nf)
		}
	}
	oa.wantRuns(t, 1, "a, after a remembered not-found")
	ob.wantRuns(t, 0, "b, the second instance")

	ent, err := b.Lookup(ctx, 1, memo.UseCache)
	if !errors.Is(err, errNotFound) || ent == nil || !ent.Hit || ent.Payload != nil || ent.Stale {
		t.Fatalf("b.Lookup(1) = %+v, %v; want a hit with no payload and the not-found", ent, err)
	}
	if d := ent.FreshUntil.Sub(ent.StoredAt); d != 30*time.Second {
		t.Errorf("remembered not-found lives %v, want the NegativeCache ttl 30s", d)
	}
	if ent.StaleWhileRevalidate != 0 || ent.StaleIfError != 0 {
		t.Errorf("remembered not-found's windows = %v, %v; want 0, 0", ent.StaleWhileRevalidate, ent.StaleIfError)
	}
	if v, ok, err := b.Peek(ctx, 1); !ok || !errors.Is(err, errNotFound) {
		t.Errorf("b.Peek(1) = %d, %v, %v; want 0, true, the not-found", v, ok, err)
	}

	// A function without the sentinel reads the entry as a miss.
	oa.fail(fmt.Errorf("user 2: %w", errNotFound))
	wantCallErr(t, a, 2, errNotFound, "a.Call(2)")
	c := memo.New(oc.fn, e.options(name, memo.Expire(time.Minute))...)
	oc.val.Store(9)
	wantCall(t, c, 2, 9, "an instance without NegativeCache over a remembered not-found")

	// After the ttl fn runs again, and the not-found is never served
	// stale: the call waits for fn's answer.
	e.clk.Advance(31 * time.Second)
	ob.val.Store(7)
	wantCall(t, b, 1, 7, "b past the not-found's ttl (SWR on)")
	ob.wantRuns(t, 1, "b past the ttl")
	wantCall(t, a, 1, 7, "a after b's answer")
	oa.wantRuns(t, 2, "a after b's answer")
	e.wantNoFaults(t)
}

func testCacheErrors(t *testing.T, e *freshEnv) {
	name := ns(t, "errs")
	oa, ob := e.origin(), e.origin()
	opts := e.options(name, memo.Expire(time.Minute), memo.CacheErrors(10*time.Second))
	a, b := memo.New(oa.fn, opts...), memo.New(ob.fn, opts...)
	ctx := context.Background()

	boom := fmt.Errorf("fetch 1: %w", errOrigin)
	oa.fail(boom)
	if _, err := a.Call(ctx, 1); err != boom {
		t.Fatalf("a.Call(1) = %v, want fn's own error %v", err, boom)
	}
	for _, f := range []struct {
		name string
		fn   *memo.Func[int64, int64]
	}{{"b", b}, {"a", a}} {
		err := wantCallErr(t, f.fn, 1, memo.ErrCached, f.name+" (the error is remembered)")
		if !strings.Contains(err.Error(), boom.Error()) {
			t.Errorf("%s.Call(1) error text = %q, want it to contain fn's %q", f.name, err, boom)
		}
	}
	oa.wantRuns(t, 1, "a, after a remembered error")
	ob.wantRuns(t, 0, "b, the second instance")

	// Context errors are not remembered.
	oa.fail(fmt.Errorf("fetch 2: %w", context.DeadlineExceeded))
	wantCallErr(t, a, 2, context.DeadlineExceeded, "a.Call(2)")
	ob.val.Store(5)
	wantCall(t, b, 2, 5, "b after a's context error")
	ob.wantRuns(t, 1, "b after a's context error")

	// After the ttl fn runs again.
	e.clk.Advance(11 * time.Second)
	ob.val.Store(6)
	wantCall(t, b, 1, 6, "b past the remembered error's ttl")
	ob.wantRuns(t, 2, "b past the ttl")

	// With StaleIfError, a stale value rather than the error, in either
	// instance: the error is not remembered over it.
	name2 := ns(t, "errsie")
	oc, od := e.origin(), e.origin()
	opts2 := e.options(name2, memo.Expire(30*time.Second), memo.CacheErrors(10*time.Second), memo.StaleIfError(time.Minute))
	c, d := memo.New(oc.fn, opts2...), memo.New(od.fn, opts2...)
	oc.val.Store(1)
	wantCall(t, c, 1, 1, "c's first call")
	e.clk.Advance(31 * time.Second)
	oc.fail(boom)
	od.fail(boom)
	wantCall(t, c, 1, 1, "c with fn failing, a stale value at hand")
	wantCall(t, d, 1, 1, "d with fn failing, a stale value at hand")
	wantCall(t, c, 1, 1, "c again")
	e.wantNoFaults(t, errOrigin)
}

func testExpireFunc(t *testing.T, e *freshEnv) {
	var runs atomic.Int64
	// The answer is the key; it lives that many seconds.
	fn := memo.New(func(_ context.Context, k int64) (int64, error) { runs.Add(1); return k, nil },
		e.options(ns(t, "expfn"), memo.ExpireFunc(func(v int64) time.Duration { return time.Duration(v) * time.Second }))...)
	ctx := context.Background()
	for _, k := range []int64{0, -5} {
		for i := range 2 {
			wantCall(t, fn, k, k, fmt.Sprintf("call #%d of an answer with lifetime %ds", i, k))
		}
		if _, ok, err := fn.Peek(ctx, k); ok || err != nil {
			t.Errorf("Peek(%d) = %v, %v; want no entry (lifetime <= 0: not stored)", k, ok, err)
		}
		if e.b != nil {
			if _, ok, err := e.b.Get(ctx, fn.Key(k)); ok || err != nil {
				t.Errorf("backend Get(%q) = %v, %v; want a miss (lifetime <= 0: not stored)", fn.Key(k), ok, err)
			}
		}
	}
	if n := runs.Load(); n != 4 {
		t.Fatalf("fn ran %d times for 2 calls each of 2 answers not stored, want 4", n)
	}

	for _, k := range []int64{10, 40} {
		wantCall(t, fn, k, k, "first call")
		ent, err := fn.Lookup(ctx, k, memo.UseCache)
		if err != nil || !ent.Hit {
			t.Fatalf("Lookup(%d) = %+v, %v; want a hit", k, ent, err)
		}
		if d := ent.FreshUntil.Sub(ent.StoredAt); d != time.Duration(k)*time.Second {
			t.Errorf("Lookup(%d): lifetime %v, want %ds", k, d, k)
		}
	}
	runs.Store(0)
	e.clk.Advance(11 * time.Second)
	wantCall(t, fn, 10, 10, "10s answer after 11s")
	wantCall(t, fn, 40, 40, "40s answer after 11s")
	if n := runs.Load(); n != 1 {
		t.Fatalf("after 11s: fn ran %d times, want 1 (the 10s answer only)", n)
	}
	e.clk.Advance(30 * time.Second)
	wantCall(t, fn, 40, 40, "40s answer after 41s")
	if n := runs.Load(); n != 2 {
		t.Fatalf("after 41s: fn ran %d times, want 2", n)
	}
	e.wantNoFaults(t)
}

func testExpireJitter(t *testing.T, e *freshEnv) {
	const (
		expire = time.Minute
		frac   = 0.5
		keys   = 40
	)
	o := e.origin()
	fn := memo.New(o.fn, e.options(ns(t, "jitter"), memo.Expire(expire), memo.ExpireJitter(frac))...)
	ctx := context.Background()
	lifetimes := map[time.Duration]bool{}
	lo := time.Duration(float64(expire) * (1 - frac))
	for k := range int64(keys) {
		wantCall(t, fn, k, 0, "first call")
		ent, err := fn.Lookup(ctx, k, memo.UseCache)
		if err != nil || !ent.Hit {
			t.Fatalf("Lookup(%d) = %+v, %v; want a hit", k, ent, err)
		}
		d := ent.FreshUntil.Sub(ent.StoredAt)
		if d < lo || d > expire {
			t.Errorf("Lookup(%d): lifetime %v, want in [%v, %v]", k, d, lo, expire)
		}
		lifetimes[d] = true
	}
	if len(lifetimes) < 2 {
		t.Errorf("%d entries written together all live %v: no jitter", keys, lifetimes)
	}
	o.wantRuns(t, keys, "one call per key")
	e.wantNoFaults(t)
}

func testPeek(t *testing.T, e *freshEnv) {
	name := ns(t, "peek")
	o := e.origin()
	opts := e.options(name, memo.Expire(30*time.Second), memo.StaleWhileRevalidate(time.Minute))
	fn := memo.New(o.fn, opts...)
	ctx := context.Background()
	if v, ok, err := fn.Peek(ctx, 1); v != 0 || ok || err != nil {
		t.Fatalf("Peek(1) on an empty cache = %d, %v, %v; want 0, false, nil", v, ok, err)
	}
	o.wantRuns(t, 0, "Peek on a miss")
	o.val.Store(4)
	wantCall(t, fn, 1, 4, "first call")
	if v, ok, err := fn.Peek(ctx, 1); v != 4 || !ok || err != nil {
		t.Fatalf("Peek(1) = %d, %v, %v; want 4, true, nil", v, ok, err)
	}
	other := e.origin()
	b := memo.New(other.fn, opts...)
	if v, ok, err := b.Peek(ctx, 1); v != 4 || !ok || err != nil {
		t.Fatalf("second instance's Peek(1) = %d, %v, %v; want 4, true, nil", v, ok, err)
	}
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if _, ok, err := fn.Peek(cctx, 1); ok || !errors.Is(err, context.Canceled) {
		t.Errorf("Peek(cancelled ctx) = %v, %v; want false, context.Canceled", ok, err)
	}

	e.clk.Advance(31 * time.Second)
	if v, ok, err := fn.Peek(ctx, 1); ok || err != nil {
		t.Fatalf("Peek(1) of a stale entry = %d, %v, %v; want 0, false, nil", v, ok, err)
	}
	o.wantRuns(t, 1, "Peek of a stale entry")
	other.wantRuns(t, 0, "Peek")
	// The stale entry is still there: a call answers with it.
	if ent, err := fn.Lookup(ctx, 1, memo.UseCache); err != nil || !ent.Stale {
		t.Fatalf("Lookup after the stale Peek = %+v, %v; want a stale hit", ent, err)
	}
	eventually(t, "the refresh started by Lookup", peeks(fn, 1, 4))
	e.wantNoFaults(t)
}

func testSet(t *testing.T, e *freshEnv) {
	name := ns(t, "set")
	oa, ob := e.origin(), e.origin()
	opts := e.options(name, memo.Expire(time.Minute))
	a, b := memo.New(oa.fn, opts...), memo.New(ob.fn, opts...)
	ctx := context.Background()
	if err := a.Set(ctx, 1, 42); err != nil {
		t.Fatalf("Set(1, 42) = %v", err)
	}
	wantCall(t, b, 1, 42, "second instance after Set")
	wantCall(t, a, 1, 42, "after Set")
	if v, ok, err := b.Peek(ctx, 1); v != 42 || !ok || err != nil {
		t.Fatalf("second instance's Peek(1) after Set = %d, %v, %v; want 42, true, nil", v, ok, err)
	}
	oa.wantRuns(t, 0, "a after Set")
	ob.wantRuns(t, 0, "b after Set")

	// Set wins over a computation under way.
	oa.val.Store(5)
	oa.drain()
	release := oa.hold()
	type answer struct {
		v   int64
		err error
	}
	done := make(chan answer, 1)
	go func() {
		v, err := a.Call(ctx, 2)
		done <- answer{v, err}
	}()
	oa.waitStarted(t, "a.Call(2)")
	var err error
	e.atOnce(t, "Set during a computation", func() { err = a.Set(ctx, 2, 77) })
	if err != nil {
		t.Fatalf("Set(2, 77) = %v", err)
	}
	release()
	if got := <-done; got.v != 5 || got.err != nil {
		t.Errorf("the Call under way during Set = %d, %v; want fn's 5, nil", got.v, got.err)
	}
	wantCall(t, a, 2, 77, "after the computation under way during Set ended")
	wantCall(t, b, 2, 77, "second instance after Set")
	oa.wantRuns(t, 1, "a")
	ob.wantRuns(t, 0, "b")
	e.wantNoFaults(t)
}

// testStaleCrossInstance: stale answers and their refresh seen by two
// instances of a function, as two processes sharing the store.
func testStaleCrossInstance(t *testing.T, e *freshEnv) {
	name := ns(t, "xswr")
	oa, ob := e.origin(), e.origin()
	opts := e.options(name, memo.Expire(30*time.Second), memo.StaleWhileRevalidate(time.Minute))
	a, b := memo.New(oa.fn, opts...), memo.New(ob.fn, opts...)
	ctx := context.Background()
	oa.val.Store(1)
	wantCall(t, a, 1, 1, "a's first call")
	wantCall(t, b, 1, 1, "b after a's call")
	ob.wantRuns(t, 0, "b after a's call")

	e.clk.Advance(31 * time.Second)
	ob.val.Store(2)
	ob.drain()
	release := ob.hold()
	e.callAtOnce(t, b, 1, 1, "b's stale call")
	ob.waitStarted(t, "b's refresh")
	release()
	eventually(t, "b's refresh seen by a", peeks(a, 1, 2))
	wantCall(t, a, 1, 2, "a after b's refresh")
	if ent, err := a.Lookup(ctx, 1, memo.UseCache); err != nil || ent.Stale {
		t.Fatalf("a.Lookup after b's refresh = %+v, %v; want a fresh hit", ent, err)
	}
	oa.wantRuns(t, 1, "a")
	ob.wantRuns(t, 1, "b")
	e.wantNoFaults(t)
}
