package redisbackend_test

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/gomemo/memo/backends/redisbackend"
	"github.com/gomemo/memo/internal/testenv"
)

// BenchmarkClear clears namespaces of 10,000 and 100,000 keys on the
// standalone server and on the cluster while another client runs GETs,
// and reports the clear's duration and that client's p99 latency during
// it: SCAN + UNLINK in pages must never block other clients the way KEYS
// or a big DEL would. Run it with -benchtime=1x.
func BenchmarkClear(b *testing.B) {
	targets := []struct {
		name string
		c    func(testing.TB) redis.UniversalClient
	}{
		{"standalone", func(t testing.TB) redis.UniversalClient { return standalone(t) }},
		{"cluster", func(t testing.TB) redis.UniversalClient { return cluster(t) }},
	}
	for _, tg := range targets {
		for _, n := range []int{10_000, 100_000} {
			b.Run(fmt.Sprintf("%s/keys=%d", tg.name, n), func(b *testing.B) {
				c := tg.c(b)
				be := redisbackend.New(c)
				ctx := context.Background()
				var clearTime time.Duration
				var lat []time.Duration
				for b.Loop() {
					b.StopTimer()
					ns := testenv.NS(b, "clearbench")
					fill(b, c, ns, n)
					c.Set(ctx, "probe{x}", "v", time.Hour)
					stop := make(chan struct{})
					var wg sync.WaitGroup
					lat = lat[:0]
					wg.Go(func() {
						for {
							select {
							case <-stop:
								return
							default:
							}
							t0 := time.Now()
							c.Get(ctx, "probe{x}")
							lat = append(lat, time.Since(t0))
						}
					})
					time.Sleep(20 * time.Millisecond)
					b.StartTimer()
					t0 := time.Now()
					if err := be.Clear(ctx, ns); err != nil {
						b.Fatal(err)
					}
					clearTime = time.Since(t0)
					b.StopTimer()
					close(stop)
					wg.Wait()
					b.StartTimer()
				}
				slices.Sort(lat)
				p99 := lat[len(lat)*99/100]
				b.ReportMetric(float64(clearTime.Milliseconds()), "clear-ms")
				b.ReportMetric(float64(p99.Microseconds())/1000, "p99-ms")
				b.ReportMetric(float64(lat[len(lat)-1].Microseconds())/1000, "max-ms")
				b.Logf("%s: cleared %d keys in %v; a concurrent client's GET p50 %v, p99 %v, max %v over %d GETs",
					tg.name, n, clearTime, lat[len(lat)/2], p99, lat[len(lat)-1], len(lat))
			})
		}
	}
}

// fill writes n keys of ns with pipelines.
func fill(b *testing.B, c redis.UniversalClient, ns string, n int) {
	ctx := context.Background()
	for i := 0; i < n; i += 1000 {
		p := c.Pipeline()
		for j := i; j < min(i+1000, n); j++ {
			p.Set(ctx, fmt.Sprintf("%s:%d", ns, j), "v", time.Hour)
		}
		if _, err := p.Exec(ctx); err != nil {
			b.Fatal(err)
		}
	}
}
