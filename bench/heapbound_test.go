package bench

// Issue 9, "with 64 KiB-5 MiB values the heap peaked at 2.6-4.4x MaxBytes":
// a reproduction with memo as it is in the working tree, and experiments
// that take the excess apart.
//
//	MEMO_HEAPBOUND=1 go test -run 'TestHeapBound' -v -timeout 30m .

import (
	"context"
	"fmt"
	"math/rand"
	"os"
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gomemo/memo"
	"github.com/gomemo/memo/backends/memory"
	json "github.com/segmentio/encoding/json"
)

// Blob is the struct form of the workload: a big string beside a field.
type Blob struct {
	ID   int64
	Body string
}

// sampler records the largest heap seen (live and dead objects) while it runs,
// reading runtime/metrics (no stop-the-world) every 100 µs.
type sampler struct {
	stop chan struct{}
	done chan struct{}
	peak atomic.Uint64
}

func startSampler() *sampler {
	s := &sampler{stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(s.done)
		m := []metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}}
		t := time.NewTicker(100 * time.Microsecond)
		defer t.Stop()
		for {
			metrics.Read(m)
			if v := m[0].Value.Uint64(); v > s.peak.Load() {
				s.peak.Store(v)
			}
			select {
			case <-s.stop:
				return
			case <-t.C:
			}
		}
	}()
	return s
}

func (s *sampler) end() uint64 { close(s.stop); <-s.done; return s.peak.Load() }

func allocBytes() uint64 {
	m := []metrics.Sample{{Name: "/gc/heap/allocs:bytes"}}
	metrics.Read(m)
	return m[0].Value.Uint64()
}

const letters = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"

// blobSizes are the value sizes, uniform over [64 KiB, 5 MiB], seeded.
func blobSizes(n int, seed int64) []int {
	r := rand.New(rand.NewSource(seed))
	out := make([]int, n)
	for i := range out {
		out[i] = 64<<10 + r.Intn(5<<20-64<<10+1)
	}
	return out
}

var randBytes = sync.OnceValue(func() []byte {
	b := make([]byte, 5<<20)
	r := rand.New(rand.NewSource(7))
	for i := range b {
		b[i] = letters[r.Intn(len(letters))]
	}
	return b
})

// newBlob returns a fresh value of n bytes (as fn would build one).
func newBlob(n int) []byte {
	b := make([]byte, n)
	copy(b, randBytes())
	return b
}

type heapRun struct {
	name                string
	bound               int64
	peak, post, valSum  int64
	acct                int64
	entries             int
	missAlloc, hitAlloc float64 // bytes allocated per value byte
}

// runMemo calls f on n distinct keys, each twice (a miss, then a hit that
// keeps a decoded copy), and measures the heap.
func runMemo[R any](name string, bound int64, sizes []int, mk func(ctx context.Context, mem *memory.Backend) (call func(int64) R, acct func() (int64, int))) heapRun {
	ctx := context.Background()
	before := heapNow()
	var mem *memory.Backend
	call, acct := mk(ctx, mem)
	var valSum int64
	var missA, hitA uint64
	smp := startSampler()
	for i, n := range sizes {
		valSum += int64(n)
		a0 := allocBytes()
		call(int64(i))
		a1 := allocBytes()
		call(int64(i))
		a2 := allocBytes()
		missA += a1 - a0
		hitA += a2 - a1
	}
	peak := smp.end()
	after := heapNow()
	b, e := acct()
	runtime.KeepAlive(call)
	return heapRun{name: name, bound: bound, peak: int64(peak) - before, post: after - before, valSum: valSum,
		acct: b, entries: e, missAlloc: float64(missA) / float64(valSum), hitAlloc: float64(hitA) / float64(valSum)}
}

func bytesFn(sizes []int) func(context.Context, int64) ([]byte, error) {
	return func(_ context.Context, i int64) ([]byte, error) { return newBlob(sizes[i]), nil }
}

