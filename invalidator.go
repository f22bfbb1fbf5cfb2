package memo

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"hash/maphash"
	"sync"
	"sync/atomic"
	"time"
)

// An Invalidation names answers that a process dropped or overwrote in a
// shared backend, so that other processes drop their local copies: the
// entry of one id of a namespace key ([Func.Namespace]), or every entry
// of the namespace key when ID is "".
type Invalidation struct {
	Origin    string // the LocalTier that published it, which ignores its own
	Namespace string // a namespace key: prefix:namespace
	ID        string // the id part of a key; "": the whole namespace
}

// Invalidator carries invalidations between the processes sharing a
// backend, for the [LocalTier]s in front of it (redisbackend.PubSub is
// one, on Redis pub/sub). Implementations must be safe for concurrent
// use.
type Invalidator interface {
	// Publish sends inv to every subscriber, the publisher's own included.
	// memo bounds it by the function's Timeout, behind a circuit breaker
	// of the Invalidator's own (see [Breaker]). An error is reported to
	// OnError and the invalidation is owed: the LocalTier publishes it
	// again, for the whole namespace, once one of its publishes goes
	// through, when its subscription is renewed, and otherwise by a retry
	// every 500 ms while its subscription holds. Until then the other
	// processes' copies live, at most LocalTTL.
	Publish(ctx context.Context, inv Invalidation) error
	// Subscribe delivers every invalidation published from now on to s,
	// on one goroutine, in the order received, until the returned stop
	// function is called. It calls s.Lost when delivery may have missed
	// messages (the connection broke) and s.Renewed once it is sure to
	// miss none again (subscribed anew); it must call s.Renewed once at
	// the start, when the first subscription is in place.
	Subscribe(s Subscriber) (stop func())
}

// Subscriber receives what an [Invalidator] delivers. A [LocalTier] is one.
// Renewed may call the Invalidator's Publish (a LocalTier publishes there
// the invalidations it owes, before it is used again) and waits for it:
// for at most the longest Timeout of the tier's functions, or until
// LocalTier.Close. An Invalidator must not hold a lock that Publish needs
// while it calls Renewed.
type Subscriber interface {
	Invalidate(inv Invalidation)
	Lost()
	Renewed()
}

// LocalTier is a bounded tier of decoded answers in the process, placed in
// front of the backend of every function given it with [WithLocalTier]. A
// hit on it costs no round trip. With an [Invalidator], every write,
// Forget, Clear and Set of those functions is published, and a copy that
// another process invalidated is dropped when the message arrives; the
// writer's own tier is updated at once (read-your-writes). Until the
// Invalidator has subscribed, and whenever its subscription is lost, the
// tier is flushed and bypassed (calls read the backend), so that it never
// serves a copy that missed an invalidation. Whatever happens, no local
// copy outlives [LocalTTL]: the backstop against a message that never
// came. Without an Invalidator (a single process) only LocalTTL bounds
// what another process's write leaves stale. A LocalTier is safe for
// concurrent use; functions sharing it keep their entries apart by
// namespace.
type LocalTier struct {
	t *localTier
}

// NewLocalTier returns a LocalTier bounded to maxBytes (its entries'
// envelopes, decoded copies and bookkeeping), subscribed to inv when inv
// is not nil. It panics if maxBytes is not positive. The subscription
// lives as long as the process; Close ends it.
func NewLocalTier(maxBytes int64, inv Invalidator) *LocalTier {
	if maxBytes <= 0 {
		panic(fmt.Sprintf("memo: NewLocalTier(%d, ...): maxBytes must be positive", maxBytes))
	}
	t := newLocalTier(maxBytes)
	if inv != nil {
		var id [8]byte
		rand.Read(id[:])
		t.id = hex.EncodeToString(id[:])
		t.inv = inv
		t.owed.start()
		t.bypass.Store(true) // until the first subscription is in place
		t.stop = inv.Subscribe(t)
	}
	return &LocalTier{t: t}
}

