package backendtest

import (
	"context"
	"fmt"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/gomemo/memo"
	"github.com/gomemo/memo/internal/clocktest"
)

// RunStats checks [memo.Func.Stats] and the [memo.Observer] over the
// backends f opens, or over the local tier when f is nil: exact counts
// after a scripted sequence of misses, hits, a remembered not-found, an
// error of fn, five callers sharing one computation, a bypass, a stale hit
// with its background refresh; the Observer told of each run of fn with
// its reason and error, and of backend calls (none without a backend).
// [Run] calls it as the subtest "Stats".
func RunStats(t *testing.T, f Factory, o Options) {
	_ = o
	newEnv := func(t *testing.T) *freshEnv {
		var b memo.Backend
		if f != nil {
			b = f(t)
		}
		e := &freshEnv{b: b, clk: clocktest.New(time.Now())}
		t.Cleanup(e.releaseAll)
		return e
	}
	t.Run("Sequence", func(t *testing.T) {
		e := newEnv(t)
		rec := &recorder{}
		org := e.origin()
		fn := memo.New(org.fn, e.options(ns(t, "stats"), memo.Expire(time.Hour), memo.NegativeCache(time.Hour, errNotFound), memo.Observe(rec))...)
		ctx := context.Background()

		org.val.Store(1)
		wantCall(t, fn, 1, 1, "first call")
		wantCall(t, fn, 1, 1, "second call")
		wantCall(t, fn, 1, 1, "third call")
		org.fail(errNotFound)
		wantCallErr(t, fn, 2, errNotFound, "not found")
		wantCallErr(t, fn, 2, errNotFound, "remembered not found")
		org.fail(errOrigin)
		wantCallErr(t, fn, 3, errOrigin, "fn fails")
		org.fail(nil)

		// Five callers of one key while fn is held: one runs it.
		org.val.Store(4)
		org.drain()
		release := org.hold()
		var wg sync.WaitGroup
		errs := make(chan string, 5)
		for range 5 {
			wg.Go(func() {
				if v, err := fn.Call(ctx, 4); v != 4 || err != nil {
					errs <- fmt.Sprintf("Call(4) sharing a computation = %d, %v; want 4, nil", v, err)
				}
			})
		}
		org.waitStarted(t, "five callers")
		waitWaiters(t, 4)
		release()
		wg.Wait()
		close(errs)
		for msg := range errs {
			t.Error(msg)
		}
		wantCall(t, fn, 4, 4, "after the shared computation")
		if _, err := fn.Lookup(ctx, 5, memo.Bypass); err != nil {
			t.Fatalf("Lookup(5, Bypass) = %v", err)
		}

		want := memo.Stats{Hits: 3, Misses: 4, Coalesced: 4, NegativeHits: 1, Bypasses: 1, Computations: 5, Errors: 2}
		if diff := cmp.Diff(want, fn.Stats()); diff != "" {
			t.Errorf("Stats() after the sequence (-want +got):\n%s", diff)
		}
		wantComputes := map[string]int{"miss": 4, "miss error": 2, "bypass": 1}
		if diff := cmp.Diff(wantComputes, rec.computes()); diff != "" {
			t.Errorf("Observer.Compute reports (-want +got):\n%s", diff)
		}
		rec.wantAttached(t, fn)
		rec.wantBackend(t, e.b != nil)
		e.wantNoFaults(t)
	})
	t.Run("StaleAndRefresh", func(t *testing.T) {
		e := newEnv(t)
		rec := &recorder{}
		org := e.origin()
		fn := memo.New(org.fn, e.options(ns(t, "stats-swr"), memo.Expire(10*time.Second), memo.StaleWhileRevalidate(time.Minute), memo.Observe(rec))...)
		org.val.Store(1)
		wantCall(t, fn, 1, 1, "first call")
		e.clk.Advance(11 * time.Second)
		org.val.Store(2)
		wantCall(t, fn, 1, 1, "stale call")
		eventually(t, "the refresh lands", peeks(fn, 1, 2))
		wantCall(t, fn, 1, 2, "after the refresh")
		want := memo.Stats{Hits: 1, StaleHits: 1, Misses: 1, Computations: 2, Refreshes: 1}
		if diff := cmp.Diff(want, fn.Stats()); diff != "" {
			t.Errorf("Stats() (-want +got):\n%s", diff)
		}
		wantComputes := map[string]int{"miss": 1, "refresh": 1}
		if diff := cmp.Diff(wantComputes, rec.computes()); diff != "" {
			t.Errorf("Observer.Compute reports (-want +got):\n%s", diff)
		}
		e.wantNoFaults(t)
	})
}

