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
// # Deadlines
//
// Every method honours its ctx: a ctx that has already ended fails at once,
// without touching Redis, and a ctx deadline bounds the whole call, the
// command on the wire included, so that memo.Timeout (100 ms by default)
// holds even when Redis stalls. go-redis applies ctx deadlines to the socket
// only when the client's options set ContextTimeoutEnabled; without it a
// stalled Redis would cost each call the client's ReadTimeout (5 s by
// default), whatever memo.Timeout says. [New] therefore refuses a
// *redis.Client, *redis.ClusterClient or *redis.Ring (and so every failover
// and universal client, which are one of those) whose options leave
// ContextTimeoutEnabled false, or that disable socket deadlines with a
// ReadTimeout or WriteTimeout of -2. go-redis's retries, backoff sleeps,
// dials and waits for a pooled connection all end with ctx, so no other
// option is needed for the bound. On a Cluster the Backend also spares each
// command go-redis's COMMAND lookup, which a fresh ClusterClient runs under
// its own 5 s timeout, not under ctx.
//
// memo bounds each call with a context whose Done closes at its deadline
// (one timer shared by every call in flight), so go-redis's waits on
// ctx.Done() for a pooled connection and between retries end there too.
// Whenever ctx has ended, the error wraps ctx.Err(), so errors.Is(err,
// context.Canceled) holds; and whenever ctx's deadline has passed, it
// wraps context.DeadlineExceeded, even when the socket's deadline (the
// same instant) fired before ctx's own timer and go-redis reported a plain
// "i/o timeout". Other errors wrap what go-redis returned; memo treats
// them all as cache faults.
//
// # Cluster failover
//
// A *redis.ClusterClient learns that a master has failed and a replica has
// taken its slots only when it reloads its slot map, which go-redis does on
// a MOVED reply and otherwise once a minute (ClusterStateReloadInterval):
// after a failover the dead master's slots would stay uncached for up to a
// minute. So whenever a command fails other than with a reply from Redis (a
// refused or broken connection, a timeout) or with CLUSTERDOWN, the Backend
// asks the client to reload its slot map (ClusterClient.ReloadState, which
// runs in the background, one reload at a time). Keys of the failed master's
// slots are hits again about as soon as the replica is promoted.
//
// # A local tier in front of Redis
//
// [PubSub] carries the invalidations of memo.LocalTier over Redis pub/sub
// (sharded on a Cluster). With [Announce], the Backend publishes each
// invalidation in the same round trip as the write or delete it follows,
// where Redis can keep the message after the write: see Announce and
// docs/local-tier.md.
package redisbackend

import (
	"context"
	"errors"
	"fmt"
	"net"
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
	cluster   *redis.ClusterClient // client, when it is one
	scanCount int64
	maxValue  int
	ps        *PubSub // Announce's; nil: none
}

// Option configures a [Backend]; pass options to [New]. Each constructor
// validates its argument and panics with a "redisbackend: ..." message on a
// programmer error; the zero Option makes New panic.
type Option struct{ apply func(*config) }

type config struct {
	scanCount int
	maxValue  int
	ps        *PubSub
}

// ScanCount sets the COUNT hint of each SCAN that [Backend.Clear] sends, and
// so roughly how many keys one UNLINK removes (default [DefaultScanCount]).
// Larger values mean fewer round trips but longer single commands on the
// server. It panics unless n is positive.
func ScanCount(n int) Option {
	if n <= 0 {
		panic(fmt.Sprintf("redisbackend: ScanCount(%d): count must be positive", n))
	}
	return Option{func(c *config) { c.scanCount = n }}
}

// MaxValueSize sets the largest value, in bytes, that [Backend.Set] stores
// (default [DefaultMaxValueSize]). A larger value is refused, without a round
// trip, with an error wrapping [memo.ErrTooLarge]. Set it to match a server
// whose proto-max-bulk-len is lower than the default, or to keep big values
// out of the cache. It panics unless n is positive.
func MaxValueSize(n int) Option {
	if n <= 0 {
		panic(fmt.Sprintf("redisbackend: MaxValueSize(%d): size must be positive", n))
	}
	return Option{func(c *config) { c.maxValue = n }}
}

