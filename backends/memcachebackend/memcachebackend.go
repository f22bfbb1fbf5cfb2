// Package memcachebackend is a [memo.Backend] on Memcached, through
// github.com/bradfitz/gomemcache.
//
//	client := memcache.New("10.0.0.1:11211", "10.0.0.2:11211")
//	client.MaxIdleConns = 64               // about the number of concurrent callers
//	client.Timeout = 40 * time.Millisecond // under half of memo.Timeout: hits stay on the caller's goroutine
//	b := memcachebackend.New(client)
//
// # Clear, generations, and what other processes see
//
// Memcached cannot list keys, so [Backend.Clear] works with a generation
// counter per namespace, stored in Memcached itself, and the generation is
// part of every key the backend stores: memo's key "<ns>:<id>" is stored
// under "<ns>:g<generation in base 36>.<id>". Clear increments the counter
// with one "incr", and from then on the namespace's keys are new keys: the
// old entries are unreachable and Memcached drops them later by expiry or
// LRU.
//
// To keep a hit at one plain "get", each [Backend] caches the generation of
// the namespaces it uses and reads the counter again at most once per
// refresh interval ([GenerationRefresh], 1 second by default). This is a
// trade-off, and it is visible:
//
//   - In the process that calls Clear, the Clear is seen at once: Clear
//     stores the new generation in its own cache before it returns.
//   - Other processes sharing the servers (other Backends, other machines)
//     see it only when their cached generation is next refreshed: for up to
//     the refresh interval (plus one round trip) after Clear returns, they
//     may still serve, and write, entries of the old generation. Entries
//     they write then are unreachable once they refresh.
//   - GenerationRefresh(0) reads the counter on every operation: every
//     process sees a Clear as soon as it returns, at the cost of a second
//     round trip on every Get and Set.
//
// Refreshes do not stampede: a namespace has at most one refresh in flight
// per Backend; meanwhile other callers use the generation already cached,
// or wait for the refresh when there is none yet. A refresh that fails (the
// counter's server is down) fails the operation that ran it; the callers
// that came meanwhile went on with the cached generation, and the next
// caller tries again.
//
// The counter lives under a reserved key, "memo.gen." and the base64url
// SHA-256 of the namespace, which holds no ':'; stored keys always do
// (or, when "<ns>:g<gen>.<id>" would exceed Memcached's 250 bytes, are
// "memo.h." and the base64url SHA-256 of that string), so the three never
// collide and the mapping from (namespace, generation, id) to stored key is
// one-to-one. Values are stored as they are, with no header: a plain
// Memcached get of the stored key returns exactly the bytes memo wrote.
//
// A missing counter (never created, evicted, or its server restarted) is
// created at a random 62-bit starting point by the next operation that
// reads it, so the entries written under the lost counter stay unreachable
// (a collision has probability about 2⁻⁶²); processes that still cache the
// old generation go on using it until their next refresh. The counter has
// no expiry; every process reads it once per refresh interval, which keeps
// it recently used in Memcached's LRU while the namespace is in use.
//
// # Expiry
//
// Memcached expires items in whole seconds, on a clock that ticks once a
// second. Set rounds the ttl up to whole seconds (300ms becomes 1s, 1.5s
// becomes 2s) and never down, so an item lives at least its rounded ttl
// minus one tick of the server's clock: it may disappear up to one second
// before its ttl or up to one second after. memo checks freshness itself
// from its envelope, so a late expiry never serves a stale value; an early
// one only costs a recomputation. A ttl over 30 days is sent as an absolute
// Unix time (Memcached reads relative values only up to 30 days), which then
// depends on the server's wall clock agreeing with the client's; a ttl that
// reaches past 2038 (the limit of Memcached's 32-bit expiry) means no expiry.
// A ttl of 0 means no expiry; Memcached may still evict the item.
//
// # Limits
//
// Memcached refuses items over its item size limit (option -I, 1 MiB by
// default), where the item counts the key, the value and about 60 bytes of
// per-item overhead. Set refuses such a value before sending it (see
// [MaxItemSize]; it counts the stored key at its longest, the key plus 15
// bytes of generation, at most 250) and maps the server's "object too
// large" reply to the same error; both wrap [memo.ErrTooLarge] and the
// value is simply not cached. Keys must contain a ':' and no spaces or
// control characters, as memo's keys always do.
//
// # Contexts and timeouts
//
// gomemcache has no context support: a request on the wire ends only when
// the server answers or the client's Timeout (500ms by default, per dial
// and per request) passes. So that ctx bounds every method all the same,
// a method whose ctx can end (ctx.Done() is not nil) makes its round trips
// on a goroutine of its own and waits for them or for ctx, whichever comes
// first: when ctx ends first, the method returns at once with an error
// wrapping ctx.Err(), and the abandoned request runs on until it completes
// or the client's Timeout ends it (a few times Timeout at most: a dial,
// then each round trip), with no effect on the caller. Its outcome is
// lost: a Set or Delete abandoned that way may or may not take effect, a
// Clear too (and then this Backend's cached generation is dropped only if
// the increment failed). A stalled server thus costs a caller at most its
// ctx's deadline, and holds one goroutine and one connection per
// abandoned call for up to the client's Timeout; keep Timeout short. With
// a ctx that never ends (context.Background()), methods call the client on
// the caller's goroutine.
//
// The hand-off costs a hit two scheduler wake-ups, more than the rest of
// the backend's work. A Get or Set that is one request (the generation is
// cached) therefore runs on the caller's goroutine when the client's
// Timeout ends it before ctx's deadline anyway: when twice the client's
// Timeout (a dial and a round trip) is at most the time ctx has left. Set
// the client's Timeout to at most half of memo.Timeout to keep hits on
// that fast path; ctx's deadline then still bounds them, but a
// cancellation of ctx before its deadline is noticed only when the request
// ends, within twice the client's Timeout.
//
// # Leases
//
// Backend implements [memo.Leaser] (for [memo.Lease]) with "add" and
// compare-and-swap: a key's lease is an item of its own beside the value,
// under the same generation, so a Clear voids it as it does the value. A
// fenced write is not one atomic step as on Redis, but it is conditional
// on the value's key, and Delete leaves a short-lived tombstone where it
// found a lease, so that a Forget or a Set in any process still wins over
// an answer computed before it; [Backend.SetFenced] lists exactly the
// cases where Memcached gives less (a Void with no write after it, a
// writer stalled for seconds, a lease that ends while its holder writes, a
// Clear elsewhere within the generation refresh interval).
//
// # Several servers
//
// Keys are spread over the client's servers by its [memcache.ServerSelector]
// (by default a hash over [memcache.ServerList], which rehashes every key
// when the list changes: removing or adding a server moves most keys, and
// the cold cache that follows is a stampede). [NewRendezvousClient] builds
// a client over [Rendezvous], a consistent-hash selector: adding one of N
// servers moves about 1/(N+1) of the keys, all to it. A value, its lease
// and its namespace's counter may live on different servers, and counters
// move with the keys when the list changes. A server that dies while still
// listed keeps receiving its keys: calls for them miss (fail-open) until it
// is taken out of the list or comes back; once it is out, its keys are
// recomputed and stored on the remaining servers. A namespace whose counter
// was lost starts over at a random generation, which makes all its values
// misses and never resurrects cleared ones. See docs/scaling.md.
package memcachebackend

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/bradfitz/gomemcache/memcache"

	"github.com/gomemo/memo"
)

