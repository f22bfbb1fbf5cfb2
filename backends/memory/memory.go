// Package memory is memo's in-memory backend and its default store: bounded
// by entry count and by bytes, with expired entries reclaimed without being
// read, and namespaces clearable on a ':' boundary.
//
// The store is split into shards, each behind its own lock. Reads take a
// shared lock and mark the entry as recently used; writes take the shard's
// lock, first reclaim every expired entry of the shard (an expiry heap makes
// that O(log n) per entry), then evict by the CLOCK (second-chance) policy
// until the shard is within its share of the bounds.
//
// It satisfies memo.Backend and memo.Clearer without importing memo, which
// uses it as its default.
package memory

import (
	"container/heap"
	"context"
	"errors"
	"fmt"
	"hash/maphash"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"
)

// Defaults for [New].
const (
	DefaultMaxEntries = 100_000
	DefaultMaxBytes   = 64 << 20
)

// EntryOverhead is what each entry counts against [MaxBytes] besides the
// allocation that holds its key and value: the entry itself (96 bytes), its
// slot in the shard's map (about 40 bytes at the map's average load) and
// its slots in the clock and expiry indexes (about 24 bytes with their
// spare capacity), on 64-bit platforms.
const EntryOverhead = 168

// ErrTooLarge is wrapped by Set's error for a value larger than one shard's
// share of MaxBytes. memo.ErrTooLarge is the same value.
var ErrTooLarge = errors.New("memo: value too large for the backend")

// Option configures [New].
type Option struct{ apply func(*options) }

type options struct {
	maxEntries int
	maxBytes   int64
	shards     int
}

// MaxEntries bounds the number of entries (default [DefaultMaxEntries]).
// It panics unless n > 0.
func MaxEntries(n int) Option {
	if n <= 0 {
		panic(fmt.Sprintf("memory: MaxEntries(%d): must be positive", n))
	}
	return Option{func(o *options) { o.maxEntries = n }}
}

// MaxBytes bounds the bytes held: keys, values and [EntryOverhead] per entry
// (default [DefaultMaxBytes]). It panics unless n > 0.
func MaxBytes(n int64) Option {
	if n <= 0 {
		panic(fmt.Sprintf("memory: MaxBytes(%d): must be positive", n))
	}
	return Option{func(o *options) { o.maxBytes = n }}
}

// Shards sets the number of independently locked shards (default: 4 per
// CPU, rounded up to a power of two, at most 256). Each shard holds an equal
// share of the bounds, so a single value may take at most MaxBytes/Shards.
// It panics unless n is a power of two between 1 and 4096.
func Shards(n int) Option {
	if n <= 0 || n > 4096 || n&(n-1) != 0 {
		panic(fmt.Sprintf("memory: Shards(%d): must be a power of two in [1, 4096]", n))
	}
	return Option{func(o *options) { o.shards = n }}
}

// Backend is a bounded in-memory store. It is safe for concurrent use. Its
// methods never block on I/O; they honour ctx only by refusing to start
// once it has ended.
type Backend struct {
	seed   maphash.Seed
	mask   uint64
	shards []shard
}

type shard struct {
	mu         sync.RWMutex
	m          map[string]*entry
	exp        expHeap
	clock      []*entry
	hand       int
	bytes      int64
	maxBytes   int64
	maxEntries int
	_          [40]byte // keep shards' locks on separate cache lines
}

type entry struct {
	key     string
	val     []byte
	expires int64 // Unix nanoseconds; 0 never
	heapIdx int   // index in shard.exp, -1 when it does not expire
	clkIdx  int   // index in shard.clock
	ref     atomic.Bool
	aux     any   // see Attach; guarded by shard.mu
	auxCost int64 // what aux counts against MaxBytes
}

// New returns an empty store.
func New(opts ...Option) *Backend {
	o := options{maxEntries: DefaultMaxEntries, maxBytes: DefaultMaxBytes}
	for _, op := range opts {
		op.apply(&o)
	}
	if o.shards == 0 {
		o.shards = 1
		for o.shards < 4*runtime.GOMAXPROCS(0) && o.shards < 256 {
			o.shards *= 2
		}
	}
	for o.shards > 1 && (o.maxEntries/o.shards < 1 || o.maxBytes/int64(o.shards) < 1) {
		o.shards /= 2 // tiny bounds: fewer shards so that each holds something
	}
	b := &Backend{seed: maphash.MakeSeed(), mask: uint64(o.shards - 1), shards: make([]shard, o.shards)}
	for i := range b.shards {
		s := &b.shards[i]
		s.m = make(map[string]*entry)
		s.maxEntries = o.maxEntries / o.shards
		s.maxBytes = o.maxBytes / int64(o.shards)
		if i < o.maxEntries%o.shards {
			s.maxEntries++
		}
	}
	return b
}

