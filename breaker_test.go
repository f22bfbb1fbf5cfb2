package memo_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gomemo/memo"
)

// faultyStore fails every call with err while down, and otherwise keeps
// nothing (every Get misses). It counts the calls that reach it.
type faultyStore struct {
	calls  atomic.Int64
	down   atomic.Bool
	err    error
	onCall atomic.Pointer[func()] // run by each call first, if set
}

func (s *faultyStore) fail() error {
	s.calls.Add(1)
	if f := s.onCall.Load(); f != nil {
		(*f)()
	}
	if s.down.Load() {
		return s.err
	}
	return nil
}
func (s *faultyStore) Get(context.Context, string) ([]byte, bool, error) { return nil, false, s.fail() }
func (s *faultyStore) Set(context.Context, string, []byte, time.Duration) error {
	return s.fail()
}
func (s *faultyStore) Delete(context.Context, string) error { return s.fail() }

// breakerWatch is an Observer that keeps the breaker's changes.
type breakerWatch struct {
	mu      sync.Mutex
	changes []bool
}

func (w *breakerWatch) Attach(string, func() memo.Stats) {}
func (w *breakerWatch) Compute(ctx context.Context, _ memo.Computation) (context.Context, func(time.Duration, error)) {
	return ctx, nil
}
func (w *breakerWatch) BackendCall(context.Context, memo.BackendCall) {}
func (w *breakerWatch) BreakerChange(c memo.BreakerChange) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.changes = append(w.changes, c.Open)
}
func (w *breakerWatch) get() []bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]bool(nil), w.changes...)
}

// TestBreaker: after threshold consecutive faults the breaker opens and
// calls skip the store (fn still answers every one); after the cooldown one
// probe goes through, and its fault keeps the breaker open; once the store
// answers, the next probe closes it and calls reach the store again. The
// Observer hears each change. It fails if calls keep reaching a failing
// store, if more than one probe goes through per cooldown, or if the
// breaker never closes.
func TestBreaker(t *testing.T) {
	clk := memo.NewFakeClock(time.Now())
	store := &faultyStore{err: errors.New("store down")}
	store.down.Store(true)
	watch := &breakerWatch{}
	f := memo.New(func(_ context.Context, id int) (int, error) { return id * 10, nil },
		memo.Namespace("breaker"), memo.WithBackend(store), memo.WithClock(clk), memo.Breaker(3, time.Second),
		memo.Observe(watch), memo.OnError(func(context.Context, error) {}))
	ctx := context.Background()
	call := func(i int) {
		t.Helper()
		if got, err := f.Call(ctx, i); got != i*10 || err != nil {
			t.Fatalf("Call(%d) = %d, %v; want %d, nil", i, got, err, i*10)
		}
	}
	// Each miss makes one read; its failure skips the write.
	for i := range 3 {
		call(i)
	}
	if n := store.calls.Load(); n != 3 {
		t.Fatalf("the store got %d calls for 3 failing misses, want 3", n)
	}
	for i := range 100 {
		call(i)
	}
	if n := store.calls.Load(); n != 3 {
		t.Fatalf("the store got %d calls after the breaker opened, want 3 (none more)", n)
	}
	if got := f.Stats().BackendSkips; got != 100 {
		t.Errorf("Stats().BackendSkips = %d, want 100", got)
	}
	clk.Advance(time.Second)
	for i := range 10 {
		call(i)
	}
	if n := store.calls.Load(); n != 4 {
		t.Fatalf("the store got %d calls, want 4: one probe after the cooldown", n)
	}
	store.down.Store(false)
	for i := range 10 {
		call(i)
	}
	if n := store.calls.Load(); n != 4 {
		t.Fatalf("the store got %d calls within the cooldown after a failed probe, want 4", n)
	}
	clk.Advance(time.Second)
	call(1) // the probe: a read that misses, then the write
	before := store.calls.Load()
	call(2)
	if n := store.calls.Load(); n <= before {
		t.Fatalf("after a successful probe, a miss did not reach the store (%d calls, %d before)", n, before)
	}
	if got, want := watch.get(), []bool{true, false}; fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("Observer.BreakerChange opens = %v, want %v", got, want)
	}
	// With the store up, Forget reaches it.
	if err := f.Forget(ctx, 1); err != nil {
		t.Errorf("Forget with the breaker closed = %v", err)
	}
}

