package redisbackend_test

import (
	"context"
	"testing"

	"github.com/redis/go-redis/v9"

	"github.com/gomemo/memo/backends/redisbackend"
	"github.com/gomemo/memo/internal/benchutil"
)

// BenchmarkMemoHit measures a memo hit through Redis, standalone and
// Cluster, beside the raw client's GET of the same key (Redis stores
// memo's key as it is); see benchutil.BenchMemoHit.
func BenchmarkMemoHit(b *testing.B) {
	for _, tc := range []struct {
		name   string
		client func(testing.TB) redis.UniversalClient
	}{
		{"standalone", func(t testing.TB) redis.UniversalClient { return standalone(t) }},
		{"cluster", func(t testing.TB) redis.UniversalClient { return cluster(t) }},
	} {
		b.Run(tc.name, func(b *testing.B) {
			c := tc.client(b)
			benchutil.BenchMemoHit(b, redisbackend.New(c), func(_ *testing.B, key string) func(context.Context) ([]byte, error) {
				return func(ctx context.Context) ([]byte, error) { return c.Get(ctx, key).Bytes() }
			})
		})
	}
}
