// Package memory is a bounded in-memory [memo.Backend] of bytes: entries
// bounded by count and by bytes, expired entries reclaimed without being
// read, namespaces clearable on a ':' boundary.
//
// memo does not need it: with no backend given, memo answers from its local
// tier, which keeps decoded values and is faster. Use this backend to test
// code written against [memo.Backend], or to share encoded entries between
// functions of one process exactly as a remote store would.
package memory

import (
	"context"
	"fmt"
	"time"
	"unsafe"

	"github.com/gomemo/memo"
	"github.com/gomemo/memo/internal/store"
)

var (
	_ memo.Backend = (*Backend)(nil)
	_ memo.Clearer = (*Backend)(nil)
)

// Defaults for [New].
const (
	DefaultMaxEntries = 100_000
	DefaultMaxBytes   = 64 << 20
)

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

// MaxBytes bounds the bytes held: each entry's key and value, rounded to the
// allocator's size class, and about 160 bytes of bookkeeping per entry
// (default [DefaultMaxBytes]). It panics unless n > 0.
func MaxBytes(n int64) Option {
	if n <= 0 {
		panic(fmt.Sprintf("memory: MaxBytes(%d): must be positive", n))
	}
	return Option{func(o *options) { o.maxBytes = n }}
}

// Shards sets the number of independently locked shards (default: 4 per
// CPU, rounded up to a power of two, at most 256). Each shard holds an equal
// share of MaxEntries; MaxBytes bounds the store as a whole.
// It panics unless n is a power of two between 1 and 4096.
func Shards(n int) Option {
	if n <= 0 || n > 4096 || n&(n-1) != 0 {
		panic(fmt.Sprintf("memory: Shards(%d): must be a power of two in [1, 4096]", n))
	}
	return Option{func(o *options) { o.shards = n }}
}

// Backend is a bounded in-memory store. It is safe for concurrent use. Its
// methods never block on I/O; they honour ctx only by refusing to start
// once it has ended. Expiry follows the monotonic clock: a step of the wall
// clock neither shortens nor extends an entry's life.
type Backend struct {
	s *store.Store[[]byte]
}

// New returns an empty store.
func New(opts ...Option) *Backend {
	o := options{maxEntries: DefaultMaxEntries, maxBytes: DefaultMaxBytes}
	for _, op := range opts {
		if op.apply == nil {
			panic("memory: New: nil Option")
		}
		op.apply(&o)
	}
	return &Backend{s: store.New[[]byte](o.maxEntries, o.maxBytes, o.shards)}
}

var base = time.Now()

// now reads the monotonic clock.
func now() int64 { return int64(time.Since(base)) }

// Get returns the value under key. The slice is shared with the store: the
// caller must not modify it.
func (b *Backend) Get(ctx context.Context, key string) ([]byte, bool, error) {
	if err := ctx.Err(); err != nil {
		return nil, false, err
	}
	kb := unsafe.Slice(unsafe.StringData(key), len(key))
	v, expires, ok := b.s.Get(kb)
	if !ok || expires != 0 && now() >= expires {
		return nil, false, nil
	}
	return v, true, nil
}

// Set stores a copy of value under key for ttl (0: until evicted). A value
// whose entry (key, value and about 160 bytes of bookkeeping) exceeds
// MaxBytes is refused with an error wrapping [memo.ErrTooLarge].
func (b *Backend) Set(ctx context.Context, key string, value []byte, ttl time.Duration) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if ttl < 0 {
		return fmt.Errorf("memory: negative ttl %v", ttl)
	}
	t := now()
	var expires int64
	if ttl > 0 {
		expires = t + int64(ttl)
	}
	// One allocation holds the key and a copy of the value.
	n := len(key) + len(value)
	buf := make([]byte, n)
	copy(buf, key)
	copy(buf[len(key):], value)
	k := unsafe.String(unsafe.SliceData(buf), len(key))
	if err := b.s.Set(k, buf[len(key):n:n], store.AllocSize(n), expires, t); err != nil {
		return fmt.Errorf("memory: %d bytes under %q: %w", len(value), key, memo.ErrTooLarge)
	}
	return nil
}

// Delete removes key.
func (b *Backend) Delete(ctx context.Context, key string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	b.s.Delete(key)
	return nil
}

// Clear removes every key ns + ":" + id where id holds no ':'. It walks the
// whole store, one shard at a time.
func (b *Backend) Clear(ctx context.Context, ns string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	b.s.Clear(ns)
	return nil
}

// Len returns the number of entries held, expired ones not yet reclaimed
// included.
func (b *Backend) Len() int { return b.s.Len() }

// Bytes returns the bytes counted against MaxBytes.
func (b *Backend) Bytes() int64 { return b.s.Bytes() }
