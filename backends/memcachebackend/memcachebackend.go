// Package memcachebackend is a [memo.Backend] on Memcached, through
// github.com/bradfitz/gomemcache.
//
//	client := memcache.New("10.0.0.1:11211", "10.0.0.2:11211")
//	client.MaxIdleConns = 64 // about the number of concurrent callers
//	b := memcachebackend.New(client)
//
// # Clear and generations
//
// Memcached cannot list keys, so [Backend.Clear] works with a generation
// counter per namespace, stored in Memcached itself under a reserved key
// that holds no ':' (memo's keys always do, so the two never collide; the
// namespace is hashed with SHA-256 to keep the key short). Every value is
// stored behind a 9-byte header that records the generation current when it
// was written. [Backend.Get] fetches the value and the generation in a
// single GetMulti request (one round trip per server involved) and treats a
// value of another generation as a miss. Clear increments the generation
// with one "incr", so old entries become unreachable at once for every
// process sharing the servers, and Memcached drops them later by expiry or
// LRU. [Backend.Set] reads the generation first (a second round trip, not
// cached, so that a Clear by another process is never undone) and then
// writes the value.
//
// A missing generation counter (never created, evicted, or its server
// restarted) makes every value of the namespace a miss. The next Set creates
// a new counter at a random 62-bit starting point, so the entries written
// under the lost counter stay unreachable (a collision has probability about
// 2⁻⁶²). The counter key has no expiry and is read on every Get, which keeps
// it at the head of Memcached's LRU.
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
// [MaxItemSize]) and maps the server's "object too large" reply to the same
// error; both wrap [memo.ErrTooLarge] and the value is simply not cached.
// Keys must be legal Memcached keys (at most 250 bytes, no spaces or control
// characters), which memo's keys always are, and must contain a ':'.
//
// # Contexts and timeouts
//
// gomemcache has no context support. Every method returns an error wrapping
// ctx.Err() when ctx has already ended before a round trip starts, but a
// request in flight is bounded only by the client's Timeout (500ms by
// default), not by ctx's deadline.
//
// # Several servers
//
// Keys are spread over the client's servers by its [memcache.ServerSelector]
// (by default a hash over [memcache.ServerList]). A value and its
// namespace's generation may live on different servers: GetMulti then asks
// both in parallel. Losing the server that holds a generation counter makes
// the namespace's values misses, as described above; it never resurrects
// cleared ones.
package memcachebackend

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"strconv"
	"strings"
	"time"

	"github.com/bradfitz/gomemcache/memcache"

	"github.com/gomemo/memo"
)

// DefaultMaxItemSize is the item size limit that [New] assumes unless told
// otherwise with [MaxItemSize]: Memcached's default (-I 1m).
const DefaultMaxItemSize = 1 << 20

const (
	// itemOverhead is what Memcached adds to the key and the value when it
	// checks an item against its size limit (measured 59 bytes on
	// memcached 1.6 with 64-bit CAS ids; rounded up).
	itemOverhead = 64

	// The header is the prefix of every stored value: a format byte then the
	// namespace generation, big-endian.
	headerLen   = 9
	headerMagic = 0xd7

	// maxRelative is the longest expiry Memcached reads as relative seconds.
	maxRelative = 30 * 24 * 60 * 60

	genPrefix = "memo.gen."
)

// Backend is a [memo.Backend] and [memo.Clearer] on Memcached. It is safe for
// concurrent use by multiple goroutines, as is the [memcache.Client] under
// it. Create it with [New].
type Backend struct {
	client  *memcache.Client
	maxItem int
}

var (
	_ memo.Backend = (*Backend)(nil)
	_ memo.Clearer = (*Backend)(nil)
)

// Option configures a [Backend] in [New].
type Option func(*Backend)

// MaxItemSize tells the backend the server's item size limit in bytes
// (Memcached's -I option; [DefaultMaxItemSize] when not given). Set refuses,
// without a round trip, a value whose item would exceed it: key, a 9-byte
// header, the value and Memcached's per-item overhead. When servers with
// different limits share a client, give the smallest. A non-positive n
// leaves the default.
func MaxItemSize(n int) Option {
	return func(b *Backend) {
		if n > 0 {
			b.maxItem = n
		}
	}
}

// New returns a backend that stores through client. The caller keeps
// ownership of client (its Timeout, MaxIdleConns and Close); since Get and
// Set may each use a connection per server involved, set MaxIdleConns to
// about the number of concurrent callers, or connections are redialled.
func New(client *memcache.Client, opts ...Option) *Backend {
	b := &Backend{client: client, maxItem: DefaultMaxItemSize}
	for _, o := range opts {
		o(b)
	}
	return b
}