func blobFn(sizes []int) func(context.Context, int64) (Blob, error) {
	return func(_ context.Context, i int64) (Blob, error) {
		return Blob{ID: i, Body: string(newBlob(sizes[i]))}, nil
	}
}

func (r heapRun) row() string {
	mib := func(x int64) string { return fmt.Sprintf("%.1f", float64(x)/(1<<20)) }
	return fmt.Sprintf("| %s | %s | %.2f | %.2f | %.2f | %d | %.2f | %.2f |", r.name, mib(r.bound),
		float64(r.peak)/float64(r.bound), float64(r.post)/float64(r.bound), float64(r.acct)/float64(r.bound), r.entries, r.missAlloc, r.hitAlloc)
}

const heapHeader = "| case | bound MiB | peak / bound | post-GC / bound | accounted / bound | entries | alloc per value B, miss | alloc per value B, hit |\n|---|---|---|---|---|---|---|---|\n"

func memoBytes(name string, bound int64, sizes []int, opts ...memo.Option) heapRun {
	return runMemo(name, bound, sizes, func(ctx context.Context, _ *memory.Backend) (func(int64) []byte, func() (int64, int)) {
		mem := memory.New(memory.MaxBytes(bound))
		f := memo.New(bytesFn(sizes), append([]memo.Option{memo.WithBackend(mem), memo.Namespace("heap-bytes"), memo.OnError(func(context.Context, error) {})}, opts...)...)
		return func(i int64) []byte { v, _ := f.Call(ctx, i); return v }, func() (int64, int) { return mem.Bytes(), mem.Len() }
	})
}

