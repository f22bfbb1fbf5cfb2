package redisbackend_test

import (
	"context"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/gomemo/memo"
	"github.com/gomemo/memo/backends/redisbackend"
	"github.com/gomemo/memo/internal/benchutil"
	"github.com/gomemo/memo/internal/testenv"
)

// BenchmarkAnnounceSet measures a write through memo and its invalidation
// (Func.Set of the reference User, what a miss writes once fn has
// answered) on a function with a LocalTier on redisbackend.PubSub, with
// and without redisbackend.Announce, on standalone Redis and on the
// Cluster for a key on the channel's master (pipelined with Announce)
// and one elsewhere (not pipelined: the same two round trips).
//
// Sub-benchmarks of <kind>:
//
//   - publish: without Announce: SET, then PUBLISH (two round trips).
//
//   - announce: with Announce.
//
//   - interleaved: blocks of 16 of each alternating, each block timed
//     (benchutil.Interleaved): medians raw-ns/call (publish),
//     announce-ns/call, and their ratio, from one run.
//
//   - miss-interleaved: the same for a miss (Func.Call of an id never
//     asked: a GET, fn, the write and its invalidation).
//
//     go test -run '^$' -bench AnnounceSet -count 6 ./backends/redisbackend/
func BenchmarkAnnounceSet(b *testing.B) {
	for _, tc := range []struct {
		name            string
		cluster         bool
		onChannelMaster bool
	}{
		{"standalone", false, true},
		{"cluster-key-on-channel-master", true, true},
		{"cluster-key-elsewhere", true, false},
	} {
		b.Run(tc.name, func(b *testing.B) {
			var c redis.UniversalClient
			if tc.cluster {
				c = cluster(b)
			} else {
				c = standalone(b)
			}
			ctx := context.Background()
			channel := testenv.NS(b, "inv")
			ps := redisbackend.NewPubSub(c, channel)
			tier := memo.NewLocalTier(64<<20, ps)
			b.Cleanup(tier.Close)
			for deadline := time.Now().Add(5 * time.Second); !tier.Ready(); time.Sleep(time.Millisecond) {
				if time.Now().After(deadline) {
					b.Fatal("the local tier's subscription was not in place within 5s")
				}
			}
			mk := func(ns string, opts ...redisbackend.Option) *memo.Func[int64, ltUser] {
				return memo.New(fetchLTUser, memo.Namespace(testenv.NS(b, ns)), memo.WithBackend(redisbackend.New(c, opts...)),
					memo.WithLocalTier(tier), memo.Expire(time.Hour), memo.Timeout(2*time.Second)) // a loaded machine
			}
			plain, ann := mk("publish"), mk("announce", redisbackend.Announce(ps))
			// ids yields ids from `from` on whose keys in both functions
			// live where the case wants them.
			ids := func(from int64, n int) []int64 {
				cc, ok := c.(*redis.ClusterClient)
				if !ok {
					out := make([]int64, n)
					for i := range out {
						out[i] = from + int64(i)
					}
					return out
				}
				chm, err := cc.MasterForKey(ctx, channel)
				if err != nil {
					b.Fatal(err)
				}
				var out []int64
				for id := from; len(out) < n; id++ {
					pm, _ := cc.MasterForKey(ctx, plain.Key(id))
					am, _ := cc.MasterForKey(ctx, ann.Key(id))
					if (pm == chm) == tc.onChannelMaster && (am == chm) == tc.onChannelMaster {
						out = append(out, id)
					}
				}
				return out
			}
			id := ids(0, 1)[0]
			u, _ := fetchLTUser(ctx, id)
			set := func(f *memo.Func[int64, ltUser]) func() error {
				return func() error { return f.Set(ctx, id, u) }
			}
			for _, f := range []*memo.Func[int64, ltUser]{plain, ann} {
				for range 100 { // warm: connections, the slot map
					if err := f.Set(ctx, id, u); err != nil {
						b.Fatal(err)
					}
				}
			}
			b.Run("publish", func(b *testing.B) { benchutil.Bench(b, false, set(plain)) })
			b.Run("announce", func(b *testing.B) { benchutil.Bench(b, false, set(ann)) })
			b.Run("interleaved", func(b *testing.B) { benchutil.Interleaved(b, false, set(plain), set(ann), "announce") })

			// A miss: a fresh id each call (GET, fn, then the write and
			// its invalidation). Each function keeps its own place in the
			// ids across the runs of the sub-benchmark; more are found,
			// 4096 at a time, when they run out (alike for both).
			miss := func(f *memo.Func[int64, ltUser]) func() error {
				var fresh []int64
				next, from := 0, int64(1<<20)
				return func() error {
					if next == len(fresh) {
						fresh, next = ids(from, 4096), 0
						from = fresh[len(fresh)-1] + 1
					}
					_, err := f.Call(ctx, fresh[next])
					next++
					return err
				}
			}
			missPlain, missAnn := miss(plain), miss(ann)
			b.Run("miss-interleaved", func(b *testing.B) { benchutil.Interleaved(b, false, missPlain, missAnn, "announce") })
		})
	}
}
