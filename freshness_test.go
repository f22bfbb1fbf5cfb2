package memo_test

import (
	"context"
	"errors"
	"fmt"
	"math"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gomemo/memo"
	"github.com/gomemo/memo/backends/memory"
)

// Programmer errors in the freshness options panic at construction with
// a "memo: ..." message.
func TestFreshnessOptionsPanic(t *testing.T) {
	fn := func(ctx context.Context, id int) (int, error) { return id, nil }
	errNF := errors.New("not found")
	ns := memo.Namespace("fresh-panics")
	tests := []struct {
		name string
		f    func()
	}{
		{"StaleWhileRevalidate(0)", func() { memo.StaleWhileRevalidate(0) }},
		{"StaleIfError(-1s)", func() { memo.StaleIfError(-time.Second) }},
		{"RefreshTimeout(0)", func() { memo.RefreshTimeout(0) }},
		{"EarlyRefresh(0)", func() { memo.EarlyRefresh(0) }},
		{"EarlyRefresh(-1)", func() { memo.EarlyRefresh(-1) }},
		{"EarlyRefresh(NaN)", func() { memo.EarlyRefresh(math.NaN()) }},
		{"EarlyRefresh(+Inf)", func() { memo.EarlyRefresh(math.Inf(1)) }},
		{"NegativeCache(0, err)", func() { memo.NegativeCache(0, errNF) }},
		{"NegativeCache(1s)", func() { memo.NegativeCache(time.Second) }},
		{"NegativeCache(1s, nil)", func() { memo.NegativeCache(time.Second, errNF, nil) }},
		{"CacheErrors(0)", func() { memo.CacheErrors(0) }},
		{"ExpireFunc(nil)", func() { memo.ExpireFunc[int](nil) }},
		{"ExpireJitter(1)", func() { memo.ExpireJitter(1) }},
		{"ExpireJitter(-0.1)", func() { memo.ExpireJitter(-0.1) }},
		{"ExpireJitter(NaN)", func() { memo.ExpireJitter(math.NaN()) }},
		{"SWR without Expire", func() { memo.New(fn, ns, memo.StaleWhileRevalidate(time.Second)) }},
		{"SIE without Expire", func() { memo.New(fn, ns, memo.StaleIfError(time.Second)) }},
		{"EarlyRefresh without Expire", func() { memo.New(fn, ns, memo.EarlyRefresh(1)) }},
		{"ExpireFunc of another type", func() {
			memo.New(fn, ns, memo.ExpireFunc(func(string) time.Duration { return time.Second }))
		}},
		{"SetDefaults(ExpireFunc)", func() {
			memo.SetDefaults(memo.ExpireFunc(func(int) time.Duration { return time.Second }))
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			defer func() {
				r := recover()
				if s, ok := r.(string); !ok || !strings.HasPrefix(s, "memo: ") || strings.Contains(s, "Namespace") {
					t.Errorf("%s panicked with %v, want a \"memo: ...\" message", tt.name, r)
				}
			}()
			tt.f()
		})
	}
	// What the options need, given, is accepted.
	memo.New(fn, ns, memo.StaleWhileRevalidate(time.Second), memo.ExpireFunc(func(int) time.Duration { return time.Second }))
	memo.New(fn, ns, memo.Expire(time.Second), memo.StaleIfError(time.Second), memo.EarlyRefresh(1), memo.ExpireJitter(0))
}

// A Forget while a background refresh computes voids it: the refresh's
// answer, computed from before the Forget, is never written nor served.
func TestForgetVoidsBackgroundRefresh(t *testing.T) {
	clk := memo.NewFakeClock(time.Now())
	var n atomic.Int64
	gate := make(chan struct{})
	started := make(chan struct{}, 1)
	fn := func(ctx context.Context, id int) (int64, error) {
		v := n.Add(1)
		if v == 2 { // the refresh
			started <- struct{}{}
			<-gate
		}
		return v, nil
	}
	local, _ := memo.OwnLocalTier(1 << 20)
	f := memo.New(fn, memo.Namespace("forget-refresh"), local, memo.WithClock(clk),
		memo.Expire(time.Minute), memo.StaleWhileRevalidate(time.Minute))
	ctx := context.Background()
	if v, _ := f.Call(ctx, 1); v != 1 {
		t.Fatalf("Call(1) = %d, want 1", v)
	}
	clk.Advance(61 * time.Second)
	if v, err := f.Call(ctx, 1); v != 1 || err != nil {
		t.Fatalf("stale Call(1) = %d, %v; want the stale 1 at once", v, err)
	}
	<-started
	if err := f.Forget(ctx, 1); err != nil {
		t.Fatal(err)
	}
	close(gate)
	if v, _ := f.Call(ctx, 1); v != 3 {
		t.Errorf("Call(1) after Forget = %d, want 3: the refresh begun before Forget (2) must not land", v)
	}
	if v, _ := f.Call(ctx, 1); v != 3 {
		t.Errorf("Call(1) again = %d, want 3 (cached)", v)
	}
}

