package memo

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"reflect"
	"sync"
	"sync/atomic"
	"time"
)

// Circuit breaker defaults (see [Breaker]).
const (
	DefaultBreakerThreshold = 5
	DefaultBreakerCooldown  = 500 * time.Millisecond
)

// ErrBreakerOpen is wrapped by the error of a remote-tier operation that
// memo skipped because the backend's circuit [Breaker] was open:
// [Func.Forget], [Func.Clear] and [Func.Set] return it in a *[BackendError]
// (the remote tier was not changed). Call and Lookup never see it: a
// skipped read is a miss and a skipped write is not reported.
var ErrBreakerOpen = errors.New("memo: circuit breaker open: backend skipped")

// Breaker tunes the circuit breaker in front of the remote tier, which is
// on by default (threshold [DefaultBreakerThreshold], cooldown
// [DefaultBreakerCooldown]). After threshold consecutive faults of backend
// calls (errors and timeouts; not a caller's own cancellation, nor a value
// too large to store) the breaker opens: calls skip the backend (fn
// answers them, or the local tier in front of it) and cost nothing for it.
// Once cooldown has passed, one call goes through as a probe: its success
// closes the breaker, its fault keeps it open for another cooldown. Every
// function using one backend with the same settings shares one breaker.
// State changes are logged (slog.Default, WARN on open, INFO on close) and
// sent to the [Observer]. Breaker(0, 0) turns it off; a negative threshold,
// or a positive one with a cooldown that is not positive, panics.
//
// A backend whose keys live on several servers that fail apart (a Redis
// Cluster) says so by implementing [Sharded]: each server then has a
// breaker of its own, so that one stalled server does not make calls skip
// the others.
//
// A [LocalTier]'s invalidations go through a breaker of their own, in
// front of its [Invalidator], with the same settings: the channel's faults
// do not make data calls skip the backend. An invalidation it skips is
// owed, as one whose publish failed (see [Invalidator]); the tier's
// renewed subscription, or a retry that pays what it owes, closes it.
// (With an [Announcer] the invalidation travels with the write, behind
// the backend's breaker: a skipped write publishes nothing, and changed
// nothing to invalidate.)
//
// Only calls that reach for the backend probe it: with a [LocalTier] in
// front, an open breaker stays open while every call is answered locally.
// The client's own recovery adds to the cooldown: go-redis, after a port
// refused connections for a while (PoolSize failed dials), dials again only
// once a second, so hits resume up to a second later (go-redis#3062).
func Breaker(threshold int, cooldown time.Duration) Option {
	switch {
	case threshold < 0:
		panic(fmt.Sprintf("memo: Breaker(%d, %v): negative threshold", threshold, cooldown))
	case threshold == 0 && cooldown != 0:
		panic(fmt.Sprintf("memo: Breaker(0, %v): the breaker is off; say Breaker(0, 0)", cooldown))
	case threshold > 0 && cooldown <= 0:
		panic(fmt.Sprintf("memo: Breaker(%d, %v): cooldown must be positive", threshold, cooldown))
	}
	return Option{"Breaker", func(c *config) { c.breakerThreshold, c.breakerCooldown = threshold, cooldown }}
}

// Sharded is implemented by a [Backend] whose keys live on several
// servers that fail apart, such as the masters of a Redis Cluster. Shard
// names the server that calls for key go to (such as its address), or
// returns "" when it cannot tell; it must be cheap (no I/O once the
// backend knows its servers) and safe for concurrent use. memo keeps a
// circuit [Breaker] per shard name; calls without a key (Clear) use the
// backend's own.
type Sharded interface {
	Shard(ctx context.Context, key string) string
}

// breaker is a circuit breaker in front of one backend, or of one shard
// of it (a child of the backend's breaker, made on first use).
//
// Closed (open false), every call goes through; a fault adds to fails, a
// success resets it; fails reaching threshold opens it. Open, calls are
// skipped until cooldown has passed since openedAt; then the first call to
// win probing goes through: its success closes the breaker, its fault sets
// openedAt anew. Any success closes it (a call that started before it
// opened included). The fields are atomics: allow and done take no lock.
// mu guards watchers only.
type breaker struct {
	threshold int64
	cooldown  int64
	clock     clock
	backend   string // the backend's type, for logs and observers
	publish   bool   // in front of an Invalidator's Publish, not a backend

	open     atomic.Bool
	fails    atomic.Int64 // consecutive faults
	openedAt atomic.Int64 // clock.Mono() when it opened or a probe failed
	probing  atomic.Bool  // a probe is under way

	shard  string   // the shard's name; "" for the backend's own
	root   *breaker // the backend's breaker: its watchers; itself for the root
	shards sync.Map // shard name → *breaker, on the root

	mu       sync.Mutex
	watchers map[any]func(BreakerChange) // by function: its observer; on the root
}

// maxShards bounds the shard breakers of a backend: names past it share
// the backend's own breaker.
const maxShards = 1024

type breakerKey struct {
	target    any // a Backend, or an Invalidator when publish is set
	publish   bool
	threshold int
	cooldown  time.Duration
	clock     clock
}

var breakers sync.Map // breakerKey → *breaker

