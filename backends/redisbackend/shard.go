package redisbackend

import (
	"context"

	"github.com/gomemo/memo"
)

var _ memo.Sharded = (*Backend)(nil)

// noIO is a context that has ended: a call given it may read what the
// client holds but never waits on the network.
var noIO = func() context.Context {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	return ctx
}()

// Shard names the server that calls for key go to, so that memo keeps a
// circuit breaker per master of a Redis Cluster and one stalled master
// does not make calls skip the others: on a *redis.ClusterClient, the
// address of the master of key's slot, from the client's view of the
// cluster; "" on other clients (one breaker for the backend) and when the
// client has no view yet. It never makes a round trip: the client loads
// its view on its first command (with that command's bound), not here.
func (b *Backend) Shard(_ context.Context, key string) string {
	if b.cluster == nil {
		return ""
	}
	c, err := b.cluster.MasterForKey(noIO, key)
	if err != nil || c == nil {
		return ""
	}
	return c.Options().Addr
}
