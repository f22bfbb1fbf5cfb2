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

// arrivalInv is an Invalidator on a PubSub that notes when the last
// invalidation of another tier arrived, before the tier applies it.
type arrivalInv struct {
	*redisbackend.PubSub
	at atomic.Int64 // unix ns
}

func (a *arrivalInv) Subscribe(s memo.Subscriber) func() {
	return a.PubSub.Subscribe(arrivalSub{s, a})
}

type arrivalSub struct {
	memo.Subscriber
	a *arrivalInv
}

func (s arrivalSub) Invalidate(inv memo.Invalidation) {
	s.a.at.Store(time.Now().UnixNano())
	s.Subscriber.Invalidate(inv)
}

// Announce shortens the time from a write's start in process A until
// process B's tier drops its copy (the window in which Redis may already
// hold the new answer while B serves the old one) by the PUBLISH's round
// trip, and A's call by as much. Peers A (with and without Announce,
// trials alternating) and B (without) run in this process on clients of
// their own; A calls Set or Forget (half each), B notes when the message
// arrives. Figures logged, not asserted (timings: see
// docs/local-tier.md).
func TestAnnounceStaleness(t *testing.T) {
	announceNoLeaks(t)
	for _, kind := range []string{"standalone", "cluster"} {
		t.Run(kind, func(t *testing.T) {
			ca, cb := clients(t, kind)
			ctx := context.Background()
			ns, channel := testenv.NS(t, "stale"), testenv.NS(t, "inv")
			var src atomic.Int64
			fn := func(ctx context.Context, id int) (int64, error) { return src.Load(), nil }
			mk := func(c redis.UniversalClient, inv memo.Invalidator, be *redisbackend.Backend) (*memo.Func[int, int64], *memo.LocalTier) {
				tier := memo.NewLocalTier(1<<20, inv)
				t.Cleanup(tier.Close)
				waitFor(t, "the tier's subscription", tier.Ready)
				return memo.New(fn, memo.Namespace(ns), memo.WithBackend(be), memo.WithLocalTier(tier), memo.Expire(time.Hour)), tier
			}
			psA := redisbackend.NewPubSub(ca, channel)
			aPlain, _ := mk(ca, psA, redisbackend.New(ca))
			psA2 := redisbackend.NewPubSub(ca, channel)
			aAnn, _ := mk(ca, psA2, redisbackend.New(ca, redisbackend.Announce(psA2)))
			bInv := &arrivalInv{PubSub: redisbackend.NewPubSub(cb, channel)}
			b, _ := mk(cb, bInv, redisbackend.New(cb))

			// On a Cluster, one key on the channel's master (pipelined
			// with Announce) and one elsewhere.
			ids := []int{0}
			if cc, ok := ca.(*redis.ClusterClient); ok {
				chm, _ := cc.MasterForKey(ctx, channel)
				ids = []int{-1, -1}
				for i := 0; ids[0] < 0 || ids[1] < 0; i++ {
					km, _ := cc.MasterForKey(ctx, aPlain.Key(i))
					if j := map[bool]int{true: 0, false: 1}[km == chm]; ids[j] < 0 {
						ids[j] = i
					}
				}
			}
			const trials = 200
			type figures struct{ arrive, call []time.Duration }
			for n, id := range ids {
				var fig [2]figures // [0] without Announce, [1] with
				for i := range 2 * trials {
					mode := i % 2
					a := []*memo.Func[int, int64]{aPlain, aAnn}[mode]
					if v, _ := b.Call(ctx, id); v != src.Load() {
						waitFor(t, "b to catch up", func() bool { v, _ := b.Call(ctx, id); return v == src.Load() })
					}
					bInv.at.Store(0)
					next := src.Add(1)
					start := time.Now()
					var err error
					if i/2%2 == 0 {
						err = a.Set(ctx, id, next)
					} else {
						err = a.Forget(ctx, id)
					}
					took := time.Since(start)
					if err != nil {
						t.Fatal(err)
					}
					waitFor(t, "the invalidation to reach b", func() bool { return bInv.at.Load() != 0 })
					fig[mode].arrive = append(fig[mode].arrive, time.Duration(bInv.at.Load()-start.UnixNano()))
					fig[mode].call = append(fig[mode].call, took)
				}
				where := ""
				if len(ids) == 2 {
					where = []string{" key on the channel's master", " key elsewhere"}[n]
				}
				for mode, name := range []string{"without Announce", "with Announce"} {
					f := fig[mode]
					slices.Sort(f.arrive)
					slices.Sort(f.call)
					t.Logf("FIGURES %s%s %s: A's write start -> B's tier invalidated p50 %v p99 %v; A's Set/Forget p50 %v p99 %v (%d trials)",
						kind, where, name, f.arrive[trials/2], f.arrive[trials*99/100], f.call[trials/2], f.call[trials*99/100], trials)
				}
			}
		})
	}
}
