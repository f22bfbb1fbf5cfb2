package store

import (
	"fmt"
	"testing"
)

// A write that must evict keeps the entry just written and drops older ones,
// even when the eviction passes the end of the clock.
func TestSetKeepsNewEntry(t *testing.T) {
	s := New[int](1<<30, 1<<20, 1)
	for i, k := range []string{"a", "b", "c"} {
		if err := s.Set(k, i, 300<<10, 0, 0); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Set("new", 9, 700<<10, 0, 0); err != nil {
		t.Fatal(err)
	}
	if v, _, ok := s.Get([]byte("new")); !ok || v != 9 {
		t.Errorf("Get(new) = %v, %v after a Set that evicted; want 9, true", v, ok)
	}
	if b := s.Bytes(); b > 1<<20 {
		t.Errorf("Bytes() = %d, over the bound %d", b, 1<<20)
	}
}

// The byte bound is the store's: one entry may take most of it, whatever the
// number of shards, and the store stays within it.
func TestByteBoundStoreWide(t *testing.T) {
	const bound = 1 << 20
	s := New[int](1<<30, bound, 16)
	for i := range 200 {
		key := fmt.Sprintf("ns:%d", i)
		if err := s.Set(key, i, bound/3, 0, 0); err != nil {
			t.Fatalf("Set(%s, bound/3) = %v; want it admitted", key, err)
		}
		if _, _, ok := s.Get([]byte(key)); !ok {
			t.Fatalf("Get(%s) missed right after its Set", key)
		}
		if b := s.Bytes(); b > bound {
			t.Fatalf("Bytes() = %d after %d sets, over the bound %d", b, i+1, bound)
		}
	}
	if err := s.Set("huge", 0, bound+1, 0, 0); err != ErrTooLarge {
		t.Errorf("Set(bound+1) = %v, want ErrTooLarge", err)
	}
}

// Expired entries are reclaimed by writes to their shard, without reads.
func TestReclaimOnWrite(t *testing.T) {
	s := New[int](1<<30, 1<<30, 1)
	for i := range 100 {
		s.Set(fmt.Sprintf("ns:%d", i), i, 10, 50, 0)
	}
	s.Set("other", 0, 10, 0, 60)
	if n := s.Len(); n != 1 {
		t.Errorf("Len() = %d after the expiry and one write, want 1", n)
	}
}

func TestClearNamespace(t *testing.T) {
	s := New[int](1<<30, 1<<30, 4)
	for _, k := range []string{"a:1", "a:2", "ab:1", "a:b:1"} {
		s.Set(k, 0, 1, 0, 0)
	}
	s.Clear("a")
	for k, want := range map[string]bool{"a:1": false, "a:2": false, "ab:1": true, "a:b:1": true} {
		if _, _, ok := s.Get([]byte(k)); ok != want {
			t.Errorf("after Clear(a): Get(%s) ok = %v, want %v", k, ok, want)
		}
	}
	if got, want := s.Bytes(), int64(2*(1+EntryOverhead)); got != want {
		t.Errorf("Bytes() = %d after Clear, want %d", got, want)
	}
}
