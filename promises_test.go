package memo_test

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/gomemo/memo"
	"github.com/gomemo/memo/backends/memory"
)

// The tests of memo's promises (issue 9), one per promise. Each says, in
// its comment, what change to memo would make it fail.

// slowStore is a byte store whose writes take setDelay and whose reads take
// getDelay, as a remote store on a slow link does.
type slowStore struct {
	mem                *memory.Backend
	getDelay, setDelay time.Duration
}

func newSlowStore(get, set time.Duration) *slowStore {
	return &slowStore{mem: memory.New(), getDelay: get, setDelay: set}
}

func sleepCtx(ctx context.Context, d time.Duration) error {
	if d == 0 {
		return nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (s *slowStore) Get(ctx context.Context, key string) ([]byte, bool, error) {
	if err := sleepCtx(ctx, s.getDelay); err != nil {
		return nil, false, err
	}
	return s.mem.Get(ctx, key)
}

func (s *slowStore) Set(ctx context.Context, key string, v []byte, ttl time.Duration) error {
	v = append([]byte(nil), v...)
	if err := sleepCtx(ctx, s.setDelay); err != nil {
		return err
	}
	return s.mem.Set(ctx, key, v, ttl)
}

func (s *slowStore) Delete(ctx context.Context, key string) error { return s.mem.Delete(ctx, key) }
func (s *slowStore) Clear(ctx context.Context, ns string) error   { return s.mem.Clear(ctx, ns) }

// Promise 3, read-your-writes: when Call returns an answer fn computed, the
// entry is in the store, so a second instance sharing the store hits. It
// fails if the write follows the answer (write-behind), as it used to.
func TestPromiseReadYourWrites(t *testing.T) {
	store := newSlowStore(0, 5*time.Millisecond)
	var runs atomic.Int64
	fn := func(ctx context.Context, id int) (int, error) { runs.Add(1); return id * 2, nil }
	a := memo.New(fn, memo.Namespace("ryw"), memo.WithBackend(store))
	b := memo.New(fn, memo.Namespace("ryw"), memo.WithBackend(store))
	ctx := context.Background()
	const rounds = 200
	for i := range rounds {
		if got, err := a.Call(ctx, i); got != 2*i || err != nil {
			t.Fatalf("a.Call(%d) = %d, %v; want %d, nil", i, got, err, 2*i)
		}
		if got, err := b.Call(ctx, i); got != 2*i || err != nil {
			t.Fatalf("b.Call(%d) = %d, %v; want %d, nil", i, got, err, 2*i)
		}
	}
	if n := runs.Load(); n != rounds {
		t.Errorf("fn ran %d times for %d keys read by two instances, want %d (0 extra runs)", n, rounds, rounds)
	}
}

// Promise 3's exception: a caller whose deadline passes while the write is
// under way gets fn's answer at its deadline, not an error.
func TestPromiseAnswerAtDeadlineDuringWrite(t *testing.T) {
	store := newSlowStore(0, 200*time.Millisecond)
	f := memo.New(func(ctx context.Context, id int) (int, error) { return id + 1, nil },
		memo.Namespace("ryw-deadline"), memo.WithBackend(store), memo.Timeout(time.Second))
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if got, err := f.Call(ctx, 1); got != 2 || err != nil {
		t.Fatalf("Call(1) with a deadline during the write = %d, %v; want 2, nil", got, err)
	}
}

// Promise 4, invalidation wins: after Forget (or Clear) returns, no call
// returns an answer computed before it, and no write of one lands later. The
// source changes, then Forget: every later call must see the new value, on
// the local tier and on a store whose writes take 5 ms, 1,000 rounds each.
// It fails if Forget
// does not wait for a write under way, or if a flight started while Forget
// runs may still write what it read before the delete.
func TestPromiseInvalidationWins(t *testing.T) {
	local, _ := memo.OwnLocalTier(1 << 20)
	tiers := map[string][]memo.Option{
		"local":      {local},
		"slow store": {memo.WithBackend(newSlowStore(0, 5*time.Millisecond))},
		"memory":     {memo.WithBackend(memory.New())},
	}
	for name, opts := range tiers {
		for _, op := range []string{"Forget", "Clear"} {
			t.Run(name+"/"+op, func(t *testing.T) {
				t.Parallel()
				const rounds = 1000
				var source atomic.Int64
				f := memo.New(func(ctx context.Context, id int) (int64, error) {
					v := source.Load()
					time.Sleep(time.Duration(v%3) * 100 * time.Microsecond)
					return v, nil
				}, append([]memo.Option{memo.Namespace("inval-" + op)}, opts...)...)
				ctx := context.Background()
				stale := 0
				for i := range rounds {
					var wg sync.WaitGroup
					wg.Go(func() { f.Call(ctx, 1) }) // may compute from the old source
					if i%2 == 0 {
						time.Sleep(time.Duration(i%5) * 50 * time.Microsecond)
					}
					want := source.Add(1)
					var err error
					if op == "Forget" {
						err = f.Forget(ctx, 1)
					} else {
						err = f.Clear(ctx)
					}
					if err != nil {
						t.Fatal(err)
					}
					if got, _ := f.Call(ctx, 1); got < want {
						stale++
					}
					wg.Wait()
					if got, _ := f.Call(ctx, 1); got < want {
						stale++
					}
				}
				if stale != 0 {
					t.Errorf("%d stale answers after %s in %d rounds, want 0", stale, op, rounds)
				}
			})
		}
	}
}

// Promise 5: fn runs at most once at a time per key, whatever its callers
// do. Ten callers with 20 ms deadlines and a 500 ms fn: one run; callers
// with contexts already done: no run, ctx.Err() at once. It fails if a
// caller that leaves deletes the flight or cancels fn.
func TestPromiseOneRunWhateverCallersDo(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		local, _ := memo.OwnLocalTier(1 << 20)
		var runs, running, maxRunning atomic.Int64
		f := memo.New(func(ctx context.Context, id int) (int, error) {
			runs.Add(1)
			n := running.Add(1)
			defer running.Add(-1)
			for m := maxRunning.Load(); n > m && !maxRunning.CompareAndSwap(m, n); m = maxRunning.Load() {
			}
			time.Sleep(500 * time.Millisecond)
			return id, nil
		}, memo.Namespace("one-run"), local)
		var wg sync.WaitGroup
		for range 10 {
			wg.Go(func() {
				ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
				defer cancel()
				if _, err := f.Call(ctx, 1); !errors.Is(err, context.DeadlineExceeded) {
					t.Errorf("Call with a 20 ms deadline = %v, want DeadlineExceeded", err)
				}
			})
		}
		wg.Wait()
		done, cancel := context.WithCancel(context.Background())
		cancel()
		for range 1000 {
			wg.Go(func() {
				if _, err := f.Call(done, 2); !errors.Is(err, context.Canceled) {
					t.Errorf("Call with a done context = %v, want Canceled", err)
				}
			})
		}
		wg.Wait()
		// Later callers join the run under way, which their predecessors
		// left.
		for range 10 {
			wg.Go(func() {
				ctx, cancel := context.WithTimeout(context.Background(), 40*time.Millisecond)
				defer cancel()
				f.Call(ctx, 1)
			})
		}
		wg.Wait()
		time.Sleep(time.Second)
		if got, err := f.Call(context.Background(), 1); got != 1 || err != nil {
			t.Errorf("Call(1) after the run = %d, %v; want 1, nil", got, err)
		}
		if r, m := runs.Load(), maxRunning.Load(); r != 1 || m != 1 {
			t.Errorf("fn ran %d times (%d at once), want once", r, m)
		}
	})
}