// breakerFor returns the breaker of backend b with these settings, shared
// when b can be a map key; nil when the breaker is off.
func breakerFor(b Backend, threshold int, cooldown time.Duration, c clock) *breaker {
	if b == nil {
		return nil
	}
	return sharedBreaker(breakerKey{b, false, threshold, cooldown, c})
}

// publishBreakerFor returns the breaker in front of inv's Publish with
// these settings: an Invalidator's faults are the channel's, not the
// backend's, and open a breaker of their own.
func publishBreakerFor(inv Invalidator, threshold int, cooldown time.Duration, c clock) *breaker {
	if inv == nil {
		return nil
	}
	return sharedBreaker(breakerKey{inv, true, threshold, cooldown, c})
}

func sharedBreaker(k breakerKey) *breaker {
	if k.threshold <= 0 {
		return nil
	}
	nb := &breaker{threshold: int64(k.threshold), cooldown: int64(k.cooldown), clock: k.clock, backend: fmt.Sprintf("%T", k.target), publish: k.publish}
	nb.root = nb
	if !reflect.TypeOf(k.target).Comparable() || !reflect.TypeOf(k.clock).Comparable() {
		return nb
	}
	got, _ := breakers.LoadOrStore(k, nb)
	return got.(*breaker)
}

// child returns the breaker of the shard named name.
func (b *breaker) child(name string) *breaker {
	if c, ok := b.shards.Load(name); ok {
		return c.(*breaker)
	}
	n := 0
	b.shards.Range(func(any, any) bool { n++; return n < maxShards })
	if n >= maxShards {
		return b
	}
	c := &breaker{threshold: b.threshold, cooldown: b.cooldown, clock: b.clock, backend: b.backend, shard: name, root: b}
	got, _ := b.shards.LoadOrStore(name, c)
	return got.(*breaker)
}

// allow says whether a call may go to the backend, and whether it is the
// probe of an open breaker.
func (b *breaker) allow() (ok, probe bool) {
	if !b.open.Load() {
		return true, false
	}
	if b.clock.Mono()-b.openedAt.Load() < b.cooldown {
		return false, false
	}
	if b.probing.CompareAndSwap(false, true) {
		return true, true
	}
	return false, false
}

// done records a call's outcome: a fault, a success (err nil), or neither.
func (b *breaker) done(probe bool, err error, fault bool) {
	if probe {
		defer b.probing.Store(false)
	}
	if !fault {
		if err == nil {
			if b.fails.Load() != 0 {
				b.fails.Store(0)
			}
			if b.open.Load() && b.open.CompareAndSwap(true, false) {
				b.changed(false, nil)
			}
		}
		return
	}
	n := b.fails.Add(1)
	if probe || b.open.Load() {
		b.openedAt.Store(b.clock.Mono())
		return
	}
	if n >= b.threshold {
		b.openedAt.Store(b.clock.Mono())
		if b.open.CompareAndSwap(false, true) {
			b.changed(true, err)
		}
	}
}

// changed logs a change of state and tells the observers.
func (b *breaker) changed(open bool, err error) {
	ctx := context.Background()
	attrs := []slog.Attr{slog.String("backend", b.backend)}
	if b.publish {
		attrs[0].Key = "invalidator"
	}
	if b.shard != "" {
		attrs = append(attrs, slog.String("shard", b.shard))
	}
	switch {
	case open:
		attrs = append(attrs, slog.Int64("faults", b.threshold), slog.Duration("cooldown", time.Duration(b.cooldown)), slog.Any("err", err))
		msg := "memo: backend circuit breaker opened: calls skip the backend until a probe succeeds"
		if b.publish {
			msg = "memo: invalidation circuit breaker opened: invalidations are held until a probe succeeds or the subscription is renewed"
		}
		slog.Default().LogAttrs(ctx, slog.LevelWarn, msg, attrs...)
	case b.publish:
		slog.Default().LogAttrs(ctx, slog.LevelInfo, "memo: invalidation circuit breaker closed: invalidations are published again", attrs...)
	default:
		slog.Default().LogAttrs(ctx, slog.LevelInfo, "memo: backend circuit breaker closed: the backend answers again", attrs...)
	}
	r := b.root
	r.mu.Lock()
	ws := make([]func(BreakerChange), 0, len(r.watchers))
	for _, w := range r.watchers {
		ws = append(ws, w)
	}
	r.mu.Unlock()
	at := time.Now()
	for _, w := range ws {
		observing(func() { w(BreakerChange{Open: open, Err: err, At: at, Backend: b.backend, Shard: b.shard}) })
	}
}

// watch sends the breaker's changes to a function's observer (nil: none).
func (b *breaker) watch(f any, ns string, o Observer) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if o == nil {
		delete(b.watchers, f)
		return
	}
	if b.watchers == nil {
		b.watchers = make(map[any]func(BreakerChange))
	}
	b.watchers[f] = func(c BreakerChange) {
		c.Namespace = ns
		o.BreakerChange(c)
	}
}

// isFault says whether a backend call's error counts against the backend:
// not a caller's own cancellation, nor a value the store refuses for its
// size.
func isFault(ctx context.Context, err error) bool {
	return err != nil && ctx.Err() == nil && !errors.Is(err, ErrTooLarge)
}
