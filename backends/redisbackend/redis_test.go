package redisbackend_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/gomemo/memo"
	"github.com/gomemo/memo/backends/backendtest"
	"github.com/gomemo/memo/backends/redisbackend"
	"github.com/gomemo/memo/internal/testenv"
)

// standalone returns a client on the MEMO_REDIS_ADDR server, closed when t
// ends.
func standalone(t testing.TB) *redis.Client {
	t.Helper()
	c := redis.NewClient(&redis.Options{Addr: testenv.Require(t, "MEMO_REDIS_ADDR"), ContextTimeoutEnabled: true})
	t.Cleanup(func() { c.Close() })
	ping(t, c)
	return c
}

// cluster returns a client on the MEMO_REDIS_CLUSTER_ADDRS cluster, closed
// when t ends.
func cluster(t testing.TB) *redis.ClusterClient {
	t.Helper()
	addrs := strings.Split(testenv.Require(t, "MEMO_REDIS_CLUSTER_ADDRS"), ",")
	c := redis.NewClusterClient(&redis.ClusterOptions{Addrs: addrs, ContextTimeoutEnabled: true})
	t.Cleanup(func() { c.Close() })
	ping(t, c)
	return c
}

func ping(t testing.TB, c redis.UniversalClient) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := c.Ping(ctx).Err(); err != nil {
		t.Fatalf("redis is not answering: %v", err)
	}
}

// opts keeps SCAN pages small, so that the suite's Clear test (120 keys per
// namespace) spans several pages, and sets a size limit the suite can test.
func opts() []redisbackend.Option {
	return []redisbackend.Option{redisbackend.ScanCount(16), redisbackend.MaxValueSize(1 << 20)}
}

var suiteOptions = backendtest.Options{TooLarge: 1<<20 + 1}

func TestConformanceStandalone(t *testing.T) {
	c := standalone(t)
	backendtest.Run(t, func(t *testing.T) memo.Backend { return redisbackend.New(c, opts()...) }, suiteOptions)
}

func TestConformanceCluster(t *testing.T) {
	c := cluster(t)
	backendtest.Run(t, func(t *testing.T) memo.Backend { return redisbackend.New(c, opts()...) }, suiteOptions)
}

func TestConformanceDefaults(t *testing.T) {
	c := standalone(t)
	backendtest.Run(t, func(t *testing.T) memo.Backend { return redisbackend.New(c) }, backendtest.Options{})
}

// masterKeys counts, on each master of c, the keys that match pattern.
func masterKeys(t *testing.T, c *redis.ClusterClient, pattern string) map[string]int {
	t.Helper()
	var mu sync.Mutex
	counts := map[string]int{}
	err := c.ForEachMaster(context.Background(), func(ctx context.Context, node *redis.Client) error {
		n := 0
		iter := node.Scan(ctx, 0, pattern, 1000).Iterator()
		for iter.Next(ctx) {
			n++
		}
		mu.Lock()
		counts[node.Options().Addr] = n
		mu.Unlock()
		return iter.Err()
	})
	if err != nil {
		t.Fatalf("scanning the masters: %v", err)
	}
	return counts
}

// TestClusterClearEveryMaster proves that Clear reaches the keys on every
// master, not just the node that the cluster client picks for a keyless
// command.
func TestClusterClearEveryMaster(t *testing.T) {
	c := cluster(t)
	ctx := context.Background()
	b := redisbackend.New(c, redisbackend.ScanCount(10))
	base := testenv.NS(t, "cluster")
	ns, sibling, nested := base+".a", base+".ab", base+".a:sub"
	const n = 300 // ~100 per master on three masters
	for i := range n {
		for _, s := range []string{ns, sibling, nested} {
			if err := b.Set(ctx, fmt.Sprintf("%s:%d", s, i), []byte("x"), time.Minute); err != nil {
				t.Fatal(err)
			}
		}
	}
	before := masterKeys(t, c, base+"*")
	if len(before) < 3 {
		t.Fatalf("cluster has %d masters (%v), want 3", len(before), before)
	}
	for addr, k := range before {
		if k == 0 {
			t.Fatalf("master %s holds none of the test keys (%v); the test proves nothing", addr, before)
		}
	}
	t.Logf("keys per master before Clear: %v", before)

	if err := b.Clear(ctx, ns); err != nil {
		t.Fatalf("Clear(%q) = %v", ns, err)
	}
	total := 0
	for _, k := range masterKeys(t, c, ns+":*") {
		total += k
	}
	if total != n {
		t.Errorf("%d keys left under %q after Clear, want the %d of %q", total, ns+":*", n, nested)
	}
	for i := range n {
		k := fmt.Sprintf("%s:%d", ns, i)
		if _, ok, err := b.Get(ctx, k); err != nil || ok {
			t.Fatalf("Get(%q) = %v, %v after Clear; want a miss", k, ok, err)
		}
		for _, s := range []string{sibling, nested} {
			k := fmt.Sprintf("%s:%d", s, i)
			if _, ok, err := b.Get(ctx, k); err != nil || !ok {
				t.Fatalf("Get(%q) = %v, %v after Clear of %q; want a hit", k, ok, err, ns)
			}
		}
	}
}

