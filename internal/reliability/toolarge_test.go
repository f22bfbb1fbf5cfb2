package reliability_test

import (
	"bytes"
	"context"
	"errors"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/gomemo/memo"
	"github.com/gomemo/memo/backends/memcachebackend"
	"github.com/gomemo/memo/backends/memory"
	"github.com/gomemo/memo/backends/redisbackend"
)

// blob is fn's answer in TestOversizedValues: n bytes derived from n.
func blob(n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(i*7 + n)
	}
	return b
}

// TestOversizedValues calls a function whose answer is larger than the
// store takes: Memcached's item limit (the default 1 MiB, refused by the
// backend before sending; and a server started with -I 512k, refused by
// the server itself), DynamoDB's 400 KB item limit, the in-memory
// backend's share of its byte bound and a Redis backend's MaxValueSize.
// The call must succeed with fn's answer, the value must not be cached
// (the next call recomputes), and each refusal must reach OnError as an
// error wrapping memo.ErrTooLarge. A small answer of the same function is
// cached, as a control.
func TestOversizedValues(t *testing.T) {
	cases := []struct {
		name string
		size int
		open func(t *testing.T) memo.Backend
	}{
		{"memcached/2MiB-refused-by-backend", 2 << 20, func(t *testing.T) memo.Backend {
			return openMemcached(t).b
		}},
		{"memcached/700KiB-refused-by-server-I512k", 700 << 10, func(t *testing.T) memo.Backend {
			s := startMemcached(t, "-I", "512k")
			return memcachebackend.New(newMemcache(t, s.addr(), 2*time.Second))
		}},
		{"dynamodb/500KiB", 500 << 10, func(t *testing.T) memo.Backend { return openDynamo(t).b }},
		{"memory/2MiB-over-1MiB-bound", 2 << 20, func(t *testing.T) memo.Backend {
			return memory.New(memory.MaxBytes(1 << 20))
		}},
		{"redis/300KiB-over-MaxValueSize-256KiB", 300 << 10, func(t *testing.T) memo.Backend {
			c := redis.NewClient(redisOptions(env(t, "MEMO_REDIS_ADDR")))
			t.Cleanup(func() { c.Close() })
			return redisbackend.New(c, redisbackend.MaxValueSize(256<<10))
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			b := tc.open(t)
			ctx := context.Background()
			fl := &faults{keep: true}
			runs := 0
			f := memo.New(func(_ context.Context, n int) ([]byte, error) { runs++; return blob(n), nil },
				memo.Namespace(namespace("large")), memo.WithBackend(b), memo.WithCodec(memo.Msgpack),
				memo.Timeout(10*time.Second), memo.Expire(time.Minute), memo.OnError(fl.hook))
			for i := range 2 {
				got, err := f.Call(ctx, tc.size)
				if err != nil || !bytes.Equal(got, blob(tc.size)) {
					t.Fatalf("call %d: Call(%d) = %d bytes, %v; want fn's answer", i+1, tc.size, len(got), err)
				}
			}
			// Each Call returns once its write has failed and been reported.
			errs := fl.errs()
			tooLarge := 0
			for _, err := range errs {
				if errors.Is(err, memo.ErrTooLarge) {
					tooLarge++
				}
			}
			// The control: a small answer is cached.
			runsBefore := runs
			f.Call(ctx, 100)
			f.Call(ctx, 100)
			smallCached := runs == runsBefore+1
			figures(t, "value_bytes", tc.size, "calls", 2, "fn_runs", runsBefore, "reported", len(errs),
				"too_large_reported", tooLarge, "small_value_cached", smallCached)
			if runsBefore != 2 {
				t.Errorf("fn ran %d times for 2 calls; an oversized value must not be cached", runsBefore)
			}
			if tooLarge != 2 || len(errs) != 2 {
				t.Errorf("OnError got %v; want 2 errors wrapping memo.ErrTooLarge", errs)
			}
			if !smallCached {
				t.Errorf("a small answer was not cached: the backend is broken, not merely refusing large values")
			}
		})
	}
}
