package memo_test

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gomemo/memo"
	"github.com/gomemo/memo/backends/backendtest"
	"github.com/gomemo/memo/backends/memory"
)

// TestStatsLocalTier runs the Stats and Observer cases on functions
// without a backend: the process's local tier.
func TestStatsLocalTier(t *testing.T) {
	backendtest.RunStats(t, nil, backendtest.Options{})
}

// countingObserver counts what it is told; it may be made to panic.
type countingObserver struct {
	attached, computes, backend atomic.Int64
	panics                      bool
}

func (o *countingObserver) Attach(string, func() memo.Stats) {
	o.attached.Add(1)
	if o.panics {
		panic("observer kaboom")
	}
}

func (o *countingObserver) Compute(ctx context.Context, _ memo.Computation) (context.Context, func(time.Duration, error)) {
	if o.panics {
		panic("observer kaboom")
	}
	return ctx, func(time.Duration, error) { o.computes.Add(1) }
}

func (o *countingObserver) BackendCall(context.Context, memo.BackendCall) {
	o.backend.Add(1)
	if o.panics {
		panic("observer kaboom")
	}
}

func (o *countingObserver) BreakerChange(memo.BreakerChange) {}

// TestObserveDefaults: an Observer set by SetDefaults sees every function,
// each attached once however many calls and configurations; a function's
// own Observe wins; an Observer that panics changes no answer.
func TestObserveDefaults(t *testing.T) {
	defer memo.ResetDefaults()
	o := &countingObserver{}
	memo.SetDefaults(memo.Observe(o))
	own := &countingObserver{}
	f := memo.New(func(_ context.Context, id int) (int, error) { return id, nil }, memo.Namespace("observe-defaults"))
	g := memo.New(func(_ context.Context, id int) (int, error) { return id, nil }, memo.Namespace("observe-own"), memo.Observe(own))
	ctx := context.Background()
	for i := range 3 {
		f.Call(ctx, i)
		f.Call(ctx, i)
		g.Call(ctx, i)
	}
	memo.SetDefaults(memo.Timeout(time.Second)) // a new configuration: no second Attach
	f.Call(ctx, 9)
	if got := o.attached.Load(); got != 1 {
		t.Errorf("the defaults' Observer was attached %d times, want 1", got)
	}
	if got := o.computes.Load(); got != 4 {
		t.Errorf("the defaults' Observer saw %d computations, want 4", got)
	}
	if got := own.computes.Load(); got != 3 || own.attached.Load() != 1 {
		t.Errorf("the function's own Observer saw %d computations and %d attaches, want 3 and 1", got, own.attached.Load())
	}

	bad := &countingObserver{panics: true}
	h := memo.New(func(_ context.Context, id int) (int, error) { return id * 2, nil }, memo.Namespace("observe-panics"),
		memo.Observe(bad), memo.WithBackend(memory.New()))
	for i := range 3 {
		if got, err := h.Call(ctx, i); got != i*2 || err != nil {
			t.Fatalf("Call(%d) with a panicking Observer = %d, %v; want %d, nil", i, got, err, i*2)
		}
	}
	if st := h.Stats(); st.Misses != 3 || st.Computations != 3 {
		t.Errorf("Stats() with a panicking Observer = %+v, want 3 misses and computations", st)
	}
}

// TestObserveNilPanics: Observe(nil) is a programmer error.
func TestObserveNilPanics(t *testing.T) {
	for _, o := range []memo.Observer{nil, (*countingObserver)(nil)} {
		func() {
			defer func() {
				if r := recover(); r != "memo: Observe(nil)" {
					t.Errorf("Observe(%#v) panicked with %v, want memo: Observe(nil)", o, r)
				}
			}()
			memo.Observe(o)
		}()
	}
}

// TestStatsPanic: a call whose fn panics counts as a miss, as every call
// counts once; the run counts as a computation and an error.
func TestStatsPanic(t *testing.T) {
	f := memo.New(func(_ context.Context, id int) (int, error) { panic("kaboom") }, memo.Namespace("stats-panic"))
	func() {
		defer func() { recover() }()
		f.Call(context.Background(), 1)
	}()
	if got, want := f.Stats(), (memo.Stats{Misses: 1, Computations: 1, Errors: 1}); got != want {
		t.Errorf("Stats() after a panicking call = %+v, want %+v", got, want)
	}
}
