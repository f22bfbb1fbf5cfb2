package memo

import (
	"context"
	"errors"
	"fmt"
	"hash/maphash"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"time"
)

// PanicError is what a caller of a memoized function panics with when fn
// panicked while computing the answer it waited for. Value is what fn
// panicked with; Stack is fn's goroutine stack at the panic. A panic of fn
// whose callers have all left is reported to [OnError] as a *PanicError.
type PanicError struct {
	Value any
	Stack []byte
}

// Error returns the panic value and fn's stack.
func (p *PanicError) Error() string {
	return fmt.Sprintf("memo: fn panicked: %v\n\n%s", p.Value, p.Stack)
}

// Unwrap returns the panic value when it is an error.
func (p *PanicError) Unwrap() error {
	err, _ := p.Value.(error)
	return err
}

var errGoexit = errors.New("memo: fn called runtime.Goexit")

// gshard, a shard of a group, runs at most one flight at a time per key: the whole miss of that
// key (read the tiers, run fn, write the answer). Unlike singleflight, each
// caller waits on its own context and leaves alone when it ends; the flight
// goes on without it, so that a caller giving up never starts a second run.
//
// Invalidations (Forget, Clear) fence flights: a flight covered by one
// writes nothing once the invalidation has begun, and an invalidation waits
// for a write already under way before it deletes.
type gshard[T any] struct {
	mu      sync.Mutex
	m       map[string]*flight[T] // the flight under way per key; guarded by mu
	forgets map[string]int        // keys with a Forget under way; guarded by mu
	clears  int                   // Clears under way; guarded by mu
}

// group is split by key into shards of their own lock, so that calls for
// different keys rarely wait on each other.
type group[T any] struct {
	seed   maphash.Seed
	once   sync.Once
	shards [groupShards]gshard[T]
}

const groupShards = 32

func (g *group[T]) shard(key string) *gshard[T] {
	g.once.Do(func() { g.seed = maphash.MakeSeed() })
	return &g.shards[maphash.String(g.seed, key)%groupShards]
}

func (g *group[T]) do(ctx context.Context, key string, fresh bool, w work[T], orphan func(context.Context, *PanicError)) (T, bool, error) {
	return g.shard(key).do(ctx, key, fresh, w, orphan)
}

// start starts a background flight for key running w, unless a flight
// for key is under way or an invalidation of key is; it reports whether it
// did. w runs on a context that keeps ctx's values but not its
// cancellation, with a deadline timeout away, made only if it starts.
func (g *group[T]) start(ctx context.Context, key string, timeout time.Duration, w work[T], orphan func(context.Context, *PanicError)) bool {
	return g.shard(key).start(ctx, key, timeout, w, orphan)
}

// running reports whether a flight for key is under way that runs fn or
// refreshes in the background.
func (g *group[T]) running(key string) bool { return g.shard(key).flightOf(key) }

// voided reports whether an invalidation covers f.
func (g *group[T]) voided(f *flight[T]) bool {
	f.g.mu.Lock()
	defer f.g.mu.Unlock()
	return f.dropped
}

func (g *group[T]) computing(f *flight[T])   { f.g.computing(f) }
func (g *group[T]) answer(f *flight[T], v T) { f.g.answer(f, v) }
func (g *group[T]) beginWrite(f *flight[T]) bool {
	return f.g.beginWrite(f)
}
func (g *group[T]) endWrite(f *flight[T]) { f.g.endWrite(f) }

// invalidate starts an invalidation of key, or of every key when all is
// true (see gshard.invalidate), and returns the writes to wait for.
func (g *group[T]) invalidate(key string, all bool) []chan struct{} {
	if !all {
		return g.shard(key).invalidate(key, false)
	}
	var writes []chan struct{}
	for i := range g.shards {
		writes = append(writes, g.shards[i].invalidate("", true)...)
	}
	return writes
}