// DefaultMaxItemSize is the item size limit that [New] assumes unless told
// otherwise with [MaxItemSize]: Memcached's default (-I 1m).
const DefaultMaxItemSize = 1 << 20

// DefaultGenerationRefresh is how long a [Backend] uses a namespace's cached
// generation before reading the counter again, unless [GenerationRefresh]
// says otherwise.
const DefaultGenerationRefresh = time.Second

const (
	// itemOverhead is what Memcached adds to the key and the value when it
	// checks an item against its size limit (measured 59 bytes on
	// memcached 1.6 with 64-bit CAS ids; rounded up).
	itemOverhead = 64

	// maxKeyLen is Memcached's key length limit.
	maxKeyLen = 250

	// genOverhead is the most that the generation adds to a key: "g", up to
	// 13 base-36 digits of a uint64, and ".".
	genOverhead = 15

	// maxRelative is the longest expiry Memcached reads as relative seconds.
	maxRelative = 30 * 24 * 60 * 60

	genPrefix  = "memo.gen."
	hashPrefix = "memo.h."

	// sweepMin is the number of cached namespaces above which inserting a
	// new one first drops the stale ones.
	sweepMin = 1024
)

// Backend is a [memo.Backend] and [memo.Clearer] on Memcached. It is safe for
// concurrent use by multiple goroutines, as is the [memcache.Client] under
// it. Create it with [New].
type Backend struct {
	client  *memcache.Client
	maxItem int
	refresh time.Duration
	worst   time.Duration // the longest one request can take: a dial and a round trip

	mu      sync.RWMutex
	gens    map[string]*nsGen // cached generations, by namespace
	sweepAt int               // len(gens) at which the next insert sweeps

	fence fenceTest // test hooks of SetFenced; zero in production
}

