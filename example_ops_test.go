package memo_test

import (
	"context"
	"fmt"
	"time"

	"github.com/gomemo/memo"
)

func ExampleFunc_Stats() {
	square := memo.New(func(_ context.Context, n int) (int, error) { return n * n, nil },
		memo.Namespace("example-stats"), memo.Expire(time.Minute))
	ctx := context.Background()
	for _, n := range []int{2, 3, 2, 2} {
		square.Call(ctx, n)
	}
	st := square.Stats()
	calls := st.Hits + st.StaleHits + st.NegativeHits + st.Misses + st.Coalesced + st.Bypasses
	fmt.Printf("%d calls: %d hits, %d misses, fn ran %d times\n", calls, st.Hits, st.Misses, st.Computations)
	fmt.Printf("hit ratio %.2f\n", float64(st.Hits)/float64(calls))
	// Output:
	// 4 calls: 2 hits, 2 misses, fn ran 2 times
	// hit ratio 0.50
}

// logObserver prints each run of fn: an Observer receives what memo does
// off the hit path (otelmemo.New() is one for OpenTelemetry).
type logObserver struct{}

func (logObserver) Attach(ns string, _ func() memo.Stats) { fmt.Println("attached", ns) }
func (logObserver) Compute(ctx context.Context, c memo.Computation) (context.Context, func(time.Duration, error)) {
	return ctx, func(_ time.Duration, err error) { fmt.Printf("fn ran (%s), err %v\n", c.Reason, err) }
}
func (logObserver) BackendCall(context.Context, memo.BackendCall) {}
func (logObserver) BreakerChange(memo.BreakerChange)              {}

func ExampleObserve() {
	double := memo.New(func(_ context.Context, n int) (int, error) { return 2 * n, nil },
		memo.Namespace("example-observe"), memo.Observe(logObserver{}))
	ctx := context.Background()
	double.Call(ctx, 1)
	double.Call(ctx, 1) // a hit: counted in Stats, not reported
	double.Lookup(ctx, 1, memo.Refresh)
	// Output:
	// attached example-observe
	// fn ran (miss), err <nil>
	// fn ran (forced), err <nil>
}