// invalidated ends what invalidate started.
func (g *group[T]) invalidated(key string, all bool) {
	if !all {
		g.shard(key).invalidated(key, false)
		return
	}
	for i := range g.shards {
		g.shards[i].invalidated("", true)
	}
}

// flight is one run of the miss path for a key.
type flight[T any] struct {
	// early is set once, before ready is marked, and read only after:
	// the answer, known before its write ends.
	early T
	// val and panic are set once, before done is marked, and read only
	// after.
	val   T
	panic *PanicError

	taken atomic.Int32 // callers that took the answer: the first owns it
	g     *gshard[T]   // the shard of the group that holds it; set once

	// These fields are guarded by group.mu.
	isReady bool          // early is set
	isDone  bool          // val and panic are set; no write is under way
	ready   chan struct{} // made by the first waiter, closed when isReady is set
	done    chan struct{} // made by the first waiter, closed when isDone is set
	waiters int           // callers waiting on done
	dropped bool          // an invalidation covers the flight: write nothing
	fresh   bool          // the flight runs fn rather than answering from a tier
	bg      bool          // a background refresh: no caller started it
	writing chan struct{} // non-nil while a write runs; closed when it ends
}

// work is a flight's body. It calls g.answer with the answer as soon as it
// is known, then writes it (between g.beginWrite and g.endWrite), and
// returns the final result.
type work[T any] func(ctx context.Context, fl *flight[T]) T

// do returns the result of the flight for key, starting one with w when
// none is under way (or, when fresh is true, none that runs fn). first is true for the first caller to take the
// result, which may own it; the others must copy what they mutate. do
// panics with a *PanicError when w panicked.
//
// A caller whose ctx cannot be cancelled runs a new flight on its own
// goroutine; otherwise the flight runs on a goroutine of its own, with a
// context that keeps ctx's values but not its cancellation or deadline.
// A caller whose ctx ends returns ctx.Err(), unless the answer is already
// known and only its write is under way: then it gets the answer. orphan
// receives a panic of a flight that no caller waited for.
func (g *gshard[T]) do(ctx context.Context, key string, fresh bool, w work[T], orphan func(context.Context, *PanicError)) (v T, first bool, err error) {
	g.mu.Lock()
	if g.m == nil {
		g.m = make(map[string]*flight[T])
	}
	f := g.m[key]
	for fresh && f != nil && !f.fresh && !f.isDone {
		// A caller that wants an answer fn computes does not take one read
		// from a tier: it waits for that flight to end, then starts its
		// own, so that fn still runs once at a time.
		if f.done == nil {
			f.done, f.ready = make(chan struct{}), make(chan struct{})
		}
		done := f.done
		g.mu.Unlock()
		select {
		case <-done:
		case <-ctx.Done():
			var zero T
			return zero, false, ctx.Err()
		}
		g.mu.Lock()
		f = g.m[key]
	}
	if f == nil {
		f = &flight[T]{dropped: g.clears > 0 || g.forgets[key] > 0, fresh: fresh, g: g}
		g.m[key] = f
		if ctx.Done() == nil {
			g.mu.Unlock()
			g.run(ctx, key, f, w, nil)
			return g.take(f)
		}
		go g.run(context.WithoutCancel(ctx), key, f, w, orphan)
	}
	if f.isDone {
		g.mu.Unlock()
		return g.take(f)
	}
	if f.done == nil {
		f.done, f.ready = make(chan struct{}), make(chan struct{})
	}
	f.waiters++
	g.mu.Unlock()

	select {
	case <-f.done:
		return g.take(f)
	case <-ctx.Done():
	}
	select {
	case <-f.done:
		return g.take(f)
	case <-f.ready:
		// The answer is known and its write is under way: a caller whose
		// deadline came gets the answer rather than an error.
		g.mu.Lock()
		f.waiters--
		g.mu.Unlock()
		return f.early, f.taken.Add(1) == 1, nil
	default:
	}
	g.mu.Lock()
	f.waiters--
	g.mu.Unlock()
	var zero T
	return zero, false, ctx.Err()
}