// TestClearGlobMetacharacters checks that a namespace holding SCAN's glob
// metacharacters matches only itself.
func TestClearGlobMetacharacters(t *testing.T) {
	for _, tc := range []struct {
		name   string
		client func(testing.TB) redis.UniversalClient
	}{
		{"standalone", func(t testing.TB) redis.UniversalClient { return standalone(t) }},
		{"cluster", func(t testing.TB) redis.UniversalClient { return cluster(t) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := context.Background()
			b := redisbackend.New(tc.client(t), redisbackend.ScanCount(7))
			base := testenv.NS(t, "glob")
			// Each cleared namespace, and namespaces that its pattern
			// would match if the metacharacters were not escaped.
			cases := map[string][]string{
				base + "*":     {base + "zz", base + "*x"},
				base + "?":     {base + "q"},
				base + "[ab]":  {base + "a", base + "b"},
				base + `\`:     {base + `\\`, base},
				base + `[!a]]`: {base + "b]", base + "c]"},
			}
			for cleared, keep := range cases {
				for _, ns := range append([]string{cleared}, keep...) {
					for i := range 20 {
						if err := b.Set(ctx, fmt.Sprintf("%s:%d", ns, i), []byte(ns), time.Minute); err != nil {
							t.Fatal(err)
						}
					}
				}
			}
			for cleared, keep := range cases {
				if err := b.Clear(ctx, cleared); err != nil {
					t.Fatalf("Clear(%q) = %v", cleared, err)
				}
				for i := range 20 {
					if _, ok, _ := b.Get(ctx, fmt.Sprintf("%s:%d", cleared, i)); ok {
						t.Errorf("Clear(%q) left %s:%d", cleared, cleared, i)
					}
				}
				for _, ns := range keep {
					// Some kept namespaces are themselves cleared
					// by another case: only check those that are not.
					if _, alsoCleared := cases[ns]; alsoCleared {
						continue
					}
					for i := range 20 {
						k := fmt.Sprintf("%s:%d", ns, i)
						if v, ok, _ := b.Get(ctx, k); !ok || string(v) != ns {
							t.Errorf("Clear(%q) removed %q", cleared, k)
						}
					}
				}
			}
		})
	}
}

// recorder is a go-redis hook that keeps the arguments of every command.
type recorder struct {
	mu   sync.Mutex
	cmds [][]any
}

func (r *recorder) DialHook(next redis.DialHook) redis.DialHook { return next }

func (r *recorder) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		r.mu.Lock()
		r.cmds = append(r.cmds, cmd.Args())
		r.mu.Unlock()
		return next(ctx, cmd)
	}
}

func (r *recorder) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return next
}

func (r *recorder) last() []any {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.cmds[len(r.cmds)-1]
}

func TestSetTTL(t *testing.T) {
	c := standalone(t)
	rec := &recorder{}
	c.AddHook(rec)
	b := redisbackend.New(c)
	ctx := context.Background()
	k := testenv.NS(t, "ttl") + ":k"
	for _, tc := range []struct {
		ttl  time.Duration
		want []any // the arguments after the value
	}{
		{0, nil},
		{time.Nanosecond, []any{"px", int64(1)}},
		{time.Millisecond, []any{"px", int64(1)}},
		{1500 * time.Microsecond, []any{"px", int64(2)}},
		{time.Second, []any{"px", int64(1000)}},
		{time.Hour + 1, []any{"px", int64(3600001)}},
	} {
		if err := b.Set(ctx, k, []byte("v"), tc.ttl); err != nil {
			t.Fatalf("Set(ttl %v) = %v", tc.ttl, err)
		}
		args := rec.last()
		want := append([]any{"set", k, []byte("v")}, tc.want...)
		if fmt.Sprintf("%#v", args) != fmt.Sprintf("%#v", want) {
			t.Errorf("Set(ttl %v) sent %v, want %v", tc.ttl, args, want)
		}
		pttl, err := c.PTTL(ctx, k).Result()
		if err != nil {
			t.Fatal(err)
		}
		if tc.ttl == 0 && pttl != -1 {
			t.Errorf("Set(ttl 0): PTTL = %v, want no expiry", pttl)
		}
		// A 1 ms key may be gone (-2) by the time PTTL runs; it must
		// never be stored without expiry (-1) or for longer than asked.
		if tc.ttl > 0 && (pttl == -1 || pttl > tc.ttl+time.Millisecond) {
			t.Errorf("Set(ttl %v): PTTL = %v", tc.ttl, pttl)
		}
	}
	if err := b.Set(ctx, k, []byte("v"), -time.Second); err == nil {
		t.Error("Set(negative ttl) = nil, want an error")
	}
}

func TestTooLarge(t *testing.T) {
	c := standalone(t)
	b := redisbackend.New(c, redisbackend.MaxValueSize(10))
	k := testenv.NS(t, "big") + ":k"
	ctx := context.Background()
	if err := b.Set(ctx, k, make([]byte, 10), time.Minute); err != nil {
		t.Fatalf("Set(10 bytes) = %v, want nil at the limit", err)
	}
	if err := b.Set(ctx, k, make([]byte, 11), time.Minute); !errors.Is(err, memo.ErrTooLarge) {
		t.Fatalf("Set(11 bytes) = %v, want memo.ErrTooLarge", err)
	}
}

func TestDeadline(t *testing.T) {
	b := redisbackend.New(standalone(t))
	ctx, cancel := context.WithTimeout(context.Background(), time.Nanosecond)
	defer cancel()
	<-ctx.Done()
	if _, _, err := b.Get(ctx, "x:y"); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Get(expired ctx) = %v, want context.DeadlineExceeded", err)
	}
}

func TestNewPanics(t *testing.T) {
	c := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1", ContextTimeoutEnabled: true}) // never dialled
	defer c.Close()
	for _, tc := range []struct {
		name string
		fn   func()
	}{
		{"nil client", func() { redisbackend.New(nil) }},
		{"typed nil client", func() { redisbackend.New((*redis.Client)(nil)) }},
		{"zero option", func() { redisbackend.New(c, redisbackend.Option{}) }},
		{"ScanCount(0)", func() { redisbackend.New(c, redisbackend.ScanCount(0)) }},
		{"MaxValueSize(-1)", func() { redisbackend.New(c, redisbackend.MaxValueSize(-1)) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			defer func() {
				r := recover()
				if s, _ := r.(string); !strings.HasPrefix(s, "redisbackend: ") {
					t.Errorf("panic = %v, want a message starting %q", r, "redisbackend: ")
				}
			}()
			tc.fn()
		})
	}
}

// BenchmarkGet compares a raw go-redis GET with Backend.Get of the same
// 200-byte value, from one goroutine and from eight.
func BenchmarkGet(b *testing.B) {
	c := standalone(b)
	be := redisbackend.New(c)
	ctx := context.Background()
	key := testenv.NS(b, "bench") + ":k"
	val := bytes.Repeat([]byte("v"), 200)
	if err := be.Set(ctx, key, val, time.Hour); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { c.Del(context.Background(), key) })

	raw := func() error {
		v, err := c.Get(ctx, key).Bytes()
		if err != nil || len(v) != 200 {
			return fmt.Errorf("GET = %d bytes, %v", len(v), err)
		}
		return nil
	}
	backend := func() error {
		v, ok, err := be.Get(ctx, key)
		if err != nil || !ok || len(v) != 200 {
			return fmt.Errorf("Get = %d bytes, %v, %v", len(v), ok, err)
		}
		return nil
	}
	gets := []struct {
		name string
		get  func() error
	}{{"raw", raw}, {"backend", backend}}

	for _, g := range gets {
		b.Run("goroutines=1/"+g.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if err := g.get(); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
	// SetParallelism multiplies by GOMAXPROCS: round up to at least 8.
	procs := runtime.GOMAXPROCS(0)
	par := (8 + procs - 1) / procs
	for _, g := range gets {
		b.Run(fmt.Sprintf("goroutines=%d/%s", par*procs, g.name), func(b *testing.B) {
			b.ReportAllocs()
			b.SetParallelism(par)
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if err := g.get(); err != nil {
						b.Error(err)
						return
					}
				}
			})
		})
	}
}
