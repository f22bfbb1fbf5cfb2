// Package redisbackend is a [memo.Backend] on Redis, through
// github.com/redis/go-redis/v9.
//
// It works with every [redis.UniversalClient]: a single server
// (*redis.Client, including a Sentinel failover client), a Redis Cluster
// (*redis.ClusterClient) or a client-side sharded *redis.Ring. Each memo key
// is one Redis string key holding the value's bytes as they are:
//
//   - Get is GET; a missing key is a miss.
//   - Set is SET with PX, the ttl rounded up to a whole millisecond; a ttl of
//     0 stores the key without expiry (Redis may still evict it under its
//     maxmemory policy).
//   - Delete is UNLINK, which frees the value in the background.
//   - Clear walks the keyspace with SCAN (never KEYS) and UNLINKs the keys of
//     the namespace. On a cluster it scans every master and deletes each key
//     on its own slot, so there are no CROSSSLOT errors.
//
// A Backend is safe for concurrent use by multiple goroutines, as is the
// client under it. It does not own the client: closing the client is the
// caller's business, and the Backend must not be used after that.
//
// Every method honours its ctx: a ctx that has already ended fails at once,
// without touching Redis, and Clear checks it again before each SCAN page.
// How promptly a command already on the wire gives up is the client's
// business: go-redis applies ctx deadlines to the socket only when the
// client's options set ContextTimeoutEnabled, and otherwise waits up to its
// ReadTimeout and WriteTimeout (5 s by default in go-redis v9.23). Set
// ContextTimeoutEnabled: true so that memo.Timeout (100 ms by default)
// bounds each call, and a stalled Redis costs callers that long, not 5 s.
// Backend is not [memo.DeadlineBounded]: go-redis waits on ctx.Done() for
// a pooled connection and between retries, so memo arms a real timer. Whenever ctx has ended, the
// error wraps ctx.Err(), so errors.Is(err, context.Canceled) holds. Other
// errors wrap what go-redis returned; memo treats them all as cache faults.
package redisbackend

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/gomemo/memo"
)

var (
	_ memo.Backend = (*Backend)(nil)
	_ memo.Clearer = (*Backend)(nil)
)

// DefaultScanCount is the COUNT hint that [Backend.Clear] gives SCAN unless
// [ScanCount] sets another.
const DefaultScanCount = 1000

// DefaultMaxValueSize is the largest value [Backend.Set] sends unless
// [MaxValueSize] sets another: 512 MiB, Redis's default proto-max-bulk-len
// and the most a Redis string can hold.
const DefaultMaxValueSize = 512 << 20

// Backend is a [memo.Backend] and [memo.Clearer] on a Redis client. Make one
// with [New]; the zero value is not usable.
type Backend struct {
	client    redis.UniversalClient
	scanCount int64
	maxValue  int
}

// Option configures a [Backend]; pass options to [New].
type Option func(*config)

type config struct {
	scanCount int
	maxValue  int
}

// ScanCount sets the COUNT hint of each SCAN that [Backend.Clear] sends, and
// so roughly how many keys one UNLINK removes (default [DefaultScanCount]).
// Larger values mean fewer round trips but longer single commands on the
// server. n must be positive; [New] panics otherwise.
func ScanCount(n int) Option {
	return func(c *config) { c.scanCount = n }
}

// MaxValueSize sets the largest value, in bytes, that [Backend.Set] stores
// (default [DefaultMaxValueSize]). A larger value is refused, without a round
// trip, with an error wrapping [memo.ErrTooLarge]. Set it to match a server
// whose proto-max-bulk-len is lower than the default, or to keep big values
// out of the cache. n must be positive; [New] panics otherwise.
func MaxValueSize(n int) Option {
	return func(c *config) { c.maxValue = n }
}