var (
	_ memo.Backend = (*Backend)(nil)
	_ memo.Clearer = (*Backend)(nil)
)

// Option configures a [Backend] in [New]. Options are values, made by
// [MaxItemSize] and [GenerationRefresh], which validate their argument and
// panic with a "memcachebackend: ..." message on an invalid one; when the
// same option is given twice the last one wins. The zero Option is
// invalid: New panics on it.
type Option struct {
	apply func(*Backend)
}

// minItemSize is the smallest item size limit that MaxItemSize accepts:
// below it, not even an empty value under the longest key fits.
const minItemSize = maxKeyLen + itemOverhead

// MaxItemSize tells the backend the server's item size limit in bytes
// (Memcached's -I option; [DefaultMaxItemSize] when not given). Set refuses,
// without a round trip, a value whose item would exceed it: the stored key
// (at most the key plus 15 bytes, and at most 250), the value and
// Memcached's per-item overhead. When servers with different limits share a
// client, give the smallest. It panics unless n is at least 314 (an empty
// value under the longest key); Memcached's own minimum is 1 KiB.
func MaxItemSize(n int) Option {
	if n < minItemSize {
		panic(fmt.Sprintf("memcachebackend: MaxItemSize(%d): less than %d bytes, the longest key and the per-item overhead", n, minItemSize))
	}
	return Option{func(b *Backend) { b.maxItem = n }}
}

// GenerationRefresh sets how long the backend uses a namespace's cached
// generation before reading its counter again (default
// [DefaultGenerationRefresh], 1s). It bounds how long after a
// [Backend.Clear] by another process (or another Backend) this one may
// still read and write the namespace's old entries (d, plus the time a
// refresh takes); a Clear through this
// Backend is seen at once whatever d. A d of 0 caches nothing: every Get
// and Set reads the counter first, a second round trip, and every process
// sees a Clear as soon as it returns. A negative d panics.
func GenerationRefresh(d time.Duration) Option {
	if d < 0 {
		panic(fmt.Sprintf("memcachebackend: GenerationRefresh(%v): negative duration", d))
	}
	return Option{func(b *Backend) { b.refresh = d }}
}

// New returns a backend that stores through client, configured by opts.
// The caller keeps ownership of client (its Timeout, MaxIdleConns and
// Close) and must not change its fields once the Backend is in use; set
// MaxIdleConns to about the number of concurrent callers, or connections
// are redialled, and Timeout to what a stalled server may hold a
// goroutine and a connection (see the package documentation). New makes
// no request. It panics with a "memcachebackend: ..." message on a nil
// client or a zero Option.
func New(client *memcache.Client, opts ...Option) *Backend {
	if client == nil {
		panic("memcachebackend: New(nil): a *memcache.Client is required")
	}
	timeout := client.Timeout
	if timeout <= 0 {
		timeout = memcache.DefaultTimeout
	}
	b := &Backend{
		client:  client,
		worst:   2 * timeout,
		maxItem: DefaultMaxItemSize,
		refresh: DefaultGenerationRefresh,
		gens:    map[string]*nsGen{},
		sweepAt: sweepMin,
	}
	for i, o := range opts {
		if o.apply == nil {
			panic(fmt.Sprintf("memcachebackend: New: option %d is the zero Option; make options with MaxItemSize or GenerationRefresh", i))
		}
		o.apply(b)
	}
	return b
}

