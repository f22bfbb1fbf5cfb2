package bench

import (
	"context"
	"fmt"
	"os"
	"reflect"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	gocachelib "github.com/eko/gocache/lib/v4/cache"
	gocachestorelib "github.com/eko/gocache/lib/v4/store"
	gocachestore "github.com/eko/gocache/store/go_cache/v4"
	rediscache "github.com/go-redis/cache/v9"
	"github.com/maypok86/otter/v2"
	gocache "github.com/patrickmn/go-cache"
	"github.com/redis/go-redis/v9"
	"github.com/samber/hot"
	"github.com/viccon/sturdyc"

	"github.com/gomemo/memo"
	"github.com/gomemo/memo/backends/redisbackend"
)

// The workload: one key, an int64, always a hit once warmed. Libraries keyed
// by strings get strconv.FormatInt(id, 10) on every call, as a caller
// holding an int64 would write; each case is a func so that the benchmarks
// and TestMutationSafety run exactly the same code (the indirect call costs
// every row the same nanosecond or two).
const id = int64(42)

type getter[R any] func() (R, error)

type cacheCase[R any] struct {
	id    string
	setup func(testing.TB) getter[R]
}

// memoFunc returns a memo.Func whose fn counts its runs: a benchmark that
// finds fn ran more than once has measured misses and fails.
func memoFunc[R any](tb testing.TB, fetch func(context.Context, int64) (R, error), ns string, opts ...memo.Option) *memo.Func[int64, R] {
	var runs atomic.Int64
	var faults atomic.Int64
	opts = append([]memo.Option{memo.Namespace(ns), memo.OnError(func(_ context.Context, err error) {
		if faults.Add(1) == 1 {
			tb.Logf("memo fault: %v", err)
		}
	})}, opts...)
	f := memo.New(func(ctx context.Context, a int64) (R, error) {
		runs.Add(1)
		return fetch(ctx, a)
	}, opts...)
	tb.Cleanup(func() {
		if n, e := runs.Load(), faults.Load(); n > 1 || e > 0 {
			tb.Errorf("%s: fn ran %d times and memo reported %d faults: the hit benchmark measured misses", ns, n, e)
		}
	})
	return f
}

func memoCall[R any](f *memo.Func[int64, R]) getter[R] {
	ctx := context.Background()
	return func() (R, error) { return f.Call(ctx, id) }
}

// warm calls g once and checks the answer, so that the benchmark measures
// hits.
func warm[R any](tb testing.TB, g getter[R], want R) getter[R] {
	tb.Helper()
	v, err := g()
	if err != nil {
		tb.Fatal(err)
	}
	if !same(v, want) {
		tb.Fatalf("warm-up got %+v, want %+v", v, want)
	}
	return g
}

// same is reflect.DeepEqual but for time.Time, compared with Equal: a codec
// may decode the same instant in another *time.Location.
func same[R any](a, b R) bool {
	if x, ok := any(a).(User); ok {
		y := any(b).(User)
		if !x.CreatedAt.Equal(y.CreatedAt) {
			return false
		}
		x.CreatedAt, y.CreatedAt = time.Time{}, time.Time{}
		return reflect.DeepEqual(x, y)
	}
	return reflect.DeepEqual(a, b)
}

func mapCase[R any](want R) func(testing.TB) getter[R] {
	return func(tb testing.TB) getter[R] {
		var mu sync.RWMutex
		m := map[int64]R{id: want}
		return func() (R, error) {
			mu.RLock()
			v := m[id]
			mu.RUnlock()
			return v, nil
		}
	}
}

func otterCase[R any](fetch func(context.Context, int64) (R, error), ttl bool) func(testing.TB) getter[R] {
	return func(tb testing.TB) getter[R] {
		o := &otter.Options[int64, R]{MaximumSize: 10_000}
		if ttl {
			o.ExpiryCalculator = otter.ExpiryWriting[int64, R](time.Hour)
		}
		c := otter.Must(o)
		v, _ := fetch(context.Background(), id)
		c.Set(id, v)
		return func() (R, error) {
			v, ok := c.GetIfPresent(id)
			if !ok {
				return v, fmt.Errorf("otter: miss")
			}
			return v, nil
		}
	}
}

