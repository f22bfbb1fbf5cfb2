package redisbackend

import (
	"context"

	"github.com/gomemo/memo"
)

var _ memo.Sharded = (*Backend)(nil)

// Shard names the server that calls for key go to, so that memo keeps a
// circuit breaker per master of a Redis Cluster and one stalled master
// does not make calls skip the others: on a *redis.ClusterClient, the
// address of the master of key's slot, from the client's view of the
// cluster (no round trip once the client has loaded it); "" on other
// clients (one breaker for the backend) and when the client cannot tell.
func (b *Backend) Shard(ctx context.Context, key string) string {
	if b.cluster == nil {
		return ""
	}
	c, err := b.cluster.MasterForKey(ctx, key)
	if err != nil || c == nil {
		return ""
	}
	return c.Options().Addr
}
