package backendtest

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/gomemo/memo"
)

// testItem is the result type of the memo-level tests: nested values,
// pointers, slices, maps, times and bytes.
type testItem struct {
	ID      int64
	Name    string
	Tags    []string
	Attrs   map[string]int
	Parent  *testItem
	Blob    []byte
	Created time.Time
}

func item(id int64) testItem {
	return testItem{
		ID: id, Name: fmt.Sprintf("item %d", id), Tags: []string{"a", "b"},
		Attrs:   map[string]int{"x": 1},
		Parent:  &testItem{ID: id * 10, Name: "parent"},
		Blob:    []byte{0, 1, 0xff},
		Created: time.Date(2026, 11, 25, 8, 0, 0, 999, time.UTC),
	}
}

// faults collects what memo reports.
type faults struct {
	mu   sync.Mutex
	errs []error
}

func (f *faults) hook(_ context.Context, err error) {
	f.mu.Lock()
	f.errs = append(f.errs, err)
	f.mu.Unlock()
}

func (f *faults) all() []error {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]error(nil), f.errs...)
}

// RunMemo runs memo itself over the backends f opens, each case as a
// subtest of t: typed round trips with both codecs (every caller gets its
// own copy, fn runs once), expiry and the remaining TTL that Lookup
// reports, Forget and Clear (which must leave a namespace that the cleared
// one is a prefix of alone), invalidation winning over a computation under
// way (1,000 rounds each of Forget and Clear racing a Call: no stale
// answer afterwards), read-your-writes across two instances of a function
// (1,000 rounds: the second never runs fn), corrupt entries (answered by
// fn, reported, overwritten by the time Call returns) and values of
// o.TooLarge bytes (answered, reported as [memo.ErrTooLarge] by the time
// Call returns). [Run] calls it; call it alone to check memo over a
// backend without the byte-level cases.
func RunMemo(t *testing.T, f Factory, o Options) {
	o = o.withDefaults()
	t.Run("RoundTrip", func(t *testing.T) {
		b := f(t)
		for _, codec := range []memo.Codec{memo.JSON, memo.Msgpack} {
			var runs atomic.Int64
			fn := memo.New(func(_ context.Context, id int64) (testItem, error) { runs.Add(1); return item(id), nil },
				memo.Namespace(ns(t, "rt")), memo.WithBackend(b), memo.WithCodec(codec), memo.Expire(time.Minute))
			ctx := context.Background()
			for i := range 3 {
				got, err := fn.Call(ctx, 5)
				if err != nil {
					t.Fatalf("%s: Call(5) #%d error %v", codec.Name(), i, err)
				}
				if diff := cmp.Diff(item(5), got); diff != "" {
					t.Fatalf("%s: Call(5) #%d differs (-want +got):\n%s", codec.Name(), i, diff)
				}
				got.Tags[0] = "mutated"
			}
			if n := runs.Load(); n != 1 {
				t.Errorf("%s: fn ran %d times for 3 calls, want 1", codec.Name(), n)
			}
		}
	})
	t.Run("ExpiryAndTTL", func(t *testing.T) {
		b := f(t)
		var runs atomic.Int64
		fn := memo.New(func(_ context.Context, id int64) (int64, error) { return runs.Add(1), nil },
			memo.Namespace(ns(t, "ttl")), memo.WithBackend(b), memo.Expire(400*time.Millisecond))
		ctx := context.Background()
		fn.Call(ctx, 1) // returns once its write is done
		e, err := fn.Lookup(ctx, 1, memo.UseCache)
		if err != nil || !e.Hit {
			t.Fatalf("Lookup right after the miss = %+v, %v; want a hit", e, err)
		}
		if rem := time.Until(e.FreshUntil); rem <= 0 || rem > 400*time.Millisecond {
			t.Fatalf("remaining TTL = %v, want in (0, 400ms]", rem)
		}
		o.sleep(500 * time.Millisecond)
		if got, _ := fn.Call(ctx, 1); got != 2 {
			t.Fatalf("Call after a 400ms expiry = %d, want 2 (recomputed); memo must check fresh-until itself", got)
		}
	})
	t.Run("ForgetClear", func(t *testing.T) {
		b := f(t)
		var runs atomic.Int64
		base := ns(t, "fc")
		mk := func(ns string) *memo.Func[int64, int64] {
			return memo.New(func(_ context.Context, id int64) (int64, error) { runs.Add(1); return id, nil },
				memo.Namespace(ns), memo.WithBackend(b), memo.Expire(time.Minute))
		}
		a, ab := mk(base+"a"), mk(base+"ab")
		ctx := context.Background()
		for i := range int64(30) {
			a.Call(ctx, i)
			ab.Call(ctx, i)
		}
		if err := a.Forget(ctx, 0); err != nil {
			t.Fatalf("Forget = %v", err)
		}
		runs.Store(0)
		a.Call(ctx, 0)
		a.Call(ctx, 1)
		if n := runs.Load(); n != 1 {
			t.Fatalf("after Forget(0): fn ran %d times for keys 0 and 1, want 1", n)
		}
		if err := a.Clear(ctx); err != nil {
			t.Fatalf("Clear = %v", err)
		}
		runs.Store(0)
		for i := range int64(30) {
			a.Call(ctx, i)
		}
		if n := runs.Load(); n != 30 {
			t.Fatalf("after Clear: fn ran %d times for 30 keys, want 30", n)
		}
		runs.Store(0)
		for i := range int64(30) {
			ab.Call(ctx, i)
		}
		if n := runs.Load(); n != 0 {
			t.Fatalf("Clear of %q recomputed %d entries of %q", base+"a", n, base+"ab")
		}
	})
	t.Run("ForgetAfterCall", func(t *testing.T) {
		testInvalidateAfterCall(t, f(t), false)
	})
	t.Run("ClearAfterCall", func(t *testing.T) {
		testInvalidateAfterCall(t, f(t), true)
	})
	t.Run("ReadYourWritesAcrossInstances", func(t *testing.T) {
		testCrossInstance(t, f(t))
	})
	t.Run("CorruptEntry", func(t *testing.T) {
		b := f(t)
		var fl faults
		fn := memo.New(func(_ context.Context, id int64) (testItem, error) { return item(id), nil },
			memo.Namespace(ns(t, "corrupt")), memo.WithBackend(b), memo.OnError(fl.hook))
		ctx := context.Background()
		for _, bad := range [][]byte{[]byte("garbage"), {'m', 1}, {'m', 9, 0, 0}} {
			if err := b.Set(ctx, fn.Key(1), bad, time.Minute); err != nil {
				t.Fatal(err)
			}
			if got, err := fn.Call(ctx, 1); err != nil || got.ID != 1 {
				t.Fatalf("Call over %q = %v, %v; want fn's answer", bad, got.ID, err)
			}
			// Call returns once its write is done: the next read hits.
			if e, err := fn.Lookup(ctx, 1, memo.UseCache); err != nil || !e.Hit {
				t.Fatalf("corrupt entry %q was not overwritten by the time Call returned: Lookup hit = %v, %v", bad, e != nil && e.Hit, err)
			}
		}
	})
	t.Run("TooLarge", func(t *testing.T) {
		if o.TooLarge <= 0 {
			t.Skip("backend has no item size limit")
		}
		b := f(t)
		var fl faults
		fn := memo.New(func(_ context.Context, n int) ([]byte, error) { return make([]byte, n), nil },
			memo.Namespace(ns(t, "large")), memo.WithBackend(b), memo.OnError(fl.hook), memo.WithCodec(memo.Msgpack))
		got, err := fn.Call(context.Background(), o.TooLarge)
		if err != nil || len(got) != o.TooLarge {
			t.Fatalf("Call(%d) = %d bytes, %v; want the value from fn", o.TooLarge, len(got), err)
		}
		// Call returns once its write has failed and been reported.
		if errs := fl.all(); len(errs) != 1 || !errors.Is(errs[0], memo.ErrTooLarge) {
			t.Fatalf("reported %v by the time Call returned, want one error wrapping memo.ErrTooLarge", errs)
		}
	})
}