func TestHeapBound(t *testing.T) {
	if os.Getenv("MEMO_HEAPBOUND") == "" {
		t.Skip("set MEMO_HEAPBOUND=1")
	}
	const bound = 32 << 20
	const n = 150
	sizes := blobSizes(n, 1)
	var sb strings.Builder
	fmt.Fprintf(&sb, "\n%d distinct keys, each a miss then a hit, values uniform 64 KiB-5 MiB (mean %.1f MiB), GOMAXPROCS=%d, GOGC=%s\n\n",
		n, float64(sum(sizes))/n/(1<<20), runtime.GOMAXPROCS(0), os.Getenv("GOGC"))
	sb.WriteString(heapHeader)
	rowFns := []func() heapRun{
		func() heapRun { return memoBytes("memo, []byte, JSON, MaxBytes 32 MiB", bound, sizes) },
		func() heapRun { return memoBytes("memo, []byte, Msgpack", bound, sizes, memo.WithCodec(memo.Msgpack)) },
		func() heapRun {
			return runMemo("memo, struct{ID; Body string}, JSON", bound, sizes, func(ctx context.Context, _ *memory.Backend) (func(int64) Blob, func() (int64, int)) {
				mem := memory.New(memory.MaxBytes(bound))
				f := memo.New(blobFn(sizes), memo.WithBackend(mem), memo.Namespace("heap-blob"), memo.OnError(func(context.Context, error) {}))
				return func(i int64) Blob { v, _ := f.Call(ctx, i); return v }, func() (int64, int) { return mem.Bytes(), mem.Len() }
			})
		},
	}
	// Shards(1): one shard holds the whole bound, so every value fits.
	rowFns = append(rowFns, func() heapRun {
		return runMemo("memo, []byte, JSON, Shards(1)", bound, sizes, func(ctx context.Context, _ *memory.Backend) (func(int64) []byte, func() (int64, int)) {
			mem := memory.New(memory.MaxBytes(bound), memory.Shards(1))
			f := memo.New(bytesFn(sizes), memo.WithBackend(mem), memo.Namespace("heap-bytes1"), memo.OnError(func(context.Context, error) {}))
			return func(i int64) []byte { v, _ := f.Call(ctx, i); return v }, func() (int64, int) { return mem.Bytes(), mem.Len() }
		})
	})
	// Counterfactuals without memo.
	rowFns = append(rowFns, func() heapRun {
		return runMemo("no memo: fn only (values dropped)", bound, sizes, func(ctx context.Context, _ *memory.Backend) (func(int64) []byte, func() (int64, int)) {
			fn := bytesFn(sizes)
			return func(i int64) []byte { v, _ := fn(ctx, i); return v }, func() (int64, int) { return 0, 0 }
		})
	},
		func() heapRun {
			return runMemo("no memo: fn + memory.Set of its bytes", bound, sizes, func(ctx context.Context, _ *memory.Backend) (func(int64) []byte, func() (int64, int)) {
				mem := memory.New(memory.MaxBytes(bound))
				fn := bytesFn(sizes)
				return func(i int64) []byte {
					v, _ := fn(ctx, i)
					mem.Set(ctx, fmt.Sprint("k:", i), v, 0)
					return v
				}, func() (int64, int) { return mem.Bytes(), mem.Len() }
			})
		},
		func() heapRun {
			return runMemo("no memo: local tier item (fn's value kept, no bytes)", bound, sizes, func(ctx context.Context, _ *memory.Backend) (func(int64) []byte, func() (int64, int)) {
				s := newLocalShards(bound, 1)
				fn := bytesFn(sizes)
				return func(i int64) []byte {
					k := fmt.Sprint("k:", i)
					var buf [64]byte
					if it, _, ok := s.Load(append(buf[:0], k...)); ok {
						return it.v.([]byte)
					}
					v, _ := fn(ctx, i)
					it := &item{v: v}
					s.Store(k, it, itemWeight(k, it)-localOverhead)
					return v
				}, func() (int64, int) { return s.Bytes(), s.Len() }
			})
		},
	)
	for _, fn := range rowFns {
		sb.WriteString(repeat(3, fn).row() + "\n")
	}

	// The GC's share of the peak: the same run under GOGC 50 and 25, and
	// under a memory limit of 1.5x the bound.
	sb.WriteString("\nGC pacing, memo []byte JSON, MaxBytes 32 MiB, Shards(1):\n\n" + heapHeader)
	for _, g := range []int{100, 50, 25} {
		old := debug.SetGCPercent(g)
		r := repeat(3, func() heapRun {
			return runMemo(fmt.Sprintf("GOGC=%d", g), bound, sizes, func(ctx context.Context, _ *memory.Backend) (func(int64) []byte, func() (int64, int)) {
				mem := memory.New(memory.MaxBytes(bound), memory.Shards(1))
				f := memo.New(bytesFn(sizes), memo.WithBackend(mem), memo.Namespace(fmt.Sprint("heap-gogc", g)), memo.OnError(func(context.Context, error) {}))
				return func(i int64) []byte { v, _ := f.Call(ctx, i); return v }, func() (int64, int) { return mem.Bytes(), mem.Len() }
			})
		})
		debug.SetGCPercent(old)
		sb.WriteString(r.row() + "\n")
	}
	{
		base := heapNow()
		old := debug.SetMemoryLimit(base + bound*3/2)
		r := repeat(3, func() heapRun {
			return runMemo("GOMEMLIMIT = base + 1.5x bound", bound, sizes, func(ctx context.Context, _ *memory.Backend) (func(int64) []byte, func() (int64, int)) {
				mem := memory.New(memory.MaxBytes(bound), memory.Shards(1))
				f := memo.New(bytesFn(sizes), memo.WithBackend(mem), memo.Namespace("heap-limit"), memo.OnError(func(context.Context, error) {}))
				return func(i int64) []byte { v, _ := f.Call(ctx, i); return v }, func() (int64, int) { return mem.Bytes(), mem.Len() }
			})
		})
		debug.SetMemoryLimit(old)
		sb.WriteString(r.row() + "\n")
	}
	// Last: memo's default store is process-wide and stays full afterwards,
	// which would raise the GC's goal (and so the peak) of every later row.
	sb.WriteString("\nmemo's default store (process-wide, last):\n\n" + heapHeader)
	sb.WriteString(repeat(1, func() heapRun {
		return runMemo("memo, []byte, default store (64 MiB)", memory.DefaultMaxBytes, sizes, func(ctx context.Context, _ *memory.Backend) (func(int64) []byte, func() (int64, int)) {
			f := memo.New(bytesFn(sizes), memo.Namespace("heap-default"), memo.OnError(func(context.Context, error) {}))
			return func(i int64) []byte { v, _ := f.Call(ctx, i); return v }, func() (int64, int) { return 0, 0 }
		})
	}).row() + "\n")
	t.Log(sb.String())
}