// New returns a Backend that stores memo's entries through client, which may
// be a *redis.Client, *redis.ClusterClient or *redis.Ring (or a failover
// client). New sends nothing to Redis. It panics when client is nil or an
// option is invalid: those are programming errors.
func New(client redis.UniversalClient, opts ...Option) *Backend {
	if isNil(client) {
		panic("redisbackend: New called with a nil client")
	}
	c := config{scanCount: DefaultScanCount, maxValue: DefaultMaxValueSize}
	for _, o := range opts {
		if o == nil {
			panic("redisbackend: New called with a nil Option")
		}
		o(&c)
	}
	if c.scanCount <= 0 {
		panic(fmt.Sprintf("redisbackend: ScanCount(%d): count must be positive", c.scanCount))
	}
	if c.maxValue <= 0 {
		panic(fmt.Sprintf("redisbackend: MaxValueSize(%d): size must be positive", c.maxValue))
	}
	return &Backend{client: client, scanCount: int64(c.scanCount), maxValue: c.maxValue}
}

func isNil(c redis.UniversalClient) bool {
	switch c := c.(type) {
	case nil:
		return true
	case *redis.Client:
		return c == nil
	case *redis.ClusterClient:
		return c == nil
	case *redis.Ring:
		return c == nil
	}
	return false
}

// Get returns the value stored under key with GET. A missing or expired key
// is (nil, false, nil); an empty value is a hit of length 0. The returned
// slice is the reply's own memory, not a copy (go-redis converts without
// copying), and nothing else refers to it; as [memo.Backend] requires, the
// caller must not modify it.
func (b *Backend) Get(ctx context.Context, key string) ([]byte, bool, error) {
	if err := ctx.Err(); err != nil {
		return nil, false, fmt.Errorf("redisbackend: get: %w", err)
	}
	v, err := b.client.Get(ctx, key).Bytes()
	if err != nil {
		if err == redis.Nil { // go-redis returns the sentinel itself, unwrapped
			return nil, false, nil
		}
		return nil, false, wrap(ctx, "get", err)
	}
	if v == nil {
		v = []byte{} // an empty value is a hit: never return nil with ok
	}
	return v, true, nil
}

// Set stores value under key with SET ... PX, the ttl rounded up to a whole
// millisecond; a ttl of 0 stores it without expiry. A negative ttl is an
// error. A value longer than the [MaxValueSize] (512 MiB by default) is not
// sent and the error wraps [memo.ErrTooLarge], as does Redis's own refusal of
// an oversized string. go-redis writes value to the connection before Set
// returns and keeps no reference to it.
func (b *Backend) Set(ctx context.Context, key string, value []byte, ttl time.Duration) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("redisbackend: set: %w", err)
	}
	if len(value) > b.maxValue {
		return fmt.Errorf("redisbackend: set: %d-byte value exceeds the %d-byte limit: %w",
			len(value), b.maxValue, memo.ErrTooLarge)
	}
	var cmd *redis.StatusCmd
	switch {
	case ttl == 0:
		cmd = redis.NewStatusCmd(ctx, "set", key, value)
	case ttl > 0:
		ms := int64((ttl + time.Millisecond - 1) / time.Millisecond)
		cmd = redis.NewStatusCmd(ctx, "set", key, value, "px", ms)
	default:
		return fmt.Errorf("redisbackend: set: negative ttl %v", ttl)
	}
	_ = b.client.Process(ctx, cmd)
	if err := cmd.Err(); err != nil {
		if isTooLarge(err) {
			return fmt.Errorf("redisbackend: set: %w: %w", memo.ErrTooLarge, err)
		}
		return wrap(ctx, "set", err)
	}
	return nil
}

// isTooLarge reports whether err is Redis refusing a value for its size.
func isTooLarge(err error) bool {
	var re redis.Error
	if !errors.As(err, &re) {
		return false
	}
	msg := re.Error()
	return strings.Contains(msg, "exceeds maximum allowed size") ||
		strings.Contains(msg, "invalid bulk length")
}

// Delete removes key with UNLINK. Deleting a missing key is not an error.
func (b *Backend) Delete(ctx context.Context, key string) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("redisbackend: delete: %w", err)
	}
	if err := b.client.Unlink(ctx, key).Err(); err != nil {
		return wrap(ctx, "delete", err)
	}
	return nil
}

