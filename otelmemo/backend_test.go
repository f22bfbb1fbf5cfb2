package otelmemo_test

import (
	"context"
	"strings"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"github.com/redis/go-redis/v9"

	"github.com/gomemo/memo"
	"github.com/gomemo/memo/backends/redisbackend"
	"github.com/gomemo/memo/internal/faultproxy"
	"github.com/gomemo/memo/internal/testenv"
)

// storeDown is a store's error while it is down.
type storeDown struct{}

func (storeDown) Error() string { return "store down" }

// faultyStore keeps nothing (every Get misses) and fails every call while
// down.
type faultyStore struct{ down atomic.Bool }

func (s *faultyStore) fail() error {
	if s.down.Load() {
		return storeDown{}
	}
	return nil
}
func (s *faultyStore) Get(context.Context, string) ([]byte, bool, error) { return nil, false, s.fail() }
func (s *faultyStore) Set(context.Context, string, []byte, time.Duration) error {
	return s.fail()
}
func (s *faultyStore) Delete(context.Context, string) error { return s.fail() }

// TestBreakerMetrics: a store that fails opens the breaker (memo.breaker.open
// 1, one change to open, failed gets and sets in memo.backend.duration with
// their error.type, skipped calls in memo.backend.skips); once it answers
// again a probe closes it (open 0, one change to closed).
func TestBreakerMetrics(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		tel := newTelemetry(t)
		store := &faultyStore{}
		store.down.Store(true)
		const ns = "otelmemo.breaker"
		f := memo.New(func(_ context.Context, id int) (int, error) { return id, nil },
			memo.Namespace(ns), memo.WithBackend(store), memo.Breaker(2, time.Second),
			memo.Observe(tel.observer()), memo.OnError(func(context.Context, error) {}))
		ctx := context.Background()
		for i := range 4 {
			if v, err := f.Call(ctx, i); v != i || err != nil {
				t.Fatalf("Call(%d) = %d, %v; want %d, nil", i, v, err, i)
			}
		}
		const (
			nsa     = "memo.namespace=" + ns
			get     = "memo.backend.duration{memo.operation=get}"
			getDown = "memo.backend.duration{error.type=" + pkg + "storeDown,memo.operation=get}"
			opened  = "memo.breaker.changes{memo.breaker.state=open," + nsa + "}"
			closed  = "memo.breaker.changes{memo.breaker.state=closed," + nsa + "}"
			open    = "memo.breaker.open{" + nsa + "}"
			skips   = "memo.backend.skips{" + nsa + "}"
			faults  = "memo.faults{" + nsa + "}"
		)
		// Calls 0 and 1: the get fails (and the answer is not written
		// after a failed read): open. Calls 2 and 3 skip the get.
		got := tel.collect(t)
		want := map[string]int64{opened: 1, open: 1, skips: 2, faults: 2}
		wantHists := map[string]histPoint{getDown: {2, 0}}
		check := func(what string) {
			t.Helper()
			gotValues := map[string]int64{}
			for k := range want {
				gotValues[k] = got.values[k]
			}
			if diff := cmp.Diff(want, gotValues); diff != "" {
				t.Errorf("%s: data points (-want +got):\n%s", what, diff)
			}
			gotHists := map[string]histPoint{}
			for k, h := range got.hists {
				if strings.HasPrefix(k, "memo.backend.") {
					gotHists[k] = h
				}
			}
			if diff := cmp.Diff(wantHists, gotHists); diff != "" {
				t.Errorf("%s: memo.backend.duration (-want +got):\n%s", what, diff)
			}
		}
		check("store down")

		store.down.Store(false)
		time.Sleep(time.Second)
		if v, err := f.Call(ctx, 9); v != 9 || err != nil {
			t.Fatalf("Call(9) = %d, %v; want 9, nil", v, err)
		}
		got = tel.collect(t)
		want[closed], want[open] = 1, 0
		wantHists[get] = histPoint{1, 0}
		wantHists["memo.backend.duration{memo.operation=set}"] = histPoint{1, 0}
		check("store back")
	})
}

// TestRedis: the backend histogram on the shared Redis, get and set ops
// with their durations; then, behind a proxy that refuses, a failed get
// with its error.type.
func TestRedis(t *testing.T) {
	addr := testenv.Require(t, "MEMO_REDIS_ADDR")
	proxy := faultproxy.New(t, addr)
	client := redis.NewClient(&redis.Options{Addr: proxy.Addr(), ContextTimeoutEnabled: true, MaxRetries: -1})
	t.Cleanup(func() { client.Close() })
	tel := newTelemetry(t)
	ns := testenv.NS(t, "otelmemo")
	f := memo.New(func(_ context.Context, id int) (int, error) { return id, nil },
		memo.Namespace(ns), memo.WithBackend(redisbackend.New(client)), memo.Expire(time.Minute),
		memo.Breaker(0, 0), memo.Observe(tel.observer()), memo.OnError(func(context.Context, error) {}))
	ctx := context.Background()
	for range 3 {
		if v, err := f.Call(ctx, 7); v != 7 || err != nil {
			t.Fatalf("Call(7) = %d, %v; want 7, nil", v, err)
		}
	}
	got := tel.collect(t)
	counts := map[string]uint64{}
	for k, h := range got.hists {
		counts[k] = h.Count
		if h.Sum <= 0 || h.Sum > 10 {
			t.Errorf("%s sums %v s, want a positive duration", k, h.Sum)
		}
	}
	want := map[string]uint64{
		"memo.backend.duration{memo.operation=get}":                         3,
		"memo.backend.duration{memo.operation=set}":                         1,
		"memo.compute.duration{memo.namespace=" + ns + ",memo.reason=miss}": 1,
	}
	if diff := cmp.Diff(want, counts); diff != "" {
		t.Errorf("histograms after a miss and two hits (-want +got):\n%s", diff)
	}

	proxy.Set(faultproxy.Refuse)
	if v, err := f.Call(ctx, 8); v != 8 || err != nil {
		t.Fatalf("Call(8) with Redis refused = %d, %v; want 8, nil", v, err)
	}
	got = tel.collect(t)
	var failed []string
	for k := range got.hists {
		if k != "memo.backend.duration{memo.operation=get}" && k != "memo.backend.duration{memo.operation=set}" &&
			strings.HasPrefix(k, "memo.backend") {
			failed = append(failed, k)
		}
	}
	// A refused connection: go-redis retries the dial past the get's
	// 100 ms (memo.Timeout); the answer is not written after a failed read.
	wantFailed := []string{"memo.backend.duration{error.type=timeout,memo.operation=get}"}
	if diff := cmp.Diff(wantFailed, failed, cmpopts.SortSlices(func(a, b string) bool { return a < b })); diff != "" {
		t.Errorf("failed backend calls (-want +got):\n%s", diff)
	}
}
