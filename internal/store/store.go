// Package store is the bounded, sharded in-process map behind memo's local
// tier and backends/memory: entries by string key, each with a cost in bytes
// and an optional expiry, bounded by entry count and by bytes.
//
// Reads take a shard's shared lock and mark the entry recently used; writes
// take the shard's lock, first reclaim the shard's expired entries (an
// expiry heap makes that O(log n) each), then evict by the CLOCK
// (second-chance) policy until the shard is within its share of the bounds.
//
// The store reads no clock: expiries are numbers on a clock the caller
// chooses, and Set is told what time it is on that clock.
package store

import (
	"container/heap"
	"errors"
	"hash/maphash"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
)

// EntryOverhead is what each entry counts besides the cost its caller
// gives: the entry itself, its slot in the shard's map at the map's
// average load and its slots in the clock and expiry indexes, on 64-bit
// platforms.
const EntryOverhead = 160

// ErrTooLarge is returned by Set for an entry larger than the byte bound.
var ErrTooLarge = errors.New("memo: value too large for the store")

// Store is a bounded map from string keys to values of type V. It is safe
// for concurrent use.
type Store[V any] struct {
	seed     maphash.Seed
	mask     uint64
	shards   []shard[V]
	maxBytes int64
	bytes    atomic.Int64  // the sum of the shards' bytes
	victim   atomic.Uint64 // the next shard to evict from when over the byte bound
}

type shard[V any] struct {
	mu         sync.RWMutex
	m          map[string]*entry[V] // guarded by mu
	exp        expHeap[V]           // entries that expire, soonest first; guarded by mu
	clock      []*entry[V]          // every entry, for CLOCK eviction; guarded by mu
	hand       int                  // guarded by mu
	bytes      int64                // guarded by mu
	maxEntries int                  // set by New
	_          [40]byte             // keep shards' locks on separate cache lines
}

type entry[V any] struct {
	key     string // set once
	val     V      // set once
	cost    int64  // set once: what the entry counts against the byte bound
	expires int64  // set once: on the caller's clock; 0 never
	heapIdx int    // guarded by shard.mu; -1 when it does not expire
	clkIdx  int    // guarded by shard.mu
	ref     atomic.Bool
}

// New returns an empty store bounded by maxEntries entries and maxBytes
// bytes, split into shards independently locked shards (0: 4 per CPU,
// rounded up to a power of two, at most 256). Each shard holds an equal
// share of the entry bound; the byte bound is the store's as a whole.
// shards must be 0 or a power of two.
func New[V any](maxEntries int, maxBytes int64, shards int) *Store[V] {
	if shards == 0 {
		shards = 1
		for shards < 4*runtime.GOMAXPROCS(0) && shards < 256 {
			shards *= 2
		}
	}
	for shards > 1 && maxEntries/shards < 1 {
		shards /= 2 // tiny bounds: fewer shards so that each holds something
	}
	s := &Store[V]{seed: maphash.MakeSeed(), mask: uint64(shards - 1), shards: make([]shard[V], shards), maxBytes: maxBytes}
	for i := range s.shards {
		sh := &s.shards[i]
		sh.m = make(map[string]*entry[V])
		sh.maxEntries = maxEntries / shards
		if i < maxEntries%shards {
			sh.maxEntries++
		}
	}
	return s
}

func (s *Store[V]) shard(key string) *shard[V] {
	return &s.shards[maphash.String(s.seed, key)&s.mask]
}

// Get returns the value under key and its expiry (0: none), without
// checking the expiry: an entry with 0 < expires <= now is the caller's
// miss. It takes the key as bytes so that a caller building keys in a
// buffer need not allocate.
func (s *Store[V]) Get(key []byte) (v V, expires int64, ok bool) {
	sh := &s.shards[maphash.Bytes(s.seed, key)&s.mask]
	sh.mu.RLock()
	e, ok := sh.m[string(key)]
	if !ok {
		sh.mu.RUnlock()
		return v, 0, false
	}
	if !e.ref.Load() {
		e.ref.Store(true)
	}
	v, expires = e.val, e.expires
	sh.mu.RUnlock()
	return v, expires, true
}

