package redisbackend_test

import (
	"context"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/gomemo/memo"
	"github.com/gomemo/memo/backends/redisbackend"
	"github.com/gomemo/memo/internal/testenv"
)

// countingBackend counts the reads that reach the backend.
type countingBackend struct {
	memo.Backend
	gets atomic.Int64
}

func (c *countingBackend) Get(ctx context.Context, key string) ([]byte, bool, error) {
	c.gets.Add(1)
	return c.Backend.Get(ctx, key)
}

func (c *countingBackend) Clear(ctx context.Context, ns string) error {
	return c.Backend.(memo.Clearer).Clear(ctx, ns)
}

// peer is one process's view: its own client, backend, LocalTier and
// function over the shared Redis.
type peer struct {
	be   *countingBackend
	tier *memo.LocalTier
	f    *memo.Func[int, int64]
}

func newPeer(t *testing.T, c redis.UniversalClient, channel, ns string, src *atomic.Int64) *peer {
	t.Helper()
	p := &peer{be: &countingBackend{Backend: redisbackend.New(c)}}
	p.tier = memo.NewLocalTier(1<<20, redisbackend.NewPubSub(c, channel))
	t.Cleanup(p.tier.Close)
	p.f = memo.New(func(ctx context.Context, id int) (int64, error) { return src.Load(), nil },
		memo.Namespace(ns), memo.WithBackend(p.be), memo.WithLocalTier(p.tier), memo.Expire(time.Hour))
	waitFor(t, "the tier's subscription", p.tier.Ready)
	return p
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); !cond(); time.Sleep(200 * time.Microsecond) {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
	}
}

// clients returns two clients of one kind, as two processes would hold.
func clients(t *testing.T, kind string) (redis.UniversalClient, redis.UniversalClient) {
	if kind == "cluster" {
		return cluster(t), cluster(t)
	}
	return standalone(t), standalone(t)
}

// A local tier in front of Redis stays coherent: after Set or Forget in
// one process, the other's next call reflects it once the invalidation
// arrives, and hits in between cost no round trip.
func TestLocalTierCoherent(t *testing.T) {
	for _, kind := range []string{"standalone", "cluster"} {
		t.Run(kind, func(t *testing.T) {
			ca, cb := clients(t, kind)
			ctx := context.Background()
			var src atomic.Int64
			ns, channel := testenv.NS(t, "coherent"), testenv.NS(t, "inv")
			a, b := newPeer(t, ca, channel, ns, &src), newPeer(t, cb, channel, ns, &src)
			var lat []time.Duration
			for i := range 200 {
				want := src.Load()
				if v, _ := a.f.Call(ctx, i); v != want {
					t.Fatalf("a.Call(%d) = %d, want %d", i, v, want)
				}
				if v, _ := b.f.Call(ctx, i); v != want {
					t.Fatalf("b.Call(%d) = %d, want %d", i, v, want)
				}
				// The invalidation of a's write may reach b after b's
				// first read and drop its copy: b then reads once more.
				// After that, b answers from its tier.
				local := false
				for try := 0; try < 50 && !local; try++ {
					before := b.be.gets.Load()
					if v, _ := b.f.Call(ctx, i); v != want {
						t.Fatalf("b.Call(%d) again = %d, want %d", i, v, want)
					}
					local = b.be.gets.Load() == before
				}
				if !local {
					t.Fatalf("b.Call(%d) never answered from the local tier", i)
				}
				next := src.Add(1)
				start := time.Now()
				if i%2 == 0 {
					if err := a.f.Set(ctx, i, next); err != nil {
						t.Fatal(err)
					}
				} else if err := a.f.Forget(ctx, i); err != nil {
					t.Fatal(err)
				}
				if v, _ := a.f.Call(ctx, i); v != next {
					t.Fatalf("a.Call(%d) after its own write = %d, want %d at once", i, v, next)
				}
				waitFor(t, "b to see the write", func() bool { v, _ := b.f.Call(ctx, i); return v == next })
				lat = append(lat, time.Since(start))
			}
			slices.Sort(lat)
			p50, p99 := lat[len(lat)/2], lat[len(lat)*99/100]
			t.Logf("FIGURES %s: write elsewhere -> reflected locally: p50 %v p99 %v max %v (200 trials)", kind, p50, p99, lat[len(lat)-1])
			// Not asserted here (a timing, in one process, under -race):
			// internal/reliability's TestLocalTierAcrossProcesses asserts
			// the 10 ms p99 across real processes, measured from
			// the write's return.
			// Clear elsewhere drops the whole namespace here.
			b.f.Call(ctx, 1000)
			next := src.Add(1)
			if err := a.f.Clear(ctx); err != nil {
				t.Fatal(err)
			}
			waitFor(t, "b to see the Clear", func() bool { v, _ := b.f.Call(ctx, 1000); return v == next })
		})
	}
}

// A killed subscription connection flushes and bypasses the tier until it
// is renewed: no local copy that may have missed an invalidation is
// served, and the tier is used again once subscribed anew.
func TestLocalTierSubscriptionKilled(t *testing.T) {
	ca, cb := standalone(t), standalone(t)
	admin := standalone(t)
	ctx := context.Background()
	var src atomic.Int64
	ns, channel := testenv.NS(t, "killed"), testenv.NS(t, "inv")
	a, b := newPeer(t, ca, channel, ns, &src), newPeer(t, cb, channel, ns, &src)
	for round := range 5 {
		want := src.Load()
		if v, _ := b.f.Call(ctx, 1); v != want {
			t.Fatalf("round %d: b.Call = %d, want %d", round, v, want)
		}
		if err := admin.ClientKillByFilter(ctx, "TYPE", "pubsub").Err(); err != nil {
			t.Fatal(err)
		}
		waitFor(t, "b's tier to notice the lost subscription", func() bool { return !b.tier.Ready() })
		next := src.Add(1)
		if err := a.f.Set(ctx, 1, next); err != nil { // published while b is not subscribed
			t.Fatal(err)
		}
		if v, _ := b.f.Call(ctx, 1); v != next {
			t.Fatalf("round %d: b.Call after a write it could not hear of = %d, want %d", round, v, next)
		}
		waitFor(t, "b's subscription to be renewed", b.tier.Ready)
		waitFor(t, "a's subscription to be renewed", a.tier.Ready)
		if v, _ := b.f.Call(ctx, 1); v != next {
			t.Fatalf("round %d: b.Call after renewal = %d, want %d", round, v, next)
		}
		before := b.be.gets.Load()
		b.f.Call(ctx, 1)
		if b.be.gets.Load() != before {
			t.Fatalf("round %d: the renewed tier is not used: a hit read the backend", round)
		}
	}
}
