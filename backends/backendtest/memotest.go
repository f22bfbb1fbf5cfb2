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
	"github.com/gomemo/memo/internal/testenv"
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
// one is a prefix of alone), corrupt entries (answered by fn, reported,
// overwritten) and values of o.TooLarge bytes (answered, reported as
// [memo.ErrTooLarge]). [Run] calls it; call it alone to check memo over a
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
		fn.Call(ctx, 1)
		testenv.WaitStored(t, b, fn.Key(1))
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
			// memo answers before its write lands: wait for it.
			hit := false
			for deadline := time.Now().Add(5 * time.Second); !hit && time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
				e, _ := fn.Lookup(ctx, 1, memo.UseCache)
				hit = e != nil && e.Hit
			}
			if !hit {
				t.Fatalf("corrupt entry %q was not overwritten", bad)
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
		// The write follows the answer: wait for its report.
		var errs []error
		for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(5 * time.Millisecond) {
			if errs = fl.all(); len(errs) > 0 || time.Now().After(deadline) {
				break
			}
		}
		if len(errs) != 1 || !errors.Is(errs[0], memo.ErrTooLarge) {
			t.Fatalf("reported %v, want one error wrapping memo.ErrTooLarge", errs)
		}
	})
}
