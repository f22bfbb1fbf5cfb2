package memcachebackend_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/bradfitz/gomemcache/memcache"

	"github.com/gomemo/memo"
	"github.com/gomemo/memo/backends/backendtest"
	"github.com/gomemo/memo/backends/memcachebackend"
)

// newClient connects to the server(s) named by MEMO_MEMCACHED_ADDR, or skips
// (fails in CI) when it is unset.
func newClient(t testing.TB, addrs ...string) *memcache.Client {
	t.Helper()
	if len(addrs) == 0 {
		addrs = []string{backendtest.Require(t, "MEMO_MEMCACHED_ADDR")}
	}
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
	backendtest.Run(t, func(t *testing.T) memo.Backend {
		return memcachebackend.New(newClient(t))
	}, opts)
}

// TestTwoServers runs the suite on a client spreading keys over two servers,
// so that values and generation counters live on different ones. It needs
// MEMO_MEMCACHED_ADDR2 (a second memcached), and skips without it.
func TestTwoServers(t *testing.T) {
	addr2 := os.Getenv("MEMO_MEMCACHED_ADDR2")
	if addr2 == "" {
		t.Skip("MEMO_MEMCACHED_ADDR2 is not set")
	}
	addr := backendtest.Require(t, "MEMO_MEMCACHED_ADDR")
	backendtest.Run(t, func(t *testing.T) memo.Backend {
		return memcachebackend.New(newClient(t, addr, addr2))
	}, opts)
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
	b := memcachebackend.New(newClient(t))
	ctx := context.Background()
	k := backendtest.NS(t, "bounds") + ":k"
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
}

// TestClearAcrossInstances plays two processes sharing the servers: each has
// its own client and connections, and a Clear in one is seen by the other at
// once.
func TestClearAcrossInstances(t *testing.T) {
	b1 := memcachebackend.New(newClient(t))
	b2 := memcachebackend.New(newClient(t))
	ctx := context.Background()
	ns := backendtest.NS(t, "xclear")
	for i := range 10 {
		if err := b1.Set(ctx, fmt.Sprintf("%s:%d", ns, i), []byte("old"), time.Minute); err != nil {
			t.Fatal(err)
		}
	}
	wantGet(t, b2, ns+":3", "old")
	if err := b2.Clear(ctx, ns); err != nil {
		t.Fatal(err)
	}
	for i := range 10 {
		wantGet(t, b1, fmt.Sprintf("%s:%d", ns, i), "")
		wantGet(t, b2, fmt.Sprintf("%s:%d", ns, i), "")
	}
	if err := b1.Set(ctx, ns+":3", []byte("new"), time.Minute); err != nil {
		t.Fatal(err)
	}
	wantGet(t, b2, ns+":3", "new")
	if err := b1.Clear(ctx, ns); err != nil {
		t.Fatal(err)
	}
	wantGet(t, b2, ns+":3", "")
}

