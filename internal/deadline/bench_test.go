package deadline

// Benchmarks. Run from the repository root with the test servers up:
//
//	eval "$(bash scripts/servers.sh env)"
//	go test ./internal/deadline -run '^$' -bench . -benchtime 20000x
//
// BenchmarkCost* report ns/op and allocs/op of each variant on its own.
// BenchmarkInterleaved* alternate the variants within one loop and report
// medians, which hold steadier on a shared machine: per-block medians for
// creation and release, per-call medians for a Redis GET, and per-round
// throughput ratios for 8 goroutines.

import (
	"context"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

const benchTimeout = 100 * time.Millisecond // memo's default Timeout

// variant makes a bounded context and its release, as a backend call would.
type variant struct {
	name string
	call func(op func(context.Context))
}

var variants = []variant{
	{"background", func(op func(context.Context)) { op(context.Background()) }},
	{"context.WithTimeout", func(op func(context.Context)) {
		ctx, cancel := context.WithTimeout(context.Background(), benchTimeout)
		op(ctx)
		cancel()
	}},
	{"deadline.WithTimeout", func(op func(context.Context)) {
		ctx, cancel := WithTimeout(context.Background(), benchTimeout)
		op(ctx)
		cancel()
	}},
	{"deadline.New", func(op func(context.Context)) {
		c := New(context.Background(), benchTimeout)
		op(c)
		c.Release()
	}},
}

var ended atomic.Int64

// touch does what go-redis does with a command's context on the way: it
// asks for Done (waitTurn's select) and Deadline (socket deadlines).
func touch(ctx context.Context) {
	select {
	case <-ctx.Done():
		ended.Add(1) // only a descheduled goroutine gets here
	default:
	}
	ctx.Deadline()
	ctx.Deadline()
}

func nop(context.Context) {}

// BenchmarkCost: creation and release on one goroutine, then on all
// (RunParallel), each variant alone, with and without a Done call.
func BenchmarkCost(b *testing.B) {
	for _, op := range []struct {
		name string
		f    func(context.Context)
	}{{"create+release", nop}, {"create+Done+release", touch}} {
		for _, v := range variants[1:] {
			b.Run(op.name+"/"+v.name, func(b *testing.B) {
				b.ReportAllocs()
				for b.Loop() {
					v.call(op.f)
				}
			})
			b.Run(op.name+"/parallel/"+v.name, func(b *testing.B) {
				b.ReportAllocs()
				b.RunParallel(func(pb *testing.PB) {
					for pb.Next() {
						v.call(op.f)
					}
				})
			})
		}
	}
}

func median(xs []float64) float64 {
	s := slices.Clone(xs)
	slices.Sort(s)
	if len(s) == 0 {
		return 0
	}
	return s[len(s)/2]
}

// BenchmarkInterleavedCost alternates the variants in blocks of 100 calls
// (create, Done, Deadline, release), b.N blocks each, and reports the
// median ns per call of each: serial, then 8 goroutines (the block's wall
// time divided by the calls of all 8).
func BenchmarkInterleavedCost(b *testing.B) {
	vs := variants[1:]
	const block = 100
	b.Run("serial", func(b *testing.B) {
		per := make([][]float64, len(vs))
		for i := 0; b.Loop(); i++ {
			for k := range vs {
				v := vs[(i+k)%len(vs)]
				start := time.Now()
				for range block {
					v.call(touch)
				}
				per[(i+k)%len(vs)] = append(per[(i+k)%len(vs)], float64(time.Since(start))/block)
			}
		}
		for k, v := range vs {
			b.ReportMetric(median(per[k]), "ns/"+v.name)
		}
	})
	b.Run("8goroutines", func(b *testing.B) {
		const g = 8
		per := make([][]float64, len(vs))
		for i := 0; b.Loop(); i++ {
			for k := range vs {
				v := vs[(i+k)%len(vs)]
				var wg sync.WaitGroup
				start := time.Now()
				for range g {
					wg.Add(1)
					go func() {
						defer wg.Done()
						for range block {
							v.call(touch)
						}
					}()
				}
				wg.Wait()
				per[(i+k)%len(vs)] = append(per[(i+k)%len(vs)], float64(time.Since(start))/(g*block))
			}
		}
		for k, v := range vs {
			b.ReportMetric(median(per[k]), "ns/"+v.name)
		}
	})
}

// BenchmarkInterleavedRedisGet: a GET of a 150-byte value on the test
// Redis server, b.N times per variant, the variants alternating call by
// call (the order going through every permutation), each call timed. Reports the median GET with
// context.Background and, for each other variant, the median of the
// per-call differences to the Background call of the same iteration and
// the difference of the medians. Run with -benchtime 20000x.
func BenchmarkInterleavedRedisGet(b *testing.B) {
	c, key := redisFixture(b, 0)
	vs := variants[:3]
	var errs atomic.Int64 // timeouts, when other processes starve this one
	get := func(ctx context.Context) {
		if err := c.Get(ctx, key).Err(); err != nil {
			errs.Add(1)
		}
	}
	for range 1000 { // warm the connection and the code
		for _, v := range vs {
			v.call(get)
		}
	}
	// The orders cycle through all six permutations, so that each variant
	// follows and precedes each other equally often.
	perms := [][3]int{{0, 1, 2}, {0, 2, 1}, {1, 0, 2}, {1, 2, 0}, {2, 0, 1}, {2, 1, 0}}
	per := make([][]float64, len(vs))
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		for _, j := range perms[i%len(perms)] {
			start := time.Now()
			vs[j].call(get)
			per[j] = append(per[j], float64(time.Since(start)))
		}
	}
	b.ReportMetric(float64(errs.Load()), "errors")
	b.ReportMetric(median(per[0]), "ns/GET-background")
	for j := 1; j < len(vs); j++ {
		diff := make([]float64, len(per[0]))
		for i := range diff {
			diff[i] = per[j][i] - per[0][i]
		}
		b.ReportMetric(median(diff), "added-ns/"+vs[j].name)
		b.ReportMetric(median(per[j])-median(per[0]), "added-ns-of-medians/"+vs[j].name)
	}
}