func (b *Backend) shard(key string) *shard {
	return &b.shards[maphash.String(b.seed, key)&b.mask]
}

// Get returns the value under key. The slice is shared with the store: the
// caller must not modify it.
func (b *Backend) Get(ctx context.Context, key string) ([]byte, bool, error) {
	if err := ctx.Err(); err != nil {
		return nil, false, err
	}
	s := b.shard(key)
	s.mu.RLock()
	e, ok := s.m[key]
	if !ok || (e.expires != 0 && time.Now().UnixNano() >= e.expires) {
		s.mu.RUnlock()
		return nil, false, nil
	}
	if !e.ref.Load() {
		e.ref.Store(true)
	}
	v := e.val
	s.mu.RUnlock()
	return v, true, nil
}

// Load is Get for a caller on the hot path that keeps a decoded form of a
// value beside it (memo does, to answer a hit without decoding). It takes
// the key as bytes, so that the caller need not allocate a string; it
// returns what [Backend.Attach] put beside the value (or nil) and the
// entry's expiry in Unix nanoseconds (0: none) without checking it, so that
// the caller reads the clock once for this and its own checks: an entry
// with 0 < expires <= now must be taken as a miss. Like Get's, the returned
// slice and aux are shared: the caller must not modify them.
func (b *Backend) Load(key []byte) (val []byte, aux any, expires int64, ok bool) {
	s := &b.shards[maphash.Bytes(b.seed, key)&b.mask]
	s.mu.RLock()
	e, ok := s.m[string(key)]
	if !ok {
		s.mu.RUnlock()
		return nil, nil, 0, false
	}
	if !e.ref.Load() {
		e.ref.Store(true)
	}
	val, aux, expires = e.val, e.aux, e.expires
	s.mu.RUnlock()
	return val, aux, expires, true
}

// Attach keeps aux beside the value under key, provided the entry still
// holds val (the slice Get or Load returned), until the entry is replaced,
// deleted or evicted. aux counts against MaxBytes as cost bytes; an aux
// that does not fit is not kept. aux must never be modified afterwards.
func (b *Backend) Attach(key string, val []byte, aux any, cost int64) {
	s := b.shard(key)
	s.mu.Lock()
	defer s.mu.Unlock()
	e, ok := s.m[key]
	if !ok || len(e.val) != len(val) || unsafe.SliceData(e.val) != unsafe.SliceData(val) {
		return
	}
	if s.bytes-e.auxCost+cost > s.maxBytes {
		return
	}
	s.bytes += cost - e.auxCost
	e.aux, e.auxCost = aux, cost
}

// Set stores a copy of value under key for ttl (0: until evicted).
func (b *Backend) Set(ctx context.Context, key string, value []byte, ttl time.Duration) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if ttl < 0 {
		return fmt.Errorf("memory: negative ttl %v", ttl)
	}
	s := b.shard(key)
	size := cost(len(key) + len(value))
	if size > s.maxBytes {
		return fmt.Errorf("memory: %d bytes over the shard limit of %d: %w", size, s.maxBytes, ErrTooLarge)
	}
	var expires int64
	now := time.Now().UnixNano()
	if ttl > 0 {
		expires = now + int64(ttl)
	}
	// One allocation holds the key and a copy of the value.
	buf := make([]byte, len(key)+len(value))
	copy(buf, key)
	copy(buf[len(key):], value)
	k := unsafe.String(unsafe.SliceData(buf), len(key))
	val := buf[len(key):len(buf):len(buf)]
	s.mu.Lock()
	defer s.mu.Unlock()
	s.reclaim(now)
	if e, ok := s.m[key]; ok {
		s.remove(e)
	}
	e := &entry{key: k, val: val, expires: expires, heapIdx: -1}
	s.m[k] = e
	s.insert(e)
	s.bytes += size
	if expires != 0 {
		heap.Push(&s.exp, e)
	}
	for len(s.m) > s.maxEntries || s.bytes > s.maxBytes {
		s.evict()
	}
	return nil
}

// Delete removes key.
func (b *Backend) Delete(ctx context.Context, key string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	s := b.shard(key)
	s.mu.Lock()
	if e, ok := s.m[key]; ok {
		s.remove(e)
	}
	s.mu.Unlock()
	return nil
}