// Rolling deploy, end to end: an entry exactly as a version 1 build wrote
// it (testdata/envelope, with this test's result type's fingerprint) is a
// hit for this build until its fresh-until, and a miss after.
func TestRollingDeployServesV1Entries(t *testing.T) {
	type user struct {
		ID   int    `json:"id"`
		Name string `json:"name"`
	}
	ctx := context.Background()
	mem := memory.New()
	var runs atomic.Int64
	fn := func(ctx context.Context, id int) (user, error) { runs.Add(1); return user{ID: id, Name: "fn"}, nil }
	// One hour after the golden entry was stored, half an hour before it expires.
	clk := memo.NewFakeClock(time.Date(2026, 1, 1, 0, 30, 0, 0, time.UTC))
	f := memo.New(fn, memo.Namespace("rolling"), memo.WithBackend(mem), memo.WithClock(clk), memo.Expire(time.Hour))
	// This build's entry for key 1 gives the fingerprint of user here.
	f.Call(ctx, 1)
	mine, _, _ := mem.Get(ctx, f.Key(1))
	v1 := readGolden(t, "v1-json-user.bin")
	copy(v1[3+4:3+4+8], mine[3+4:3+4+8])
	if err := mem.Set(ctx, f.Key(7), v1, 0); err != nil {
		t.Fatal(err)
	}
	before := runs.Load()
	got, err := f.Call(ctx, 7)
	if want := (user{ID: 7, Name: "Ada"}); got != want || err != nil || runs.Load() != before {
		t.Fatalf("Call(7) over a v1 entry = %+v, %v (fn ran %d times); want %+v from the entry", got, err, runs.Load()-before, want)
	}
	e, err := f.Lookup(ctx, 7, memo.UseCache)
	if err != nil || !e.Hit || e.ETag() == "" || !e.FreshUntil.Equal(time.Date(2026, 1, 1, 1, 0, 0, 0, time.UTC)) {
		t.Fatalf("Lookup(7) = %+v, %v; want a hit fresh until 01:00", e, err)
	}
	clk.Advance(31 * time.Minute)
	if got, _ := f.Call(ctx, 7); got.Name != "fn" {
		t.Errorf("Call(7) past the v1 entry's fresh-until = %+v, want fn's answer", got)
	}
}