// inline reports whether one request (a dial and a round trip) may run on
// the caller's goroutine: when ctx cannot end, or when the client's Timeout
// ends the request before ctx's deadline anyway. A goroutine hand-off costs
// a hit more than the rest of the backend's work (two scheduler wake-ups),
// so a client whose Timeout is at most half of memo's keeps hits on the
// caller's goroutine; ctx's deadline still bounds them, but a cancellation
// before it is noticed only when the request ends.
func (b *Backend) inline(ctx context.Context) bool {
	if ctx.Done() == nil {
		return true
	}
	d, ok := ctx.Deadline()
	return ok && time.Until(d) >= b.worst
}

// result is the outcome of a round trip run by bounded.
type result[T any] struct {
	v   T
	err error
}

// bounded runs fn, which makes round trips through the client, and returns
// its outcome, or ctx.Err() as soon as ctx ends if that comes first. When
// ctx can end, fn runs on a goroutine of its own, which outlives an
// abandoned call until the client's Timeout ends fn; a panic in fn is
// returned as an error, never left to kill the process.
func bounded[T any](ctx context.Context, fn func() (T, error)) (T, error) {
	done := ctx.Done()
	if done == nil {
		return fn()
	}
	return handoff(ctx, done, fn)
}

// handoff runs fn on a goroutine of its own and waits for it or for done.
func handoff[T any](ctx context.Context, done <-chan struct{}, fn func() (T, error)) (T, error) {
	ch := make(chan result[T], 1)
	go func() {
		var r result[T]
		defer func() {
			if p := recover(); p != nil {
				r.err = fmt.Errorf("panic in gomemcache: %v", p)
			}
			ch <- r
		}()
		r.v, r.err = fn()
	}()
	select {
	case r := <-ch:
		return r.v, r.err
	case <-done:
		select {
		case r := <-ch: // finished as ctx ended: keep the answer
			return r.v, r.err
		default:
		}
		var zero T
		return zero, ctx.Err()
	}
}

// Get returns the value stored under key, or a miss when there is none (or
// only a Delete's tombstone), when it has expired, or when it was written
// before the last [Backend.Clear] of its namespace that this Backend has
// seen (see the package documentation).
// With the namespace's generation cached it costs one "get"; otherwise the
// counter is read first. The returned slice is the caller's. Get returns
// when ctx ends, whatever the server does (see the package documentation).
// Errors: ctx ended (wrapping ctx.Err()), a key without ':' or with spaces
// or control characters, network failures and the client's timeouts, a
// malformed generation counter.
func (b *Backend) Get(ctx context.Context, key string) ([]byte, bool, error) {
	if err := ctx.Err(); err != nil {
		return nil, false, fmt.Errorf("memcachebackend: get %q: %w", key, err)
	}
	ns, id, ok := memo.SplitKey(key)
	if !ok {
		return nil, false, errNoNamespace("get", key)
	}
	st, err := b.current(ctx, ns)
	if err != nil {
		return nil, false, fmt.Errorf("memcachebackend: get %q: generation of %q: %w", key, ns, err)
	}
	pk, err := st.key(id)
	if err != nil {
		return nil, false, fmt.Errorf("memcachebackend: get %q: %w", key, err)
	}
	var it *memcache.Item
	if b.inline(ctx) {
		it, err = b.client.Get(pk)
	} else {
		it, err = handoff(ctx, ctx.Done(), func() (*memcache.Item, error) { return b.client.Get(pk) })
	}
	if err != nil {
		if errors.Is(err, memcache.ErrCacheMiss) {
			return nil, false, nil
		}
		return nil, false, fmt.Errorf("memcachebackend: get %q: %w", key, err)
	}
	if it.Flags == tombstoneFlags {
		return nil, false, nil // a Delete's tombstone (see lease.go)
	}
	if it.Value == nil {
		return []byte{}, true, nil
	}
	return it.Value, true, nil
}