// TestBreakerForgetWhileOpen: Forget, Set and Clear skipped by an open
// breaker say so: the remote entry was not changed.
func TestBreakerForgetWhileOpen(t *testing.T) {
	store := &faultyStore{err: errors.New("store down")}
	store.down.Store(true)
	f := memo.New(func(_ context.Context, id int) (int, error) { return id, nil },
		memo.Namespace("breaker-forget"), memo.WithBackend(store), memo.Breaker(1, time.Hour), memo.OnError(func(context.Context, error) {}))
	ctx := context.Background()
	f.Call(ctx, 1) // opens it
	if err := f.Forget(ctx, 1); !errors.Is(err, memo.ErrBreakerOpen) {
		t.Errorf("Forget with the breaker open = %v, want an error matching ErrBreakerOpen", err)
	}
	if err := f.Set(ctx, 1, 1); !errors.Is(err, memo.ErrBreakerOpen) {
		t.Errorf("Set with the breaker open = %v, want an error matching ErrBreakerOpen", err)
	}
}

// TestBreakerIgnoresCallerCancellation: calls that fail because their
// caller's context ended (here Forget, which runs on the caller's
// context) never open the breaker, however many; Breaker(0, 0) turns it
// off.
func TestBreakerIgnoresCallerCancellation(t *testing.T) {
	for _, c := range []struct {
		name      string
		opt       memo.Option
		cancelled bool
		wantCalls int64
	}{
		{"cancelled callers", memo.Breaker(2, time.Hour), true, 20},
		{"off", memo.Breaker(0, 0), false, 20},
		{"on", memo.Breaker(2, time.Hour), false, 2},
	} {
		t.Run(c.name, func(t *testing.T) {
			store := &faultyStore{err: errors.New("store down")}
			if c.cancelled {
				store.err = context.Canceled
			}
			store.down.Store(true)
			f := memo.New(func(_ context.Context, id int) (int, error) { return id, nil },
				memo.Namespace("breaker-cancel"), memo.WithBackend(store), c.opt, memo.OnError(func(context.Context, error) {}))
			for i := range 20 {
				ctx, cancel := context.WithCancel(context.Background())
				if c.cancelled {
					// The caller leaves while the store has its call.
					fn := func() { cancel() }
					store.onCall.Store(&fn)
				}
				f.Forget(ctx, i)
				cancel()
			}
			if n := store.calls.Load(); n != c.wantCalls {
				t.Errorf("the store got %d calls for 20 Forgets, want %d", n, c.wantCalls)
			}
		})
	}
}

// TestBreakerOptionPanics: Breaker rejects settings that cannot mean what
// they say.
func TestBreakerOptionPanics(t *testing.T) {
	for _, c := range []struct {
		threshold int
		cooldown  time.Duration
	}{{-1, time.Second}, {1, 0}, {1, -time.Second}, {0, time.Second}} {
		func() {
			defer func() {
				r := recover()
				if s, ok := r.(string); !ok || !strings.HasPrefix(s, "memo: Breaker(") {
					t.Errorf("Breaker(%d, %v) panicked with %v, want a memo: Breaker(...) message", c.threshold, c.cooldown, r)
				}
			}()
			memo.Breaker(c.threshold, c.cooldown)
		}()
	}
}

// deadStoreError is a fault kind of its own, so that the throttle's state
// from other tests does not bear on this one.
type deadStoreError struct{}

func (deadStoreError) Error() string { return "dead store" }