// Close ends the tier's subscription, if any, and flushes and bypasses it
// from then on.
func (l *LocalTier) Close() {
	l.t.owed.close()
	if l.t.stop != nil {
		l.t.stop()
	}
	l.t.owed.wait()
	l.t.Lost()
}

// Ready reports whether the tier is in use: always without an
// Invalidator; with one, while its subscription holds (false before the
// first subscription is in place and after one is lost, until renewed).
func (l *LocalTier) Ready() bool { return !l.t.bypass.Load() }

// Bytes returns the bytes the tier counts against its bound.
func (l *LocalTier) Bytes() int64 { return l.t.s.Bytes() }

// WithLocalTier places t in front of the function's backend (and, without
// a backend, makes t the function's only tier instead of the one shared
// by the process). It panics if t is nil.
func WithLocalTier(t *LocalTier) Option {
	if t == nil {
		panic("memo: WithLocalTier(nil)")
	}
	return Option{"WithLocalTier", func(c *config) { c.local = t.t }}
}

// DefaultLocalTTL bounds a local copy of a backend's entry unless
// [LocalTTL] says otherwise.
const DefaultLocalTTL = time.Minute

// LocalTTL bounds how long a [LocalTier] keeps a copy of an entry of the
// function's backend (default [DefaultLocalTTL]): then it reads the
// backend again, however long the entry stays fresh. It bounds what a lost
// invalidation can leave stale. It does not apply to a function without a
// backend. d must be positive.
func LocalTTL(d time.Duration) Option {
	mustPositive("LocalTTL", d)
	return Option{"LocalTTL", func(c *config) { c.localTTL = d }}
}

// Subscriber methods of the local tier: a copy invalidated elsewhere is
// dropped, and a lost subscription flushes and bypasses the tier.

// Invalidate drops the copies inv names, unless this tier published it.
func (t *localTier) Invalidate(inv Invalidation) {
	if inv.Origin == t.id {
		return
	}
	ns := localName(inv.Namespace)
	if inv.ID == "" {
		t.bumpAll()
		t.s.Clear(ns)
		return
	}
	key := ns + ":" + inv.ID
	t.bump(key)
	t.s.Delete(key)
}

// Lost flushes and bypasses the tier: messages may be missed from now on.
func (t *localTier) Lost() {
	t.bypass.Store(true)
	t.bumpAll()
	t.s.ClearAll()
}

// Renewed flushes the tier (messages were missed meanwhile) and uses it
// again. The channel answers again: before the tier is used, it pays what
// it owes (see owed), and the breakers in front of its publishing close.
func (t *localTier) Renewed() {
	t.bumpAll()
	t.s.ClearAll()
	if t.inv != nil && !t.owed.settle(t) {
		t.owed.schedule(t, owedRetry)
	}
	t.bypass.Store(false)
}

// owedRetry is how often a tier whose subscription holds tries again to
// pay what it owes, when no publish of its own pays it first.
const owedRetry = DefaultBreakerCooldown

// owed is what a tier owes the other processes: the namespaces of the
// invalidations it could not publish (Publish failed, or a breaker skipped
// it, or a write under an Announcer failed in a way that may have landed),
// each to be published again as one for the whole namespace, so that no
// other process keeps a copy of an answer this one overwrote or dropped
// for longer than the channel's fault. A namespace-wide invalidation sent
// after the missed one's write landed drops whatever it would have
// dropped. It is paid by the tier's next publish that goes through (pay,
// on the caller's goroutine), when its subscription is renewed (settle,
// before the tier is used again), and otherwise by a retry every
// owedRetry while the subscription holds (settle, on a timer's
// goroutine), so that a debt made after a renewal is not left to LocalTTL.
//
// mu guards ns, breakers, timer and closed; owing is set while ns is not
// empty, so that a publish that went through checks a flag, not a lock.
// breakers are the circuit breakers in front of the tier's publishing
// (registered by state.load); timeout, the longest Timeout of the
// functions on the tier, bounds settle's publishes; ctx, ended by
// LocalTier.Close, too. wg counts the retry timer's runs, which Close
// waits for.
type owed struct {
	owing   atomic.Bool
	timeout atomic.Int64 // ns
	ctx     context.Context
	cancel  context.CancelFunc
	wg      sync.WaitGroup

	mu       sync.Mutex
	ns       map[string]struct{}
	breakers map[*breaker]struct{}
	timer    *time.Timer // a retry scheduled; nil: none
	closed   bool
}

