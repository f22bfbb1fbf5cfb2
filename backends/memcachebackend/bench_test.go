package memcachebackend_test

import (
	"context"
	"testing"

	"github.com/gomemo/memo/backends/memcachebackend"
	"github.com/gomemo/memo/internal/benchutil"
)

// BenchmarkMemoHit measures a memo hit through Memcached beside the raw
// client's Get of the same stored key (the namespace generation is part of
// it); see benchutil.BenchMemoHit.
func BenchmarkMemoHit(b *testing.B) {
	c := newClient(b, realAddr(b))
	be := memcachebackend.New(c)
	benchutil.BenchMemoHit(b, be, func(b *testing.B, key string) func(context.Context) ([]byte, error) {
		sk, err := memcachebackend.StoredKey(context.Background(), be, key)
		if err != nil {
			b.Fatal(err)
		}
		return func(context.Context) ([]byte, error) {
			it, err := c.Get(sk)
			if err != nil {
				return nil, err
			}
			return it.Value, nil
		}
	})
}