// Set stores value under key for ttl (0: no expiry), under the namespace's
// generation as this Backend knows it, creating the counter if it is
// missing. With the generation cached it costs one "set"; otherwise the
// counter is read first. The ttl is rounded up to whole seconds (see the
// package documentation). A value too large for the server is not stored
// and returns an error wrapping [memo.ErrTooLarge]; when the server (not the
// local check) refuses it, Memcached also drops any previous value under
// key. Other errors: ctx ended (wrapping ctx.Err()), a negative ttl, a key
// without ':' or with spaces or control characters, network failures and
// the client's timeouts. Set returns when ctx ends, whatever the server
// does; a write abandoned then may still land. Set does not retain value
// (when ctx can end, it sends a copy).
func (b *Backend) Set(ctx context.Context, key string, value []byte, ttl time.Duration) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("memcachebackend: set %q: %w", key, err)
	}
	if ttl < 0 {
		return fmt.Errorf("memcachebackend: set %q: negative ttl %v", key, ttl)
	}
	ns, id, ok := memo.SplitKey(key)
	if !ok {
		return errNoNamespace("set", key)
	}
	if size := min(len(key)+genOverhead, maxKeyLen) + len(value) + itemOverhead; size > b.maxItem {
		return fmt.Errorf("memcachebackend: set %q: %d-byte value makes a %d-byte item, over the %d-byte limit: %w",
			key, len(value), size, b.maxItem, memo.ErrTooLarge)
	}
	st, err := b.current(ctx, ns)
	if err != nil {
		return fmt.Errorf("memcachebackend: set %q: generation of %q: %w", key, ns, err)
	}
	pk, err := st.key(id)
	if err != nil {
		return fmt.Errorf("memcachebackend: set %q: %w", key, err)
	}
	// gomemcache writes Value to the connection before its Set returns and
	// keeps no reference to it; but a write that ctx abandons goes on
	// after this Set returns, so it gets a copy.
	item := &memcache.Item{Key: pk, Value: value, Expiration: expiration(ttl, time.Now())}
	if b.inline(ctx) {
		err = b.client.Set(item)
	} else {
		item.Value = bytes.Clone(value)
		_, err = handoff(ctx, ctx.Done(), func() (struct{}, error) { return struct{}{}, b.client.Set(item) })
	}
	if err != nil {
		if isTooLarge(err) {
			return fmt.Errorf("memcachebackend: set %q: %d-byte value: %w (%w)", key, len(value), memo.ErrTooLarge, err)
		}
		return fmt.Errorf("memcachebackend: set %q: %w", key, err)
	}
	return nil
}

// Delete removes key and ends its lease ([Backend.Acquire]); a missing key
// is not an error. Unlike Get and Set, it always reads the namespace's
// counter first, so that it removes the current entry even when another
// process has cleared the namespace within the refresh interval; then it
// deletes the key's lease and, when there was one, replaces the value with
// a short-lived tombstone that Get reads as a miss (so that the lease
// holder's fenced write cannot land after it; see [Backend.SetFenced]), or
// else deletes the value: three round trips. When this Backend's cached
// generation was behind, it does the same under that one (two more).
// Errors: ctx ended (wrapping ctx.Err()), a key without ':' or with spaces
// or control characters, network failures and the client's timeouts.
// Delete returns when ctx ends, whatever the server does; a delete
// abandoned then may still take effect.
func (b *Backend) Delete(ctx context.Context, key string) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("memcachebackend: delete %q: %w", key, err)
	}
	ns, id, ok := memo.SplitKey(key)
	if !ok {
		return errNoNamespace("delete", key)
	}
	_, err := bounded(ctx, func() (struct{}, error) { return struct{}{}, b.delete(ns, id) })
	if err != nil {
		return fmt.Errorf("memcachebackend: delete %q: %w", key, err)
	}
	return nil
}

