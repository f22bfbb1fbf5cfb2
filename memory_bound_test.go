package memo_test

import (
	"context"
	"runtime"
	"testing"
	"time"

	"github.com/gomemo/memo"
	"github.com/gomemo/memo/backends/memory"
)

// TestMemoryBound fills an in-memory backend well past its byte bound,
// through memo, hits included (which keep decoded values beside the bytes),
// and checks that the heap it holds stays within 2% of the bound.
func TestMemoryBound(t *testing.T) {
	if testing.Short() {
		t.Skip("fills 32 MiB")
	}
	const bound = 32 << 20
	ctx := context.Background()
	runtime.GC()
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	mem := memory.New(memory.MaxBytes(bound), memory.MaxEntries(1<<30))
	f := memo.New(benchUser, memo.WithBackend(mem), memo.Expire(time.Hour))
	const n = 150_000 // about 2.5 times what fits
	for i := range int64(n) {
		f.Call(ctx, i)
		f.Call(ctx, i) // a hit: keeps the decoded value
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	heap := int64(after.HeapAlloc) - int64(before.HeapAlloc)
	t.Logf("bound %d B: heap held %d B (%.3f of the bound), accounted %d B, %d entries, %d B/entry",
		bound, heap, float64(heap)/bound, mem.Bytes(), mem.Len(), heap/int64(mem.Len()))
	if mem.Bytes() > bound {
		t.Errorf("Bytes() = %d, over the bound %d", mem.Bytes(), bound)
	}
	limit := int64(bound) * 102 / 100
	if raceEnabled {
		limit = int64(bound) * 106 / 100 // the race detector pads allocations
	}
	if heap > limit {
		t.Errorf("heap held = %d B, over the bound %d B by more than 2%%", heap, bound)
	}
	if mem.Len() < n/4 {
		t.Errorf("Len() = %d: the store evicted far more than its bound needs", mem.Len())
	}
	runtime.KeepAlive(mem)
}