func userCases() []cacheCase[User] {
	ctx := context.Background()
	return []cacheCase[User]{
		{"memo-json", func(tb testing.TB) getter[User] {
			return memoCall(memoFunc(tb, FetchUser, "bench.user.json", memo.WithCodec(memo.JSON), memo.Expire(time.Hour)))
		}},
		{"memo-msgpack", func(tb testing.TB) getter[User] {
			return memoCall(memoFunc(tb, FetchUser, "bench.user.msgpack", memo.WithCodec(memo.Msgpack), memo.Expire(time.Hour)))
		}},
		{"map-rwmutex", mapCase(NewUser(id))},
		{"otter", otterCase(FetchUser, false)},
		{"otter-ttl", otterCase(FetchUser, true)},
		{"hot", func(tb testing.TB) getter[User] {
			c := hot.NewHotCache[int64, User](hot.LRU, 10_000).WithTTL(time.Hour).
				WithLoaders(loadUsers).Build()
			return hotGet(c)
		}},
		{"hot-copyonread", func(tb testing.TB) getter[User] {
			c := hot.NewHotCache[int64, User](hot.LRU, 10_000).WithTTL(time.Hour).
				WithLoaders(loadUsers).WithCopyOnRead(copyUser).Build()
			return hotGet(c)
		}},
		{"sturdyc", func(tb testing.TB) getter[User] {
			c := sturdyc.New[User](10_000, 10, time.Hour, 10)
			fetch := func(ctx context.Context) (User, error) { return FetchUser(ctx, id) }
			return func() (User, error) {
				return c.GetOrFetch(ctx, strconv.FormatInt(id, 10), fetch)
			}
		}},
		{"gocache", func(tb testing.TB) getter[User] {
			store := gocachestore.NewGoCache(gocache.New(time.Hour, 10*time.Minute))
			load := func(ctx context.Context, key any) (User, []gocachestorelib.Option, error) {
				n, err := strconv.ParseInt(key.(string), 10, 64)
				if err != nil {
					return User{}, nil, err
				}
				u, err := FetchUser(ctx, n)
				return u, nil, err
			}
			c := gocachelib.NewLoadable[User](load, gocachelib.New[User](store))
			tb.Cleanup(func() { c.Close() })
			g := func() (User, error) { return c.Get(ctx, strconv.FormatInt(id, 10)) }
			g() // the load; the store is written by a background goroutine
			for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(time.Millisecond) {
				if _, err := store.Get(ctx, strconv.FormatInt(id, 10)); err == nil {
					break
				}
				if time.Now().After(deadline) {
					tb.Fatal("eko/gocache: the loaded value never reached the store")
				}
			}
			return g
		}},
		{"goredis-cache-get", func(tb testing.TB) getter[User] {
			c := rediscache.New(&rediscache.Options{LocalCache: rediscache.NewTinyLFU(10_000, time.Hour)})
			if err := c.Set(&rediscache.Item{Ctx: ctx, Key: strconv.FormatInt(id, 10), Value: NewUser(id), TTL: time.Hour}); err != nil {
				tb.Fatal(err)
			}
			return func() (User, error) {
				var u User
				err := c.Get(ctx, strconv.FormatInt(id, 10), &u)
				return u, err
			}
		}},
		{"goredis-cache-once", func(tb testing.TB) getter[User] {
			c := rediscache.New(&rediscache.Options{LocalCache: rediscache.NewTinyLFU(10_000, time.Hour)})
			do := func(it *rediscache.Item) (any, error) { return FetchUser(it.Ctx, id) }
			return func() (User, error) {
				var u User
				err := c.Once(&rediscache.Item{Ctx: ctx, Key: strconv.FormatInt(id, 10), Value: &u, TTL: time.Hour, Do: do})
				return u, err
			}
		}},
	}
}