// Clear removes every key ns + ":" + id whose id holds no ':', as
// [memo.Clearer] specifies: keys of other namespaces, including those that
// ns is a prefix of and those nested under it, stay.
//
// It pages through the keyspace with SCAN MATCH (ns with its glob
// metacharacters escaped, then ":*") and COUNT [ScanCount], and UNLINKs the
// matching keys of each page; it never uses KEYS. On a *redis.ClusterClient
// it scans every master concurrently and deletes each key with its own
// UNLINK, pipelined, so that no command spans two slots; on a *redis.Ring it
// scans every shard. Keys written while Clear runs may or may not survive
// it. When ctx ends, Clear stops after the command in flight and returns an
// error wrapping ctx.Err(); the keys already removed stay removed.
func (b *Backend) Clear(ctx context.Context, ns string) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("redisbackend: clear: %w", err)
	}
	pattern := escapeGlob(ns) + ":*"
	var err error
	switch c := b.client.(type) {
	case *redis.ClusterClient:
		err = c.ForEachMaster(ctx, func(ctx context.Context, node *redis.Client) error {
			return b.clearNode(ctx, node, ns, pattern, func(ctx context.Context, keys []string) error {
				// Through the cluster client, so that each UNLINK goes
				// to the node that holds its slot now, even mid-resharding.
				_, err := c.Pipelined(ctx, func(p redis.Pipeliner) error {
					for _, k := range keys {
						p.Unlink(ctx, k)
					}
					return nil
				})
				return err
			})
		})
	case *redis.Ring:
		err = c.ForEachShard(ctx, func(ctx context.Context, shard *redis.Client) error {
			return b.clearNode(ctx, shard, ns, pattern, unlinkOn(shard))
		})
	default:
		err = b.clearNode(ctx, b.client, ns, pattern, unlinkOn(b.client))
	}
	if err != nil {
		return wrap(ctx, "clear", err)
	}
	return nil
}

// unlinkOn returns a delete func that removes a page of keys with one UNLINK
// on c, for servers where the keys need not share a slot.
func unlinkOn(c redis.Cmdable) func(context.Context, []string) error {
	return func(ctx context.Context, keys []string) error {
		return c.Unlink(ctx, keys...).Err()
	}
}

// clearNode SCANs one server for pattern and hands the keys of namespace ns,
// a page at a time, to del.
func (b *Backend) clearNode(ctx context.Context, node redis.Cmdable, ns, pattern string,
	del func(context.Context, []string) error) error {
	var cursor uint64
	var batch []string
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		keys, next, err := node.Scan(ctx, cursor, pattern, b.scanCount).Result()
		if err != nil {
			return err
		}
		batch = batch[:0]
		for _, k := range keys {
			// The glob's '*' also matches ':', so nested namespaces
			// ("ns:sub:id") come back too: keep only direct ids.
			if len(k) > len(ns) && !strings.Contains(k[len(ns)+1:], ":") {
				batch = append(batch, k)
			}
		}
		if len(batch) > 0 {
			if err := del(ctx, batch); err != nil {
				return err
			}
		}
		if next == 0 {
			return nil
		}
		cursor = next
	}
}

// escapeGlob escapes the characters that Redis's glob matcher (SCAN MATCH)
// treats specially, so that s matches only itself.
func escapeGlob(s string) string {
	if !strings.ContainsAny(s, `*?[]\`) {
		return s
	}
	var sb strings.Builder
	sb.Grow(len(s) + 8)
	for i := 0; i < len(s); i++ {
		switch c := s[i]; c {
		case '*', '?', '[', ']', '\\':
			sb.WriteByte('\\')
			sb.WriteByte(c)
		default:
			sb.WriteByte(c)
		}
	}
	return sb.String()
}

// wrap annotates err from operation op, making sure that an error caused by
// ctx ending wraps ctx.Err() even when go-redis reported it as an I/O error.
func wrap(ctx context.Context, op string, err error) error {
	if cerr := ctx.Err(); cerr != nil && !errors.Is(err, cerr) {
		return fmt.Errorf("redisbackend: %s: %w (%w)", op, cerr, err)
	}
	return fmt.Errorf("redisbackend: %s: %w", op, err)
}