// stalledStore never answers: each call blocks until its context ends.
type stalledStore struct{ calls atomic.Int64 }

func (s *stalledStore) Get(ctx context.Context, _ string) ([]byte, bool, error) {
	s.calls.Add(1)
	<-ctx.Done()
	return nil, false, ctx.Err()
}
func (s *stalledStore) Set(ctx context.Context, _ string, _ []byte, _ time.Duration) error {
	s.calls.Add(1)
	<-ctx.Done()
	return ctx.Err()
}
func (s *stalledStore) Delete(ctx context.Context, _ string) error { <-ctx.Done(); return ctx.Err() }

// Promise 6: a cache fault costs latency, never an answer, even under the
// caller's deadline: 200 ms deadline, stalled store, Timeout 1 s, 50 ms fn:
// fn's answer. It fails if the read may take the whole Timeout regardless
// of the caller's deadline. (The margins leave room for a loaded machine
// under -race: the read's share is 67 ms, fn 50 ms, of 200 ms.)
func TestPromiseFaultUnderDeadline(t *testing.T) {
	f := memo.New(func(ctx context.Context, id int) (int, error) {
		time.Sleep(50 * time.Millisecond)
		return id, nil
	}, memo.Namespace("fault-deadline"), memo.WithBackend(&stalledStore{}), memo.Timeout(time.Second), memo.OnError(func(context.Context, error) {}))
	for i := range 10 {
		ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
		got, err := f.Call(ctx, i)
		cancel()
		if got != i || err != nil {
			t.Fatalf("Call(%d) with a 200 ms deadline on a stalled store = %d, %v; want %d, nil", i, got, err, i)
		}
	}
}