// Get returns the value stored under key, or a miss when there is none, when
// it has expired, or when it was written before the last [Backend.Clear] of
// its namespace. It costs one GetMulti request for the value and the
// namespace's generation. The returned slice is the caller's to read.
// Errors: ctx already ended (wrapping ctx.Err()), a key without ':',
// network failures and timeouts, a malformed stored value.
func (b *Backend) Get(ctx context.Context, key string) ([]byte, bool, error) {
	if err := ctx.Err(); err != nil {
		return nil, false, fmt.Errorf("memcachebackend: get %q: %w", key, err)
	}
	ns, _, ok := memo.SplitKey(key)
	if !ok {
		return nil, false, errNoNamespace("get", key)
	}
	gk := genKey(ns)
	items, err := b.client.GetMulti([]string{key, gk})
	if err != nil {
		return nil, false, fmt.Errorf("memcachebackend: get %q: %w", key, err)
	}
	it, g := items[key], items[gk]
	if it == nil || g == nil {
		// Without a generation no value of the namespace is current.
		return nil, false, nil
	}
	gen, err := parseGen(g.Value)
	if err != nil {
		return nil, false, fmt.Errorf("memcachebackend: get %q: generation of %q: %w", key, ns, err)
	}
	if len(it.Value) < headerLen || it.Value[0] != headerMagic {
		return nil, false, fmt.Errorf("memcachebackend: get %q: malformed stored value (%d bytes, no memo header)", key, len(it.Value))
	}
	if binary.BigEndian.Uint64(it.Value[1:headerLen]) != gen {
		return nil, false, nil // written before a Clear
	}
	return it.Value[headerLen:], true, nil
}

// Set stores value under key for ttl (0: no expiry), tagged with the
// namespace's current generation, creating the generation if it is missing.
// It costs two round trips: one to read the generation, one to store. The
// ttl is rounded up to whole seconds (see the package documentation). A
// value too large for the server is not stored and returns an error
// wrapping [memo.ErrTooLarge]; when the server (not the local check) refuses
// it, Memcached also drops any previous value under key. Other errors: ctx
// already ended (wrapping ctx.Err()), a negative ttl, a key without ':',
// network failures and timeouts. Set does not retain value.
func (b *Backend) Set(ctx context.Context, key string, value []byte, ttl time.Duration) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("memcachebackend: set %q: %w", key, err)
	}
	if ttl < 0 {
		return fmt.Errorf("memcachebackend: set %q: negative ttl %v", key, ttl)
	}
	ns, _, ok := memo.SplitKey(key)
	if !ok {
		return errNoNamespace("set", key)
	}
	if size := len(key) + headerLen + len(value) + itemOverhead; size > b.maxItem {
		return fmt.Errorf("memcachebackend: set %q: %d-byte value makes a %d-byte item, over the %d-byte limit: %w",
			key, len(value), size, b.maxItem, memo.ErrTooLarge)
	}
	gen, err := b.generation(ns)
	if err != nil {
		return fmt.Errorf("memcachebackend: set %q: generation of %q: %w", key, ns, err)
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("memcachebackend: set %q: %w", key, err)
	}
	buf := make([]byte, headerLen+len(value))
	buf[0] = headerMagic
	binary.BigEndian.PutUint64(buf[1:headerLen], gen)
	copy(buf[headerLen:], value)
	err = b.client.Set(&memcache.Item{Key: key, Value: buf, Expiration: expiration(ttl, time.Now())})
	if err != nil {
		if isTooLarge(err) {
			return fmt.Errorf("memcachebackend: set %q: %d-byte value: %w (%w)", key, len(value), memo.ErrTooLarge, err)
		}
		return fmt.Errorf("memcachebackend: set %q: %w", key, err)
	}
	return nil
}

// Delete removes key in one round trip; a missing key is not an error.
// Errors: ctx already ended (wrapping ctx.Err()), network failures and
// timeouts, an illegal Memcached key.
func (b *Backend) Delete(ctx context.Context, key string) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("memcachebackend: delete %q: %w", key, err)
	}
	if err := b.client.Delete(key); err != nil && !errors.Is(err, memcache.ErrCacheMiss) {
		return fmt.Errorf("memcachebackend: delete %q: %w", key, err)
	}
	return nil
}

// Clear makes every value of namespace ns unreachable at once, for every
// process using the same servers, by incrementing the namespace's generation
// (one round trip). Nothing is deleted: the old values expire or are
// evicted later. A namespace without a generation counter holds no
// reachable value, so Clear then does nothing. Namespaces that ns is a
// prefix of, or that nest under it ("ns:sub"), have their own counters and
// are untouched. Values written concurrently with Clear may or may not
// survive it. Errors: ctx already ended (wrapping ctx.Err()), network
// failures and timeouts.
func (b *Backend) Clear(ctx context.Context, ns string) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("memcachebackend: clear %q: %w", ns, err)
	}
	if _, err := b.client.Increment(genKey(ns), 1); err != nil && !errors.Is(err, memcache.ErrCacheMiss) {
		return fmt.Errorf("memcachebackend: clear %q: %w", ns, err)
	}
	return nil
}

// generation returns the current generation of namespace ns, creating the
// counter at a random value when it is missing.
func (b *Backend) generation(ns string) (uint64, error) {
	gk := genKey(ns)
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
// (base64url has none), so it is never a key that memo builds.
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