// Clear removes every key ns + ":" + id where id holds no ':'. It walks the
// whole store, one shard at a time.
func (b *Backend) Clear(ctx context.Context, ns string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	prefix := ns + ":"
	for i := range b.shards {
		s := &b.shards[i]
		s.mu.Lock()
		for k, e := range s.m {
			if strings.HasPrefix(k, prefix) && strings.IndexByte(k[len(prefix):], ':') < 0 {
				s.remove(e)
			}
		}
		s.mu.Unlock()
	}
	return nil
}

// Len returns the number of entries held, expired ones not yet reclaimed
// included.
func (b *Backend) Len() int {
	n := 0
	for i := range b.shards {
		s := &b.shards[i]
		s.mu.RLock()
		n += len(s.m)
		s.mu.RUnlock()
	}
	return n
}

// Bytes returns the bytes counted against MaxBytes.
func (b *Backend) Bytes() int64 {
	var n int64
	for i := range b.shards {
		s := &b.shards[i]
		s.mu.RLock()
		n += s.bytes
		s.mu.RUnlock()
	}
	return n
}

// cost is what an entry whose key and value take n bytes counts.
func cost(n int) int64 { return AllocSize(n) + EntryOverhead }

// AllocSize returns the bytes the Go allocator takes for an object of n
// bytes: its size class up to 32 KiB, whole 8 KiB pages above.
func AllocSize(n int) int64 {
	if n <= 0 {
		return 0
	}
	if n > 32768 {
		return int64((n + 8191) &^ 8191)
	}
	i, _ := slices.BinarySearch(sizeClasses[:], uint16(min(n, 32768)))
	return int64(sizeClasses[i])
}

// sizeClasses are the Go runtime's small object sizes (runtime/sizeclasses.go).
var sizeClasses = [...]uint16{8, 16, 24, 32, 48, 64, 80, 96, 112, 128, 144, 160, 176, 192, 208, 224, 240, 256,
	288, 320, 352, 384, 416, 448, 480, 512, 576, 640, 704, 768, 896, 1024, 1152, 1280, 1408, 1536, 1792, 2048,
	2304, 2688, 3072, 3200, 3456, 4096, 4864, 5376, 6144, 6528, 6784, 6912, 8192, 9472, 9728, 10240, 10880,
	12288, 13568, 14336, 16384, 18432, 19072, 20480, 21760, 24576, 27264, 28672, 32768}

// reclaim removes the shard's expired entries. s.mu is held.
func (s *shard) reclaim(now int64) {
	for len(s.exp) > 0 && s.exp[0].expires <= now {
		s.remove(s.exp[0])
	}
}

// evict removes one entry by the CLOCK policy. s.mu is held.
func (s *shard) evict() {
	for {
		if s.hand >= len(s.clock) {
			s.hand = 0
		}
		e := s.clock[s.hand]
		if e.ref.Load() {
			e.ref.Store(false)
			s.hand++
			continue
		}
		s.remove(e)
		return
	}
}

// insert adds e to the clock just behind the hand, so that it is the last
// entry the hand visits: a new entry is never the next one evicted. s.mu is
// held.
func (s *shard) insert(e *entry) {
	i := len(s.clock)
	e.clkIdx = i
	s.clock = append(s.clock, e)
	if s.hand < i {
		o := s.clock[s.hand]
		s.clock[s.hand], s.clock[i] = e, o
		e.clkIdx, o.clkIdx = s.hand, i
	}
	s.hand++
}

// remove drops e from the map, the clock and the heap. s.mu is held.
func (s *shard) remove(e *entry) {
	delete(s.m, e.key)
	last := len(s.clock) - 1
	s.clock[e.clkIdx] = s.clock[last]
	s.clock[e.clkIdx].clkIdx = e.clkIdx
	s.clock[last] = nil
	s.clock = s.clock[:last]
	if e.heapIdx >= 0 {
		heap.Remove(&s.exp, e.heapIdx)
	}
	s.bytes -= cost(len(e.key)+len(e.val)) + e.auxCost
}

// expHeap orders a shard's expiring entries, soonest first.
type expHeap []*entry

func (h expHeap) Len() int           { return len(h) }
func (h expHeap) Less(i, j int) bool { return h[i].expires < h[j].expires }
func (h expHeap) Swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].heapIdx = i
	h[j].heapIdx = j
}
func (h *expHeap) Push(x any) {
	e := x.(*entry)
	e.heapIdx = len(*h)
	*h = append(*h, e)
}
func (h *expHeap) Pop() any {
	old := *h
	e := old[len(old)-1]
	old[len(old)-1] = nil
	*h = old[:len(old)-1]
	e.heapIdx = -1
	return e
}