// New returns a Backend that stores memo's entries through client: a
// *redis.Client (including a Sentinel failover client), a
// *redis.ClusterClient (including a failover cluster client) or a
// *redis.Ring, as made directly or by redis.NewUniversalClient. New sends
// nothing to Redis and validates everything once, here.
//
// New panics, with a message starting "redisbackend: ", when client is nil,
// when an option is the zero Option, and when client's options would let a
// stalled Redis outlast memo.Timeout: ContextTimeoutEnabled false, or a
// ReadTimeout or WriteTimeout of -2 (no socket deadline at all). Those are
// programming errors, fixed where the client is built:
//
//	redis.NewClient(&redis.Options{Addr: addr, ContextTimeoutEnabled: true})
//
// A client of another type (a user's own [redis.UniversalClient]) is
// accepted as it is; it must honour ctx deadlines itself for memo.Timeout
// to hold.
func New(client redis.UniversalClient, opts ...Option) *Backend {
	if isNil(client) {
		panic("redisbackend: New called with a nil client")
	}
	checkDeadlines(client)
	c := config{scanCount: DefaultScanCount, maxValue: DefaultMaxValueSize}
	for i, o := range opts {
		if o.apply == nil {
			panic(fmt.Sprintf("redisbackend: New: option %d is the zero Option; make options with ScanCount, MaxValueSize or Announce", i))
		}
		o.apply(&c)
	}
	if c.ps != nil && c.ps.client != client {
		panic("redisbackend: New: Announce's PubSub was made on another client; give NewPubSub and New the same client, " +
			"so that an invalidation goes to the server its subscribers listen on")
	}
	b := &Backend{client: client, scanCount: int64(c.scanCount), maxValue: c.maxValue, ps: c.ps}
	if cc, ok := client.(*redis.ClusterClient); ok {
		b.cluster = cc
	}
	return b
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

// checkDeadlines panics when client's options would not let a ctx deadline
// end a command on the wire.
func checkDeadlines(client redis.UniversalClient) {
	var (
		kind              string
		enabled           bool
		readOff, writeOff bool
	)
	switch c := client.(type) {
	case *redis.Client:
		// After go-redis's defaults, -1 is what a ReadTimeout of -2 became.
		o := c.Options()
		kind, enabled, readOff, writeOff = "redis.Options", o.ContextTimeoutEnabled, o.ReadTimeout < 0, o.WriteTimeout < 0
	case *redis.ClusterClient:
		o := c.Options()
		kind, enabled, readOff, writeOff = "redis.ClusterOptions", o.ContextTimeoutEnabled, o.ReadTimeout <= -2, o.WriteTimeout <= -2
	case *redis.Ring:
		o := c.Options()
		kind, enabled, readOff, writeOff = "redis.RingOptions", o.ContextTimeoutEnabled, o.ReadTimeout <= -2, o.WriteTimeout <= -2
	default:
		return
	}
	if !enabled {
		panic(fmt.Sprintf("redisbackend: New: the %T's options leave ContextTimeoutEnabled false, so go-redis "+
			"would ignore memo.Timeout on the socket and a stalled Redis would cost each call the client's "+
			"ReadTimeout (5 s by default); set ContextTimeoutEnabled: true in the %s (or redis.FailoverOptions, "+
			"redis.UniversalOptions) the client is made from", client, kind))
	}
	if readOff || writeOff {
		panic(fmt.Sprintf("redisbackend: New: the %T's options disable socket deadlines (ReadTimeout or "+
			"WriteTimeout -2), so no ctx deadline can end a stalled command; leave them at 0 (the default) "+
			"or set a positive duration, and keep ContextTimeoutEnabled: true", client))
	}
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
	cmd := redis.NewStringCmd(ctx, "get", key)
	_ = b.process(ctx, cmd)
	v, err := cmd.Bytes()
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
	if err := b.checkSet(value, ttl); err != nil {
		return err
	}
	return b.setErr(ctx, b.process(ctx, b.setCmd(ctx, key, value, ttl)))
}

// checkSet returns why a SET of value for ttl must not be sent, if so.
func (b *Backend) checkSet(value []byte, ttl time.Duration) error {
	if len(value) > b.maxValue {
		return fmt.Errorf("redisbackend: set: %d-byte value exceeds the %d-byte limit: %w",
			len(value), b.maxValue, memo.ErrTooLarge)
	}
	if ttl < 0 {
		return fmt.Errorf("redisbackend: set: negative ttl %v", ttl)
	}
	return nil
}

// setCmd returns the SET that stores value under key for ttl (checked by
// checkSet).
func (b *Backend) setCmd(ctx context.Context, key string, value []byte, ttl time.Duration) *redis.StatusCmd {
	if ttl == 0 {
		return redis.NewStatusCmd(ctx, "set", key, value)
	}
	return redis.NewStatusCmd(ctx, "set", key, value, "px", ms(ttl))
}

// setErr returns Set's error for err, the SET's.
func (b *Backend) setErr(ctx context.Context, err error) error {
	if err == nil {
		return nil
	}
	if isTooLarge(err) {
		return fmt.Errorf("redisbackend: set: %w: %w", memo.ErrTooLarge, err)
	}
	return wrap(ctx, "set", err)
}

// process sends cmd, a command on one key, and returns its error.
//
// Its step count is set to 1, the one COMMAND gives for GET, SET and
// UNLINK: otherwise a ClusterClient whose command table is not loaded yet
// runs COMMAND first under its own 5 s timeout, not under ctx, and a
// stalled node would hold the call that long. On a cluster, a failure that
// suggests a dead or moved master triggers a reload of the slot map.
func (b *Backend) process(ctx context.Context, cmd redis.Cmder) error {
	cmd.SetStepCount(1)
	err := b.client.Process(ctx, cmd)
	b.suspect(ctx, err)
	return err
}

// suspect reloads a cluster's slot map when err suggests a dead or moved
// master.
func (b *Backend) suspect(ctx context.Context, err error) {
	if err != nil && err != redis.Nil && b.cluster != nil && topologySuspect(err) {
		b.cluster.ReloadState(ctx) // in the background, coalesced
	}
}

// topologySuspect reports whether err, from a command on a cluster, may mean
// that the client's slot map is out of date: a failure that is no reply from
// Redis (refused or broken connection, timeout, which is how a dead master
// looks until its replica is promoted) or a CLUSTERDOWN reply. A caller
// that cancelled its ctx says nothing about the cluster.
func topologySuspect(err error) bool {
	if errors.Is(err, context.Canceled) {
		return false
	}
	var re redis.Error
	if errors.As(err, &re) {
		return strings.HasPrefix(re.Error(), "CLUSTERDOWN")
	}
	return true
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
	if err := b.process(ctx, b.deleteCmd(ctx, key)); err != nil {
		return wrap(ctx, "delete", err)
	}
	return nil
}

// deleteCmd returns the UNLINK of key and its lease (memo.Lease), in one
// slot: deleting a key voids a lease on it.
func (b *Backend) deleteCmd(ctx context.Context, key string) *redis.IntCmd {
	return redis.NewIntCmd(ctx, "unlink", key, b.leaseKey(key))
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
//
// go-redis sets the socket's deadline to ctx's, so a stalled command
// usually fails with the socket's "i/o timeout" before ctx's own timer has
// ended ctx (memo's contexts end on a shared timer, a little after their
// deadline). Such an error wraps context.DeadlineExceeded too, unless it is
// a reply from Redis: when ctx's deadline has passed, or when err is a
// network timeout and the deadline is at most deadlineSlack away (the
// socket's clock and ctx's may differ by that much).
func wrap(ctx context.Context, op string, err error) error {
	cerr := ctx.Err()
	if cerr == nil && !isReply(err) { // a reply came, however late
		if d, ok := ctx.Deadline(); ok {
			if left := time.Until(d); left <= 0 || (left <= deadlineSlack && isNetTimeout(err)) {
				cerr = context.DeadlineExceeded
			}
		}
	}
	if cerr != nil && !errors.Is(err, cerr) {
		return fmt.Errorf("redisbackend: %s: %w (%w)", op, cerr, err)
	}
	return fmt.Errorf("redisbackend: %s: %w", op, err)
}

// deadlineSlack is how far before ctx's deadline a network timeout still
// counts as ctx's.
const deadlineSlack = time.Millisecond

// isNetTimeout reports whether err is a network timeout, as a socket
// deadline gives.
func isNetTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}
