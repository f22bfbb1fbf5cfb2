package memo_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

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
	type proc struct {
		ep     *endpoint
		tier   *memo.LocalTier
		f      *memo.Func[int, string]
		faults []error
	}
	setup := func(t *testing.T, announce bool) (clk *memo.FakeClock, a, b *proc) {
		clk = memo.NewFakeClock(time.Now())
		ch := &channel{}
		shared := oneShardStore{memory.New()}
		ns := fmt.Sprintf("owed-%s-%d", t.Name(), time.Now().UnixNano())
		var src sync.Map // id → answer: the source of truth fn reads
		mk := func() *proc {
			p := &proc{ep: ch.endpoint()}
			p.tier = memo.NewLocalTier(1<<20, p.ep)
			var store memo.Backend = shared
			if announce {
				store = announcing{shared, p.ep}
			}
			t.Cleanup(p.tier.Close)
			p.f = memo.New(func(_ context.Context, id int) (string, error) {
				v, _ := src.Load(id)
				s, _ := v.(string)
				return s, nil
			}, memo.Namespace(ns), memo.WithBackend(store), memo.WithLocalTier(p.tier), memo.WithClock(clk),
				memo.Expire(time.Hour), memo.OnError(func(_ context.Context, err error) { p.faults = append(p.faults, err) }))
			return p
		}
		a, b = mk(), mk()
		src.Store(1, "v1")
		ctx := context.Background()
		if got, err := b.f.Call(ctx, 1); got != "v1" || err != nil {
			t.Fatalf("Call(1) = %q, %v, want v1", got, err)
		}
		if got, _ := b.f.Lookup(ctx, 1, 0); !got.Cached {
			t.Fatalf("Lookup(1) after Call: not cached; the test needs B's copy")
		}
		return clk, a, b
	}
	ctx := context.Background()
	wantB := func(t *testing.T, b *proc, want, when string) {
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
				if len(a.faults) != 1 || !errors.Is(a.faults[0], errChannelDown) {
					t.Errorf("OnError got %v, want the publish's fault", a.faults)
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
