package redisbackend_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/gomemo/memo"
	"github.com/gomemo/memo/backends/redisbackend"
	"github.com/gomemo/memo/internal/deadline"
	"github.com/gomemo/memo/internal/faultproxy"
	"github.com/gomemo/memo/internal/testenv"
)

// A call to a stalled Redis that runs out of its ctx's deadline fails with
// an error wrapping context.DeadlineExceeded, every time. go-redis sets
// the socket's deadline to ctx's, and the socket's "i/o timeout" often
// comes before ctx's own timer has ended ctx: wrap used to add ctx.Err()
// only when ctx had already ended, and the error then said nothing of the
// deadline (5 of 8 runs of one call).
func TestStalledCallWrapsDeadline(t *testing.T) {
	announceNoLeaks(t)
	upstream := testenv.Require(t, "MEMO_REDIS_ADDR")
	p := faultproxy.New(t, upstream)
	c := redis.NewClient(&redis.Options{Addr: p.Addr(), ContextTimeoutEnabled: true, MaxRetries: -1})
	t.Cleanup(func() { c.Close() })
	ps := redisbackend.NewPubSub(c, testenv.NS(t, "inv"))
	b := redisbackend.New(c, redisbackend.Announce(ps))
	key := testenv.NS(t, "stall") + ":k"
	ctx := context.Background()
	if err := b.Set(ctx, key, []byte("v"), time.Minute); err != nil { // a pooled connection, scripts loaded
		t.Fatal(err)
	}
	tok, ok, err := b.Acquire(ctx, key, time.Minute)
	if err != nil || !ok {
		t.Fatalf("Acquire = %v, %v", ok, err)
	}
	if _, err := b.SetFenced(ctx, key, []byte("v"), time.Minute, tok); err != nil {
		t.Fatal(err)
	}
	p.Set(faultproxy.Stall)
	t.Cleanup(func() { p.Set(faultproxy.Forward) })

	inv := memo.Invalidation{Origin: "o", Namespace: "ns", ID: "id"}
	calls := []struct {
		name string
		call func(ctx context.Context) error
	}{
		{"Get", func(ctx context.Context) error { _, _, err := b.Get(ctx, key); return err }},
		{"Set", func(ctx context.Context) error { return b.Set(ctx, key, []byte("v"), time.Minute) }},
		{"Delete", func(ctx context.Context) error { return b.Delete(ctx, key) }},
		{"SetFenced", func(ctx context.Context) error {
			_, err := b.SetFenced(ctx, key, []byte("v"), time.Minute, "t")
			return err
		}},
		{"Acquire", func(ctx context.Context) error { _, _, err := b.Acquire(ctx, key, time.Second); return err }},
		{"WriteAnnounce(OpSet)", func(ctx context.Context) error {
			_, err := b.WriteAnnounce(ctx, memo.Write{Op: memo.OpSet, Key: key, Value: []byte("v"), TTL: time.Minute}, inv)
			return err
		}},
		{"Publish", func(ctx context.Context) error { return ps.Publish(ctx, inv) }},
	}
	contexts := []struct {
		name string
		make func() (context.Context, func())
	}{
		{"context.WithTimeout", func() (context.Context, func()) {
			return context.WithTimeout(context.Background(), 5*time.Millisecond)
		}},
		{"memo's deadline", func() (context.Context, func()) {
			c := deadline.New(context.Background(), 5*time.Millisecond)
			return c, c.Release
		}},
	}
	for _, cx := range contexts {
		for _, call := range calls {
			bad := 0
			var last error
			for range 20 {
				ctx, cancel := cx.make()
				err := call.call(ctx)
				cancel()
				if !errors.Is(err, context.DeadlineExceeded) {
					bad++
					last = err
				}
			}
			if bad > 0 {
				t.Errorf("%s, %s on a stalled Redis: %d of 20 errors do not wrap context.DeadlineExceeded, e.g. %v",
					cx.name, call.name, bad, last)
			}
		}
	}
}
