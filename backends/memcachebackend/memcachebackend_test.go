package memcachebackend_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math"
	"net"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/bradfitz/gomemcache/memcache"

	"github.com/gomemo/memo"
	"github.com/gomemo/memo/backends/backendtest"
	"github.com/gomemo/memo/backends/memcachebackend"
	"github.com/gomemo/memo/internal/benchutil"
	"github.com/gomemo/memo/internal/fakememcached"
	"github.com/gomemo/memo/internal/testenv"
)

// eachTarget runs f as two subtests: "fake", on an in-process fake
// memcached of its own, always; and "memcached", on the server named by
// MEMO_MEMCACHED_ADDR, skipped (failed in CI) when it is unset.
func eachTarget(t *testing.T, f func(t *testing.T, addr string)) {
	t.Run("fake", func(t *testing.T) { f(t, fakememcached.Start(t).Addr()) })
	t.Run("memcached", func(t *testing.T) { f(t, realAddr(t)) })
}

func realAddr(t testing.TB) string { return testenv.Require(t, "MEMO_MEMCACHED_ADDR") }

// newClient returns a client of the servers at addrs, closed when t ends.
func newClient(t testing.TB, addrs ...string) *memcache.Client {
	t.Helper()
	c := memcache.New(addrs...)
	c.MaxIdleConns = 32
	c.Timeout = 2 * time.Second // values of 512 KiB under -race
	if err := c.Ping(); err != nil {
		t.Fatalf("memcached at %v: %v", addrs, err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

var opts = backendtest.Options{TooLarge: 2 << 20, MaxValue: 512 << 10, ExpirySlack: 2 * time.Second}

func TestConformance(t *testing.T) {
	eachTarget(t, func(t *testing.T, addr string) {
		backendtest.Run(t, func(t *testing.T) memo.Backend {
			return memcachebackend.New(newClient(t, addr))
		}, opts)
	})
}

// TestConformanceExact runs the suite with GenerationRefresh(0).
func TestConformanceExact(t *testing.T) {
	eachTarget(t, func(t *testing.T, addr string) {
		backendtest.Run(t, func(t *testing.T) memo.Backend {
			return memcachebackend.New(newClient(t, addr), memcachebackend.GenerationRefresh(0))
		}, opts)
	})
}

// TestTwoServers runs the suite on a client spreading keys over two servers,
// so that values and generation counters live on different ones: two
// fakes, always, and MEMO_MEMCACHED_ADDR with MEMO_MEMCACHED_ADDR2 (a
// second memcached) when that is set.
func TestTwoServers(t *testing.T) {
	run := func(t *testing.T, addrs ...string) {
		backendtest.Run(t, func(t *testing.T) memo.Backend {
			return memcachebackend.New(newClient(t, addrs...))
		}, opts)
	}
	t.Run("fake", func(t *testing.T) {
		run(t, fakememcached.Start(t).Addr(), fakememcached.Start(t).Addr())
	})
	t.Run("memcached", func(t *testing.T) {
		addr2 := os.Getenv("MEMO_MEMCACHED_ADDR2")
		if addr2 == "" {
			t.Skip("MEMO_MEMCACHED_ADDR2 is not set")
		}
		run(t, realAddr(t), addr2)
	})
}

func TestExpiration(t *testing.T) {
	now := time.Unix(1_800_000_000, 250_000_000)
	const day = 24 * time.Hour
	tests := []struct {
		ttl  time.Duration
		want int32
	}{
		{0, 0},
		{time.Nanosecond, 1},
		{300 * time.Millisecond, 1},
		{time.Second, 1},
		{1500 * time.Millisecond, 2},
		{time.Minute, 60},
		{30 * day, 2592000},                      // the largest relative value
		{30*day - 500*time.Millisecond, 2592000}, // rounds up to it
		{30*day + time.Nanosecond, 1_800_000_000 + 2592001},
		// 31 days: absolute, now+ttl rounded up (now has 250ms).
		{31 * day, 1_800_000_000 + 31*86400 + 1},
		{31*day - 250*time.Millisecond, 1_800_000_000 + 31*86400},
		// Past 2038, Memcached cannot express it: no expiry.
		{20 * 365 * day, 0},
	}
	for _, tt := range tests {
		if got := memcachebackend.Expiration(tt.ttl, now); got != tt.want {
			t.Errorf("expiration(%v) = %d, want %d", tt.ttl, got, tt.want)
		}
	}
	// Against the real clock, 31 days is absolute and about now+31d.
	got := int64(memcachebackend.Expiration(31*day, time.Now()))
	if want := time.Now().Add(31 * day).Unix(); got < want || got > want+2 {
		t.Errorf("expiration(31d) = %d, want about %d", got, want)
	}
}

// TestExpiryBounds checks the documented bounds on a real server: a value
// with a 2s ttl is still there after 0.9s (never more than one server tick
// early) and gone within 2s plus one tick and some slack.
func TestExpiryBounds(t *testing.T) {
	eachTarget(t, func(t *testing.T, addr string) {
		b := memcachebackend.New(newClient(t, addr))
		ctx := context.Background()
		k := testenv.NS(t, "bounds") + ":k"
		start := time.Now()
		if err := b.Set(ctx, k, []byte("v"), 2*time.Second); err != nil {
			t.Fatal(err)
		}
		time.Sleep(900*time.Millisecond - time.Since(start))
		if _, ok, err := b.Get(ctx, k); err != nil || !ok {
			t.Fatalf("Get 0.9s after a 2s ttl = %v, %v; want a hit", ok, err)
		}
		for {
			_, ok, err := b.Get(ctx, k)
			if err != nil {
				t.Fatal(err)
			}
			el := time.Since(start)
			if !ok {
				if el < time.Second {
					t.Fatalf("a 2s ttl expired after %v, more than one tick early", el)
				}
				t.Logf("a 2s ttl expired after %v", el)
				return
			}
			if el > 3500*time.Millisecond {
				t.Fatalf("a 2s ttl still hits after %v", el)
			}
			time.Sleep(20 * time.Millisecond)
		}
	})
}

// TestClearAcrossInstances plays two processes sharing the servers: each has
// its own client, connections and cache. With GenerationRefresh(0) a Clear
// in one is seen by the other at once.
func TestClearAcrossInstances(t *testing.T) {
	eachTarget(t, func(t *testing.T, addr string) {
		b1 := memcachebackend.New(newClient(t, addr), memcachebackend.GenerationRefresh(0))
		b2 := memcachebackend.New(newClient(t, addr), memcachebackend.GenerationRefresh(0))
		ctx := context.Background()
		ns := testenv.NS(t, "xclear")
		for i := range 10 {
			if err := b1.Set(ctx, fmt.Sprintf("%s:%d", ns, i), []byte("old"), time.Minute); err != nil {
				t.Fatal(err)
			}
		}
		testenv.WantGet(t, b2, ns+":3", "old")
		if err := b2.Clear(ctx, ns); err != nil {
			t.Fatal(err)
		}
		for i := range 10 {
			testenv.WantGet(t, b1, fmt.Sprintf("%s:%d", ns, i), "")
			testenv.WantGet(t, b2, fmt.Sprintf("%s:%d", ns, i), "")
		}
		if err := b1.Set(ctx, ns+":3", []byte("new"), time.Minute); err != nil {
			t.Fatal(err)
		}
		testenv.WantGet(t, b2, ns+":3", "new")
		if err := b1.Clear(ctx, ns); err != nil {
			t.Fatal(err)
		}
		testenv.WantGet(t, b2, ns+":3", "")
	})
}

// TestClearSeenWithinRefresh: with the default refresh interval, the
// clearing Backend sees its Clear at once and another one within about a
// second; the entries the other wrote meanwhile, under the old generation,
// are unreachable after that.
func TestClearSeenWithinRefresh(t *testing.T) {
	eachTarget(t, func(t *testing.T, addr string) {
		b1 := memcachebackend.New(newClient(t, addr))
		b2 := memcachebackend.New(newClient(t, addr))
		ctx := context.Background()
		ns := testenv.NS(t, "refresh")
		if err := b1.Set(ctx, ns+":k", []byte("old"), time.Minute); err != nil {
			t.Fatal(err)
		}
		testenv.WantGet(t, b2, ns+":k", "old") // b2 caches the generation now
		if err := b1.Clear(ctx, ns); err != nil {
			t.Fatal(err)
		}
		cleared := time.Now()
		testenv.WantGet(t, b1, ns+":k", "")
		// b2 has not refreshed yet: it still sees, and writes, the old
		// generation (the documented trade-off).
		if err := b2.Set(ctx, ns+":stale", []byte("x"), time.Minute); err != nil {
			t.Fatal(err)
		}
		for {
			_, ok, err := b2.Get(ctx, ns+":k")
			if err != nil {
				t.Fatal(err)
			}
			el := time.Since(cleared)
			if !ok {
				t.Logf("the second instance saw the Clear after %v", el)
				break
			}
			if el > memcachebackend.DefaultGenerationRefresh+500*time.Millisecond {
				t.Fatalf("the second instance still hits %v after a Clear", el)
			}
			time.Sleep(10 * time.Millisecond)
		}
		testenv.WantGet(t, b2, ns+":stale", "")
		testenv.WantGet(t, b1, ns+":stale", "")
	})
}

// TestClearImmediateUnderRefreshes: in the clearing Backend a Clear is seen
// at once even while refreshes of the generation, started before it, are in
// flight.
func TestClearImmediateUnderRefreshes(t *testing.T) {
	eachTarget(t, func(t *testing.T, addr string) {
		b := memcachebackend.New(newClient(t, addr), memcachebackend.GenerationRefresh(time.Millisecond))
		ctx := context.Background()
		ns := testenv.NS(t, "clrrace")
		stop := make(chan struct{})
		var wg sync.WaitGroup
		for range 8 {
			wg.Go(func() {
				for {
					select {
					case <-stop:
						return
					default:
					}
					if _, _, err := b.Get(ctx, ns+":other"); err != nil {
						t.Error(err)
						return
					}
				}
			})
		}
		defer func() { close(stop); wg.Wait() }()
		for i := range 200 {
			k := fmt.Sprintf("%s:%d", ns, i)
			if err := b.Set(ctx, k, []byte("v"), time.Minute); err != nil {
				t.Fatal(err)
			}
			if err := b.Clear(ctx, ns); err != nil {
				t.Fatal(err)
			}
			if v, ok, err := b.Get(ctx, k); err != nil || ok {
				t.Fatalf("round %d: Get after Clear = %q, %v, %v; want a miss", i, v, ok, err)
			}
		}
	})
}

// counting is a ServerSelector that counts the requests for one key.
type counting struct {
	memcache.ServerList
	key string
	n   atomic.Int64
}

func (c *counting) PickServer(key string) (net.Addr, error) {
	if key == c.key {
		c.n.Add(1)
	}
	return c.ServerList.PickServer(key)
}

// countingClient returns a client whose requests for ns's generation
// counter are counted.
func countingClient(t *testing.T, addr, ns string) (*memcache.Client, *counting) {
	t.Helper()
	sel := &counting{key: memcachebackend.GenKey(ns)}
	if err := sel.SetServers(addr); err != nil {
		t.Fatal(err)
	}
	c := memcache.NewFromSelector(sel)
	c.MaxIdleConns = 32
	c.Timeout = 2 * time.Second
	t.Cleanup(func() { c.Close() })
	return c, sel
}

// TestRefreshOncePerInterval: concurrent Gets read the counter at most once
// per refresh interval, and the first read is shared by every caller that
// arrives before it ends.
func TestRefreshOncePerInterval(t *testing.T) {
	eachTarget(t, func(t *testing.T, addr string) {
		const refresh = 200 * time.Millisecond
		ctx := context.Background()
		ns := testenv.NS(t, "stampede")
		// Create the counter and a value through another Backend, so that
		// every read below is a single "get" of the counter.
		if err := memcachebackend.New(newClient(t, addr)).Set(ctx, ns+":k", []byte("v"), time.Minute); err != nil {
			t.Fatal(err)
		}
		c, sel := countingClient(t, addr, ns)
		b := memcachebackend.New(c, memcachebackend.GenerationRefresh(refresh))

		const workers = 16
		var ready, wg sync.WaitGroup
		ready.Add(workers)
		startGate := make(chan struct{})
		var gets atomic.Int64
		start := time.Now()
		deadline := start.Add(time.Second)
		for range workers {
			wg.Go(func() {
				ready.Done()
				<-startGate
				for time.Now().Before(deadline) {
					if _, ok, err := b.Get(ctx, ns+":k"); err != nil || !ok {
						t.Errorf("Get = %v, %v; want a hit", ok, err)
						return
					}
					gets.Add(1)
				}
			})
		}
		ready.Wait()
		close(startGate)
		wg.Wait()
		el := time.Since(start)
		reads := sel.n.Load()
		limit := int64(el/refresh) + 1
		t.Logf("%d Gets by %d goroutines in %v read the counter %d times (refresh %v, limit %d)",
			gets.Load(), workers, el, reads, refresh, limit)
		if reads > limit {
			t.Errorf("counter read %d times in %v, want at most %d (one per %v)", reads, el, limit, refresh)
		}
		if reads < 2 {
			t.Errorf("counter read %d times in %v, want refreshes every %v", reads, el, refresh)
		}
	})
}

// TestFirstReadShared: callers arriving together on a cold Backend share one
// read of the counter.
func TestFirstReadShared(t *testing.T) {
	eachTarget(t, func(t *testing.T, addr string) {
		ctx := context.Background()
		ns := testenv.NS(t, "cold")
		if err := memcachebackend.New(newClient(t, addr)).Set(ctx, ns+":k", []byte("v"), time.Minute); err != nil {
			t.Fatal(err)
		}
		c, sel := countingClient(t, addr, ns)
		b := memcachebackend.New(c, memcachebackend.GenerationRefresh(time.Minute))
		var wg sync.WaitGroup
		gate := make(chan struct{})
		for range 32 {
			wg.Go(func() {
				<-gate
				if _, ok, err := b.Get(ctx, ns+":k"); err != nil || !ok {
					t.Errorf("Get = %v, %v; want a hit", ok, err)
				}
			})
		}
		close(gate)
		wg.Wait()
		if n := sel.n.Load(); n != 1 {
			t.Errorf("32 concurrent Gets on a cold Backend read the counter %d times, want 1", n)
		}
	})
}

// TestRefreshZero: GenerationRefresh(0) reads the counter on every Get and
// Set.
func TestRefreshZero(t *testing.T) {
	eachTarget(t, func(t *testing.T, addr string) {
		ctx := context.Background()
		ns := testenv.NS(t, "zero")
		c, sel := countingClient(t, addr, ns)
		b := memcachebackend.New(c, memcachebackend.GenerationRefresh(0))
		if err := b.Set(ctx, ns+":k", []byte("v"), time.Minute); err != nil {
			t.Fatal(err)
		}
		sel.n.Store(0)
		for range 10 {
			testenv.WantGet(t, b, ns+":k", "v")
		}
		if n := sel.n.Load(); n != 10 {
			t.Errorf("10 Gets read the counter %d times, want 10", n)
		}
	})
}

// TestDeleteAcrossInstances: Delete reads the generation itself, so a
// Backend whose cached generation is behind a Clear still removes the
// current entry, and its own stale one.
func TestDeleteAcrossInstances(t *testing.T) {
	eachTarget(t, func(t *testing.T, addr string) {
		b1 := memcachebackend.New(newClient(t, addr), memcachebackend.GenerationRefresh(time.Minute))
		b2 := memcachebackend.New(newClient(t, addr), memcachebackend.GenerationRefresh(time.Minute))
		ctx := context.Background()
		ns := testenv.NS(t, "xdelete")
		if err := b1.Set(ctx, ns+":k", []byte("old"), time.Minute); err != nil {
			t.Fatal(err)
		}
		testenv.WantGet(t, b2, ns+":k", "old")
		if err := b2.Clear(ctx, ns); err != nil {
			t.Fatal(err)
		}
		if err := b2.Set(ctx, ns+":k", []byte("new"), time.Minute); err != nil {
			t.Fatal(err)
		}
		testenv.WantGet(t, b1, ns+":k", "old") // b1 has not refreshed
		if err := b1.Delete(ctx, ns+":k"); err != nil {
			t.Fatal(err)
		}
		testenv.WantGet(t, b2, ns+":k", "")
		testenv.WantGet(t, b1, ns+":k", "")
	})
}

// TestLostGeneration: losing a namespace's counter (eviction, restart)
// turns its entries into misses and never brings back cleared ones.
func TestLostGeneration(t *testing.T) {
	eachTarget(t, func(t *testing.T, addr string) {
		c := newClient(t, addr)
		b := memcachebackend.New(c, memcachebackend.GenerationRefresh(0))
		ctx := context.Background()
		ns := testenv.NS(t, "lostgen")
		if err := b.Set(ctx, ns+":a", []byte("1"), time.Minute); err != nil {
			t.Fatal(err)
		}
		if err := b.Clear(ctx, ns); err != nil {
			t.Fatal(err)
		}
		if err := b.Set(ctx, ns+":b", []byte("2"), time.Minute); err != nil {
			t.Fatal(err)
		}
		// The counter is evicted (or its server restarted): a Clear finds
		// nothing to increment, and the next read creates a new counter at a
		// random point, so nothing of the namespace is current, and the entry
		// cleared before the loss does not come back.
		if err := c.Delete(memcachebackend.GenKey(ns)); err != nil {
			t.Fatal(err)
		}
		if err := b.Clear(ctx, ns); err != nil {
			t.Fatalf("Clear without a counter = %v", err)
		}
		testenv.WantGet(t, b, ns+":a", "")
		testenv.WantGet(t, b, ns+":b", "")
		if err := b.Set(ctx, ns+":c", []byte("3"), time.Minute); err != nil {
			t.Fatal(err)
		}
		testenv.WantGet(t, b, ns+":a", "")
		testenv.WantGet(t, b, ns+":b", "")
		testenv.WantGet(t, b, ns+":c", "3")
	})
}

// TestLostGenerationCached: a Backend caching the generation of a lost
// counter goes on with it until its next refresh, then starts over; a
// Clear through it drops its cached generation at once.
func TestLostGenerationCached(t *testing.T) {
	eachTarget(t, func(t *testing.T, addr string) {
		c := newClient(t, addr)
		const refresh = 300 * time.Millisecond
		b := memcachebackend.New(c, memcachebackend.GenerationRefresh(refresh))
		ctx := context.Background()
		ns := testenv.NS(t, "lostcached")
		if err := b.Set(ctx, ns+":a", []byte("1"), time.Minute); err != nil {
			t.Fatal(err)
		}
		if err := c.Delete(memcachebackend.GenKey(ns)); err != nil {
			t.Fatal(err)
		}
		testenv.WantGet(t, b, ns+":a", "1") // cached generation
		time.Sleep(refresh + 50*time.Millisecond)
		testenv.WantGet(t, b, ns+":a", "") // refreshed: a new counter

		if err := b.Set(ctx, ns+":b", []byte("2"), time.Minute); err != nil {
			t.Fatal(err)
		}
		if err := c.Delete(memcachebackend.GenKey(ns)); err != nil {
			t.Fatal(err)
		}
		if err := b.Clear(ctx, ns); err != nil {
			t.Fatalf("Clear without a counter = %v", err)
		}
		testenv.WantGet(t, b, ns+":b", "")
	})
}

func TestGenerationKeyIsNotAMemoKey(t *testing.T) {
	for _, ns := range []string{"", "a", "a:b", string(bytes.Repeat([]byte("n"), 249))} {
		k := memcachebackend.GenKey(ns)
		if _, _, ok := memo.SplitKey(k); ok {
			t.Errorf("GenKey(%q) = %q contains ':'", ns, k)
		}
		if len(k) > 250 {
			t.Errorf("GenKey(%q) is %d bytes", ns, len(k))
		}
	}
}

// TestStoredKeys: the stored key of (namespace, generation, id) is a legal
// Memcached key, distinct for distinct triples, long ones hashed.
func TestStoredKeys(t *testing.T) {
	long := func(c byte, n int) string { return string(bytes.Repeat([]byte{c}, n)) }
	type triple struct {
		ns  string
		gen uint64
		id  string
	}
	cases := []triple{
		{"a", 1, "b"}, {"a", 1, "b.c"}, {"a", 11, "b"}, {"a:g1", 1, "b"}, {"a", 1, "g1.b"},
		{"", 0, ""}, {"a", 0, ""}, {"", 0, "a"}, {"a.b", 2, "c"}, {"a", math.MaxUint64, "x"},
		{long('n', 200), 1, long('i', 46)}, // 200 + len(":g1.") + 46 = 250 bytes: as is
		{long('n', 200), 1, long('i', 47)}, // 251 bytes: hashed
		{long('n', 200), 2, long('i', 47)},
		{long('n', 201), 1, long('i', 46)},
		{long('n', 150), math.MaxUint64, long('i', 99)},
	}
	seen := map[string]triple{}
	for _, c := range cases {
		k, err := memcachebackend.KeyFor(c.ns, c.gen, c.id)
		if err != nil {
			t.Fatalf("KeyFor(%+v) = %v", c, err)
		}
		if len(k) > 250 || strings.ContainsAny(k, " \t\r\n\x00") {
			t.Errorf("KeyFor(%.30q, %d, %.30q) = %q: not a legal key", c.ns, c.gen, c.id, k)
		}
		if prev, dup := seen[k]; dup {
			t.Errorf("%+v and %+v share the key %q", prev, c, k)
		}
		seen[k] = c
		if k == memcachebackend.GenKey(c.ns) {
			t.Errorf("KeyFor(%+v) is the counter key", c)
		}
	}
	if _, err := memcachebackend.KeyFor(long('n', 240), 1, "a b"+long('i', 20)); err == nil {
		t.Error("a long key with a space was accepted")
	}
}

// TestRawBytes: the stored value is exactly the bytes given to Set, under
// the key that StoredKey reports.
func TestRawBytes(t *testing.T) {
	eachTarget(t, func(t *testing.T, addr string) {
		c := newClient(t, addr)
		b := memcachebackend.New(c)
		ctx := context.Background()
		key := testenv.NS(t, "raw") + ":k"
		val := []byte("\x00exact bytes\r\n")
		if err := b.Set(ctx, key, val, time.Minute); err != nil {
			t.Fatal(err)
		}
		sk, err := memcachebackend.StoredKey(ctx, b, key)
		if err != nil {
			t.Fatal(err)
		}
		it, err := c.Get(sk)
		if err != nil || !bytes.Equal(it.Value, val) {
			t.Fatalf("raw Get(%q) = %v, %v; want %q", sk, it, err, val)
		}
	})
}

// TestNamespaceCacheBounded: namespaces no longer in use leave the cache.
func TestNamespaceCacheBounded(t *testing.T) {
	eachTarget(t, func(t *testing.T, addr string) {
		b := memcachebackend.New(newClient(t, addr), memcachebackend.GenerationRefresh(time.Nanosecond))
		ctx := context.Background()
		base := testenv.NS(t, "many")
		for i := range 1500 {
			if _, _, err := b.Get(ctx, fmt.Sprintf("%s.%d:k", base, i)); err != nil {
				t.Fatal(err)
			}
		}
		if n := memcachebackend.CachedNamespaces(b); n > 1024 {
			t.Errorf("%d namespaces cached after 1500 stale ones, want at most 1024", n)
		}
	})
}

// TestServerTooLarge: with the local check lifted, the server's own refusal
// maps to ErrTooLarge, and the key is a miss afterwards.
func TestServerTooLarge(t *testing.T) {
	eachTarget(t, func(t *testing.T, addr string) {
		b := memcachebackend.New(newClient(t, addr), memcachebackend.MaxItemSize(64<<20))
		ctx := context.Background()
		k := testenv.NS(t, "srvbig") + ":k"
		if err := b.Set(ctx, k, []byte("small"), time.Minute); err != nil {
			t.Fatal(err)
		}
		err := b.Set(ctx, k, make([]byte, 2<<20), time.Minute)
		if !errors.Is(err, memo.ErrTooLarge) {
			t.Fatalf("Set(2 MiB) = %v, want ErrTooLarge", err)
		}
		testenv.WantGet(t, b, k, "")
		// The client recovers from the connection the server's error closed.
		if err := b.Set(ctx, k, []byte("small"), time.Minute); err != nil {
			t.Fatal(err)
		}
		testenv.WantGet(t, b, k, "small")
	})
}

// TestLocalLimit: the default limit lets through the largest value that
// Memcached's default 1 MiB item holds with the longest key.
func TestLocalLimit(t *testing.T) {
	eachTarget(t, func(t *testing.T, addr string) {
		b := memcachebackend.New(newClient(t, addr))
		ctx := context.Background()
		ns := testenv.NS(t, "limit")
		long := ns + ":" + string(bytes.Repeat([]byte("k"), 250-len(ns)-1))
		for _, k := range []string{long, ns + ":k"} {
			// The stored key is at most the key plus the generation, and at
			// most 250 bytes.
			max := memcachebackend.DefaultMaxItemSize - min(len(k)+memcachebackend.GenOverhead, 250) - memcachebackend.ItemOverhead
			if err := b.Set(ctx, k, make([]byte, max), time.Minute); err != nil {
				t.Fatalf("Set(%d-byte key, %d bytes) = %v", len(k), max, err)
			}
			if v, ok, err := b.Get(ctx, k); err != nil || !ok || len(v) != max {
				t.Fatalf("Get = %d bytes, %v, %v", len(v), ok, err)
			}
			if err := b.Set(ctx, k, make([]byte, max+1), time.Minute); !errors.Is(err, memo.ErrTooLarge) {
				t.Fatalf("Set(%d-byte key, %d bytes) = %v, want ErrTooLarge", len(k), max+1, err)
			}
		}
	})
}

func TestInvalidKeys(t *testing.T) {
	eachTarget(t, func(t *testing.T, addr string) {
		b := memcachebackend.New(newClient(t, addr))
		ctx := context.Background()
		if _, _, err := b.Get(ctx, "nonamespace"); err == nil {
			t.Error("Get(key without ':') = nil error")
		}
		if err := b.Set(ctx, "nonamespace", []byte("v"), time.Minute); err == nil {
			t.Error("Set(key without ':') = nil error")
		}
		if err := b.Set(ctx, testenv.NS(t, "neg")+":k", []byte("v"), -time.Second); err == nil {
			t.Error("Set(negative ttl) = nil error")
		}
		ns := testenv.NS(t, "illegal")
		for _, k := range []string{ns + ":a b", ns + ":" + strings.Repeat("x", 240) + "\n"} {
			if _, _, err := b.Get(ctx, k); err == nil {
				t.Errorf("Get(%.20q...) = nil error", k)
			}
			if err := b.Set(ctx, k, []byte("v"), time.Minute); err == nil {
				t.Errorf("Set(%.20q...) = nil error", k)
			}
			if err := b.Delete(ctx, k); err == nil {
				t.Errorf("Delete(%.20q...) = nil error", k)
			}
		}
	})
}

// BenchmarkGet compares a plain gomemcache Get of the stored key with
// Backend.Get of the same 200-byte value, from one goroutine and from
// 4×GOMAXPROCS, separately and interleaved (see benchutil.Interleaved):
// "backend" with a ctx that never ends, "deadline" and "handoff" with ctxs
// that can (see below).
func BenchmarkGet(b *testing.B) {
	c := newClient(b, realAddr(b))
	be := memcachebackend.New(c)
	ctx := context.Background()
	key := testenv.NS(b, "bench") + ":k"
	if err := be.Set(ctx, key, bytes.Repeat([]byte("v"), 200), 0); err != nil {
		b.Fatal(err)
	}
	sk, err := memcachebackend.StoredKey(ctx, be, key)
	if err != nil {
		b.Fatal(err)
	}
	raw := func() error {
		if it, err := c.Get(sk); err != nil || len(it.Value) != 200 {
			return fmt.Errorf("raw Get = %v", err)
		}
		return nil
	}
	backend := func() error {
		if v, ok, err := be.Get(ctx, key); err != nil || !ok || len(v) != 200 {
			return fmt.Errorf("Get = %d bytes, %v, %v", len(v), ok, err)
		}
		return nil
	}
	// memo passes a ctx that can end. With a deadline past what the
	// client's Timeout allows a request, Get runs it on the caller's
	// goroutine ("deadline"); with a ctx that can be cancelled before its
	// deadline, or a client Timeout too long for it, Get hands it to a
	// goroutine of its own and waits on ctx.Done() beside it ("handoff").
	dctx, cancel := context.WithTimeout(ctx, time.Hour)
	defer cancel()
	hctx, hcancel := context.WithCancel(ctx)
	defer hcancel()
	getWith := func(ctx context.Context) func() error {
		return func() error {
			if v, ok, err := be.Get(ctx, key); err != nil || !ok || len(v) != 200 {
				return fmt.Errorf("Get = %d bytes, %v, %v", len(v), ok, err)
			}
			return nil
		}
	}
	for _, par := range []bool{false, true} {
		suffix := ""
		if par {
			suffix = "-parallel"
		}
		b.Run("raw"+suffix, func(b *testing.B) { benchutil.Bench(b, par, raw) })
		b.Run("backend"+suffix, func(b *testing.B) { benchutil.Bench(b, par, backend) })
		b.Run("interleaved"+suffix, func(b *testing.B) { benchutil.Interleaved(b, par, raw, backend, "backend") })
		for _, m := range []struct {
			name string
			ctx  context.Context
		}{{"deadline", dctx}, {"handoff", hctx}} {
			b.Run("interleaved-"+m.name+suffix, func(b *testing.B) { benchutil.Interleaved(b, par, raw, getWith(m.ctx), m.name) })
		}
	}
}