// rounds is how many rounds the invalidation and read-your-writes tests
// run, spread over workers goroutines so that a store with slow round
// trips (DynamoDB) still finishes in a few seconds.
const (
	rounds  = 1000
	workers = 8
)

// testTimeout is memo's Timeout in the invalidation and read-your-writes
// tests: long enough that no backend call runs out of it on a loaded
// machine under -race. A write that runs out of Timeout is allowed to
// miss (read-your-writes) and may still land at the server after memo has
// abandoned it (past a Forget or Clear): the tests check the promises,
// not that exception.
const testTimeout = 10 * time.Second

// eachRound runs fn for rounds 0..rounds-1, spread over workers goroutines;
// worker w runs rounds w, w+workers, ...
func eachRound(fn func(w, i int)) {
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for i := w; i < rounds; i += workers {
				fn(w, i)
			}
		})
	}
	wg.Wait()
}

// testInvalidateAfterCall checks that invalidation wins: a goroutine calls
// the function for a key while the test changes the source fn reads and
// then calls Forget (Clear when clear is set); once that returns, and
// again once the goroutine is done, a call must not return a value read
// before the change. A third of the rounds leave the timing alone; a
// third wait until fn has read the source before changing it; in the
// last third fn, having read, also waits until Forget or Clear has
// returned (or 1 s), so that the goroutine's write comes after it. Each
// worker has its own function (namespace) and source, so that a Clear
// covers only its own rounds.
func testInvalidateAfterCall(t *testing.T, b memo.Backend, clear bool) {
	op := "Forget"
	if clear {
		op = "Clear"
	}
	var stale, faults atomic.Int64
	ctx := context.Background()
	type worker struct {
		src  atomic.Int64
		read chan struct{}                 // fn has read src
		hold atomic.Pointer[chan struct{}] // the next run of fn waits for it after reading
		fn   *memo.Func[int64, int64]
	}
	ws := make([]*worker, workers)
	for w := range ws {
		wk := &worker{read: make(chan struct{}, 1)}
		wk.fn = memo.New(func(_ context.Context, _ int64) (int64, error) {
			v := wk.src.Load()
			select {
			case wk.read <- struct{}{}:
			default:
			}
			if h := wk.hold.Swap(nil); h != nil {
				select {
				case <-*h:
				case <-time.After(time.Second): // should Forget wait for fn
				}
			}
			return v, nil
		}, memo.Namespace(ns(t, "inv")), memo.WithBackend(b), memo.Expire(time.Minute), memo.Timeout(testTimeout),
			memo.OnError(func(context.Context, error) { faults.Add(1) }))
		ws[w] = wk
	}
	check := func(wk *worker, k, want int64, when string) {
		got, err := wk.fn.Call(ctx, k)
		if err != nil {
			t.Errorf("round %d: Call %s = %v", k, when, err)
			return
		}
		if got < want {
			if stale.Add(1) <= 3 {
				t.Errorf("round %d: Call %s %s = %d, want >= %d (a value read before the change)", k, when, op, got, want)
			}
		}
	}
	eachRound(func(w, i int) {
		wk, k := ws[w], int64(i)
		select { // a signal left by the previous round's checks
		case <-wk.read:
		default:
		}
		release := make(chan struct{})
		if i%3 == 2 {
			wk.hold.Store(&release)
		}
		done := make(chan struct{})
		go func() {
			defer close(done)
			if _, err := wk.fn.Call(ctx, k); err != nil {
				t.Errorf("round %d: concurrent Call = %v", k, err)
			}
		}()
		if i%3 != 0 {
			select {
			case <-wk.read:
			case <-done:
			}
		}
		want := wk.src.Add(1)
		var err error
		if clear {
			err = wk.fn.Clear(ctx)
		} else {
			err = wk.fn.Forget(ctx, k)
		}
		close(release)
		if err != nil {
			t.Errorf("round %d: %s = %v", k, op, err)
		}
		check(wk, k, want, "right after")
		<-done
		check(wk, k, want, "after the concurrent Call returned and")
	})
	if n := stale.Load(); n > 0 {
		t.Errorf("%d stale answers in %d rounds, want 0", n, rounds)
	}
	if n := faults.Load(); n > 0 {
		t.Errorf("memo reported %d faults", n)
	}
}