// waitWaiters waits until n goroutines wait for a computation of memo's,
// failing t after pollLimit.
func waitWaiters(t *testing.T, n int) {
	t.Helper()
	eventually(t, "callers joining the computation", func() bool {
		buf := make([]byte, 1<<20)
		buf = buf[:runtime.Stack(buf, true)]
		got := 0
		for g := range strings.SplitSeq(string(buf), "\n\n") {
			if strings.Contains(g, "memo.(*gshard[...]).do(") && strings.Contains(g, "[select") {
				got++
			}
		}
		return got >= n
	})
}

// recorder is an Observer that keeps what it is told.
type recorder struct {
	mu       sync.Mutex
	attached map[string]func() memo.Stats
	compute  map[string]int
	backend  map[string]int
}

func (r *recorder) Attach(ns string, stats func() memo.Stats) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.attached == nil {
		r.attached = make(map[string]func() memo.Stats)
	}
	if _, dup := r.attached[ns]; dup {
		panic("recorder: Attach called twice for " + ns)
	}
	r.attached[ns] = stats
}

func (r *recorder) Compute(ctx context.Context, c memo.Computation) (context.Context, func(time.Duration, error)) {
	return ctx, func(d time.Duration, err error) {
		r.mu.Lock()
		defer r.mu.Unlock()
		if r.compute == nil {
			r.compute = make(map[string]int)
		}
		r.compute[c.Reason.String()]++
		if err != nil {
			r.compute[c.Reason.String()+" error"]++
		}
	}
}

func (r *recorder) BackendCall(_ context.Context, c memo.BackendCall) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.backend == nil {
		r.backend = make(map[string]int)
	}
	r.backend[c.Op]++
}

func (r *recorder) BreakerChange(memo.BreakerChange) {}

func (r *recorder) computes() map[string]int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.compute
}

func (r *recorder) wantAttached(t *testing.T, fn interface {
	Stats() memo.Stats
	Namespace() string
}) {
	t.Helper()
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.attached) != 1 {
		t.Fatalf("Observer.Attach called for %d functions, want 1", len(r.attached))
	}
	for ns, stats := range r.attached {
		if !strings.HasSuffix(fn.Namespace(), ns) {
			t.Errorf("Observer.Attach(%q, ...) for the function of namespace key %q", ns, fn.Namespace())
		}
		if diff := cmp.Diff(fn.Stats(), stats()); diff != "" {
			t.Errorf("the Stats func given to Attach disagrees with Func.Stats (-Func +Attach):\n%s", diff)
		}
	}
}

func (r *recorder) wantBackend(t *testing.T, remote bool) {
	t.Helper()
	r.mu.Lock()
	defer r.mu.Unlock()
	if !remote {
		if len(r.backend) != 0 {
			t.Errorf("Observer.BackendCall reports %v without a backend, want none", r.backend)
		}
		return
	}
	if r.backend["get"] == 0 || r.backend["set"] == 0 {
		t.Errorf("Observer.BackendCall reports %v, want gets and sets", r.backend)
	}
	for op := range r.backend {
		switch op {
		case "get", "set", "delete", "lease", "publish", "clear":
		default:
			t.Errorf("Observer.BackendCall reports op %q", op)
		}
	}
}
