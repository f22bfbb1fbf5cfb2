package reliability_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gomemo/memo"
	"github.com/gomemo/memo/backends/memory"
)

// TestSoak makes 1,000,000 calls from 64 goroutines on a mixed workload
// over an in-memory backend bounded to 10,000 entries, with three memoized
// functions. 89% of the calls go to 2,000 hot keys: hits, recomputed and
// stored again when one of their calls in fifty forgets them. 10% go to a
// cold space of a billion keys: 100,000 misses that keep the store full and
// make it evict, so the store must keep the hot entries through the churn:
// a hot key may be recomputed about once per invalidation, not more. 1% go
// to 100 keys that expire after 50 ms, which the store reclaims. One caller in eight has a cancellable
// context (fn runs on a flight goroutine), the others not (fn runs inline).
// No call may fail or return a wrong value; the store must never hold more
// than its bound; the live heap must stay flat once the store is full. It
// runs with -race in CI and is skipped under -short.
func TestSoak(t *testing.T) {
	if testing.Short() {
		t.Skip("soak test: skipped under -short")
	}
	const (
		calls   = 1_000_000
		workers = 64
		bound   = 10_000
		hot     = 2_000
		cold    = 1_000_000_000
		warmPct = 20 // the heap is measured once this share of calls is done
		// The live heap may grow by this much between the end of the
		// warm-up and the end: a leak of one small object per call (a
		// million) would exceed it many times.
		heapSlack = 8 << 20
		// Hot keys are read about 450 times each and forgotten on 2% of
		// their calls. A store that keeps what is used recomputes a hot key
		// about once per invalidation (and once at the start); evicting
		// entries in use makes it more.
		maxRecomputesPerInvalidation = 2.0
	)
	mem := memory.New(memory.MaxEntries(bound))
	// The store is in the process and never stalls; a goroutine of 64 on
	// 2 CPUs under -race may still be descheduled past the default 100 ms
	// Timeout between taking its deadline and reading, which would count
	// as a fault. This test is about answers, bounds and leaks, not time.
	timeout := memo.Timeout(10 * time.Second)
	fl := &faults{}
	var runs, hotRuns, hotCalls, forgets atomic.Int64
	hotF := memo.New(func(ctx context.Context, a int) (Answer, error) {
		runs.Add(1)
		hotRuns.Add(1)
		return answer(a), nil
	}, memo.Namespace(namespace("soak.hot")), memo.WithBackend(mem), timeout, memo.OnError(fl.hook))
	fn := func(ctx context.Context, a int) (Answer, error) {
		runs.Add(1)
		return answer(a), nil
	}
	coldF := memo.New(fn, memo.Namespace(namespace("soak.cold")), memo.WithBackend(mem), timeout, memo.OnError(fl.hook))
	ttlF := memo.New(fn, memo.Namespace(namespace("soak.ttl")), memo.WithBackend(mem),
		memo.Expire(50*time.Millisecond), timeout, memo.OnError(fl.hook))

	goroutinesBefore := runtime.NumGoroutine()
	var (
		done, errs, wrong atomic.Int64
		maxLen            atomic.Int64
		peakInuse         atomic.Uint64
		warm              runtime.MemStats
		warmOnce          sync.Once
		warmAt            = int64(calls * warmPct / 100)
	)
	stopMon := make(chan struct{})
	monDone := make(chan struct{})
	go func() { // the bound, and the peak heap, sampled as the soak runs
		defer close(monDone)
		var ms runtime.MemStats
		for {
			if n := int64(mem.Len()); n > maxLen.Load() {
				maxLen.Store(n)
			}
			runtime.ReadMemStats(&ms)
			if ms.HeapInuse > peakInuse.Load() {
				peakInuse.Store(ms.HeapInuse)
			}
			select {
			case <-stopMon:
				return
			case <-time.After(25 * time.Millisecond):
			}
		}
	}()

	start := time.Now()
	var wg sync.WaitGroup
	for g := range workers {
		wg.Go(func() {
			r := rand.New(rand.NewPCG(uint64(g), 7))
			for i := range calls / workers {
				a, f := r.IntN(hot), hotF
				switch p := r.IntN(100); {
				case p < 10:
					a, f = r.IntN(cold), coldF
				case p < 11:
					a, f = r.IntN(100), ttlF
				default:
					hotCalls.Add(1)
					if r.IntN(50) == 0 { // an invalidation: the entry is stored again
						if err := hotF.Forget(context.Background(), a); err != nil {
							errs.Add(1)
						}
						forgets.Add(1)
					}
				}
				ctx := context.Background()
				var cancel context.CancelFunc
				if i%8 == 0 {
					ctx, cancel = context.WithCancel(ctx)
				}
				v, err := f.Call(ctx, a)
				if cancel != nil {
					cancel()
				}
				if err != nil {
					errs.Add(1)
				} else if !sameAnswer(v, answer(a)) {
					wrong.Add(1)
				}
				if done.Add(1) == warmAt {
					warmOnce.Do(func() {
						runtime.GC()
						runtime.ReadMemStats(&warm)
					})
				}
			}
		})
	}
	wg.Wait()
	took := time.Since(start)
	close(stopMon)
	<-monDone
	runtime.GC()
	var end runtime.MemStats
	runtime.ReadMemStats(&end)
	goroutinesAfter := settleGoroutines(goroutinesBefore, 2*time.Second)
	if n := int64(mem.Len()); n > maxLen.Load() {
		maxLen.Store(n)
	}

	total := done.Load()
	growth := int64(end.HeapAlloc) - int64(warm.HeapAlloc)
	figures(t, "calls", total, "workers", workers, "errors", errs.Load(), "wrong", wrong.Load(),
		"fn_runs", runs.Load(), "hits", total-runs.Load(), "hot_calls", hotCalls.Load(), "forgets", forgets.Load(), "hot_hits", hotCalls.Load()-hotRuns.Load(),
		"hot_hit_rate", fmt.Sprintf("%.3f", float64(hotCalls.Load()-hotRuns.Load())/float64(hotCalls.Load())),
		"hot_recomputes_per_invalidation", fmt.Sprintf("%.2f", recomputes(hotRuns.Load(), forgets.Load(), hot)),
		"faults_reported", fl.n.Load(),
		"took", took, "calls_per_sec", int(float64(total)/took.Seconds()),
		"bound", bound, "max_len", maxLen.Load(), "end_len", mem.Len(), "end_bytes", mem.Bytes(),
		"heap_live_after_warmup", mib(warm.HeapAlloc), "heap_live_end", mib(end.HeapAlloc),
		"heap_growth", mib(uint64(max(growth, 0))), "heap_inuse_peak", mib(peakInuse.Load()),
		"goroutines_before", goroutinesBefore, "goroutines_after", goroutinesAfter)
	if total != calls {
		t.Fatalf("%d calls made, want %d", total, calls)
	}
	if errs.Load() > 0 || wrong.Load() > 0 {
		t.Errorf("%d calls failed and %d returned a wrong value", errs.Load(), wrong.Load())
	}
	if n := fl.n.Load(); n > 0 {
		t.Errorf("%d cache faults reported: %v", n, fl.ops())
	}
	if per := recomputes(hotRuns.Load(), forgets.Load(), hot); per > maxRecomputesPerInvalidation {
		t.Errorf("hot keys were recomputed %.1f times per invalidation (hit rate %.1f%%), over %.1f: the store evicts the entries in use",
			per, 100*float64(hotCalls.Load()-hotRuns.Load())/float64(hotCalls.Load()), maxRecomputesPerInvalidation)
	}
	if maxLen.Load() > bound {
		t.Errorf("the store held %d entries, over its bound of %d", maxLen.Load(), bound)
	}
	if growth > heapSlack {
		t.Errorf("the live heap grew by %s after the warm-up (%s to %s), over %s: memory is not flat",
			mib(uint64(growth)), mib(warm.HeapAlloc), mib(end.HeapAlloc), mib(heapSlack))
	}
	if goroutinesAfter > goroutinesBefore {
		t.Errorf("%d goroutines before, %d after", goroutinesBefore, goroutinesAfter)
	}
}

// recomputes is how many times hot keys were computed per invalidation,
// counting each key's first computation as one.
func recomputes(runs, forgets int64, keys int) float64 {
	return float64(runs) / float64(forgets+int64(keys))
}