func loadUsers(keys []int64) (map[int64]User, error) {
	m := make(map[int64]User, len(keys))
	for _, k := range keys {
		m[k] = NewUser(k)
	}
	return m, nil
}

func copyUser(u User) User {
	u.Tags = append([]string(nil), u.Tags...)
	return u
}

func hotGet(c *hot.HotCache[int64, User]) getter[User] {
	return func() (User, error) {
		v, ok, err := c.Get(id)
		if err == nil && !ok {
			err = fmt.Errorf("samber/hot: not found")
		}
		return v, err
	}
}

func scoreCases() []cacheCase[Score] {
	return []cacheCase[Score]{
		{"memo", func(tb testing.TB) getter[Score] {
			return memoCall(memoFunc(tb, FetchScore, "bench.score", memo.Expire(time.Hour)))
		}},
		{"otter-ttl", otterCase(FetchScore, true)},
		{"map-rwmutex", mapCase(NewScore(id))},
	}
}

func runCases[R any](b *testing.B, cases []cacheCase[R], want R) {
	for _, c := range cases {
		b.Run(c.id, func(b *testing.B) {
			g := warm(b, c.setup(b), want)
			b.ReportAllocs()
			for b.Loop() {
				if _, err := g(); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkLocalHit: an in-memory hit of a User keyed by an int64.
func BenchmarkLocalHit(b *testing.B) { runCases(b, userCases(), NewUser(id)) }

// BenchmarkFlatHit: an in-memory hit of a Score, which has no pointers.
func BenchmarkFlatHit(b *testing.B) { runCases(b, scoreCases(), NewScore(id)) }

// BenchmarkMiss: memo's work on a miss (key, encode, envelope, store on the
// in-memory backend, default codec) beside calling fn directly. Every call
// is a new key.
func BenchmarkMiss(b *testing.B) {
	ctx := context.Background()
	b.Run("memo", func(b *testing.B) {
		f := memo.New(FetchUser, memo.Namespace("bench.miss"))
		b.ReportAllocs()
		var n int64
		for b.Loop() {
			n++
			if _, err := f.Call(ctx, n); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("fn", func(b *testing.B) {
		b.ReportAllocs()
		var n int64
		for b.Loop() {
			n++
			if _, err := FetchUser(ctx, n); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// redisClient returns a client for MEMO_REDIS_ADDR, or skips.
func redisClient(tb testing.TB) *redis.Client {
	addr := os.Getenv("MEMO_REDIS_ADDR")
	if addr == "" {
		tb.Skip("MEMO_REDIS_ADDR is not set (eval \"$(bash scripts/servers.sh env)\" after scripts/servers.sh start)")
	}
	c := redis.NewClient(&redis.Options{Addr: addr, ContextTimeoutEnabled: true})
	if err := c.Ping(context.Background()).Err(); err != nil {
		tb.Fatalf("redis at %s: %v", addr, err)
	}
	tb.Cleanup(func() { c.Close() })
	return c
}

// remoteNS is unique to this process, so that concurrent runs and other
// tests on the same Redis never share keys.
var remoteNS = fmt.Sprintf("gomemo-bench-%d", os.Getpid())

func remoteCases(c *redis.Client) []cacheCase[User] {
	ctx := context.Background()
	memoRedis := func(codec memo.Codec) func(testing.TB) getter[User] {
		return func(tb testing.TB) getter[User] {
			f := memoFunc(tb, FetchUser, remoteNS+"."+codec.Name(), memo.WithBackend(redisbackend.New(c)),
				memo.WithCodec(codec), memo.Expire(time.Hour))
			tb.Cleanup(func() { c.Del(context.Background(), f.Key(id)) })
			return memoCall(f)
		}
	}
	return []cacheCase[User]{
		{"raw", func(tb testing.TB) getter[User] {
			// The same bytes memo/json stores, under the same key.
			f := memoFunc(tb, FetchUser, remoteNS+".raw", memo.WithBackend(redisbackend.New(c)), memo.Expire(time.Hour))
			if _, err := f.Call(ctx, id); err != nil {
				tb.Fatal(err)
			}
			key := f.Key(id)
			tb.Cleanup(func() { c.Del(context.Background(), key) })
			return func() (User, error) {
				b, err := c.Get(ctx, key).Bytes()
				if err == nil && len(b) < 100 {
					err = fmt.Errorf("raw GET: %d bytes", len(b))
				}
				return NewUser(id), err // the value, so that warm's check passes
			}
		}},
		{"memo-redis-json", memoRedis(memo.JSON)},
		{"memo-redis-msgpack", memoRedis(memo.Msgpack)},
		{"goredis-cache-remote", func(tb testing.TB) getter[User] {
			rc := rediscache.New(&rediscache.Options{Redis: c})
			key := remoteNS + ".goredis-cache:" + strconv.FormatInt(id, 10)
			if err := rc.Set(&rediscache.Item{Ctx: ctx, Key: key, Value: NewUser(id), TTL: time.Hour}); err != nil {
				tb.Fatal(err)
			}
			tb.Cleanup(func() { c.Del(context.Background(), key) })
			return func() (User, error) {
				var u User
				// The key is built per call, as the local cases build theirs.
				err := rc.Get(ctx, remoteNS+".goredis-cache:"+strconv.FormatInt(id, 10), &u)
				return u, err
			}
		}},
	}
}

// BenchmarkRemoteHit: a hit on Redis over loopback, from one goroutine and
// from about eight (SetParallelism(ceil(8/GOMAXPROCS))). The raw client's
// GET of memo's stored bytes runs in the same benchmark, so with -count the
// rows interleave.
func BenchmarkRemoteHit(b *testing.B) {
	c := redisClient(b)
	cases := remoteCases(c)
	for _, mode := range []string{"serial", "parallel"} {
		b.Run(mode, func(b *testing.B) {
			for _, cc := range cases {
				b.Run(cc.id, func(b *testing.B) {
					g := warm(b, cc.setup(b), NewUser(id))
					b.ReportAllocs()
					if mode == "serial" {
						for b.Loop() {
							if _, err := g(); err != nil {
								b.Fatal(err)
							}
						}
						return
					}
					p := runtime.GOMAXPROCS(0)
					b.SetParallelism((8 + p - 1) / p)
					b.RunParallel(func(pb *testing.PB) {
						for pb.Next() {
							if _, err := g(); err != nil {
								b.Error(err)
								return
							}
						}
					})
				})
			}
		})
	}
}

// TestMutationSafety checks the table's "safe if the caller mutates the
// result" column: memo must hand every caller a value of its own; each peer
// must behave as Libs says.
func TestMutationSafety(t *testing.T) {
	declared := map[string]Safety{}
	for _, l := range Libs {
		declared[l.ID] = l.Safety
	}
	check := func(t *testing.T, g getter[User]) Safety {
		u, err := g()
		if err != nil {
			t.Fatal(err)
		}
		u.Tags[0] = "mutated"
		u.Name = "mutated"
		again, err := g()
		if err != nil {
			t.Fatal(err)
		}
		if same(again, NewUser(id)) {
			return Safe
		}
		return Unsafe
	}
	cases := userCases()
	if os.Getenv("MEMO_REDIS_ADDR") != "" {
		cases = append(cases, remoteCases(redisClient(t))[1:]...)
	}
	for _, c := range cases {
		t.Run(c.id, func(t *testing.T) {
			got := check(t, warm(t, c.setup(t), NewUser(id)))
			if got != declared[c.id] {
				t.Errorf("%s: mutation-safe = %v, the table says %v", c.id, got, declared[c.id])
			}
			if c.id == "memo-json" || c.id == "memo-msgpack" {
				if got != Safe {
					t.Errorf("memo handed out a shared value")
				}
			}
		})
	}
}
