package memory_test

import (
	"context"
	"fmt"
	"testing"
	"testing/synctest"
	"time"

	"github.com/gomemo/memo"
	"github.com/gomemo/memo/backends/backendtest"
	"github.com/gomemo/memo/backends/memory"
	"github.com/gomemo/memo/internal/store"
)

// memory cannot import memo (memo imports it), so the assertions live here.
var (
	_ memo.Backend = (*memory.Backend)(nil)
	_ memo.Clearer = (*memory.Backend)(nil)
)

func TestConformance(t *testing.T) {
	backendtest.Run(t, func(t *testing.T) memo.Backend {
		return memory.New(memory.MaxBytes(16<<20), memory.Shards(4))
	}, backendtest.Options{TooLarge: 17 << 20})
}

func TestBoundedByEntries(t *testing.T) {
	ctx := context.Background()
	for _, max := range []int{1, 7, 100, 1000} {
		b := memory.New(memory.MaxEntries(max))
		for i := range 5 * max {
			if err := b.Set(ctx, fmt.Sprintf("ns:%d", i), []byte("v"), 0); err != nil {
				t.Fatal(err)
			}
			if n := b.Len(); n > max {
				t.Fatalf("MaxEntries(%d): Len() = %d after %d sets, want <= %d", max, n, i+1, max)
			}
		}
		// The most recent entry is always kept.
		if _, ok, _ := b.Get(ctx, fmt.Sprintf("ns:%d", 5*max-1)); !ok {
			t.Errorf("MaxEntries(%d): newest entry evicted", max)
		}
	}
}

func TestBoundedByBytes(t *testing.T) {
	ctx := context.Background()
	const max = 1 << 20
	b := memory.New(memory.MaxBytes(max), memory.Shards(4))
	val := make([]byte, 1000)
	for i := range 5000 {
		if err := b.Set(ctx, fmt.Sprintf("ns:%d", i), val, 0); err != nil {
			t.Fatal(err)
		}
		if n := b.Bytes(); n > max {
			t.Fatalf("Bytes() = %d after %d sets, want <= %d", n, i+1, max)
		}
	}
	fits := max / int(store.AllocSize(len("ns:4999")+1000)+store.EntryOverhead)
	if n := b.Len(); n < fits*95/100 {
		t.Errorf("Len() = %d, want the store to stay nearly full (%d fit)", n, fits)
	}
}

// Expired entries are reclaimed by later writes, without being read. The
// clock is synctest's: the wait for expiry takes no time.
func TestExpiredReclaimedWithoutRead(t *testing.T) { synctest.Test(t, testExpiredReclaimedWithoutRead) }

func testExpiredReclaimedWithoutRead(t *testing.T) {
	ctx := context.Background()
	b := memory.New(memory.Shards(1))
	for i := range 1000 {
		b.Set(ctx, fmt.Sprintf("ns:%d", i), []byte("v"), 10*time.Millisecond)
	}
	time.Sleep(20 * time.Millisecond)
	b.Set(ctx, "other:x", []byte("v"), 0)
	if n := b.Len(); n != 1 {
		t.Fatalf("Len() = %d after expiry and one write, want 1", n)
	}
	if got, want := b.Bytes(), store.AllocSize(len("other:x")+1)+store.EntryOverhead; got != want {
		t.Fatalf("Bytes() = %d, want %d", got, want)
	}
}

// Recently read entries survive eviction (second chance).
func TestClockKeepsHotEntries(t *testing.T) {
	ctx := context.Background()
	b := memory.New(memory.MaxEntries(100), memory.Shards(1))
	for i := range 100 {
		b.Set(ctx, fmt.Sprintf("ns:%d", i), []byte("v"), 0)
	}
	for round := range 20 {
		if _, ok, _ := b.Get(ctx, "ns:0"); !ok {
			t.Fatalf("hot key evicted after %d rounds", round)
		}
		for i := range 10 {
			b.Set(ctx, fmt.Sprintf("cold:%d-%d", round, i), []byte("v"), 0)
		}
	}
}

func TestOptionPanics(t *testing.T) {
	for name, f := range map[string]func(){
		"MaxEntries(0)": func() { memory.MaxEntries(0) },
		"MaxBytes(-1)":  func() { memory.MaxBytes(-1) },
		"Shards(3)":     func() { memory.Shards(3) },
	} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("%s did not panic", name)
				}
			}()
			f()
		}()
	}
}

func BenchmarkGet(b *testing.B) {
	ctx := context.Background()
	m := memory.New()
	m.Set(ctx, "ns:42", make([]byte, 200), time.Minute)
	b.ReportAllocs()
	for b.Loop() {
		m.Get(ctx, "ns:42")
	}
}
