package memo_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/gomemo/memo"
	"github.com/gomemo/memo/backends/memory"
)

// channel is an in-process pub/sub channel shared by the Invalidators of
// several "processes" (one endpoint each). Publishing can be cut for one
// endpoint (its route to the channel is down, the subscriptions hold) or
// for all; a subscription can be lost and renewed.
type channel struct {
	mu   sync.Mutex
	subs map[*endpoint]memo.Subscriber
}

var errChannelDown = errors.New("channel down")

type endpoint struct {
	ch   *channel
	mu   sync.Mutex
	down bool // Publish fails
	pubs int  // Publish calls
}

func (c *channel) endpoint() *endpoint { return &endpoint{ch: c} }

func (e *endpoint) setDown(down bool) { e.mu.Lock(); e.down = down; e.mu.Unlock() }

func (e *endpoint) publishes() int { e.mu.Lock(); defer e.mu.Unlock(); return e.pubs }

func (e *endpoint) Publish(ctx context.Context, inv memo.Invalidation) error {
	e.mu.Lock()
	e.pubs++
	down := e.down
	e.mu.Unlock()
	if down {
		return errChannelDown
	}
	e.ch.mu.Lock()
	subs := make([]memo.Subscriber, 0, len(e.ch.subs))
	for _, s := range e.ch.subs {
		subs = append(subs, s)
	}
	e.ch.mu.Unlock()
	for _, s := range subs {
		s.Invalidate(inv)
	}
	return nil
}

func (e *endpoint) Subscribe(s memo.Subscriber) func() {
	e.ch.mu.Lock()
	if e.ch.subs == nil {
		e.ch.subs = map[*endpoint]memo.Subscriber{}
	}
	e.ch.subs[e] = s
	e.ch.mu.Unlock()
	s.Renewed()
	return func() {
		e.ch.mu.Lock()
		delete(e.ch.subs, e)
		e.ch.mu.Unlock()
	}
}

// bounce makes e's subscription lost, then renewed, as a failover of the
// channel's server does.
func (e *endpoint) bounce() {
	e.ch.mu.Lock()
	s := e.ch.subs[e]
	e.ch.mu.Unlock()
	s.Lost()
	s.Renewed()
}

// oneShardStore is a memory backend whose keys live on one shard, as a
// Redis Cluster's keys live on their masters: its data calls have a
// circuit breaker of their own.
type oneShardStore struct{ *memory.Backend }

func (oneShardStore) Shard(context.Context, string) string { return "shard-1" }

// announcing is a store that publishes through ep in the same call as
// each write, as redisbackend.Announce does: a publish that fails after
// the write landed is ErrNotPublished.
type announcing struct {
	oneShardStore
	ep *endpoint
}

func (a announcing) Announces(inv memo.Invalidator) bool { return inv == memo.Invalidator(a.ep) }

func (a announcing) WriteAnnounce(ctx context.Context, w memo.Write, inv memo.Invalidation) (bool, error) {
	var err error
	switch w.Op {
	case memo.OpSet:
		err = a.Set(ctx, w.Key, w.Value, w.TTL)
	case memo.OpDelete:
		err = a.Delete(ctx, w.Key)
	case memo.OpClear:
		err = a.Clear(ctx, w.Key)
	default:
		return false, fmt.Errorf("announcing: op %d not supported", w.Op)
	}
	if err != nil {
		return false, err
	}
	if err := a.ep.Publish(ctx, inv); err != nil {
		return true, fmt.Errorf("%w: %w", memo.ErrNotPublished, err)
	}
	return true, nil
}

