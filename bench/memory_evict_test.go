package bench

import (
	"context"
	"os"
	"testing"

	"github.com/gomemo/memo/backends/memory"
)

// TestMemoryEvictsEntryJustWritten: a Set that must evict more than the
// entries between the clock hand and the end of the clock evicts the entry
// it has just written (shard.remove moves the last slot, the new entry,
// under the hand) and keeps older ones. Found while reproducing issue 9's
// memory bound with 64 KiB-5 MiB values. Fails on backends/memory as of
// 7aa8896; gated so that bench's go test ./... stays green.
func TestMemoryEvictsEntryJustWritten(t *testing.T) {
	if os.Getenv("MEMO_HEAPBOUND") == "" {
		t.Skip("set MEMO_HEAPBOUND=1 (fails on today's backends/memory)")
	}
	ctx := context.Background()
	m := memory.New(memory.MaxBytes(1<<20), memory.Shards(1))
	for _, k := range []string{"a", "b", "c"} {
		m.Set(ctx, k, make([]byte, 300<<10), 0)
	}
	if err := m.Set(ctx, "new", make([]byte, 700<<10), 0); err != nil {
		t.Fatal(err)
	}
	if _, ok, _ := m.Get(ctx, "new"); !ok {
		t.Errorf("the 700 KiB entry just written is gone (Len %d, Bytes %d of 1 MiB): older entries were kept instead", m.Len(), m.Bytes())
	}
}
