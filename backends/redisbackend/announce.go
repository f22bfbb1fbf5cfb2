package redisbackend

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/redis/go-redis/v9"

	"github.com/gomemo/memo"
)

var _ memo.Announcer = (*Backend)(nil)

// Announce makes the Backend a [memo.Announcer] for ps: memo then has it
// publish the invalidation of each write, Forget, Set and Clear of a
// function whose [memo.LocalTier] subscribes through ps, in the same round
// trip as the write where Redis allows it, instead of calling ps.Publish
// after the write returned. A write with its invalidation then costs one
// round trip instead of two, and no other process can see the write land
// without its message.
//
// ps must have been made by [NewPubSub] on the client given to [New] (New
// panics otherwise), and the functions' LocalTier must subscribe through
// that same ps (otherwise memo publishes as before). It panics if ps is
// nil.
//
// On a single server (a *redis.Client, a Sentinel failover client
// included): a Set or a delete is pipelined with its PUBLISH (one round
// trip; Redis runs the two in order, so the message leaves after the
// write); a fenced write (memo.Lease) publishes from inside its script,
// only when it stored.
//
// On a *redis.ClusterClient the message is an SPUBLISH to the channel's
// slot, which a script on another slot cannot send. A Set or a delete of
// a key whose master is the channel's master is pipelined with it on that
// master's connection (one round trip, in order). Any other key, and
// every fenced write, is written first and then announced (two round
// trips, as without Announce): go-redis would send a pipeline spanning two
// masters to both at once, and the message could then reach another
// process before the write landed on the other master; that process could
// read the old value again and keep it in its tier until LocalTTL.
// Announce never trades that for a round trip. With 3 masters, about one
// key in 3 gains. If the master answers MOVED or ASK (a resharding) or its
// connection fails, both commands are sent again through the
// ClusterClient, one after the other, so that a message that left before
// the write is followed by one after it.
//
// On a *redis.Ring and other clients the PUBLISH follows the write. Clear
// publishes after its scan has ended, in every case.
func Announce(ps *PubSub) Option {
	if ps == nil {
		panic("redisbackend: Announce(nil)")
	}
	return Option{func(c *config) { c.ps = ps }}
}

// Announces reports whether inv is the [PubSub] given to [Announce].
func (b *Backend) Announces(inv memo.Invalidator) bool {
	ps, ok := inv.(*PubSub)
	return ok && ps != nil && ps == b.ps
}

// WriteAnnounce does w as Set, SetFenced, Delete or Clear would, and
// publishes inv as the Announce PubSub's Publish would (the same message),
// in one round trip where [Announce] says it can. A write refused before
// anything is sent (a value over [MaxValueSize], a negative ttl, a ctx
// already ended) publishes nothing. Otherwise the invalidation is
// published whether or not the write succeeded, except after a fenced
// write that did not store. When the write succeeded and the publish
// failed, the error wraps memo.ErrNotPublished and the publish's
// ("redisbackend: publish: ...") and stored is true. It fails on a Backend made without Announce.
func (b *Backend) WriteAnnounce(ctx context.Context, w memo.Write, inv memo.Invalidation) (stored bool, err error) {
	op := opName(w.Op)
	if b.ps == nil {
		return false, fmt.Errorf("redisbackend: %s: WriteAnnounce on a Backend made without Announce", op)
	}
	if err := ctx.Err(); err != nil {
		return false, fmt.Errorf("redisbackend: %s: %w", op, err)
	}
	msg := encodeInvalidation(inv)
	switch w.Op {
	case memo.OpSet:
		if err := b.checkSet(w.Value, w.TTL); err != nil {
			return false, err
		}
		werr, perr := b.announce(ctx, &w, msg)
		if err := b.setErr(ctx, werr); err != nil {
			return false, err
		}
		return true, b.publishErr(ctx, perr)
	case memo.OpDelete:
		werr, perr := b.announce(ctx, &w, msg)
		if werr != nil {
			return false, wrap(ctx, "delete", werr)
		}
		return true, b.publishErr(ctx, perr)
	case memo.OpSetFenced:
		if _, ok := b.client.(*redis.Client); ok {
			return b.setFenced(ctx, w.Key, w.Value, w.TTL, w.Token, b.ps.channel, msg)
		}
		stored, err := b.setFenced(ctx, w.Key, w.Value, w.TTL, w.Token, "", "")
		if !stored || err != nil {
			return stored, err
		}
		return true, b.publishErr(ctx, b.process(ctx, b.ps.publishCmd(ctx, msg)))
	case memo.OpClear:
		err := b.Clear(ctx, w.Key)
		perr := b.process(ctx, b.ps.publishCmd(ctx, msg))
		if err != nil {
			return false, err
		}
		return true, b.publishErr(ctx, perr)
	}
	return false, fmt.Errorf("redisbackend: WriteAnnounce: unknown op %d", w.Op)
}