// Promise 7: a stalled store costs at most Timeout + 10 ms per call, misses
// included: a flight whose read just failed does not also wait on a write.
// It fails if the write is attempted after a failed read (2 x Timeout).
func TestPromiseTimeoutHolds(t *testing.T) {
	const timeout = 50 * time.Millisecond
	store := &stalledStore{}
	f := memo.New(func(ctx context.Context, id int) (int, error) { return id, nil },
		memo.Namespace("timeout-holds"), memo.WithBackend(store), memo.Timeout(timeout), memo.OnError(func(context.Context, error) {}),
		memo.Breaker(0, 0)) // every read reaches the store: the bound is what is tested
	over := 0
	for i := range 20 {
		start := time.Now()
		if got, err := f.Call(context.Background(), i); got != i || err != nil {
			t.Fatalf("Call(%d) = %d, %v; want %d, nil", i, got, err, i)
		}
		if el := time.Since(start); el > timeout+10*time.Millisecond {
			over++
			t.Logf("Call(%d) took %v", i, el)
		}
	}
	if over > 2 { // a loaded machine may delay a wake-up or two; 2 x Timeout would fail all
		t.Errorf("%d of 20 calls took over Timeout + 10 ms on a stalled store", over)
	}
	if n := store.calls.Load(); n != 20 {
		t.Errorf("the stalled store got %d calls for 20 misses, want 20 (reads only)", n)
	}
}

// Promise 8: one clock rule. A wall-clock step back never stops hits on the
// local tier; a step forward never extends an entry. It fails if a local
// copy's deadline is wall-clock, or if a remote entry is checked on the
// monotonic clock.
func TestPromiseOneClockRule(t *testing.T) {
	ctx := context.Background()
	t.Run("local, step back", func(t *testing.T) {
		clk := memo.NewFakeClock(time.Date(2026, 12, 3, 0, 0, 0, 0, time.UTC))
		local, _ := memo.OwnLocalTier(1 << 20)
		var runs atomic.Int64
		f := memo.New(func(ctx context.Context, id int) (int, error) { runs.Add(1); return id, nil },
			memo.Namespace("clock-back"), local, memo.WithClock(clk), memo.Expire(time.Minute))
		f.Call(ctx, 1)
		clk.StepWall(-time.Hour)
		clk.Advance(30 * time.Second)
		f.Call(ctx, 1)
		if n := runs.Load(); n != 1 {
			t.Errorf("fn ran %d times: a wall-clock step back stopped a hit", n)
		}
		clk.Advance(31 * time.Second)
		f.Call(ctx, 1)
		if n := runs.Load(); n != 2 {
			t.Errorf("fn ran %d times, want 2: the entry outlived Expire", n)
		}
	})
	for name, opt := range map[string]func() memo.Option{
		"local":  func() memo.Option { o, _ := memo.OwnLocalTier(1 << 20); return o },
		"remote": func() memo.Option { return memo.WithBackend(memory.New()) },
	} {
		t.Run(name+", step forward", func(t *testing.T) {
			clk := memo.NewFakeClock(time.Date(2026, 12, 3, 0, 0, 0, 0, time.UTC))
			var runs atomic.Int64
			f := memo.New(func(ctx context.Context, id int) (int, error) { runs.Add(1); return id, nil },
				memo.Namespace("clock-fwd-"+name), opt(), memo.WithClock(clk), memo.Expire(time.Minute))
			f.Call(ctx, 1)
			clk.StepWall(10 * time.Minute)
			clk.Advance(61 * time.Second)
			f.Call(ctx, 1)
			if n := runs.Load(); n != 2 {
				t.Errorf("fn ran %d times, want 2: a wall-clock step forward extended an entry", n)
			}
		})
	}
}