// testCrossInstance checks read-your-writes across processes: once a.Call
// returns an answer fn computed, b, another instance of the same function
// (as another process would have, same namespace, same store), hits.
func testCrossInstance(t *testing.T, be memo.Backend) {
	var aRuns, bRuns, faults atomic.Int64
	name := ns(t, "ryw")
	mk := func(runs *atomic.Int64) *memo.Func[int64, int64] {
		return memo.New(func(_ context.Context, id int64) (int64, error) { runs.Add(1); return id * 3, nil },
			memo.Namespace(name), memo.WithBackend(be), memo.Expire(time.Minute), memo.Timeout(testTimeout),
			memo.OnError(func(context.Context, error) { faults.Add(1) }))
	}
	a, b := mk(&aRuns), mk(&bRuns)
	ctx := context.Background()
	eachRound(func(_, i int) {
		k := int64(i)
		if v, err := a.Call(ctx, k); err != nil || v != 3*k {
			t.Errorf("a.Call(%d) = %d, %v; want %d", k, v, err, 3*k)
		}
		if v, err := b.Call(ctx, k); err != nil || v != 3*k {
			t.Errorf("b.Call(%d) = %d, %v; want %d", k, v, err, 3*k)
		}
	})
	if n := aRuns.Load(); n != rounds {
		t.Errorf("a's fn ran %d times for %d keys, want %d", n, rounds, rounds)
	}
	if n := bRuns.Load(); n != 0 {
		t.Errorf("b's fn ran %d times in %d rounds right after a.Call returned, want 0 (memo.Call must return after its write)", n, rounds)
	}
	if n := faults.Load(); n > 0 {
		t.Errorf("memo reported %d faults", n)
	}
}