// A process's Set (or Forget) whose invalidation could not be published
// must not leave another process's local tier serving the old answer for
// LocalTTL once the channel is back: the invalidation the other process
// missed is owed, and paid when the publisher's subscription is renewed or
// its next publish goes through. And publishing faults are the channel's,
// not the backend's: they must not open the backend's circuit breaker, and
// a breaker that opened on them must not keep invalidations from going out
// after the channel is back (a Redis Cluster failover of the channel's
// master did both: the other process served the old answer for seconds).
func TestInvalidationOwedAfterChannelFault(t *testing.T) {
	setup := func(t *testing.T, announce bool) (*memo.FakeClock, *reviewProc, *reviewProc) {
		var storeA func(oneShardStore, *endpoint) memo.Backend
		if announce {
			storeA = func(s oneShardStore, ep *endpoint) memo.Backend { return announcing{s, ep} }
		}
		return reviewSetup(t, nil, storeA)
	}
	ctx := context.Background()
	wantB := func(t *testing.T, b *reviewProc, want, when string) {
		t.Helper()
		if got, err := b.f.Call(ctx, 1); got != want || err != nil {
			t.Errorf("%s: other process Call(1) = %q, %v, want %q", when, got, err, want)
		}
	}

	for _, announce := range []bool{false, true} {
		name := "publish"
		if announce {
			name = "announce"
		}
		t.Run(name, func(t *testing.T) {
			t.Run("paid-on-renewal", func(t *testing.T) {
				_, a, b := setup(t, announce)
				a.ep.setDown(true)
				if err := a.f.Set(ctx, 1, "v2"); err != nil {
					t.Fatalf("Set = %v, want nil (the write landed; only the publish failed)", err)
				}
				if len(a.errs) != 1 || !errors.Is(a.errs[0], errChannelDown) {
					t.Errorf("OnError got %v, want the publish's fault", a.errs)
				}
				a.ep.setDown(false)
				a.ep.bounce() // the publisher's subscription comes back
				wantB(t, b, "v2", "after the publisher's subscription was renewed")
			})

			t.Run("paid-by-next-publish", func(t *testing.T) {
				_, a, b := setup(t, announce)
				a.ep.setDown(true)
				a.f.Set(ctx, 1, "v2")
				a.ep.setDown(false)
				if err := a.f.Forget(ctx, 7); err != nil { // any key: its publish goes through
					t.Fatal(err)
				}
				wantB(t, b, "v2", "after the publisher's next publish went through")
			})

			t.Run("forget", func(t *testing.T) {
				_, a, b := setup(t, announce)
				a.ep.setDown(true)
				if err := a.f.Forget(ctx, 1); err != nil {
					t.Fatalf("Forget = %v, want nil (the delete landed)", err)
				}
				a.ep.setDown(false)
				a.ep.bounce()
				// The source says v1 still; a read after the Forget reads it again,
				// so the owed invalidation shows in B's Stats: a miss, not a hit.
				before := b.f.Stats().Misses
				wantB(t, b, "v1", "after a Forget")
				if got := b.f.Stats().Misses - before; got != 1 {
					t.Errorf("other process: %d misses for Call(1) after the owed Forget arrived, want 1 (its copy dropped)", got)
				}
			})
		})
	}

	t.Run("breaker", func(t *testing.T) {
		_, a, b := setup(t, false)
		a.ep.setDown(true)
		// More publishing faults than the breaker's threshold.
		for id := 100; id < 100+2*memo.DefaultBreakerThreshold; id++ {
			a.f.Set(ctx, id, "x")
		}
		// The backend is fine: reads and writes still reach it.
		if s := a.f.Stats(); s.BackendSkips != 0 {
			t.Errorf("BackendSkips = %d after publishing faults only, want 0: the channel's faults opened the backend's breaker", s.BackendSkips)
		}
		if err := a.f.Forget(ctx, 99); err != nil {
			t.Errorf("Forget = %v after publishing faults only; the backend answers", err)
		}
		// The channel comes back; no cooldown passes (the clock stands).
		a.ep.setDown(false)
		a.ep.bounce()
		// B reads key 1 again (the owed invalidation dropped its copy).
		wantB(t, b, "v1", "after the channel came back, before the Set")
		pubs := a.ep.publishes()
		if err := a.f.Set(ctx, 1, "v2"); err != nil {
			t.Fatal(err)
		}
		if a.ep.publishes() == pubs {
			t.Errorf("Set after the channel came back published nothing: skipped by an open breaker")
		}
		wantB(t, b, "v2", "after the channel came back")
	})
}

