package bench

// The test proposed to the core for issue 9's memory bound, written against
// today's API (memo.WithBackend(memory.New(memory.MaxBytes(...)))); with the
// local tier, only the construction line changes. Set MEMO_HEAPBOUND=1 to
// run it here; it is meant to run by default in the core (it takes ~1 s and
// ~150 MiB at peak, and is skipped under -short).
//
// It asserts nothing about timing or about the peak heap (the peak is the
// GC's pacing: GOGC=100 lets the heap reach 2x live before a cycle starts,
// whatever the store does), only about:
//   - the live heap after GC, against the bound (1.5x);
//   - the bytes the store accounts, against the bound;
//   - that a value that fits a quarter of the bound is cached (a store
//     that refuses big values would pass the first two trivially);
//   - the bytes a miss allocates per byte of fn's value (runtime/metrics
//     /gc/heap/allocs:bytes: a count, not a timing, so it is the same under
//     -race and on a loaded 2-core machine).

import (
	"context"
	"math/rand"
	"os"
	"runtime"
	"runtime/metrics"
	"testing"

	"github.com/gomemo/memo"
	"github.com/gomemo/memo/backends/memory"
)

func TestMemoryBoundBigValues(t *testing.T) {
	if os.Getenv("MEMO_HEAPBOUND") == "" {
		t.Skip("set MEMO_HEAPBOUND=1")
	}
	if testing.Short() {
		t.Skip("allocates ~150 MiB")
	}
	const bound = 32 << 20
	const n = 48
	r := rand.New(rand.NewSource(1))
	sizes := make([]int, n) // 64 KiB to 5 MiB, seeded: the same stream every run
	for i := range sizes {
		sizes[i] = 64<<10 + r.Intn(5<<20-64<<10+1)
	}
	runs := 0
	fn := func(_ context.Context, i int) ([]byte, error) {
		runs++
		b := make([]byte, sizes[i])
		for j := range b {
			b[j] = byte('a' + j%26)
		}
		return b, nil
	}
	allocs := func() uint64 {
		s := []metrics.Sample{{Name: "/gc/heap/allocs:bytes"}}
		metrics.Read(s)
		return s[0].Value.Uint64()
	}
	live := func() int64 {
		runtime.GC()
		runtime.GC() // the second cycle frees what the first one's finalizers and sweeps left
		var m runtime.MemStats
		runtime.ReadMemStats(&m)
		return int64(m.HeapAlloc)
	}
	ctx := context.Background()
	before := live()
	mem := memory.New(memory.MaxBytes(bound)) // core: the local tier, bounded to `bound`
	f := memo.New(fn, memo.WithBackend(mem), memo.Namespace("bound-big"))
	var missAlloc, valBytes uint64
	var uncached []int
	for i, size := range sizes {
		a := allocs()
		f.Call(ctx, i) // a miss
		missAlloc += allocs() - a
		valBytes += uint64(size)
		before := runs
		f.Call(ctx, i) // must hit: keeps the decoded copy beside the bytes today
		f.Call(ctx, i) // a hit that copies it out
		if runs != before && int64(size)*4/3+4096 <= bound/4 {
			uncached = append(uncached, size)
		}
	}
	heap := live() - before
	ratio := float64(heap) / bound
	perByte := float64(missAlloc) / float64(valBytes)
	t.Logf("bound %d MiB: live heap after GC %.2fx, accounted %.2fx, %d entries; a miss allocates %.2f B per value byte; %d of %d values that fit bound/4 not cached",
		bound>>20, ratio, float64(mem.Bytes())/bound, mem.Len(), perByte, len(uncached), n)
	if ratio > 1.5 {
		t.Errorf("live heap after GC = %.2fx the bound, want <= 1.5x", ratio)
	}
	if mem.Bytes() > bound {
		t.Errorf("accounted %d B, over the bound %d B", mem.Bytes(), bound)
	}
	if len(uncached) > 0 {
		t.Errorf("%d values that fit a quarter of the bound were not cached (sizes %v): the store refuses values it has room for", len(uncached), uncached)
	}
	// fn's value (1.0) + an encoded copy (1.33 for []byte in JSON) + slack.
	if perByte > 3.0 {
		t.Errorf("a miss allocates %.2f bytes per byte of fn's value, want <= 3.0 (fn 1.0, one encoding 1.33)", perByte)
	}
	runtime.KeepAlive(f)
}