// repeat runs fn k times and returns the last run with the median peak and
// post-GC heap of all (the peak is what the GC's timing moves).
func repeat(k int, fn func() heapRun) heapRun {
	var peaks, posts []float64
	var r heapRun
	for range k {
		r = fn()
		peaks = append(peaks, float64(r.peak))
		posts = append(posts, float64(r.post))
	}
	r.peak, r.post = int64(median(peaks)), int64(median(posts))
	return r
}

func sum(v []int) (s int) {
	for _, x := range v {
		s += x
	}
	return s
}

// TestHeapBoundStages measures what each step of a miss and a hit allocates
// for a value of S bytes, with the same libraries memo uses, so that memo's
// total (TestHeapBound's alloc columns) can be taken apart.
func TestHeapBoundStages(t *testing.T) {
	if os.Getenv("MEMO_HEAPBOUND") == "" {
		t.Skip("set MEMO_HEAPBOUND=1")
	}
	sizes := blobSizes(150, 1)
	measure := func(f func(i int)) float64 {
		runtime.GC()
		var tot, vs uint64
		for i, n := range sizes {
			a := allocBytes()
			f(i)
			tot += allocBytes() - a
			vs += uint64(n)
		}
		return float64(tot) / float64(vs)
	}
	var keepEnc [][]byte
	encs := make([][]byte, len(sizes))
	var hint int
	var sb strings.Builder
	sb.WriteString("\n| step (JSON, []byte value) | bytes allocated per value byte |\n|---|---|\n")
	row := func(name string, v float64) { fmt.Fprintf(&sb, "| %s | %.2f |\n", name, v) }
	vals := make([][]byte, len(sizes))
	row("fn builds the value", measure(func(i int) { vals[i] = newBlob(sizes[i]) }))
	row("encode: json.Append into make(hdr, hdr+sizeHint), hint = last len+32 (memo today)", measure(func(i int) {
		b, _ := json.Append(make([]byte, 64, 64+hint), &vals[i], json.EscapeHTML|json.SortMapKeys)
		hint = len(b) - 64 + 32
		encs[i] = b
	}))
	row("encode: into a buffer of the exact size (base64 len known)", measure(func(i int) {
		b, _ := json.Append(make([]byte, 64, 64+2+(len(vals[i])+2)/3*4), &vals[i], json.EscapeHTML|json.SortMapKeys)
		keepEnc = append(keepEnc[:0], b)
	}))
	row("store: memory.Set copies the envelope", measure(func(i int) {
		c := make([]byte, len(encs[i]))
		copy(c, encs[i])
		keepEnc = append(keepEnc[:0], c)
	}))
	var dec [][]byte = make([][]byte, len(sizes))
	row("hit, first: decode the payload (json.Unmarshal)", measure(func(i int) {
		json.Unmarshal(encs[i][64:], &dec[i])
	}))
	row("hit, first: kept copy (copyOut)", measure(func(i int) {
		keepEnc = append(keepEnc[:0], append([]byte(nil), dec[i]...))
	}))
	runtime.KeepAlive(keepEnc)
	t.Log(sb.String())
}
