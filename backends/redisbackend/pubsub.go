package redisbackend

import (
	"context"
	"errors"
	"net"
	"strings"
	"sync"
	"time"

	"github.com/gomemo/memo"
	"github.com/redis/go-redis/v9"
)

// PubSub is a [memo.Invalidator] on Redis pub/sub: it carries the
// invalidations of the [memo.LocalTier]s in front of a shared Redis to
// every process subscribed to the channel. On a *redis.ClusterClient it
// uses sharded pub/sub (SPUBLISH, SSUBSCRIBE: Redis 7), so that a message
// travels within one shard. Each Subscribe holds one connection; a
// LocalTier subscribes once, so a process holds one per LocalTier. When
// that connection breaks (a failover, a killed client, a network fault)
// the subscriber is told it lost messages, and told again when go-redis
// has subscribed anew; the LocalTier flushes itself both times. A silent
// connection is found by a PING every few seconds. PubSub is safe for
// concurrent use.
type PubSub struct {
	client  redis.UniversalClient
	channel string
	sharded bool
	probe   time.Duration // how long a silent subscription waits before a PING
}

var _ memo.Invalidator = (*PubSub)(nil)

// NewPubSub returns an Invalidator publishing on channel through client.
// Every process sharing a backend must use the same channel. It panics if
// client is nil or channel is empty.
func NewPubSub(client redis.UniversalClient, channel string) *PubSub {
	if client == nil {
		panic("redisbackend: NewPubSub(nil, ...)")
	}
	if channel == "" {
		panic("redisbackend: NewPubSub: empty channel")
	}
	_, sharded := client.(*redis.ClusterClient)
	return &PubSub{client: client, channel: channel, sharded: sharded, probe: 3 * time.Second}
}

// Publish sends inv to every subscriber of the channel.
func (p *PubSub) Publish(ctx context.Context, inv memo.Invalidation) error {
	if err := p.client.Process(ctx, p.publishCmd(ctx, encodeInvalidation(inv))); err != nil {
		return wrap(ctx, "publish", err)
	}
	return nil
}

// publishCmd returns the command that publishes msg on the channel:
// SPUBLISH on a Cluster, PUBLISH elsewhere, routed by the channel's name
// (its slot on a Cluster, its shard on a Ring, where Subscribe listens).
func (p *PubSub) publishCmd(ctx context.Context, msg string) *redis.IntCmd {
	name := "publish"
	if p.sharded {
		name = "spublish"
	}
	cmd := redis.NewIntCmd(ctx, name, p.channel, msg)
	cmd.SetFirstKeyPos(1)
	return cmd
}

// encodeInvalidation is the message that carries inv: its fields joined by
// NUL bytes, which no memo key holds. receive decodes it.
func encodeInvalidation(inv memo.Invalidation) string {
	return inv.Origin + "\x00" + inv.Namespace + "\x00" + inv.ID
}

// Subscribe delivers the channel's invalidations to s on a goroutine of
// its own until stop is called (stop waits for it to end). s.Renewed is
// called when the subscription is in place, s.Lost when its connection
// fails or stays silent past a PING (then it subscribes again).
func (p *PubSub) Subscribe(s memo.Subscriber) (stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	sub := &subscription{ps: p.subscribe(ctx)}
	done := make(chan struct{})
	go func() {
		defer close(done)
		p.receive(ctx, sub, s)
	}()
	var once sync.Once
	return func() {
		once.Do(func() {
			cancel()
			sub.close()
			<-done
		})
	}
}

func (p *PubSub) subscribe(ctx context.Context) *redis.PubSub {
	if p.sharded {
		return p.client.SSubscribe(ctx, p.channel)
	}
	return p.client.Subscribe(ctx, p.channel)
}

// subscription is the current *redis.PubSub, replaced when silent.
type subscription struct {
	mu sync.Mutex
	ps *redis.PubSub
}

func (s *subscription) get() *redis.PubSub { s.mu.Lock(); defer s.mu.Unlock(); return s.ps }
func (s *subscription) close()             { s.get().Close() }

// receive is the subscription's loop. A panic of the subscriber is
// recovered: it must not take the process down.
func (p *PubSub) receive(ctx context.Context, sub *subscription, s memo.Subscriber) {
	lost := true // until the first subscription is confirmed
	pinged := false
	for ctx.Err() == nil {
		ps := sub.get()
		msg, err := ps.ReceiveTimeout(ctx, p.probe)
		if ctx.Err() != nil {
			return
		}
		if err != nil {
			var ne net.Error
			timeout := errors.As(err, &ne) && ne.Timeout()
			if timeout && !pinged && ps.Ping(ctx) == nil {
				pinged = true
				continue // silent, and the PING went out: its PONG comes next
			}
			if !lost {
				lost = true
				safeCall(s.Lost)
			}
			if timeout && pinged {
				// No PONG within a probe period: the connection is silent
				// (a dead peer, a half-open connection). go-redis would
				// keep it: subscribe anew on a new connection.
				ps.Close()
				sub.mu.Lock()
				if ctx.Err() == nil {
					sub.ps = p.subscribe(ctx)
				}
				sub.mu.Unlock()
			}
			pinged = false
			select { // go-redis reconnects on the next receive
			case <-ctx.Done():
				return
			case <-time.After(50 * time.Millisecond):
			}
			continue
		}
		pinged = false // anything received, a PONG included: the connection lives
		switch m := msg.(type) {
		case *redis.Subscription:
			if (m.Kind == "subscribe" || m.Kind == "ssubscribe") && lost {
				lost = false
				safeCall(s.Renewed)
			}
		case *redis.Message:
			parts := strings.SplitN(m.Payload, "\x00", 3)
			if len(parts) == 3 {
				inv := memo.Invalidation{Origin: parts[0], Namespace: parts[1], ID: parts[2]}
				safeCall(func() { s.Invalidate(inv) })
			}
		}
	}
}

func safeCall(f func()) {
	defer func() { _ = recover() }()
	f()
}
