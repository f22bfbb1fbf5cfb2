// Package benchutil holds the benchmark helpers of memo's backend packages:
// a memo hit beside the raw client's read of the same bytes
// ([BenchMemoHit]), measured call by call ([Paired]) and in phases from
// several goroutines ([PhasedParallel]); serial or parallel loops
// ([Bench]) and interleaved blocks that report medians ([Interleaved]).
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

// benchUser is the reference result of the hit benchmarks, the issue's
// User (BenchUser in the root package's bench_test.go): about 120 bytes of
// JSON.
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

// Goroutines is how many goroutines the parallel hit benchmarks use.
const Goroutines = 8

// BenchMemoHit measures a memo hit through be (f.Call of an int64 key,
// decoded into the reference User) beside the raw client's read of the
// same stored bytes, for both codecs. opts are added to the function's
// options (after WithBackend, Expire and the codec). Sub-benchmarks:
//
//   - <codec>/serial: b.N pairs of one memo call and one raw call,
//     alternating which goes first, each timed alone ([Paired]). It
//     reports the medians (memo-ns, raw-ns), what memo adds
//     (added-ns: the difference of the medians) and memo-ns/raw-ns. Run it
//     with -benchtime=20000x for the medians of 20,000 each.
//   - <codec>/parallel8: [Goroutines] goroutines, each with a key of its
//     own, in alternating phases of raw and memo calls, b.N calls of each
//     in all ([PhasedParallel]). It
//     reports the hits per second of each and the median over phases of
//     memo's rate to the raw rate of the phase before (memo/raw-hits).
func BenchMemoHit(b *testing.B, be memo.Backend, raw RawReader, opts ...memo.Option) {
	ctx := context.Background()
	for _, codec := range []memo.Codec{memo.JSON, memo.Msgpack} {
		var runs, faults atomic.Int64
		o := append([]memo.Option{memo.WithBackend(be), memo.Namespace(testenv.NS(b, "hit")), memo.WithCodec(codec),
			memo.Expire(time.Hour), memo.OnError(func(context.Context, error) { faults.Add(1) })}, opts...)
		f := memo.New(func(_ context.Context, id int64) (benchUser, error) {
			runs.Add(1)
			return benchUser{ID: id, Name: "Ada Lovelace", Email: "ada@example.com", Tags: []string{"admin", "math"},
				CreatedAt: time.Date(2026, 11, 25, 8, 0, 0, 0, time.UTC)}, nil
		}, o...)
		// One key per goroutine: callers of one key would share a flight,
		// and so one GET, which is not what a hit costs.
		var raws, hits []func() error
		for g := range int64(Goroutines) {
			id := 42 + g
			if _, err := f.Call(ctx, id); err != nil { // the miss that stores it (Call writes through)
				b.Fatal(err)
			}
			key := f.Key(id)
			b.Cleanup(func() { be.Delete(context.Background(), key) })
			env, ok, err := be.Get(ctx, key)
			if err != nil || !ok {
				b.Fatalf("the stored entry: %v, %v", ok, err)
			}
			read := raw(b, key)
			raws = append(raws, func() error {
				v, err := read(ctx)
				if err != nil || len(v) != len(env) {
					return fmt.Errorf("raw read of %q = %d bytes, %v; want %d", key, len(v), err, len(env))
				}
				return nil
			})
			hits = append(hits, func() error {
				u, err := f.Call(ctx, id)
				if err != nil || u.ID != id {
					return fmt.Errorf("Call(%d) = %v, %v", id, u.ID, err)
				}
				return nil
			})
		}
		b.Run(codec.Name()+"/serial", func(b *testing.B) { Paired(b, raws[0], hits[0], "memo") })
		b.Run(fmt.Sprintf("%s/parallel%d", codec.Name(), Goroutines), func(b *testing.B) {
			PhasedParallel(b, raws, hits, "memo")
		})
		if n, e := runs.Load(), faults.Load(); n != Goroutines || e != 0 {
			b.Fatalf("%s: fn ran %d times and memo reported %d faults; the benchmark measured misses", codec.Name(), n, e)
		}
	}
}

// Paired runs b.N pairs of one raw and one other call from this
// goroutine, the order alternating from pair to pair, and times each call
// alone. It reports the median latency of each (raw-ns, <name>-ns), the
// difference of the medians (added-ns) and their ratio (<name>/raw): a
// stall or a burst of load from elsewhere falls on both alike and moves
// neither median. An op is a pair.
func Paired(b *testing.B, raw, other func() error, name string) {
	// Warm both (connections, buffers, the first decode).
	for range 100 {
		if err := raw(); err != nil {
			b.Fatal(err)
		}
		if err := other(); err != nil {
			b.Fatal(err)
		}
	}
	lat := [2][]float64{make([]float64, 0, b.N), make([]float64, 0, b.N)}
	fns := [2]func() error{raw, other}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		for j := range 2 {
			w := (i + j) & 1
			start := time.Now()
			err := fns[w]()
			lat[w] = append(lat[w], float64(time.Since(start)))
			if err != nil {
				b.Fatal(err)
			}
		}
		i++
	}
	r, o := median(lat[0]), median(lat[1])
	b.ReportMetric(r, "raw-ns")
	b.ReportMetric(o, name+"-ns")
	b.ReportMetric(o-r, "added-ns")
	b.ReportMetric(o/r, name+"/raw")
	b.ReportMetric(0, "ns/op") // an op is two calls: its mean says nothing here
}

// PhasedParallel runs b.N raw calls and b.N other calls from len(raw)
// goroutines, goroutine i calling raw[i] and other[i] (so that each may
// use a key of its own), in alternating phases of 64 calls per goroutine
// of one kind, and times
// each phase: its rate is the calls of all goroutines over its wall time.
// It reports the median rate of each (raw-hits/s, <name>-hits/s) and the
// median over phases of each other phase's rate to the raw phase's before
// it (<name>/raw-hits): load from elsewhere that lasts longer than a phase
// falls on both alike.
func PhasedParallel(b *testing.B, raw, other []func() error, name string) {
	const perG = 64
	g := len(raw)
	phase := func(fns []func() error) float64 {
		var wg sync.WaitGroup
		var failed atomic.Bool
		start := time.Now()
		for i := range g {
			fn := fns[i]
			wg.Go(func() {
				for range perG {
					if err := fn(); err != nil {
						if !failed.Swap(true) {
							b.Error(err)
						}
						return
					}
				}
			})
		}
		wg.Wait()
		return float64(g*perG) / time.Since(start).Seconds()
	}
	phase(raw) // warm up connections for g goroutines
	phase(other)
	var rates [2][]float64
	var ratios []float64
	b.ReportAllocs()
	b.ResetTimer()
	for n := 0; n < b.N || len(ratios) < 5; n += g * perG {
		r := phase(raw)
		o := phase(other)
		rates[0], rates[1] = append(rates[0], r), append(rates[1], o)
		ratios = append(ratios, o/r)
		if b.Failed() {
			return
		}
	}
	b.StopTimer()
	b.ReportMetric(median(rates[0]), "raw-hits/s")
	b.ReportMetric(median(rates[1]), name+"-hits/s")
	b.ReportMetric(median(ratios), name+"/raw-hits")
	b.ReportMetric(0, "ns/op")
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
