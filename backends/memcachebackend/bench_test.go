package memcachebackend_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/bradfitz/gomemcache/memcache"

	"github.com/gomemo/memo"
	"github.com/gomemo/memo/backends/memcachebackend"
	"github.com/gomemo/memo/internal/benchutil"
)

// BenchmarkMemoHit measures a memo hit through Memcached beside the raw
// client's Get of the same stored key (the namespace generation is part of
// it); see benchutil.BenchMemoHit. memo's Timeout is the default 100 ms.
// The client is built as docs/backends.md builds it (MaxIdleConns 64),
// with a Timeout of 40 ms, less than half of memo's, which keeps a hit on
// the caller's goroutine, and of 200 ms, which does not (each hit's
// request is handed to a goroutine of its own).
func BenchmarkMemoHit(b *testing.B) {
	for _, timeout := range []time.Duration{40 * time.Millisecond, 200 * time.Millisecond} {
		b.Run(fmt.Sprintf("client-timeout=%v", timeout), func(b *testing.B) {
			c := memcache.New(realAddr(b))
			c.MaxIdleConns = 64
			c.Timeout = timeout
			if err := c.Ping(); err != nil {
				b.Fatal(err)
			}
			b.Cleanup(func() { c.Close() })
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
			}, memo.Timeout(100*time.Millisecond))
		})
	}
}