// gated is an endpoint whose next Publish, once armed, blocks until
// released (or its context ends) and then fails: a publish in flight
// while the channel's master fails over.
type gated struct {
	*endpoint
	mu      sync.Mutex
	armed   bool
	entered chan struct{}
	release chan struct{}
	slow    time.Duration // every Publish takes this long (honouring ctx)
}

func (g *gated) arm() {
	g.mu.Lock()
	g.armed, g.entered, g.release = true, make(chan struct{}), make(chan struct{})
	g.mu.Unlock()
}

func (g *gated) Publish(ctx context.Context, inv memo.Invalidation) error {
	g.mu.Lock()
	armed, entered, release, slow := g.armed, g.entered, g.release, g.slow
	g.armed = false
	g.mu.Unlock()
	if armed {
		close(entered)
		select {
		case <-release:
		case <-ctx.Done():
		}
		return errChannelDown
	}
	if slow > 0 {
		select {
		case <-time.After(slow):
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return g.endpoint.Publish(ctx, inv)
}

func (g *gated) Subscribe(s memo.Subscriber) func() { return g.endpoint.Subscribe(s) }

type reviewProc struct {
	ep   *endpoint
	tier *memo.LocalTier
	f    *memo.Func[int, string]
	errs []error
	mu   sync.Mutex
}

// reviewSetup makes two "processes" A and B on one shared store and one
// channel; B holds a local copy of key 1 ("v1"). invA wraps A's endpoint
// when not nil; storeA wraps the shared store for A when not nil.
func reviewSetup(t *testing.T, invA func(*endpoint) memo.Invalidator, storeA func(oneShardStore, *endpoint) memo.Backend, optsA ...memo.Option) (clk *memo.FakeClock, a, b *reviewProc) {
	t.Helper()
	clk = memo.NewFakeClock(time.Now())
	ch := &channel{}
	shared := oneShardStore{memory.New()}
	ns := fmt.Sprintf("review-%s-%d", t.Name(), time.Now().UnixNano())
	fn := func(_ context.Context, id int) (string, error) { return "v1", nil }
	mk := func(isA bool) *reviewProc {
		p := &reviewProc{ep: ch.endpoint()}
		var inv memo.Invalidator = p.ep
		var store memo.Backend = shared
		opts := []memo.Option{memo.Namespace(ns), memo.WithClock(clk), memo.Expire(time.Hour)}
		if isA {
			if invA != nil {
				inv = invA(p.ep)
			}
			if storeA != nil {
				store = storeA(shared, p.ep)
			}
			opts = append(opts, optsA...)
		}
		p.tier = memo.NewLocalTier(1<<20, inv)
		t.Cleanup(p.tier.Close)
		opts = append(opts, memo.WithBackend(store), memo.WithLocalTier(p.tier),
			memo.OnError(func(_ context.Context, err error) { p.mu.Lock(); p.errs = append(p.errs, err); p.mu.Unlock() }))
		p.f = memo.New(fn, opts...)
		return p
	}
	a, b = mk(true), mk(false)
	ctx := context.Background()
	if got, err := b.f.Call(ctx, 1); got != "v1" || err != nil {
		t.Fatalf("B Call(1) = %q, %v", got, err)
	}
	if got, _ := b.f.Lookup(ctx, 1, 0); !got.Cached {
		t.Fatalf("B has no copy of key 1")
	}
	return clk, a, b
}

func wantOther(t *testing.T, b *reviewProc, want, when string) {
	t.Helper()
	if got, err := b.f.Call(context.Background(), 1); got != want || err != nil {
		t.Errorf("%s: other process Call(1) = %q, %v, want %q (stale: the invalidation was lost)", when, got, err, want)
	}
}

// A publish in flight when the subscription is renewed, which fails after
// the renewal (a publish runs for up to Timeout while the channel's master
// fails over), is owed after the renewal paid what was owed then. With no
// further publish of the tier, a retry pays it: one is scheduled (every
// owedRetry, 500 ms), and the test runs it rather than wait.
func TestInvalidationOwedAfterRenewal(t *testing.T) {
	var g *gated
	_, a, b := reviewSetup(t, func(ep *endpoint) memo.Invalidator { g = &gated{endpoint: ep}; return g }, nil)
	ctx := context.Background()
	g.arm()
	done := make(chan error)
	go func() { done <- a.f.Set(ctx, 1, "v2") }()
	<-g.entered   // the Set's write landed; its publish is in flight
	a.ep.bounce() // the channel comes back: A's subscription is renewed (nothing owed yet)
	close(g.release)
	if err := <-done; err != nil {
		t.Fatalf("Set = %v", err)
	}
	if !a.tier.Ready() || !b.tier.Ready() {
		t.Fatalf("tiers not Ready")
	}
	if !memo.OwedRetry(a.tier, true) {
		t.Fatalf("no retry scheduled for the invalidation owed after the renewal")
	}
	wantOther(t, b, "v2", "after A's retry: channel healthy, A renewed, no further publish by A")
	if memo.OwedRetry(a.tier, false) {
		t.Errorf("a retry is still scheduled after the debt was paid")
	}
}

// With an Announcer, a write that lands but whose WriteAnnounce reports a
// plain error (not ErrNotPublished) is owed, since its publish may not
// have gone out (before, nothing was owed). That is what
// redisbackend's sequential path (a Cluster whose key master is not the
// channel's master; OpClear; OpSetFenced on a Cluster) does when the
// write runs past Timeout and lands late: the PUBLISH is then sent on the
// expired context and fails, and WriteAnnounce returns the write's
// timeout. Without Announce the same late write is followed by a publish
// (write() publishes whenever the local tier kept the entry).
type lateAnnouncing struct {
	oneShardStore
	ep *endpoint
}

var errLate = fmt.Errorf("redisbackend: set: %w", context.DeadlineExceeded)

func (a lateAnnouncing) Announces(inv memo.Invalidator) bool { return inv == memo.Invalidator(a.ep) }

func (a lateAnnouncing) WriteAnnounce(ctx context.Context, w memo.Write, inv memo.Invalidation) (bool, error) {
	switch w.Op {
	case memo.OpSet:
		a.Set(context.Background(), w.Key, w.Value, w.TTL) // lands, late
	case memo.OpDelete:
		a.Delete(context.Background(), w.Key)
	default:
		return false, errors.New("unsupported")
	}
	return false, errLate // the PUBLISH on the expired ctx failed too; not ErrNotPublished
}

// lateStore is the same late write without Announce.
type lateStore struct{ oneShardStore }

func (s lateStore) Set(ctx context.Context, key string, v []byte, ttl time.Duration) error {
	s.oneShardStore.Set(context.Background(), key, v, ttl)
	return errLate
}

func TestInvalidationOwedAnnounceUnsureWrite(t *testing.T) {
	ctx := context.Background()
	t.Run("publish", func(t *testing.T) {
		_, a, b := reviewSetup(t, nil, func(s oneShardStore, _ *endpoint) memo.Backend { return lateStore{s} })
		a.f.Set(ctx, 1, "v2")
		wantOther(t, b, "v2", "late write without Announce")
	})
	t.Run("announce", func(t *testing.T) {
		_, a, b := reviewSetup(t, nil, func(s oneShardStore, ep *endpoint) memo.Backend { return lateAnnouncing{s, ep} })
		a.f.Set(ctx, 1, "v2")
		a.ep.bounce() // the renewal pays
		wantOther(t, b, "v2", "late write with Announce, after A's renewal")
	})
}

// A renewal bounds its payments by the longest Timeout of the tier's
// functions, not by whichever loaded last: a function with a short
// Timeout, created after the one that owes, must not make the payment
// fail on a channel that answers in 20 ms (A's Timeout is 100 ms).
func TestInvalidationSettleLongestTimeout(t *testing.T) {
	for _, short := range []bool{false, true} {
		t.Run(fmt.Sprintf("short-timeout-func=%v", short), func(t *testing.T) {
			var g *gated
			_, a, b := reviewSetup(t, func(ep *endpoint) memo.Invalidator { g = &gated{endpoint: ep}; return g }, nil)
			ctx := context.Background()
			a.ep.setDown(true)
			a.f.Set(ctx, 1, "v2") // owed
			a.ep.setDown(false)
			g.mu.Lock()
			g.slow = 20 * time.Millisecond // the channel answers, in 20 ms (A's Timeout is 100 ms)
			g.mu.Unlock()
			if short {
				// Another function on A's tier, latency-sensitive, created later.
				memo.New(func(_ context.Context, id int) (int, error) { return id, nil },
					memo.Namespace("review-other-"+t.Name()), memo.WithBackend(memory.New()),
					memo.WithLocalTier(a.tier), memo.Timeout(5*time.Millisecond))
			}
			a.ep.bounce()
			wantOther(t, b, "v2", "after A's renewal on a working channel")
		})
	}
}

// asyncEP delivers on a goroutine of its own, as redisbackend.PubSub does:
// stop waits for it. renew makes it call Renewed there. Its Publish fails
// at once while fail is set, and while hang is set waits until its
// context ends and records how (a channel that does not answer).
type asyncEP struct {
	renew  chan struct{}
	mu     sync.Mutex
	fail   bool
	hang   bool
	hungIn chan struct{} // closed when a hanging Publish starts
	ended  chan error    // how a hanging Publish's context ended
}

func (e *asyncEP) Publish(ctx context.Context, inv memo.Invalidation) error {
	e.mu.Lock()
	fail, hang, hungIn := e.fail, e.hang, e.hungIn
	e.hang = false
	e.mu.Unlock()
	switch {
	case hang:
		close(hungIn)
		<-ctx.Done()
		e.ended <- ctx.Err()
		return ctx.Err()
	case fail:
		return errChannelDown
	}
	return nil
}

func (e *asyncEP) Subscribe(s memo.Subscriber) func() {
	stop, done := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(done)
		s.Renewed()
		for {
			select {
			case <-stop:
				return
			case <-e.renew:
				s.Lost()
				s.Renewed()
			}
		}
	}()
	var once sync.Once
	return func() { once.Do(func() { close(stop); <-done }) }
}

// LocalTier.Close ends a renewal's payments: it waits for the
// subscription goroutine, which may be in Renewed paying what the tier
// owes to a channel that hangs. The functions' Timeout is an hour, so a
// payment that only Timeout ends would hang the test; it must end by
// Close (context.Canceled), and nothing of the tier outlive Close.
func TestLocalTierCloseEndsSettle(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	ep := &asyncEP{renew: make(chan struct{}), hungIn: make(chan struct{}), ended: make(chan error, 1)}
	tier := memo.NewLocalTier(1<<20, ep)
	store := memory.New()
	ctx := context.Background()
	ep.mu.Lock()
	ep.fail = true
	ep.mu.Unlock()
	for i := range 3 {
		f := memo.New(func(_ context.Context, id int) (int, error) { return id, nil },
			memo.Namespace(fmt.Sprintf("close-settle-%d-%d", i, time.Now().UnixNano())), memo.Timeout(time.Hour),
			memo.WithBackend(store), memo.WithLocalTier(tier), memo.OnError(func(context.Context, error) {}))
		f.Set(ctx, 1, 1) // its publish fails: owed
	}
	ep.mu.Lock()
	ep.fail, ep.hang = false, true
	ep.mu.Unlock()
	ep.renew <- struct{}{}
	<-ep.hungIn // the subscription goroutine is in Renewed, paying
	closed := make(chan struct{})
	go func() { tier.Close(); close(closed) }()
	select {
	case <-closed:
	case <-time.After(10 * time.Second): // a hang detector, not a measure
		t.Fatal("LocalTier.Close did not return: Renewed's payment is not ended by Close")
	}
	if err := <-ep.ended; !errors.Is(err, context.Canceled) {
		t.Errorf("the payment's context ended with %v, want context.Canceled (by Close)", err)
	}
}
