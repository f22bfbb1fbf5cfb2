package redisbackend_test

import (
	"context"
	"io"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/gomemo/memo"
	"github.com/gomemo/memo/backends/redisbackend"
	"github.com/gomemo/memo/internal/testenv"
)

// holdSet is a go-redis hook for a Cluster's nodes: before a SET (alone or
// in a pipeline) of key goes out, it waits up to hold for the invalidation
// to reach the subscriber, and records whether it did.
type holdSet struct {
	key   string
	heard <-chan *redis.Message
	hold  time.Duration
	early chan bool
}

func (h *holdSet) DialHook(next redis.DialHook) redis.DialHook { return next }

func (h *holdSet) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		h.check([]redis.Cmder{cmd})
		return next(ctx, cmd)
	}
}

func (h *holdSet) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		h.check(cmds)
		return next(ctx, cmds)
	}
}

func (h *holdSet) check(cmds []redis.Cmder) {
	for _, c := range cmds {
		if a := c.Args(); c.Name() == "set" && len(a) > 1 && a[1] == h.key {
			select {
			case <-h.heard:
				h.early <- true
			case <-time.After(h.hold):
				h.early <- false
			}
			return
		}
	}
}

// On a Cluster, the invalidation never reaches a subscriber before the
// write it announces has been sent, wherever the key lives: otherwise
// another process could read the old value on the message and keep it
// in its tier until LocalTTL. go-redis sends a pipeline spanning two
// masters to both at once, so Announce pipelines only a key that lives
// on the channel's master. The hook holds the SET up to 200 ms and
// watches for the message meanwhile (a pipeline to two masters let it
// through in every run).
func TestAnnounceClusterMessageAfterWrite(t *testing.T) {
	announceNoLeaks(t)
	addrs := strings.Split(testenv.Require(t, "MEMO_REDIS_CLUSTER_ADDRS"), ",")
	ns, channel := testenv.NS(t, "order"), testenv.NS(t, "inv")
	sub := subscribeRaw(t, cluster(t), channel)
	heard := sub.sub.Channel()
	ctx := context.Background()
	for where, id := range announceKeys(t, cluster(t), ns, channel) {
		t.Run(where[1:], func(t *testing.T) {
			key := ns + ":" + id
			h := &holdSet{key: key, heard: heard, hold: 200 * time.Millisecond, early: make(chan bool, 1)}
			c := docClusterClient(addrs...)
			t.Cleanup(func() { c.Close() })
			c.OnNewNode(func(n *redis.Client) { n.AddHook(h) })
			b := redisbackend.New(c, redisbackend.Announce(redisbackend.NewPubSub(c, channel)))
			inv := memo.Invalidation{Origin: "o", Namespace: ns, ID: id}
			if _, err := b.WriteAnnounce(ctx, memo.Write{Op: memo.OpSet, Key: key, Value: []byte("v"), TTL: time.Minute}, inv); err != nil {
				t.Fatal(err)
			}
			if <-h.early {
				t.Fatalf("the invalidation reached the subscriber before the SET was sent")
			}
			select {
			case m := <-heard:
				if want := "o\x00" + ns + "\x00" + id; m.Payload != want {
					t.Errorf("heard %q, want %q", m.Payload, want)
				}
			case <-time.After(5 * time.Second):
				t.Fatalf("the invalidation never came")
			}
		})
	}
}

// movedErr is a Redis error reply.
type movedErr string

func (e movedErr) Error() string { return string(e) }
func (movedErr) RedisError()     {}

// failPipeline is a go-redis hook for a Cluster's nodes that fails the
// first pipeline holding a SET of key with err, without sending it.
type failPipeline struct {
	key    string
	err    error
	failed atomic.Bool
}

func (h *failPipeline) DialHook(next redis.DialHook) redis.DialHook          { return next }
func (h *failPipeline) ProcessHook(next redis.ProcessHook) redis.ProcessHook { return next }

func (h *failPipeline) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		for _, c := range cmds {
			if a := c.Args(); c.Name() == "set" && len(a) > 1 && a[1] == h.key && h.failed.CompareAndSwap(false, true) {
				for _, c := range cmds {
					c.SetErr(h.err)
				}
				return h.err
			}
		}
		return next(ctx, cmds)
	}
}

// When the channel's master answers the pipeline with MOVED (a resharding
// moved the key's slot) or its connection fails, Announce writes and
// publishes again through the ClusterClient: the write lands and the
// message follows it.
func TestAnnounceClusterPipelineFallback(t *testing.T) {
	announceNoLeaks(t)
	addrs := strings.Split(testenv.Require(t, "MEMO_REDIS_CLUSTER_ADDRS"), ",")
	ns, channel := testenv.NS(t, "fallback"), testenv.NS(t, "inv")
	sub := subscribeRaw(t, cluster(t), channel)
	id := announceKeys(t, cluster(t), ns, channel)["/on the channel's master"]
	key := ns + ":" + id
	ctx := context.Background()
	for _, tc := range []struct {
		name string
		err  error
	}{
		{"MOVED", movedErr("MOVED 1234 127.0.0.1:1")},
		{"ASK", movedErr("ASK 1234 127.0.0.1:1")},
		{"broken connection", io.ErrUnexpectedEOF},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sub.t = t
			h := &failPipeline{key: key, err: tc.err}
			c := docClusterClient(addrs...)
			t.Cleanup(func() { c.Close() })
			c.OnNewNode(func(n *redis.Client) { n.AddHook(h) })
			b := redisbackend.New(c, redisbackend.Announce(redisbackend.NewPubSub(c, channel)))
			sub.since()
			v := []byte(tc.name)
			stored, err := b.WriteAnnounce(ctx, memo.Write{Op: memo.OpSet, Key: key, Value: v, TTL: time.Minute}, memo.Invalidation{Origin: "o", Namespace: ns, ID: id})
			if !stored || err != nil {
				t.Fatalf("WriteAnnounce = %v, %v, want true, nil", stored, err)
			}
			if !h.failed.Load() {
				t.Fatalf("the pipeline never went to the channel's master")
			}
			got, ok, err := b.Get(ctx, key)
			if err != nil || !ok || string(got) != string(v) {
				t.Errorf("Get = %q, %v, %v, want %q", got, ok, err, v)
			}
			if msgs := sub.since(); len(msgs) != 1 || msgs[0] != payload("o", ns, id) {
				t.Errorf("published %q, want one message", msgs)
			}
		})
	}
}