// Set stores v under key, replacing what was there, with its cost in bytes
// and its expiry (0: none) on the caller's clock, whose current time is now.
// It returns ErrTooLarge, and removes what key held, when the entry exceeds
// the byte bound.
func (s *Store[V]) Set(key string, v V, cost, expires, now int64) error {
	sh := s.shard(key)
	cost += EntryOverhead
	e := &entry[V]{key: key, val: v, cost: cost, expires: expires, heapIdx: -1}
	sh.mu.Lock()
	before := sh.bytes
	sh.reclaim(now)
	if old, ok := sh.m[key]; ok {
		sh.remove(old)
	}
	var err error
	if cost > s.maxBytes {
		err = ErrTooLarge // the older value is gone too: never serve it after a newer one
	} else {
		sh.m[key] = e
		sh.insert(e)
		sh.bytes += cost
		if expires != 0 {
			heap.Push(&sh.exp, e)
		}
		for len(sh.m) > sh.maxEntries && sh.evict(e) {
		}
	}
	total := s.bytes.Add(sh.bytes - before)
	sh.mu.Unlock()
	for total > s.maxBytes {
		var ok bool
		if total, ok = s.evictSome(e); !ok {
			break // only e is left: it fits, being within the bound alone
		}
	}
	return err
}

// evictSome evicts one entry other than keep from the next shard that has
// one, and returns the store's bytes; ok is false when there was none.
func (s *Store[V]) evictSome(keep *entry[V]) (total int64, ok bool) {
	for range len(s.shards) {
		sh := &s.shards[s.victim.Add(1)&s.mask]
		sh.mu.Lock()
		before := sh.bytes
		if sh.evict(keep) {
			total := s.bytes.Add(sh.bytes - before)
			sh.mu.Unlock()
			return total, true
		}
		sh.mu.Unlock()
	}
	return s.bytes.Load(), false
}

// Delete removes key.
func (s *Store[V]) Delete(key string) {
	sh := s.shard(key)
	sh.mu.Lock()
	if e, ok := sh.m[key]; ok {
		sh.remove(e)
		s.bytes.Add(-e.cost)
	}
	sh.mu.Unlock()
}

// Clear removes every key ns + ":" + id where id holds no ':'. It walks the
// whole store, one shard at a time.
func (s *Store[V]) Clear(ns string) {
	prefix := ns + ":"
	for i := range s.shards {
		sh := &s.shards[i]
		sh.mu.Lock()
		before := sh.bytes
		for k, e := range sh.m {
			if strings.HasPrefix(k, prefix) && strings.IndexByte(k[len(prefix):], ':') < 0 {
				sh.remove(e)
			}
		}
		s.bytes.Add(sh.bytes - before)
		sh.mu.Unlock()
	}
}

// ClearAll removes every key.
func (s *Store[V]) ClearAll() {
	for i := range s.shards {
		sh := &s.shards[i]
		sh.mu.Lock()
		before := sh.bytes
		for _, e := range sh.m {
			sh.remove(e)
		}
		s.bytes.Add(sh.bytes - before)
		sh.mu.Unlock()
	}
}

// Len returns the number of entries held, expired ones not yet reclaimed
// included.
func (s *Store[V]) Len() int {
	n := 0
	for i := range s.shards {
		sh := &s.shards[i]
		sh.mu.RLock()
		n += len(sh.m)
		sh.mu.RUnlock()
	}
	return n
}

// Bytes returns the bytes counted against the byte bound.
func (s *Store[V]) Bytes() int64 { return s.bytes.Load() }