// Promise 9: nothing is lost or fatal off the caller's goroutine. A panic
// of fn with no caller left goes to OnError; a panic in OnError, or in the
// backend, on the flight's goroutine does not kill the process.
func TestPromiseNothingFatalInBackground(t *testing.T) {
	t.Run("orphan panic reported", func(t *testing.T) {
		got := make(chan error, 1)
		release := make(chan struct{})
		local, _ := memo.OwnLocalTier(1 << 20)
		f := memo.New(func(ctx context.Context, id int) (int, error) {
			<-release
			panic("late kaboom")
		}, memo.Namespace("orphan-panic"), local, memo.OnError(func(_ context.Context, err error) { got <- err }))
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() { defer close(done); f.Call(ctx, 1) }()
		time.Sleep(10 * time.Millisecond)
		cancel()
		<-done
		close(release)
		select {
		case err := <-got:
			var pe *memo.PanicError
			if !errors.As(err, &pe) || pe.Value != "late kaboom" {
				t.Errorf("OnError got %v, want a *PanicError of fn's panic", err)
			}
		case <-time.After(5 * time.Second):
			t.Fatal("fn's panic with no caller left was not reported")
		}
	})
	t.Run("panicking OnError and backend", func(t *testing.T) {
		f := memo.New(func(ctx context.Context, id int) (int, error) { return id, nil },
			memo.Namespace("panicky"), memo.WithBackend(panicStore{}),
			memo.OnError(func(context.Context, error) { panic("hook kaboom") }))
		ctx, cancel := context.WithCancel(context.Background()) // cancellable: the flight runs on its own goroutine
		defer cancel()
		for i := range 3 {
			if got, err := f.Call(ctx, i); got != i || err != nil {
				t.Fatalf("Call(%d) = %d, %v; want %d, nil", i, got, err, i)
			}
		}
	})
}

type panicStore struct{}

func (panicStore) Get(context.Context, string) ([]byte, bool, error) { panic("get kaboom") }
func (panicStore) Set(context.Context, string, []byte, time.Duration) error {
	panic("set kaboom")
}
func (panicStore) Delete(context.Context, string) error { panic("delete kaboom") }

// The errors memo returns are typed and wrap what caused them.
func TestErrors(t *testing.T) {
	ctx := context.Background()
	if !errors.Is(memo.ErrClearUnsupported, errors.ErrUnsupported) {
		t.Error("errors.Is(ErrClearUnsupported, errors.ErrUnsupported) = false, want true")
	}
	noClear := memo.New(func(ctx context.Context, id int) (int, error) { return id, nil },
		memo.Namespace("noclear"), memo.WithBackend(stalledStoreNoClear{}))
	if err := noClear.Clear(ctx); !errors.Is(err, memo.ErrClearUnsupported) {
		t.Errorf("Clear on a backend without Clearer = %v, want ErrClearUnsupported", err)
	}
	local, _ := memo.OwnLocalTier(1 << 20)
	f := memo.New(func(ctx context.Context, id int) (func(), error) { return func() {}, nil },
		memo.Namespace("unencodable"), local, memo.OnError(func(context.Context, error) {}))
	_, err := f.Lookup(ctx, 1, memo.UseCache)
	var ee *memo.EncodeError
	if !errors.As(err, &ee) || ee.Err == nil {
		t.Errorf("Lookup of an unencodable answer = %v, want a *memo.EncodeError wrapping the codec's error", err)
	}
}

type stalledStoreNoClear struct{}

func (stalledStoreNoClear) Get(context.Context, string) ([]byte, bool, error)        { return nil, false, nil }
func (stalledStoreNoClear) Set(context.Context, string, []byte, time.Duration) error { return nil }
func (stalledStoreNoClear) Delete(context.Context, string) error                     { return nil }

// Promise 5 for every mode: a Refresh (an HTTP no-cache request) that comes
// while fn runs for the key shares that run instead of starting another.
func TestPromiseRefreshSharesRun(t *testing.T) {
	local, _ := memo.OwnLocalTier(1 << 20)
	started, release := make(chan struct{}), make(chan struct{})
	var runs, running, maxRunning atomic.Int64
	f := memo.New(func(ctx context.Context, id int) (int, error) {
		n := running.Add(1)
		defer running.Add(-1)
		if n > maxRunning.Load() {
			maxRunning.Store(n)
		}
		if runs.Add(1) == 1 {
			close(started)
		}
		<-release
		return id, nil
	}, memo.Namespace("refresh-shares"), local)
	ctx := context.Background()
	var wg sync.WaitGroup
	wg.Go(func() { f.Call(ctx, 1) })
	<-started
	for range 5 {
		wg.Go(func() {
			if _, err := f.Lookup(ctx, 1, memo.Refresh); err != nil {
				t.Error(err)
			}
		})
	}
	time.Sleep(20 * time.Millisecond) // let the Refresh callers arrive
	close(release)
	wg.Wait()
	if r, m := runs.Load(), maxRunning.Load(); m != 1 {
		t.Errorf("fn ran %d times, %d at once; want never two at once", r, m)
	}
}

