package redisbackend_test

import (
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"

	"github.com/gomemo/memo"
	"github.com/gomemo/memo/backends/backendtest"
	"github.com/gomemo/memo/backends/redisbackend"
)

// TestConformanceMiniredis runs the conformance suite against an in-process
// Redis (miniredis), always, so that every remote path of the backend is
// exercised without a server. miniredis expires keys only when its clock
// is moved: the suite's waits for expiry move it by as much as they sleep.
func TestConformanceMiniredis(t *testing.T) {
	mr := miniredis.RunT(t)
	c := redis.NewClient(&redis.Options{Addr: mr.Addr(), ContextTimeoutEnabled: true})
	t.Cleanup(func() { c.Close() })
	backendtest.Run(t, func(t *testing.T) memo.Backend {
		return redisbackend.New(c, redisbackend.ScanCount(10), redisbackend.MaxValueSize(1<<20))
	}, backendtest.Options{
		TooLarge: 1<<20 + 1,
		Sleep: func(d time.Duration) {
			time.Sleep(d)
			mr.FastForward(d)
		},
	})
}
