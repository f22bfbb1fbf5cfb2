package memo

import (
	"context"
	"errors"
	"fmt"
	"hash/maphash"
	"runtime/debug"
	"strings"
	"sync"
	"sync/atomic"
)

// PanicError is what a caller of a memoized function panics with when fn
// panicked while computing the answer it waited for. Value is what fn
// panicked with; Stack is fn's goroutine stack at the panic.
type PanicError struct {
	Value any
	Stack []byte
}

func (p *PanicError) Error() string {
	return fmt.Sprintf("memo: fn panicked: %v\n\n%s", p.Value, p.Stack)
}

// Unwrap returns the panic value when it is an error.
func (p *PanicError) Unwrap() error {
	err, _ := p.Value.(error)
	return err
}

var errGoexit = errors.New("memo: fn called runtime.Goexit")

// group deduplicates concurrent computations of one key, like
// golang.org/x/sync/singleflight, with context semantics that singleflight
// lacks: the computation runs on its own goroutine with a context that keeps
// the first caller's values but none of its cancellation; each caller waits
// on its own ctx and leaves alone when it ends; the computation's context is
// cancelled only when every caller has left.
type group[T any] struct {
	mu sync.Mutex
	m  map[string]*flight[T]
	// stored counts, per stripe of keys, the flights that finished storing
	// (after) and left the map. A caller that read the store before one of
	// them left may have read it before the write landed: do tells it to
	// read again.
	stored [storedStripes]atomic.Uint64
	seed   maphash.Seed
	once   sync.Once
}

const storedStripes = 64

// noCheck is the seen value of a caller that must not be told to reread.
const noCheck = ^uint64(0)

// storedCount returns the stripe counter of key.
func (g *group[T]) storedCount(key string) *atomic.Uint64 {
	g.once.Do(func() { g.seed = maphash.MakeSeed() })
	return &g.stored[maphash.String(g.seed, key)%storedStripes]
}

// errReread is do's answer to a caller whose read of the store may predate
// a write that has since landed.
var errReread = errors.New("memo: read the store again")

type flight[T any] struct {
	done chan struct{} // nil until a caller waits; guarded by group.mu

	cancel   context.CancelFunc
	waiters  int // guarded by group.mu
	taken    atomic.Int32
	dropped  atomic.Bool // Forget or Clear came while work ran: do not store
	finished bool        // work has returned; guarded by group.mu
	storing  bool        // finished, and after is storing the answer; guarded by group.mu
	noStore  atomic.Bool // work's answer is not to be stored (an error)
	val      T
	panic    *PanicError
}

// do returns the result of work for key, running work at most once at a
// time per key. first is true for the first caller to take this flight's
// result, which may own it; the others must copy what they mutate. do
// panics with a *PanicError when work panicked.
// After work returns, its result goes to the callers at once; then, while
// the flight still answers callers that join, after runs (memo stores the
// answer there, so that a slow store never delays a caller). inline allows
// a caller that cannot be cancelled to run work and after on its own
// goroutine: only when after is quick.
//
// seen is g.stored as the caller read it before reading the store; when no
// flight for key is under way and g.stored has moved since, do returns
// errReread instead of starting one.
//
// A caller that wants an answer computed after it came (fresh) does not
// take that of a flight that has already finished.
func (g *group[T]) do(ctx context.Context, key string, inline, fresh bool, seen uint64, work func(context.Context, *flight[T]) T,
	after func(context.Context, *flight[T])) (v T, first bool, err error) {
	g.mu.Lock()
	if g.m == nil {
		g.m = make(map[string]*flight[T])
	}
	f, ok := g.m[key]
	if ok && f.finished && (fresh || !f.storing) {
		// Only an answer being stored is shared after the fact: it is
		// what the store is about to hold. Start another; the finished
		// flight leaves the map alone.
		ok = false
	}
	if ok && f.finished {
		g.mu.Unlock()
		if f.panic != nil {
			panic(f.panic)
		}
		return f.val, f.taken.Add(1) == 1, nil
	}
	if !ok && seen != noCheck && g.storedCount(key).Load() != seen {
		g.mu.Unlock()
		var zero T
		return zero, false, errReread
	}
	if !ok {
		if inline && ctx.Done() == nil {
			// A caller that cannot be cancelled never leaves early, so it
			// runs work itself, sparing a goroutine, on its own context:
			// nothing ever cancels it, as nothing would cancel the shared
			// one while this caller waits.
			// Its done channel is made only if another caller joins.
			f = &flight[T]{cancel: func() {}, waiters: 1}
			g.m[key] = f
			g.mu.Unlock()
			g.run(ctx, key, f, work, after)
			if f.panic != nil {
				panic(f.panic)
			}
			return f.val, f.taken.Add(1) == 1, nil
		}
		fctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
		f = &flight[T]{done: make(chan struct{}), cancel: cancel}
		g.m[key] = f
		go g.run(fctx, key, f, work, after)
	}
	if f.done == nil {
		f.done = make(chan struct{})
	}
	f.waiters++
	g.mu.Unlock()

	select {
	case <-f.done:
	case <-ctx.Done():
		g.mu.Lock()
		f.waiters--
		if f.waiters == 0 {
			f.cancel()
			if g.m[key] == f {
				delete(g.m, key) // later callers start afresh
			}
		}
		g.mu.Unlock()
		var zero T
		return zero, false, ctx.Err()
	}
	if f.panic != nil {
		panic(f.panic)
	}
	return f.val, f.taken.Add(1) == 1, nil
}

func (g *group[T]) run(ctx context.Context, key string, f *flight[T], work func(context.Context, *flight[T]) T,
	after func(context.Context, *flight[T])) {
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
		f.finished = true
		f.storing = normal && after != nil && !f.noStore.Load() && !f.dropped.Load()
		done := f.done // made under g.mu by whoever waits
		g.mu.Unlock()
		if done != nil {
			close(done)
		}
		if normal && after != nil {
			after(ctx, f)
		}
		f.cancel()
		g.mu.Lock()
		if g.m[key] == f {
			delete(g.m, key)
		}
		if after != nil {
			g.storedCount(key).Add(1)
		}
		g.mu.Unlock()
	}()
	f.val = work(ctx, f)
	normal = true
}

// drop marks the flights under way whose key has the given prefix (a key,
// or a namespace key and ':') so that they do not store their answers.
func (g *group[T]) drop(prefix string, exact bool) {
	g.mu.Lock()
	defer g.mu.Unlock()
	for k, f := range g.m {
		if k == prefix || !exact && strings.HasPrefix(k, prefix) {
			f.dropped.Store(true)
		}
	}
}