// decorated wraps a Backend and counts its calls, as a user's metrics
// decorator would.
type decorated struct {
	memo.Backend
	gets, sets atomic.Int64
}

func (d *decorated) Get(ctx context.Context, key string) ([]byte, bool, error) {
	d.gets.Add(1)
	return d.Backend.Get(ctx, key)
}

func (d *decorated) Set(ctx context.Context, key string, v []byte, ttl time.Duration) error {
	d.sets.Add(1)
	return d.Backend.Set(ctx, key, v, ttl)
}

// The core never looks at a backend's concrete type: behind a decorator a
// backend behaves exactly as it does bare (a miss is one Get and one Set, a
// hit one Get, the write lands before Call returns).
func TestDecoratedBackend(t *testing.T) {
	ctx := context.Background()
	d := &decorated{Backend: memory.New()}
	var runs atomic.Int64
	f := memo.New(func(ctx context.Context, id int) (int, error) { runs.Add(1); return id, nil },
		memo.Namespace("decorated"), memo.WithBackend(d))
	f.Call(ctx, 1)
	if g, s := d.gets.Load(), d.sets.Load(); g != 1 || s != 1 {
		t.Errorf("a miss made %d gets and %d sets, want 1 and 1", g, s)
	}
	if _, ok, _ := d.Backend.Get(ctx, f.Key(1)); !ok {
		t.Error("the entry is not in the store when Call returns")
	}
	f.Call(ctx, 1)
	if g, s, r := d.gets.Load(), d.sets.Load(), runs.Load(); g != 2 || s != 1 || r != 1 {
		t.Errorf("after a hit: %d gets, %d sets, %d runs; want 2, 1, 1", g, s, r)
	}
}

func twoFnsA(ctx context.Context, id int) (string, error) { return "A", nil }
func twoFnsB(ctx context.Context, id int) (string, error) { return "B", nil }

// Promise 2 on the shared local tier: two functions with the same argument
// and result types, no backend and default namespaces never answer for
// each other, and Clear of one leaves the other's entries. It fails if the
// local tier's keys lose the namespace.
func TestPromiseFunctionsApartOnLocalTier(t *testing.T) {
	ctx := context.Background()
	fa, fb := memo.New(twoFnsA), memo.New(twoFnsB)
	for range 2 {
		if a, _ := fa.Call(ctx, 1); a != "A" {
			t.Fatalf("fa.Call(1) = %q, want %q", a, "A")
		}
		if b, _ := fb.Call(ctx, 1); b != "B" {
			t.Fatalf("fb.Call(1) = %q, want %q: one function's entry served to another", b, "B")
		}
	}
	var runs atomic.Int64
	fc := memo.New(func(ctx context.Context, id int) (string, error) { runs.Add(1); return "C", nil }, memo.Namespace("two-fns-c"))
	fc.Call(ctx, 1)
	before := runs.Load()
	if err := fa.Clear(ctx); err != nil {
		t.Fatal(err)
	}
	fc.Call(ctx, 1)
	if n := runs.Load() - before; n != 0 {
		t.Errorf("fn of another namespace ran %d more times: Clear dropped its entries", n)
	}
}

// An answer too large for the local tier is reported, as a backend's
// refusal would be, and still returned.
func TestLocalTooLargeReported(t *testing.T) {
	local, _ := memo.OwnLocalTier(64 << 10)
	var got []error
	f := memo.New(func(ctx context.Context, n int) ([]byte, error) { return make([]byte, n), nil },
		memo.Namespace("local-too-large"), local, memo.OnError(func(_ context.Context, err error) { got = append(got, err) }))
	if v, err := f.Call(context.Background(), 128<<10); len(v) != 128<<10 || err != nil {
		t.Fatalf("Call(128 KiB) = %d bytes, %v; want the answer", len(v), err)
	}
	var be *memo.BackendError
	if len(got) != 1 || !errors.As(got[0], &be) || be.Op != "set" || !errors.Is(got[0], memo.ErrTooLarge) {
		t.Errorf("OnError got %v, want one set fault wrapping ErrTooLarge", got)
	}
}
