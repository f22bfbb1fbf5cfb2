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
			var id int64
			if cc, ok := c.(*redis.ClusterClient); ok {
				chm, err := cc.MasterForKey(ctx, channel)
				if err != nil {
					b.Fatal(err)
				}
				for ; ; id++ {
					if id == 10000 {
						b.Fatal("no id whose keys both live where wanted")
					}
					pm, _ := cc.MasterForKey(ctx, plain.Key(id))
					am, _ := cc.MasterForKey(ctx, ann.Key(id))
					if (pm == chm) == tc.onChannelMaster && (am == chm) == tc.onChannelMaster {
						break
					}
				}
			}
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
		})
	}
}