// TestFaultLogThrottled: 1,000 calls against a dead backend in well under
// a second log a handful of lines, not one per call (the breaker off, so
// that every call meets the fault); a line after the interval counts what
// it stood for. It fails if the default OnError logs each fault.
func TestFaultLogThrottled(t *testing.T) {
	var buf bytes.Buffer
	var mu sync.Mutex
	old := slog.Default()
	slog.SetDefault(slog.New(slog.NewTextHandler(lockedWriter{&mu, &buf}, nil)))
	defer slog.SetDefault(old)
	restore := memo.SetLogInterval(time.Hour)
	defer restore()

	store := &faultyStore{err: deadStoreError{}}
	store.down.Store(true)
	f := memo.New(func(_ context.Context, id int) (int, error) { return id, nil },
		memo.Namespace("log-throttle"), memo.WithBackend(store), memo.Breaker(0, 0))
	for i := range 1000 {
		if got, err := f.Call(context.Background(), i); got != i || err != nil {
			t.Fatalf("Call(%d) = %d, %v; want %d, nil", i, got, err, i)
		}
	}
	if got := f.Stats().Faults; got != 1000 {
		t.Errorf("Stats().Faults = %d, want 1000 (every fault counts, logged or not)", got)
	}
	mu.Lock()
	lines := strings.Count(buf.String(), "\n")
	mu.Unlock()
	if lines < 1 || lines > 5 {
		t.Fatalf("1,000 faults logged %d lines, want 1 to 5:\n%s", lines, buf.String())
	}
	memo.SetLogInterval(0)
	f.Call(context.Background(), -1)
	mu.Lock()
	out := buf.String()
	mu.Unlock()
	if !strings.Contains(out, "suppressed=999") {
		t.Errorf("the line after the interval does not count the 999 faults it stood for:\n%s", out)
	}
}

type lockedWriter struct {
	mu *sync.Mutex
	w  *bytes.Buffer
}

func (l lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

// shardedStore is two stores behind one Backend: keys whose id starts
// with "a" live on shard "A", the others on "B"; each shard can be down.
type shardedStore struct {
	a, b *faultyStore
}

func (s *shardedStore) pick(key string) *faultyStore {
	if i := strings.LastIndexByte(key, ':'); i >= 0 && strings.HasPrefix(key[i+1:], "a") {
		return s.a
	}
	return s.b
}
func (s *shardedStore) Get(ctx context.Context, key string) ([]byte, bool, error) {
	return s.pick(key).Get(ctx, key)
}
func (s *shardedStore) Set(ctx context.Context, key string, v []byte, ttl time.Duration) error {
	return s.pick(key).Set(ctx, key, v, ttl)
}
func (s *shardedStore) Delete(ctx context.Context, key string) error {
	return s.pick(key).Delete(ctx, key)
}
func (s *shardedStore) Shard(_ context.Context, key string) string {
	if s.pick(key) == s.a {
		return "A"
	}
	if strings.Contains(key, "panic") {
		panic("shard kaboom")
	}
	return "B"
}

// shardWatch keeps the shards whose breakers changed.
type shardWatch struct {
	breakerWatch
	shards []string
}

func (w *shardWatch) BreakerChange(c memo.BreakerChange) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.shards = append(w.shards, fmt.Sprintf("%s:%v", c.Shard, c.Open))
}

// TestBreakerSharded: a backend that names its shards gets a breaker per
// shard: one shard down opens its breaker alone, and calls for the other
// shard's keys keep reaching it. It fails with one breaker per backend
// (the healthy shard's keys would skip the store too).
func TestBreakerSharded(t *testing.T) {
	store := &shardedStore{a: &faultyStore{err: errors.New("shard A down")}, b: &faultyStore{}}
	store.a.down.Store(true)
	w := &shardWatch{}
	f := memo.New(func(_ context.Context, id string) (string, error) { return id, nil },
		memo.Namespace("breaker-sharded"), memo.WithBackend(store), memo.Breaker(3, time.Hour),
		memo.Observe(w), memo.OnError(func(context.Context, error) {}))
	ctx := context.Background()
	for i := range 10 {
		for _, k := range []string{fmt.Sprint("a", i), fmt.Sprint("b", i), fmt.Sprint("panic", i)} {
			if got, err := f.Call(ctx, k); got != k || err != nil {
				t.Fatalf("Call(%q) = %q, %v", k, got, err)
			}
		}
	}
	if n := store.a.calls.Load(); n != 3 {
		t.Errorf("the downed shard got %d calls, want 3 (then its breaker opened)", n)
	}
	if n := store.b.calls.Load(); n != 40 {
		t.Errorf("the healthy shard got %d calls for 20 misses, want 40 (a read and a write each)", n)
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if fmt.Sprint(w.shards) != "[A:true]" {
		t.Errorf("breaker changes = %v, want [A:true]", w.shards)
	}
}
