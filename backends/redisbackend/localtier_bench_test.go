package redisbackend_test

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/gomemo/memo"
	"github.com/gomemo/memo/backends/redisbackend"
	"github.com/gomemo/memo/internal/benchutil"
	"github.com/gomemo/memo/internal/testenv"
)

// ltUser is the reference result of the hit benchmarks (BenchUser in the
// root package's bench_test.go, benchUser in internal/benchutil): about
// 120 bytes of JSON.
type ltUser struct {
	ID        int64
	Name      string
	Email     string
	Tags      []string
	CreatedAt time.Time
}

func fetchLTUser(_ context.Context, id int64) (ltUser, error) {
	return ltUser{ID: id, Name: "Ada Lovelace", Email: "ada@example.com", Tags: []string{"admin", "math"},
		CreatedAt: time.Date(2026, 11, 25, 8, 0, 0, 0, time.UTC)}, nil
}

// BenchmarkLocalTierHit measures a hit through a memo.LocalTier (on
// redisbackend.PubSub) in front of Redis, decoded into the reference
// User, beside the raw go-redis GET of the same key in the same run, on
// standalone Redis and on the Cluster, for both codecs. The issue's
// target: at most 300 ns and 2 allocations per local-tier hit.
//
// Sub-benchmarks of <kind>/<codec>:
//
//   - memo-local: f.Call, answered by the local tier (checked: no call
//     reaches the backend).
//   - redis-GET: c.Get(ctx, key).Bytes() of memo's key: a round trip.
//   - interleaved: blocks of 16 GETs and 16 memo hits alternating, each
//     block timed (benchutil.Interleaved): the medians raw-ns/call and
//     memo-ns/call, and their ratio, from one run.
//
// and, on standalone Redis only (go-redis has no client-side cache for
// its ClusterClient), go-redis' own client-side cache (v9.22+,
// experimental, RESP3), the zero-code alternative, on the same value
// stored as the codec's plain encoding:
//
//   - csc-GET: a GET answered by go-redis' client-side cache (checked by
//     its hit counter): the bytes only.
//   - csc-GET+decode: the same, decoded into a User with the codec: what
//     memo-local returns.
//   - memo-on-csc: memo without a LocalTier, its backend on a client with
//     go-redis' cache (redisbackend reads with GET, which go-redis
//     caches): the zero-code alternative for a program already on memo.
//
// Run the plain sub-benchmarks with -count and take medians; they run
// one after another, so compare them with the interleaved one, which
// alternates within a run:
//
//	go test -run '^$' -bench LocalTierHit -count 10 ./backends/redisbackend/
func BenchmarkLocalTierHit(b *testing.B) {
	for _, tc := range []struct {
		name   string
		client func(testing.TB) redis.UniversalClient
	}{
		{"standalone", func(t testing.TB) redis.UniversalClient { return standalone(t) }},
		{"cluster", func(t testing.TB) redis.UniversalClient { return cluster(t) }},
	} {
		b.Run(tc.name, func(b *testing.B) {
			c := tc.client(b)
			tier := memo.NewLocalTier(64<<20, redisbackend.NewPubSub(c, testenv.NS(b, "inv")))
			b.Cleanup(tier.Close)
			for deadline := time.Now().Add(5 * time.Second); !tier.Ready(); time.Sleep(time.Millisecond) {
				if time.Now().After(deadline) {
					b.Fatal("the local tier's subscription was not in place within 5s")
				}
			}
			var csc *redis.Client
			if tc.name == "standalone" {
				csc = redis.NewClient(&redis.Options{Addr: testenv.Require(b, "MEMO_REDIS_ADDR"), Protocol: 3, ContextTimeoutEnabled: true,
					ClientSideCacheConfig: &redis.ClientSideCacheConfig{MaxEntries: 10000}})
				b.Cleanup(func() { csc.Close() })
			}
			for _, codec := range []memo.Codec{memo.JSON, memo.Msgpack} {
				benchLocalTierHit(b, c, csc, tier, codec)
			}
		})
	}
}