// AllocSize returns the bytes the Go allocator takes for an object of n
// bytes: its size class up to 32 KiB, whole 8 KiB pages above.
func AllocSize(n int) int64 {
	if n <= 0 {
		return 0
	}
	if n > 32768 {
		return int64((n + 8191) &^ 8191)
	}
	i, _ := slices.BinarySearch(sizeClasses[:], uint16(n))
	return int64(sizeClasses[i])
}

// sizeClasses are the Go runtime's small object sizes (runtime/sizeclasses.go).
var sizeClasses = [...]uint16{8, 16, 24, 32, 48, 64, 80, 96, 112, 128, 144, 160, 176, 192, 208, 224, 240, 256,
	288, 320, 352, 384, 416, 448, 480, 512, 576, 640, 704, 768, 896, 1024, 1152, 1280, 1408, 1536, 1792, 2048,
	2304, 2688, 3072, 3200, 3456, 4096, 4864, 5376, 6144, 6528, 6784, 6912, 8192, 9472, 9728, 10240, 10880,
	12288, 13568, 14336, 16384, 18432, 19072, 20480, 21760, 24576, 27264, 28672, 32768}

// reclaim removes the shard's entries expired at now. sh.mu is held.
func (sh *shard[V]) reclaim(now int64) {
	for len(sh.exp) > 0 && sh.exp[0].expires <= now {
		sh.remove(sh.exp[0])
	}
}

// evict removes one entry other than keep by the CLOCK policy and reports
// whether there was one. sh.mu is held.
func (sh *shard[V]) evict(keep *entry[V]) bool {
	if len(sh.clock) == 0 || len(sh.clock) == 1 && sh.clock[0] == keep {
		return false
	}
	for {
		if sh.hand >= len(sh.clock) {
			sh.hand = 0
		}
		e := sh.clock[sh.hand]
		if e == keep {
			sh.hand++
			continue
		}
		if e.ref.Load() {
			e.ref.Store(false)
			sh.hand++
			continue
		}
		// remove moves the last entry, often the newest, into the hand's
		// slot: pass it, so that it is visited last, not next.
		sh.remove(e)
		sh.hand++
		return true
	}
}

// insert adds e to the clock just behind the hand, so that it is the last
// entry the hand visits: a new entry is never the next one evicted. sh.mu
// is held.
func (sh *shard[V]) insert(e *entry[V]) {
	i := len(sh.clock)
	e.clkIdx = i
	sh.clock = append(sh.clock, e)
	if sh.hand < i {
		o := sh.clock[sh.hand]
		sh.clock[sh.hand], sh.clock[i] = e, o
		e.clkIdx, o.clkIdx = sh.hand, i
	}
	sh.hand++
}

// remove drops e from the map, the clock and the heap. sh.mu is held.
func (sh *shard[V]) remove(e *entry[V]) {
	delete(sh.m, e.key)
	last := len(sh.clock) - 1
	sh.clock[e.clkIdx] = sh.clock[last]
	sh.clock[e.clkIdx].clkIdx = e.clkIdx
	sh.clock[last] = nil
	sh.clock = sh.clock[:last]
	if e.heapIdx >= 0 {
		heap.Remove(&sh.exp, e.heapIdx)
	}
	sh.bytes -= e.cost
}

// expHeap orders a shard's expiring entries, soonest first.
type expHeap[V any] []*entry[V]

func (h expHeap[V]) Len() int           { return len(h) }
func (h expHeap[V]) Less(i, j int) bool { return h[i].expires < h[j].expires }
func (h expHeap[V]) Swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].heapIdx = i
	h[j].heapIdx = j
}
func (h *expHeap[V]) Push(x any) {
	e := x.(*entry[V])
	e.heapIdx = len(*h)
	*h = append(*h, e)
}
func (h *expHeap[V]) Pop() any {
	old := *h
	e := old[len(old)-1]
	old[len(old)-1] = nil
	*h = old[:len(old)-1]
	e.heapIdx = -1
	return e
}