func readGolden(t *testing.T, name string) []byte {
	t.Helper()
	b, err := osReadFile("testdata/envelope/" + name)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// Remembered errors read well: fn's text, the sentinel or ErrCached.
func TestRememberedErrorText(t *testing.T) {
	errNF := errors.New("not found")
	var runs atomic.Int64
	fn := func(ctx context.Context, id int) (int, error) {
		runs.Add(1)
		if id == 404 {
			return 0, fmt.Errorf("user %d: %w", id, errNF)
		}
		return 0, errors.New("db down")
	}
	local, _ := memo.OwnLocalTier(1 << 20)
	f := memo.New(fn, memo.Namespace("remembered-text"), local, memo.NegativeCache(time.Minute, errNF), memo.CacheErrors(time.Minute))
	ctx := context.Background()
	for i := range 2 {
		_, err := f.Call(ctx, 404)
		if !errors.Is(err, errNF) || err.Error() != "user 404: not found" || errors.Is(err, memo.ErrCached) {
			t.Errorf("call %d: Call(404) error %q, want errors.Is not found with fn's text, not ErrCached", i, err)
		}
		_, err = f.Call(ctx, 500)
		if i == 0 && (err == nil || err.Error() != "db down") {
			t.Errorf("first Call(500) error %v, want fn's own error", err)
		}
		if i == 1 && (!errors.Is(err, memo.ErrCached) || !strings.Contains(err.Error(), "db down")) {
			t.Errorf("second Call(500) error %q, want ErrCached with fn's text", err)
		}
	}
	if n := runs.Load(); n != 2 {
		t.Errorf("fn ran %d times, want 2 (once per key)", n)
	}
	v, ok, err := f.Peek(ctx, 404)
	if v != 0 || !ok || !errors.Is(err, errNF) {
		t.Errorf("Peek(404) = %v, %v, %v; want 0, true, the remembered not-found", v, ok, err)
	}
}

var osReadFile = os.ReadFile

// A caller within StaleIfError's window that joins a failing refresh or a
// failing Refresh gets the stale answer; the Refresh's own caller, who
// asked for fn's answer, gets fn's error.
func TestStaleIfErrorForCallersJoiningAFailure(t *testing.T) {
	errDown := errors.New("origin down")
	t.Run("joins a background refresh", func(t *testing.T) {
		clk := memo.NewFakeClock(time.Now())
		var n atomic.Int64
		gate, started := make(chan struct{}), make(chan struct{})
		fn := func(ctx context.Context, id int) (int64, error) {
			if n.Add(1) == 1 {
				return 1, nil
			}
			close(started)
			<-gate
			return 0, errDown
		}
		local, _ := memo.OwnLocalTier(1 << 20)
		f := memo.New(fn, memo.Namespace("sie-join-refresh"), local, memo.WithClock(clk), memo.OnError(func(context.Context, error) {}),
			memo.Expire(time.Minute), memo.StaleWhileRevalidate(time.Minute), memo.StaleIfError(time.Hour))
		ctx := context.Background()
		f.Call(ctx, 1)
		clk.Advance(time.Minute + 59*time.Second)
		if v, err := f.Call(ctx, 1); v != 1 || err != nil {
			t.Fatalf("stale Call = %d, %v; want 1 at once", v, err)
		}
		<-started
		clk.Advance(2 * time.Second) // past the SWR window, within SIE's
		got := make(chan error, 1)
		go func() {
			v, err := f.Call(ctx, 1)
			if v != 1 || err != nil {
				err = fmt.Errorf("Call = %d, %v; want the stale 1", v, err)
			}
			got <- err
		}()
		close(gate)
		if err := <-got; err != nil {
			t.Error(err)
		}
	})
	t.Run("joins a Refresh", func(t *testing.T) {
		clk := memo.NewFakeClock(time.Now())
		var n atomic.Int64
		gate, started := make(chan struct{}), make(chan struct{})
		fn := func(ctx context.Context, id int) (int64, error) {
			if n.Add(1) == 1 {
				return 1, nil
			}
			close(started)
			<-gate
			return 0, errDown
		}
		f := memo.New(fn, memo.Namespace("sie-join-nocache"), memo.WithBackend(memory.New()), memo.WithClock(clk),
			memo.OnError(func(context.Context, error) {}), memo.Expire(time.Minute), memo.StaleIfError(time.Hour))
		ctx := context.Background()
		f.Call(ctx, 1)
		clk.Advance(time.Minute + time.Second)
		refreshed := make(chan error, 1)
		go func() { _, err := f.Lookup(ctx, 1, memo.Refresh); refreshed <- err }()
		<-started
		got := make(chan error, 1)
		go func() {
			v, err := f.Call(ctx, 1)
			if v != 1 || err != nil {
				err = fmt.Errorf("Call = %d, %v; want the stale 1", v, err)
			}
			got <- err
		}()
		close(gate)
		if err := <-refreshed; !errors.Is(err, errDown) {
			t.Errorf("Lookup(Refresh) error = %v, want fn's own", err)
		}
		if err := <-got; err != nil {
			t.Error(err)
		}
	})
}

// busInvalidator is an in-process Invalidator: Publish delivers to the
// subscriber at once.
type busInvalidator struct{ sub memo.Subscriber }

func (b *busInvalidator) Publish(ctx context.Context, inv memo.Invalidation) error {
	b.sub.Invalidate(inv)
	return nil
}

func (b *busInvalidator) Subscribe(s memo.Subscriber) func() {
	b.sub = s
	s.Renewed()
	return func() {}
}

// interleavedStore delivers another namespace's invalidation while a Set
// is under way, as a message from another process may arrive.
type interleavedStore struct {
	*memory.Backend
	bus *busInvalidator
}

func (s *interleavedStore) Set(ctx context.Context, key string, v []byte, ttl time.Duration) error {
	err := s.Backend.Set(ctx, key, v, ttl)
	s.bus.sub.Invalidate(memo.Invalidation{Origin: "elsewhere", Namespace: "memo:other-namespace"})
	return err
}

// After Set returns nil, the writer never serves the older value from its
// local tier, even when an unrelated invalidation arrives meanwhile and
// its fill of the new value is refused.
func TestSetThenLocalTierNeverOlder(t *testing.T) {
	bus := &busInvalidator{}
	tier := memo.NewLocalTier(1<<20, bus)
	store := &interleavedStore{Backend: memory.New(), bus: bus}
	var n atomic.Int64
	f := memo.New(func(ctx context.Context, id int) (int64, error) { return n.Add(1), nil },
		memo.Namespace("set-then-tier"), memo.WithBackend(store), memo.WithLocalTier(tier), memo.Expire(time.Hour))
	ctx := context.Background()
	if v, _ := f.Call(ctx, 1); v != 1 {
		t.Fatalf("Call(1) = %d, want 1", v)
	}
	if v, _ := f.Call(ctx, 1); v != 1 {
		t.Fatalf("Call(1) again = %d, want 1 (cached)", v)
	}
	if err := f.Set(ctx, 1, 42); err != nil {
		t.Fatal(err)
	}
	if v, _ := f.Call(ctx, 1); v != 42 {
		t.Errorf("Call(1) after Set(1, 42) = %d, want 42", v)
	}
}
