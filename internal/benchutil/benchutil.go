// Package benchutil holds the benchmark helpers of memo's backend packages:
// a memo hit beside the raw client's read of the same bytes
// ([BenchMemoHit]), serial or parallel loops ([Bench]) and interleaved
// blocks that report medians ([Interleaved]).
package benchutil

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gomemo/memo"
	"github.com/gomemo/memo/internal/testenv"
)

// benchUser is the reference result of the hit benchmarks: about 120 bytes
// of JSON.
type benchUser struct {
	ID        int64
	Name      string
	Email     string
	Tags      []string
	CreatedAt time.Time
}

// RawReader returns a function that reads, with the store's own client,
// the bytes that the backend keeps for memo's key: the same request a
// program without memo would make.
type RawReader func(b *testing.B, key string) func(ctx context.Context) ([]byte, error)

// BenchMemoHit measures a memo hit through be (f.Call of an int64 key,
// decoded into a 120-byte struct) beside the raw client's read of the same
// stored bytes, for both codecs, from one goroutine and from 4×GOMAXPROCS.
// Each case runs raw and memo as sub-benchmarks one after the other, and an
// "interleaved" one that alternates blocks of 16 raw and 16 memo calls and
// reports the median memo/raw ratio, which stays steady on a busy machine.
func BenchMemoHit(b *testing.B, be memo.Backend, raw RawReader) {
	ctx := context.Background()
	for _, codec := range []memo.Codec{memo.JSON, memo.Msgpack} {
		var runs, faults atomic.Int64
		f := memo.New(func(_ context.Context, id int64) (benchUser, error) {
			runs.Add(1)
			return benchUser{ID: id, Name: "Ada Lovelace", Email: "ada@example.com", Tags: []string{"admin", "math"},
				CreatedAt: time.Date(2026, 11, 25, 8, 0, 0, 0, time.UTC)}, nil
		}, memo.WithBackend(be), memo.Namespace(testenv.NS(b, "hit")), memo.WithCodec(codec),
			memo.Expire(time.Hour), memo.OnError(func(context.Context, error) { faults.Add(1) }))
		if _, err := f.Call(ctx, 42); err != nil { // the miss that stores it
			b.Fatal(err)
		}
		key := f.Key(42)
		b.Cleanup(func() { be.Delete(context.Background(), key) })
		env, ok, err := be.Get(ctx, key)
		if err != nil || !ok {
			b.Fatalf("the stored entry: %v, %v", ok, err)
		}
		read := raw(b, key)
		rawFn := func() error {
			v, err := read(ctx)
			if err != nil || len(v) != len(env) {
				return fmt.Errorf("raw read of %q = %d bytes, %v; want %d", key, len(v), err, len(env))
			}
			return nil
		}
		hit := func() error {
			u, err := f.Call(ctx, 42)
			if err != nil || u.ID != 42 {
				return fmt.Errorf("Call = %v, %v", u.ID, err)
			}
			return nil
		}
		for _, par := range []bool{false, true} {
			mode := "serial"
			if par {
				mode = "parallel"
			}
			for _, impl := range []struct {
				name string
				fn   func() error
			}{{"raw", rawFn}, {"memo", hit}} {
				b.Run(fmt.Sprintf("%s/%s/%s", codec.Name(), mode, impl.name), func(b *testing.B) {
					Bench(b, par, impl.fn)
				})
			}
			b.Run(fmt.Sprintf("%s/%s/interleaved", codec.Name(), mode), func(b *testing.B) {
				Interleaved(b, par, rawFn, hit, "memo")
			})
		}
		if n, e := runs.Load(), faults.Load(); n != 1 || e != 0 {
			b.Fatalf("%s: fn ran %d times and memo reported %d faults; the benchmark measured misses", codec.Name(), n, e)
		}
	}
}

// Bench runs fn b.N times, from this goroutine or from 4×GOMAXPROCS.
func Bench(b *testing.B, parallel bool, fn func() error) {
	b.ReportAllocs()
	if !parallel {
		for b.Loop() {
			if err := fn(); err != nil {
				b.Fatal(err)
			}
		}
		return
	}
	b.SetParallelism(4)
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if err := fn(); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

// Interleaved alternates blocks of 16 raw and 16 other calls, from this
// goroutine or from 4×GOMAXPROCS, and times each block. It reports the
// median over blocks of each one's latency per call (raw-ns/call,
// <name>-ns/call) and the median ratio of each other block to the raw block
// before it (<name>/raw): noise from other processes on the machine falls
// on both alike, and a stall that lands in one block does not move a
// median. An op is one call of either.
func Interleaved(b *testing.B, parallel bool, raw, other func() error, name string) {
	const block = 16
	var mu sync.Mutex
	var lat [2][]float64 // ns per call, per block
	var ratios []float64
	work := func(next func() bool) {
		var l [2][]float64
		var r []float64
		fns := [2]func() error{raw, other}
		for turn := 0; ; turn ^= 1 {
			start := time.Now()
			k := 0
			for k < block && next() {
				if err := fns[turn](); err != nil {
					b.Error(err)
					return
				}
				k++
			}
			if k < block {
				break // a partial block would skew the medians
			}
			l[turn] = append(l[turn], float64(time.Since(start))/block)
			if turn == 1 {
				r = append(r, l[1][len(l[1])-1]/l[0][len(l[0])-1])
			}
		}
		mu.Lock()
		lat[0], lat[1] = append(lat[0], l[0]...), append(lat[1], l[1]...)
		ratios = append(ratios, r...)
		mu.Unlock()
	}
	b.ReportAllocs()
	if parallel {
		b.SetParallelism(4)
		b.RunParallel(func(pb *testing.PB) { work(pb.Next) })
	} else {
		work(b.Loop)
	}
	if len(ratios) == 0 {
		return
	}
	b.ReportMetric(median(lat[0]), "raw-ns/call")
	b.ReportMetric(median(lat[1]), name+"-ns/call")
	b.ReportMetric(median(ratios), name+"/raw")
}

func median(xs []float64) float64 {
	slices.Sort(xs)
	n := len(xs)
	if n%2 == 1 {
		return xs[n/2]
	}
	return (xs[n/2-1] + xs[n/2]) / 2
}
