package fakememcached_test

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/bradfitz/gomemcache/memcache"

	"github.com/gomemo/memo/internal/fakememcached"
)

// TestProtocol drives the fake with gomemcache, the client it serves.
func TestProtocol(t *testing.T) {
	s := fakememcached.Start(t)
	now := time.Unix(1_800_000_000, 0)
	s.SetClock(func() time.Time { return now })
	c := memcache.New(s.Addr())
	defer c.Close()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	want := func(key, v string) {
		t.Helper()
		it, err := c.Get(key)
		if v == "" {
			if !errors.Is(err, memcache.ErrCacheMiss) {
				t.Fatalf("Get(%q) = %v, %v; want a miss", key, it, err)
			}
			return
		}
		if err != nil || string(it.Value) != v {
			t.Fatalf("Get(%q) = %v, %v; want %q", key, it, err, v)
		}
	}
	must(c.Ping())
	must(c.Set(&memcache.Item{Key: "a", Value: []byte("1\r\n2"), Flags: 7}))
	want("a", "1\r\n2")
	if err := c.Add(&memcache.Item{Key: "a", Value: []byte("x")}); !errors.Is(err, memcache.ErrNotStored) {
		t.Fatalf("Add(existing) = %v", err)
	}
	must(c.Add(&memcache.Item{Key: "b", Value: []byte("10")}))
	if n, err := c.Increment("b", 5); err != nil || n != 15 {
		t.Fatalf("Increment = %d, %v", n, err)
	}
	if _, err := c.Increment("a", 1); err == nil {
		t.Fatal("Increment(non-numeric) = nil error")
	}
	if _, err := c.Increment("none", 1); !errors.Is(err, memcache.ErrCacheMiss) {
		t.Fatalf("Increment(missing) = %v", err)
	}
	it, err := c.Get("b")
	must(err)
	it.Value = []byte("20")
	must(c.CompareAndSwap(it))
	if err := c.CompareAndSwap(it); !errors.Is(err, memcache.ErrCASConflict) {
		t.Fatalf("stale CompareAndSwap = %v", err)
	}
	want("b", "20")
	must(c.Delete("b"))
	if err := c.Delete("b"); !errors.Is(err, memcache.ErrCacheMiss) {
		t.Fatalf("Delete(missing) = %v", err)
	}
	// Expiry: relative seconds, absolute beyond 30 days, touch.
	must(c.Set(&memcache.Item{Key: "r", Value: []byte("v"), Expiration: 2}))
	must(c.Set(&memcache.Item{Key: "abs", Value: []byte("v"), Expiration: int32(now.Unix() + 40*86400)}))
	must(c.Set(&memcache.Item{Key: "t", Value: []byte("v"), Expiration: 1}))
	must(c.Touch("t", 100))
	now = now.Add(1999 * time.Millisecond)
	want("r", "v")
	now = now.Add(time.Millisecond)
	want("r", "")
	want("t", "v")
	now = now.Add(40 * 86400 * time.Second)
	want("abs", "")
	// Item size limit.
	err = c.Set(&memcache.Item{Key: "a", Value: make([]byte, fakememcached.DefaultMaxItemSize)})
	if err == nil || !strings.Contains(err.Error(), "object too large") {
		t.Fatalf("Set(1 MiB) = %v", err)
	}
	want("a", "")
	must(c.Set(&memcache.Item{Key: "x", Value: []byte("v")}))
	must(c.FlushAll())
	want("x", "")
}

// TestStall: a stalled server answers nothing; the client times out.
func TestStall(t *testing.T) {
	s := fakememcached.Start(t)
	c := memcache.New(s.Addr())
	c.Timeout = 50 * time.Millisecond
	defer c.Close()
	if err := c.Set(&memcache.Item{Key: "k", Value: []byte("v")}); err != nil {
		t.Fatal(err)
	}
	s.Stall()
	start := time.Now()
	if _, err := c.Get("k"); err == nil {
		t.Fatal("Get from a stalled server = nil error")
	}
	if el := time.Since(start); el < 50*time.Millisecond {
		t.Fatalf("Get failed after %v, before the client's timeout", el)
	}
}