// TestLostGeneration: losing a namespace's counter (eviction, restart)
// turns its entries into misses and never brings back cleared ones.
func TestLostGeneration(t *testing.T) {
	c := newClient(t)
	b := memcachebackend.New(c)
	ctx := context.Background()
	ns := backendtest.NS(t, "lostgen")
	if err := b.Set(ctx, ns+":a", []byte("1"), time.Minute); err != nil {
		t.Fatal(err)
	}
	if err := b.Clear(ctx, ns); err != nil {
		t.Fatal(err)
	}
	if err := b.Set(ctx, ns+":b", []byte("2"), time.Minute); err != nil {
		t.Fatal(err)
	}
	// The counter is evicted (or its server restarted): nothing of the
	// namespace is current, and a Clear of it is a no-op.
	if err := c.Delete(memcachebackend.GenKey(ns)); err != nil {
		t.Fatal(err)
	}
	wantGet(t, b, ns+":a", "")
	wantGet(t, b, ns+":b", "")
	if err := b.Clear(ctx, ns); err != nil {
		t.Fatalf("Clear without a counter = %v", err)
	}
	// A new counter starts at a random point: the entry cleared before the
	// loss does not come back, and new entries work.
	if err := b.Set(ctx, ns+":c", []byte("3"), time.Minute); err != nil {
		t.Fatal(err)
	}
	wantGet(t, b, ns+":a", "")
	wantGet(t, b, ns+":b", "")
	wantGet(t, b, ns+":c", "3")
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

// TestServerTooLarge: with the local check lifted, the server's own refusal
// maps to ErrTooLarge, and the key is a miss afterwards.
func TestServerTooLarge(t *testing.T) {
	b := memcachebackend.New(newClient(t), memcachebackend.MaxItemSize(64<<20))
	ctx := context.Background()
	k := backendtest.NS(t, "srvbig") + ":k"
	if err := b.Set(ctx, k, []byte("small"), time.Minute); err != nil {
		t.Fatal(err)
	}
	err := b.Set(ctx, k, make([]byte, 2<<20), time.Minute)
	if !errors.Is(err, memo.ErrTooLarge) {
		t.Fatalf("Set(2 MiB) = %v, want ErrTooLarge", err)
	}
	wantGet(t, b, k, "")
	// The client recovers from the connection the server's error closed.
	if err := b.Set(ctx, k, []byte("small"), time.Minute); err != nil {
		t.Fatal(err)
	}
	wantGet(t, b, k, "small")
}

// TestLocalLimit: the default limit lets through the largest value that
// Memcached's default 1 MiB item holds with the longest key.
func TestLocalLimit(t *testing.T) {
	b := memcachebackend.New(newClient(t))
	ctx := context.Background()
	ns := backendtest.NS(t, "limit")
	k := ns + ":" + string(bytes.Repeat([]byte("k"), 250-len(ns)-1))
	max := memcachebackend.DefaultMaxItemSize - len(k) - memcachebackend.HeaderLen - 64
	if err := b.Set(ctx, k, make([]byte, max), time.Minute); err != nil {
		t.Fatalf("Set(%d bytes) = %v", max, err)
	}
	if v, ok, err := b.Get(ctx, k); err != nil || !ok || len(v) != max {
		t.Fatalf("Get = %d bytes, %v, %v", len(v), ok, err)
	}
	if err := b.Set(ctx, k, make([]byte, max+1), time.Minute); !errors.Is(err, memo.ErrTooLarge) {
		t.Fatalf("Set(%d bytes) = %v, want ErrTooLarge", max+1, err)
	}
}

func TestInvalidKeys(t *testing.T) {
	b := memcachebackend.New(newClient(t))
	ctx := context.Background()
	if _, _, err := b.Get(ctx, "nonamespace"); err == nil {
		t.Error("Get(key without ':') = nil error")
	}
	if err := b.Set(ctx, "nonamespace", []byte("v"), time.Minute); err == nil {
		t.Error("Set(key without ':') = nil error")
	}
	if err := b.Set(ctx, backendtest.NS(t, "neg")+":k", []byte("v"), -time.Second); err == nil {
		t.Error("Set(negative ttl) = nil error")
	}
}

func wantGet(t *testing.T, b memo.Backend, key, want string) {
	t.Helper()
	v, ok, err := b.Get(context.Background(), key)
	switch {
	case err != nil:
		t.Fatalf("Get(%q) error %v", key, err)
	case want == "" && ok:
		t.Fatalf("Get(%q) = %q, want a miss", key, v)
	case want != "" && (!ok || string(v) != want):
		t.Fatalf("Get(%q) = %q, %v; want %q", key, v, ok, want)
	}
}

// BenchmarkGet compares a plain gomemcache Get (and a two-key GetMulti, the
// request the backend sends) with Backend.Get, for a 200-byte value.
func BenchmarkGet(b *testing.B) {
	c := newClient(b)
	be := memcachebackend.New(c)
	ctx := context.Background()
	ns := backendtest.NS(b, "bench")
	key := ns + ":k"
	if err := be.Set(ctx, key, bytes.Repeat([]byte("v"), 200), 0); err != nil {
		b.Fatal(err)
	}
	gk := memcachebackend.GenKey(ns)
	raw := func() {
		if _, err := c.Get(key); err != nil {
			b.Fatal(err)
		}
	}
	multi := func() {
		if m, err := c.GetMulti([]string{key, gk}); err != nil || len(m) != 2 {
			b.Fatal(err)
		}
	}
	backend := func() {
		if _, ok, err := be.Get(ctx, key); err != nil || !ok {
			b.Fatal(ok, err)
		}
	}
	for _, bm := range []struct {
		name string
		fn   func()
	}{{"raw-Get", raw}, {"raw-GetMulti2", multi}, {"backend-Get", backend}} {
		b.Run(bm.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				bm.fn()
			}
		})
		b.Run(bm.name+"-parallel", func(b *testing.B) {
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					bm.fn()
				}
			})
		})
	}
}