func benchLocalTierHit(b *testing.B, c redis.UniversalClient, csc *redis.Client, tier *memo.LocalTier, codec memo.Codec) {
	ctx := context.Background()
	be := &countingBackend{Backend: redisbackend.New(c)}
	var faults atomic.Int64
	var lastFault atomic.Value
	onError := memo.OnError(func(_ context.Context, err error) { faults.Add(1); lastFault.Store(err.Error()) })
	f := memo.New(fetchLTUser, memo.Namespace(testenv.NS(b, "lthit")), memo.WithBackend(be), memo.WithLocalTier(tier),
		memo.WithCodec(codec), memo.Expire(time.Hour), onError)
	const id = 42
	if _, err := f.Call(ctx, id); err != nil { // the miss that stores it
		b.Fatal(err)
	}
	key := f.Key(id)
	b.Cleanup(func() { c.Del(context.Background(), key) })
	if _, err := f.Call(ctx, id); err != nil {
		b.Fatal(err)
	}
	hit := func() error {
		u, err := f.Call(ctx, id)
		if err != nil || u.ID != id || len(u.Tags) != 2 {
			b.Fatalf("Call(%d) = %+v, %v", id, u, err)
		}
		return nil
	}
	get := func() error {
		v, err := c.Get(ctx, key).Bytes()
		if err != nil || len(v) == 0 {
			b.Fatalf("GET %q: %d bytes, %v", key, len(v), err)
		}
		return nil
	}
	// local checks that the memo calls of a sub-benchmark were local hits.
	local := func(b *testing.B, run func(*testing.B)) {
		before, fb := be.gets.Load(), faults.Load()
		run(b)
		if n, e := be.gets.Load()-before, faults.Load()-fb; n != 0 || e != 0 {
			b.Fatalf("%d memo calls read Redis and %d faults were reported (the last: %v): not local hits", n, e, lastFault.Load())
		}
	}
	name := codec.Name()
	b.Run(name+"/memo-local", func(b *testing.B) {
		local(b, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				hit()
			}
		})
	})
	b.Run(name+"/redis-GET", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			get()
		}
	})
	b.Run(name+"/interleaved", func(b *testing.B) {
		local(b, func(b *testing.B) { benchutil.Interleaved(b, false, get, hit, "memo") })
	})
	if csc == nil {
		return
	}
	// go-redis' client-side cache on the value stored plainly, as a
	// program using it instead of memo would store it.
	u, _ := fetchLTUser(ctx, id)
	plain, err := codec.Marshal(&u)
	if err != nil {
		b.Fatal(err)
	}
	pkey := key + ":plain"
	if err := c.Set(ctx, pkey, plain, time.Hour).Err(); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { c.Del(context.Background(), pkey) })
	for range 3 { // fill go-redis' cache
		if _, err := csc.Get(ctx, pkey).Bytes(); err != nil {
			b.Fatal(err)
		}
	}
	// cscHits checks that the GETs of a sub-benchmark were cache hits.
	cscHits := func(b *testing.B, run func(*testing.B)) {
		before := csc.CSCStats()
		run(b)
		after := csc.CSCStats()
		if after.Hits == before.Hits || after.Misses != before.Misses {
			b.Fatalf("go-redis' client-side cache: %d hits and %d misses: not hits", after.Hits-before.Hits, after.Misses-before.Misses)
		}
	}
	b.Run(name+"/csc-GET", func(b *testing.B) {
		cscHits(b, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				v, err := csc.Get(ctx, pkey).Bytes()
				if err != nil || len(v) != len(plain) {
					b.Fatalf("GET %q through the client-side cache: %d bytes, %v", pkey, len(v), err)
				}
			}
		})
	})
	// memo without a local tier on a client with go-redis' cache: no code
	// of memo's involved, its GET answered by go-redis' cache.
	fc := memo.New(fetchLTUser, memo.Namespace(testenv.NS(b, "lthit-csc")), memo.WithBackend(redisbackend.New(csc)),
		memo.WithCodec(codec), memo.Expire(time.Hour), onError)
	for range 3 {
		if _, err := fc.Call(ctx, id); err != nil {
			b.Fatal(err)
		}
	}
	b.Cleanup(func() { c.Del(context.Background(), fc.Key(id)) })
	b.Run(name+"/memo-on-csc", func(b *testing.B) {
		fb := faults.Load()
		cscHits(b, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if u, err := fc.Call(ctx, id); err != nil || u.ID != id {
					b.Fatalf("Call(%d) = %+v, %v", id, u, err)
				}
			}
		})
		// A read that ran out of memo's Timeout (100 ms) is reported, not
		// fatal: go-redis' cache hits stall that long on rare occasions
		// here (about 1 in millions), with or without memo.
		if e := faults.Load() - fb; e != 0 {
			b.ReportMetric(float64(e), "faults")
			b.Logf("%d faults reported, the last: %v", e, lastFault.Load())
		}
	})
	b.Run(name+"/csc-GET+decode", func(b *testing.B) {
		cscHits(b, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				v, err := csc.Get(ctx, pkey).Bytes()
				if err != nil {
					b.Fatal(err)
				}
				var u ltUser
				if err := codec.Unmarshal(v, &u); err != nil || u.ID != id {
					b.Fatalf("decoding %q: %+v, %v", pkey, u, err)
				}
			}
		})
	})
}