func (g *gshard[T]) take(f *flight[T]) (T, bool, error) {
	if f.panic != nil {
		panic(f.panic)
	}
	return f.val, f.taken.Add(1) == 1, nil
}

func (g *gshard[T]) start(ctx context.Context, key string, timeout time.Duration, w work[T], orphan func(context.Context, *PanicError)) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.m[key] != nil || g.clears > 0 || g.forgets[key] > 0 {
		return false
	}
	if g.m == nil {
		g.m = make(map[string]*flight[T])
	}
	f := &flight[T]{bg: true, g: g}
	g.m[key] = f
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), timeout)
	go g.run(rctx, key, f, func(ctx context.Context, fl *flight[T]) T {
		defer cancel()
		return w(ctx, fl)
	}, orphan)
	return true
}

func (g *gshard[T]) flightOf(key string) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	f := g.m[key]
	return f != nil && (f.bg || f.fresh)
}

// run runs w for f and ends the flight. orphan is nil when the caller runs
// the flight itself.
func (g *gshard[T]) run(ctx context.Context, key string, f *flight[T], w work[T], orphan func(context.Context, *PanicError)) {
	normal := false
	defer func() {
		if !normal {
			if r := recover(); r != nil {
				f.panic = &PanicError{Value: r, Stack: debug.Stack()}
			} else {
				f.panic = &PanicError{Value: errGoexit}
			}
		}
		g.mu.Lock()
		f.isDone = true
		if g.m[key] == f {
			delete(g.m, key)
		}
		if f.done != nil {
			close(f.done)
		}
		waiters := f.waiters
		g.mu.Unlock()
		if f.panic != nil && waiters == 0 && orphan != nil {
			orphan(ctx, f.panic)
		}
	}()
	f.val = w(ctx, f)
	normal = true
}

// computing marks f as running fn: its answer is fresh.
func (g *gshard[T]) computing(f *flight[T]) {
	g.mu.Lock()
	f.fresh = true
	g.mu.Unlock()
}

// answer makes v known to callers whose context ends before the flight
// does.
func (g *gshard[T]) answer(f *flight[T], v T) {
	g.mu.Lock()
	f.early, f.isReady = v, true
	if f.ready != nil {
		close(f.ready)
	}
	g.mu.Unlock()
}

// beginWrite reports whether f may write; if so, the write must be ended
// with endWrite, and an invalidation that comes meanwhile waits for it.
func (g *gshard[T]) beginWrite(f *flight[T]) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	if f.dropped {
		return false
	}
	f.writing = make(chan struct{})
	return true
}

func (g *gshard[T]) endWrite(f *flight[T]) {
	g.mu.Lock()
	close(f.writing)
	f.writing = nil
	g.mu.Unlock()
}

// invalidate starts an invalidation of key (or of every key, when all is
// true): flights under way are dropped, so that they write nothing and
// later calls start afresh, and flights started until the matching
// invalidated call are dropped at birth. It returns the writes under way,
// to be waited for before deleting.
func (g *gshard[T]) invalidate(key string, all bool) (writes []chan struct{}) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if all {
		g.clears++
	} else {
		if g.forgets == nil {
			g.forgets = make(map[string]int)
		}
		g.forgets[key]++
	}
	for k, f := range g.m {
		if all || k == key {
			f.dropped = true
			if f.writing != nil {
				writes = append(writes, f.writing)
			}
			delete(g.m, k)
		}
	}
	return writes
}

// invalidated ends an invalidation that invalidate started.
func (g *gshard[T]) invalidated(key string, all bool) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if all {
		g.clears--
	} else if g.forgets[key]--; g.forgets[key] == 0 {
		delete(g.forgets, key)
	}
	// A flight born while the invalidation ran may have read the tiers
	// before its deletes landed: it serves no caller that comes after.
	for k, f := range g.m {
		if (all || k == key) && f.dropped {
			delete(g.m, k)
		}
	}
}