// announce sends w, a Set or a delete, and the PUBLISH of msg: pipelined where Redis runs them in order on one connection, one
// after the other otherwise. It returns each command's error.
//
// On a Cluster the pipeline goes straight to the master's own client (a
// ClusterClient pipeline would cost a goroutine and its bookkeeping per
// call: 10 more allocations, and most of the round trip saved). When that
// master no longer holds the slot (MOVED, ASK) or the connection failed,
// both commands are sent again through the ClusterClient, one after the
// other, which follows redirections and retries: a message that went out
// before the write landed is followed by one after it.
func (b *Backend) announce(ctx context.Context, w *memo.Write, msg string) (werr, perr error) {
	var node *redis.Client
	if c, ok := b.client.(*redis.Client); ok {
		node = c
	} else if b.cluster != nil {
		node = b.channelMaster(ctx, w.Key)
	}
	if node == nil {
		return b.sequential(ctx, b.writeCmd(ctx, w), msg)
	}
	cmd, pub := b.writeCmd(ctx, w), b.ps.publishCmd(ctx, msg)
	p := node.Pipeline()
	_ = p.Process(ctx, cmd)
	_ = p.Process(ctx, pub)
	_, err := p.Exec(ctx)
	if b.cluster != nil && err != nil && ctx.Err() == nil && (redirected(err) || !isReply(err) && !isNetTimeout(err)) {
		b.cluster.ReloadState(ctx)
		return b.sequential(ctx, b.writeCmd(ctx, w), msg)
	}
	b.suspect(ctx, err)
	return cmd.Err(), pub.Err()
}

// writeCmd returns the command of w, a Set (already checked) or a delete.
func (b *Backend) writeCmd(ctx context.Context, w *memo.Write) redis.Cmder {
	if w.Op == memo.OpDelete {
		return b.deleteCmd(ctx, w.Key)
	}
	return b.setCmd(ctx, w.Key, w.Value, w.TTL)
}

// sequential sends cmd, then the PUBLISH of msg, whatever cmd's outcome.
func (b *Backend) sequential(ctx context.Context, cmd redis.Cmder, msg string) (werr, perr error) {
	werr = b.process(ctx, cmd)
	return werr, b.process(ctx, b.ps.publishCmd(ctx, msg))
}

// channelMaster returns the client of key's master on a Cluster when it is
// the channel's master too, and nil otherwise.
func (b *Backend) channelMaster(ctx context.Context, key string) *redis.Client {
	km, err := b.cluster.MasterForKey(ctx, key)
	if err != nil {
		return nil
	}
	if cm, err := b.cluster.MasterForKey(ctx, b.ps.channel); err != nil || cm != km {
		return nil
	}
	return km
}

// redirected reports whether err is a Cluster's MOVED or ASK reply.
func redirected(err error) bool {
	var re redis.Error
	if !errors.As(err, &re) {
		return false
	}
	msg := re.Error()
	return strings.HasPrefix(msg, "MOVED ") || strings.HasPrefix(msg, "ASK ")
}

// isReply reports whether err is a reply from Redis (not a connection's
// failure).
func isReply(err error) bool {
	var re redis.Error
	return errors.As(err, &re)
}

func (b *Backend) publishErr(ctx context.Context, err error) error {
	if err == nil {
		return nil
	}
	return fmt.Errorf("%w: %w", memo.ErrNotPublished, wrap(ctx, "publish", err))
}

func opName(op memo.WriteOp) string {
	switch op {
	case memo.OpSet, memo.OpSetFenced:
		return "set"
	case memo.OpDelete:
		return "delete"
	case memo.OpClear:
		return "clear"
	}
	return "write"
}