// start readies o for a tier with an Invalidator.
func (o *owed) start() { o.ctx, o.cancel = context.WithCancel(context.Background()) }

// owe records that inv could not be published, and has t retry.
func (o *owed) owe(t *localTier, inv Invalidation) {
	o.add(inv.Namespace)
	o.schedule(t, owedRetry)
}

func (o *owed) add(ns string) {
	o.mu.Lock()
	if o.ns == nil {
		o.ns = make(map[string]struct{})
	}
	o.ns[ns] = struct{}{}
	o.owing.Store(true)
	o.mu.Unlock()
}

// register adds a breaker in front of the tier's publishing, and a
// function's Timeout, for settle.
func (o *owed) register(b *breaker, timeout time.Duration) {
	for {
		old := o.timeout.Load()
		if int64(timeout) <= old || o.timeout.CompareAndSwap(old, int64(timeout)) {
			break
		}
	}
	if b == nil {
		return
	}
	o.mu.Lock()
	if o.breakers == nil {
		o.breakers = make(map[*breaker]struct{})
	}
	o.breakers[b] = struct{}{}
	o.mu.Unlock()
}

// pay publishes, through publish, a namespace-wide invalidation for each
// namespace owed, from origin, until one fails: that one and those not
// tried are owed again. It reports whether nothing is owed any more.
func (o *owed) pay(origin string, publish func(Invalidation) error) bool {
	if !o.owing.Load() {
		return true
	}
	o.mu.Lock()
	ns := o.ns
	o.ns = nil
	o.owing.Store(false)
	o.mu.Unlock()
	var failed bool
	for n := range ns {
		if !failed && publish(Invalidation{Origin: origin, Namespace: n}) == nil {
			continue
		}
		failed = true
		o.add(n)
	}
	return !failed
}

// settle pays what t owes straight through the Invalidator (no breaker is
// asked: it runs when the channel is known or presumed to answer), each
// publish bounded by the longest Timeout of t's functions and by Close.
// Once nothing is owed it closes the breakers in front of t's publishing,
// so that the next invalidation goes out rather than wait for a probe. It
// reports whether nothing is owed.
func (o *owed) settle(t *localTier) bool {
	d := time.Duration(o.timeout.Load())
	if d <= 0 {
		d = DefaultTimeout
	}
	paid := o.pay(t.id, func(inv Invalidation) error {
		ctx, cancel := context.WithTimeout(o.ctx, d)
		defer cancel()
		return safely(func() error { return t.inv.Publish(ctx, inv) })
	})
	if !paid {
		return false
	}
	o.mu.Lock()
	bs := make([]*breaker, 0, len(o.breakers))
	for b := range o.breakers {
		bs = append(bs, b)
	}
	o.mu.Unlock()
	for _, b := range bs {
		b.done(false, nil, false)
	}
	return true
}

// schedule has t try to pay after d, unless a try is already scheduled
// or the tier is closed. A try while the subscription is lost does
// nothing: the renewal pays.
func (o *owed) schedule(t *localTier, d time.Duration) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.closed || o.timer != nil || o.ctx == nil {
		return
	}
	o.wg.Add(1)
	o.timer = time.AfterFunc(d, func() {
		defer o.wg.Done()
		o.mu.Lock()
		o.timer = nil
		o.mu.Unlock()
		if t.bypass.Load() || !o.owing.Load() {
			return
		}
		if !o.settle(t) {
			o.schedule(t, owedRetry)
		}
	})
}