// delete removes id of namespace ns under the counter's generation and
// under the cached one when it differs.
func (b *Backend) delete(ns, id string) error {
	st, old, err := b.exact(ns)
	if err != nil {
		return fmt.Errorf("generation of %q: %w", ns, err)
	}
	for _, s := range []*genState{st, old} {
		if s == nil {
			continue
		}
		if err := b.deleteIn(s, id); err != nil {
			return err
		}
	}
	return nil
}

// Clear makes every value of namespace ns unreachable by incrementing the
// namespace's generation (one round trip). Nothing is deleted: the old
// values expire or are evicted later. This Backend sees the Clear at once;
// other Backends and processes see it when they next refresh their cached
// generation, within their [GenerationRefresh] interval (at once with
// GenerationRefresh(0)). A namespace without a counter holds no reachable
// value: Clear then only drops this Backend's cached generation, so that
// the next operation creates a new counter. Namespaces that ns is a prefix
// of, or that nest under it ("ns:sub"), have their own counters and are
// untouched. Values written concurrently with Clear may or may not survive
// it. Errors: ctx ended (wrapping ctx.Err()), network failures and the
// client's timeouts; after an error from the server the cached generation
// is dropped, since the increment may or may not have happened. Clear
// returns when ctx ends, whatever the server does (or while another Clear
// of ns through this Backend is still under way); a Clear abandoned then
// may still take effect, and is seen by this Backend once it does.
func (b *Backend) Clear(ctx context.Context, ns string) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("memcachebackend: clear %q: %w", ns, err)
	}
	_, err := bounded(ctx, func() (struct{}, error) { return struct{}{}, b.clear(ns) })
	if err != nil {
		return fmt.Errorf("memcachebackend: clear %q: %w", ns, err)
	}
	return nil
}

// clear increments the generation of namespace ns and caches the new one.
func (b *Backend) clear(ns string) error {
	if b.refresh == 0 {
		if _, err := b.client.Increment(genKey(ns), 1); err != nil && !errors.Is(err, memcache.ErrCacheMiss) {
			return err
		}
		return nil
	}
	e := b.entry(ns)
	// Clears of one namespace through this Backend run one at a time, so
	// that the generations they store locally come in the server's order.
	e.clearMu.Lock()
	defer e.clearMu.Unlock()
	start := time.Now()
	n, err := b.client.Increment(e.genKey, 1)
	var st *genState
	if err == nil {
		st = newGenState(ns, n, start)
	}
	// Whatever happened, a refresh in flight may have read the counter
	// before the increment: its answer must not be used or cached.
	e.mu.Lock()
	e.version++
	e.flight = nil
	e.cur.Store(st)
	e.mu.Unlock()
	if err != nil && !errors.Is(err, memcache.ErrCacheMiss) {
		return err
	}
	return nil
}

// nsGen is a namespace's cached generation.
type nsGen struct {
	genKey string
	cur    atomic.Pointer[genState] // nil: none known

	mu      sync.Mutex
	flight  *genFlight // the refresh in flight, if any
	version uint64     // incremented by every Clear

	clearMu sync.Mutex
}

// genState is one generation of a namespace, as read at a time.
type genState struct {
	gen    uint64
	prefix string    // ns + ":g" + base36(gen) + "."
	read   time.Time // when the read that returned it started
}

// genFlight is a refresh in flight; done is closed when st and err are set.
type genFlight struct {
	done    chan struct{}
	version uint64
	st      *genState
	err     error
}

func newGenState(ns string, gen uint64, read time.Time) *genState {
	var buf [16]byte
	g := strconv.AppendUint(buf[:0], gen, 36)
	return &genState{gen: gen, prefix: ns + ":g" + string(g) + ".", read: read}
}

// key returns the Memcached key of id in the state's namespace and
// generation: ns + ":g" + base36(gen) + "." + id, or, when that is longer
// than Memcached allows, "memo.h." and the base64url SHA-256 of it. The
// long form holds no ':' and the short one always does, and the short form
// is one-to-one (the namespace ends at the last ':', the generation at the
// first '.' after it), so distinct (namespace, generation, id) never share
// a key, up to SHA-256 collisions.
func (s *genState) key(id string) (string, error) { return storedKey(s.prefix, id) }