// BenchmarkInterleavedRedisParallel: 8 goroutines GET for a 50 ms window
// per variant, the variants alternating (the order rotating), b.N rounds.
// Reports each variant's median hits/s and the median over rounds of its
// ratio to the Background variant's hits/s in the same round. Run with
// -benchtime 60x or so: short windows pair the variants under the same load.
func BenchmarkInterleavedRedisParallel(b *testing.B) {
	const g = 8
	const window = 50 * time.Millisecond
	c, key := redisFixture(b, 0)
	vs := variants[:3]
	var errs atomic.Int64
	get := func(ctx context.Context) {
		if err := c.Get(ctx, key).Err(); err != nil {
			errs.Add(1)
		}
	}
	run := func(v variant) float64 {
		var (
			n    atomic.Int64
			stop atomic.Bool
			wg   sync.WaitGroup
		)
		for range g {
			wg.Add(1)
			go func() {
				defer wg.Done()
				var k int64
				for !stop.Load() {
					v.call(get)
					k++
				}
				n.Add(k)
			}()
		}
		start := time.Now()
		time.Sleep(window)
		stop.Store(true)
		wg.Wait()
		return float64(n.Load()) / time.Since(start).Seconds()
	}
	for _, v := range vs {
		run(v) // warm up: fill the pool
	}
	rates := make([][]float64, len(vs))
	for i := 0; b.Loop(); i++ {
		for k := range vs {
			j := (i + k) % len(vs)
			rates[j] = append(rates[j], run(vs[j]))
		}
	}
	b.ReportMetric(float64(errs.Load()), "errors")
	for j, v := range vs {
		b.ReportMetric(median(rates[j]), "hits/s-"+v.name)
		if j == 0 {
			continue
		}
		ratio := make([]float64, len(rates[0]))
		for i := range ratio {
			ratio[i] = rates[j][i] / rates[0][i]
		}
		b.ReportMetric(median(ratio), "ratio-"+v.name)
	}
}