// close ends o's retries and cancels settle's publishes; wait then waits
// for a retry under way.
func (o *owed) close() {
	o.mu.Lock()
	o.closed = true
	if o.timer != nil && o.timer.Stop() {
		o.wg.Done()
	}
	o.timer = nil
	o.mu.Unlock()
	if o.cancel != nil {
		o.cancel()
	}
}

func (o *owed) wait() { o.wg.Wait() }

// The tier counts invalidations per bucket of keys, so that a copy read
// from the backend before an invalidation arrived is not kept after it:
// a fill is made only if its key's count did not move since the read.
const seqBuckets = 64

var seqSeed = maphash.MakeSeed()

func (t *localTier) seqOf(key string) *atomic.Uint64 {
	return &t.seqs[maphash.String(seqSeed, key)%seqBuckets]
}

// seq returns key's invalidation count, to pass to a later fill.
func (t *localTier) seq(key string) uint64 { return t.seqOf(key).Load() }

// seqBytes is seq for a key held in bytes (the same bucket).
func (t *localTier) seqBytes(key []byte) uint64 {
	return t.seqs[maphash.Bytes(seqSeed, key)%seqBuckets].Load()
}

func (t *localTier) bump(key string) { t.seqOf(key).Add(1) }

func (t *localTier) bumpAll() {
	for i := range t.seqs {
		t.seqs[i].Add(1)
	}
}

// An Announcer is a [Backend] that can publish an [Invalidation] in the
// same round trip as the write or delete it follows, rather than memo
// calling [Invalidator.Publish] after it: one round trip where there were
// two, and no window in which the write has landed and the message not
// left. redisbackend.Backend is one, given the PubSub it shares a client
// with (redisbackend.Announce).
type Announcer interface {
	// Announces reports whether the backend publishes through inv itself.
	// memo asks once per configuration, for the Invalidator of the
	// function's LocalTier, and uses WriteAnnounce only when it says so.
	Announces(inv Invalidator) bool
	// WriteAnnounce does w as the backend's method for w.Op would (Set,
	// Leaser.SetFenced, Delete, Clearer.Clear) and publishes inv as
	// inv's Invalidator would, in one round trip where it can. stored
	// reports whether the write landed (for OpSetFenced, SetFenced's
	// result; inv is then published only when it stored); for the other
	// ops inv is published whether or not the write succeeded where that
	// costs no extra round trip. When the write landed and only the
	// publish failed, err wraps [ErrNotPublished]: memo then counts the
	// write as done and reports the publish's failure, as it does for
	// Invalidator.Publish.
	WriteAnnounce(ctx context.Context, w Write, inv Invalidation) (stored bool, err error)
}

// ErrNotPublished is wrapped by the error of [Announcer.WriteAnnounce]
// when its write landed and only its publish failed: memo reports it and
// owes the invalidation, as when [Invalidator.Publish] fails.
var ErrNotPublished = errors.New("memo: written, but the invalidation was not published")

// Write is a write or delete memo asks an [Announcer] for.
type Write struct {
	Op    WriteOp
	Key   string        // the key; for OpClear, the namespace key
	Value []byte        // OpSet, OpSetFenced: the bytes to store
	TTL   time.Duration // OpSet, OpSetFenced: as Backend.Set's ttl
	Token string        // OpSetFenced: the lease token
}

// WriteOp is the kind of a [Write].
type WriteOp uint8

// The kinds of [Write].
const (
	OpSet       WriteOp = iota + 1 // Backend.Set
	OpSetFenced                    // Leaser.SetFenced
	OpDelete                       // Backend.Delete
	OpClear                        // Clearer.Clear
)
