package memo_test

import (
	"context"
	"math/rand/v2"
	"runtime"
	"runtime/metrics"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gomemo/memo"
)

// TestMemoryBound fills the local tier well past its byte bound, through
// memo, hits included (entries keep decoded values beside the bytes), and
// checks that the heap it holds stays within 2% of the bound.
func TestMemoryBound(t *testing.T) {
	if testing.Short() {
		t.Skip("fills 32 MiB")
	}
	const bound = 32 << 20
	ctx := context.Background()
	runtime.GC()
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	local, held := memo.OwnLocalTier(bound)
	f := memo.New(benchUser, local, memo.Expire(time.Hour))
	const n = 150_000 // about 2.5 times what fits
	for i := range int64(n) {
		f.Call(ctx, i)
		f.Call(ctx, i) // a hit: keeps the decoded value
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	heap := int64(after.HeapAlloc) - int64(before.HeapAlloc)
	t.Logf("bound %d B: heap held %d B (%.3f of the bound), accounted %d B",
		bound, heap, float64(heap)/bound, held())
	if held() > bound {
		t.Errorf("accounted %d B, over the bound %d", held(), bound)
	}
	limit := int64(bound) * 102 / 100
	if raceEnabled {
		limit = int64(bound) * 106 / 100 // the race detector pads allocations
	}
	if heap > limit {
		t.Errorf("heap held = %d B, over the bound %d B by more than 2%%", heap, bound)
	}
	if held() < bound*9/10 {
		t.Errorf("accounted %d B: the tier evicted far more than its bound needs", held())
	}
	runtime.KeepAlive(f)
}

// TestMemoryBoundBigValues streams 64 KiB to 5 MiB answers through the local
// tier: the heap it holds after GC stays within 1.5x of its byte bound, every
// value that fits a quarter of the bound is cached, and a miss allocates
// at most 4.5 bytes per value byte (fn's value, one encoding with its
// buffer's growth, one copy for the tier).
func TestMemoryBoundBigValues(t *testing.T) {
	if testing.Short() {
		t.Skip("allocates about 300 MiB")
	}
	const bound, n = 32 << 20, 48
	r := rand.New(rand.NewPCG(1, 2))
	sizes := make([]int, n)
	for i := range sizes {
		sizes[i] = 64<<10 + r.IntN(5<<20-64<<10+1)
	}
	var runs atomic.Int64
	fn := func(_ context.Context, i int) ([]byte, error) {
		runs.Add(1)
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
		runtime.GC()
		var m runtime.MemStats
		runtime.ReadMemStats(&m)
		return int64(m.HeapAlloc)
	}
	ctx := context.Background()
	before := live()
	local, held := memo.OwnLocalTier(bound)
	f := memo.New(fn, local, memo.Namespace("bound-big"), memo.WithCodec(memo.Msgpack))
	var missAlloc, valBytes uint64
	var uncached []int
	for i, size := range sizes {
		a := allocs()
		f.Call(ctx, i)
		missAlloc += allocs() - a
		valBytes += uint64(size)
		r0 := runs.Load()
		f.Call(ctx, i)
		if runs.Load() != r0 && int64(size)*2+4096 <= bound/4 {
			uncached = append(uncached, size)
		}
	}
	ratio := float64(live()-before) / bound
	perByte := float64(missAlloc) / float64(valBytes)
	t.Logf("live heap after GC %.2fx the bound; accounted %d B; a miss allocates %.2f B per value byte", ratio, held(), perByte)
	if ratio > 1.5 {
		t.Errorf("live heap after GC = %.2fx the bound, want <= 1.5x", ratio)
	}
	if held() > bound {
		t.Errorf("accounted %d B, over the bound %d", held(), bound)
	}
	if len(uncached) > 0 {
		t.Errorf("%d values that fit a quarter of the bound were not cached: %v", len(uncached), uncached)
	}
	limit := 4.5 // fn's value, its encoding (with buffer growth), the tier's copy
	if raceEnabled {
		limit = 6 // the race detector pads allocations
	}
	if perByte > limit {
		t.Errorf("a miss allocates %.2f B per value byte, want <= %.1f", perByte, limit)
	}
	runtime.KeepAlive(f)
}