// storedKey returns prefix + id, or, when that is longer than Memcached
// allows, "memo.h." and the base64url SHA-256 of it.
func storedKey(prefix, id string) (string, error) {
	if len(prefix)+len(id) <= maxKeyLen {
		return prefix + id, nil // gomemcache checks the characters
	}
	if !legalChars(prefix) || !legalChars(id) {
		return "", errors.New("key holds spaces or control characters")
	}
	h := sha256.New()
	h.Write([]byte(prefix))
	h.Write([]byte(id))
	var sum [sha256.Size]byte
	return hashPrefix + base64.RawURLEncoding.EncodeToString(h.Sum(sum[:0])), nil
}

// entry returns the cache entry of namespace ns, creating it if needed.
func (b *Backend) entry(ns string) *nsGen {
	b.mu.RLock()
	e := b.gens[ns]
	b.mu.RUnlock()
	if e != nil {
		return e
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if e = b.gens[ns]; e != nil {
		return e
	}
	if len(b.gens) >= b.sweepAt {
		b.sweep()
	}
	e = &nsGen{genKey: genKey(ns)}
	b.gens[ns] = e
	return e
}

// sweep drops the namespaces whose cached generation is stale and not being
// refreshed, and sets the size of the next sweep, so that the cache holds
// about the namespaces in use. Dropping an entry is always safe: the next
// operation on its namespace reads the counter again. b.mu is held.
func (b *Backend) sweep() {
	now := time.Now()
	for ns, e := range b.gens {
		st := e.cur.Load()
		if st != nil && now.Sub(st.read) < b.refresh {
			continue
		}
		if !e.mu.TryLock() {
			continue
		}
		idle := e.flight == nil
		e.mu.Unlock()
		if idle && e.clearMu.TryLock() {
			delete(b.gens, ns)
			e.clearMu.Unlock()
		}
	}
	b.sweepAt = max(sweepMin, 2*len(b.gens))
}

// current returns the generation of namespace ns to use now: the cached
// one while it is fresh, else the counter's (read by this caller, or by
// the one refresh in flight; callers use a stale cached generation rather
// than wait for another's refresh). With GenerationRefresh(0) it always
// reads the counter. It returns ctx.Err() when ctx ends first; a refresh
// runs on a goroutine of its own and completes for the callers to come.
func (b *Backend) current(ctx context.Context, ns string) (*genState, error) {
	if b.refresh == 0 {
		start := time.Now()
		gen, err := bounded(ctx, func() (uint64, error) { return b.readGen(genKey(ns)) })
		if err != nil {
			return nil, err
		}
		return newGenState(ns, gen, start), nil
	}
	e := b.entry(ns)
	st := e.cur.Load()
	if st != nil && time.Since(st.read) < b.refresh {
		return st, nil
	}
	e.mu.Lock()
	st = e.cur.Load()
	if st != nil && time.Since(st.read) < b.refresh {
		e.mu.Unlock()
		return st, nil
	}
	if f := e.flight; f != nil {
		e.mu.Unlock()
		if st != nil {
			return st, nil // stale, but another caller is refreshing it
		}
		select {
		case <-f.done:
			return f.st, f.err
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	f := &genFlight{done: make(chan struct{}), version: e.version}
	e.flight = f
	e.mu.Unlock()
	if ctx.Done() == nil {
		b.refreshGen(e, ns, f)
	} else {
		go b.refreshGen(e, ns, f)
	}
	select {
	case <-f.done:
		return f.st, f.err
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// refreshGen reads the counter of namespace ns for flight f, caches the
// generation unless a Clear intervened, and closes f.done.
func (b *Backend) refreshGen(e *nsGen, ns string, f *genFlight) {
	start := time.Now()
	gen, err := func() (gen uint64, err error) {
		defer func() {
			if p := recover(); p != nil {
				err = fmt.Errorf("panic in gomemcache: %v", p)
			}
		}()
		return b.readGen(e.genKey)
	}()
	if err == nil {
		f.st = newGenState(ns, gen, start)
	}
	f.err = err
	e.mu.Lock()
	if e.flight == f {
		e.flight = nil
	}
	if err == nil && e.version == f.version {
		e.cur.Store(f.st)
	}
	e.mu.Unlock()
	close(f.done)
}

// exact reads the counter of namespace ns now and returns its generation,
// and the generation cached before when it differs (nil otherwise). It
// updates the cache unless a Clear intervened.
func (b *Backend) exact(ns string) (cur, old *genState, err error) {
	if b.refresh == 0 {
		gen, err := b.readGen(genKey(ns))
		if err != nil {
			return nil, nil, err
		}
		return newGenState(ns, gen, time.Now()), nil, nil
	}
	e := b.entry(ns)
	e.mu.Lock()
	version := e.version
	old = e.cur.Load()
	e.mu.Unlock()
	start := time.Now()
	gen, err := b.readGen(e.genKey)
	if err != nil {
		return nil, nil, err
	}
	cur = newGenState(ns, gen, start)
	e.mu.Lock()
	if e.version == version {
		e.cur.Store(cur)
	}
	e.mu.Unlock()
	if old != nil && old.gen == gen {
		old = nil
	}
	return cur, old, nil
}

// readGen reads the generation counter under gk, creating it at a random
// value when it is missing.
func (b *Backend) readGen(gk string) (uint64, error) {
	for range 3 {
		it, err := b.client.Get(gk)
		if err == nil {
			return parseGen(it.Value)
		}
		if !errors.Is(err, memcache.ErrCacheMiss) {
			return 0, err
		}
		// Start at a random point, so that a counter lost to eviction or a
		// restart does not come back at a value that old entries carry.
		g := rand.Uint64()>>2 | 1
		err = b.client.Add(&memcache.Item{Key: gk, Value: strconv.AppendUint(nil, g, 10)})
		if err == nil {
			return g, nil
		}
		if !errors.Is(err, memcache.ErrNotStored) {
			return 0, err
		}
		// Another process created it first: read theirs.
	}
	return 0, errors.New("generation counter keeps disappearing")
}

// genKey is the key of namespace ns's generation counter. It holds no ':'
// (base64url has none), so it is never a key that memo builds, and it does
// not start with hashPrefix.
func genKey(ns string) string {
	sum := sha256.Sum256([]byte(ns))
	return genPrefix + base64.RawURLEncoding.EncodeToString(sum[:])
}

func parseGen(v []byte) (uint64, error) {
	// Memcached may pad a decremented counter with spaces.
	g, err := strconv.ParseUint(strings.TrimSpace(string(v)), 10, 64)
	if err != nil {
		return 0, fmt.Errorf("malformed generation counter %.20q", v)
	}
	return g, nil
}

// legalChars reports whether s holds no spaces or control characters, as
// Memcached's text protocol requires of keys.
func legalChars(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] <= ' ' || s[i] == 0x7f {
			return false
		}
	}
	return true
}

// expiration converts ttl to Memcached's Expiration field at time now:
// whole seconds rounded up, relative up to 30 days, absolute Unix time
// beyond, 0 (no expiry) for a ttl of 0 or one reaching past 2038.
func expiration(ttl time.Duration, now time.Time) int32 {
	if ttl <= 0 {
		return 0
	}
	secs := int64(ttl / time.Second)
	if ttl%time.Second != 0 {
		secs++
	}
	if secs <= maxRelative {
		return int32(secs)
	}
	end := now.Add(ttl)
	abs := end.Unix()
	if end.Nanosecond() != 0 {
		abs++
	}
	if abs > math.MaxInt32 {
		return 0
	}
	return int32(abs)
}

// isTooLarge reports whether err is Memcached's reply to an item over its
// size limit ("SERVER_ERROR object too large for cache"), which gomemcache
// reports only as an unexpected response line.
func isTooLarge(err error) bool {
	return err != nil && strings.Contains(err.Error(), "object too large")
}

func errNoNamespace(op, key string) error {
	return fmt.Errorf("memcachebackend: %s %q: key has no namespace (no ':')", op, key)
}
