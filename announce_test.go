package memo_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/gomemo/memo"
	"github.com/gomemo/memo/backends/memory"
)

// recInvalidator is an Invalidator that records what memo publishes
// through it and delivers nothing.
type recInvalidator struct {
	mu   sync.Mutex
	sub  memo.Subscriber
	pubs []memo.Invalidation
}

func (r *recInvalidator) Publish(ctx context.Context, inv memo.Invalidation) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.pubs = append(r.pubs, inv)
	return nil
}

func (r *recInvalidator) Subscribe(s memo.Subscriber) func() {
	r.sub = s
	s.Renewed()
	return func() {}
}

func (r *recInvalidator) take() []memo.Invalidation {
	r.mu.Lock()
	defer r.mu.Unlock()
	p := r.pubs
	r.pubs = nil
	return p
}

// fakeAnnouncer is a Backend, Clearer and Leaser on backends/memory that
// is an Announcer for one Invalidator when announces is set. It records
// each call: "set k", "delete k", "setfenced k", "clear ns" for the
// backend's own methods, "announce <op> k" for WriteAnnounce (with the
// Invalidation it was given).
type fakeAnnouncer struct {
	*memory.Backend
	inv       memo.Invalidator
	announces bool
	pubFails  atomic.Bool // every publish fails after its write landed
	gets      atomic.Int64

	mu     sync.Mutex
	calls  []string
	invs   []memo.Invalidation
	leases map[string]string
	asked  []memo.Invalidator
}

func newFakeAnnouncer(inv memo.Invalidator, announces bool) *fakeAnnouncer {
	return &fakeAnnouncer{Backend: memory.New(), inv: inv, announces: announces, leases: map[string]string{}}
}

func (f *fakeAnnouncer) record(call string) {
	f.mu.Lock()
	f.calls = append(f.calls, call)
	f.mu.Unlock()
}

// take returns the recorded calls and invalidations, and forgets them.
func (f *fakeAnnouncer) take() ([]string, []memo.Invalidation) {
	f.mu.Lock()
	defer f.mu.Unlock()
	c, i := f.calls, f.invs
	f.calls, f.invs = nil, nil
	return c, i
}

func (f *fakeAnnouncer) Get(ctx context.Context, key string) ([]byte, bool, error) {
	f.gets.Add(1)
	return f.Backend.Get(ctx, key)
}

func (f *fakeAnnouncer) Set(ctx context.Context, key string, v []byte, ttl time.Duration) error {
	f.record("set " + key)
	return f.Backend.Set(ctx, key, v, ttl)
}

func (f *fakeAnnouncer) Delete(ctx context.Context, key string) error {
	f.record("delete " + key)
	f.mu.Lock()
	delete(f.leases, key)
	f.mu.Unlock()
	return f.Backend.Delete(ctx, key)
}

func (f *fakeAnnouncer) Clear(ctx context.Context, ns string) error {
	f.record("clear " + ns)
	return f.Backend.Clear(ctx, ns)
}

func (f *fakeAnnouncer) Acquire(ctx context.Context, key string, ttl time.Duration) (string, bool, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if _, held := f.leases[key]; held {
		return "", false, nil
	}
	tok := fmt.Sprint("t", len(f.leases), key)
	f.leases[key] = tok
	return tok, true, nil
}

func (f *fakeAnnouncer) SetFenced(ctx context.Context, key string, v []byte, ttl time.Duration, token string) (bool, error) {
	f.record("setfenced " + key)
	return f.setFenced(ctx, key, v, ttl, token)
}

func (f *fakeAnnouncer) setFenced(ctx context.Context, key string, v []byte, ttl time.Duration, token string) (bool, error) {
	f.mu.Lock()
	held := f.leases[key] == token
	if held {
		delete(f.leases, key)
	}
	f.mu.Unlock()
	if !held {
		return false, nil
	}
	return true, f.Backend.Set(ctx, key, v, ttl)
}

func (f *fakeAnnouncer) Release(ctx context.Context, key, token string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.leases[key] == token {
		delete(f.leases, key)
	}
	return nil
}

func (f *fakeAnnouncer) Void(ctx context.Context, key string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.leases, key)
	return nil
}

func (f *fakeAnnouncer) Announces(inv memo.Invalidator) bool {
	f.mu.Lock()
	f.asked = append(f.asked, inv)
	f.mu.Unlock()
	return f.announces && inv == f.inv
}

func (f *fakeAnnouncer) WriteAnnounce(ctx context.Context, w memo.Write, inv memo.Invalidation) (bool, error) {
	f.mu.Lock()
	f.calls = append(f.calls, fmt.Sprintf("announce %d %s", w.Op, w.Key))
	f.invs = append(f.invs, inv)
	f.mu.Unlock()
	var err error
	switch w.Op {
	case memo.OpSet:
		err = f.Backend.Set(ctx, w.Key, w.Value, w.TTL)
	case memo.OpSetFenced:
		return f.setFenced(ctx, w.Key, w.Value, w.TTL, w.Token)
	case memo.OpDelete:
		f.mu.Lock()
		delete(f.leases, w.Key)
		f.mu.Unlock()
		err = f.Backend.Delete(ctx, w.Key)
	case memo.OpClear:
		err = f.Backend.Clear(ctx, w.Key)
	}
	if err == nil && f.pubFails.Load() {
		return true, fmt.Errorf("%w: fake publish refused", memo.ErrNotPublished)
	}
	return err == nil, err
}

var (
	_ memo.Announcer = (*fakeAnnouncer)(nil)
	_ memo.Leaser    = (*fakeAnnouncer)(nil)
	_ memo.Clearer   = (*fakeAnnouncer)(nil)
)

// A backend that Announces the local tier's Invalidator gets each write,
// Forget, Set and Clear as one WriteAnnounce, with the invalidation the
// Invalidator would have published, and memo publishes nothing itself;
// one that does not Announce it (or announces for another Invalidator)
// gets its own methods and memo publishes after them. Either way the
// writer's own tier is updated at once.
func TestAnnouncer(t *testing.T) {
	const id = 7
	type op struct {
		name string
		// do runs the op on f (fl: the same with Lease); it returns the
		// id whose entry the op names ("" for the namespace).
		do        func(ctx context.Context, f, fl *memo.Func[int, string]) (*memo.Func[int, string], string)
		announced string // the WriteAnnounce's op and key: "%d %s"
		direct    string // the backend call without an Announcer
	}
	ops := []op{
		{"Call (a miss)", func(ctx context.Context, f, fl *memo.Func[int, string]) (*memo.Func[int, string], string) {
			f.Call(ctx, id)
			return f, "7"
		}, "announce 1 KEY", "set KEY"},
		{"Call with Lease (a leased write)", func(ctx context.Context, f, fl *memo.Func[int, string]) (*memo.Func[int, string], string) {
			fl.Call(ctx, id)
			return fl, "7"
		}, "announce 2 KEY", "setfenced KEY"},
		{"Set", func(ctx context.Context, f, fl *memo.Func[int, string]) (*memo.Func[int, string], string) {
			f.Set(ctx, id, "set")
			return f, "7"
		}, "announce 1 KEY", "set KEY"},
		{"Forget", func(ctx context.Context, f, fl *memo.Func[int, string]) (*memo.Func[int, string], string) {
			f.Call(ctx, id)
			f.Forget(ctx, id)
			return f, "7"
		}, "announce 3 KEY", "delete KEY"},
		{"Clear", func(ctx context.Context, f, fl *memo.Func[int, string]) (*memo.Func[int, string], string) {
			f.Call(ctx, id)
			f.Clear(ctx)
			return f, ""
		}, "announce 4 NS", "clear NS"},
	}
	modes := []struct {
		name      string
		announces bool
		other     bool // the backend announces for another Invalidator
	}{
		{"Announces true", true, false},
		{"Announces false", false, false},
		{"Announces for another Invalidator", true, true},
	}
	for _, mode := range modes {
		for _, o := range ops {
			t.Run(mode.name+"/"+o.name, func(t *testing.T) {
				ctx := context.Background()
				inv := &recInvalidator{}
				tier := memo.NewLocalTier(1<<20, inv)
				defer tier.Close()
				var be *fakeAnnouncer
				if mode.other {
					be = newFakeAnnouncer(&recInvalidator{}, true)
				} else {
					be = newFakeAnnouncer(inv, mode.announces)
				}
				var runs atomic.Int64
				fn := func(ctx context.Context, id int) (string, error) {
					return fmt.Sprint("run ", runs.Add(1)), nil
				}
				f := memo.New(fn, memo.Namespace("ann"), memo.WithBackend(be), memo.WithLocalTier(tier))
				fl := memo.New(fn, memo.Namespace("annl"), memo.WithBackend(be), memo.WithLocalTier(tier), memo.Lease(time.Minute))
				// Warm up: the first call loads the configuration.
				f.Key(0)
				fl.Key(0)
				be.take()
				inv.take()

				g, wantID := o.do(ctx, f, fl)
				calls, invs := be.take()
				pubs := inv.take()
				last := calls[len(calls)-1]
				replace := func(s string) string {
					switch {
					case len(s) > 3 && s[len(s)-3:] == "KEY":
						return s[:len(s)-3] + g.Key(id)
					case len(s) > 2 && s[len(s)-2:] == "NS":
						return s[:len(s)-2] + g.Namespace()
					}
					return s
				}
				wantInv := memo.Invalidation{Namespace: g.Namespace(), ID: wantID}
				ignoreOrigin := cmp.Comparer(func(a, b memo.Invalidation) bool { return a.Namespace == b.Namespace && a.ID == b.ID })
				var sent []memo.Invalidation
				if mode.announces && !mode.other {
					if want := replace(o.announced); last != want {
						t.Errorf("the backend's last call = %q, want %q (all: %q)", last, want, calls)
					}
					if len(pubs) != 0 {
						t.Errorf("Invalidator.Publish got %+v, want nothing: the backend announces", pubs)
					}
					sent = invs[len(invs)-1:]
				} else {
					if want := replace(o.direct); last != want {
						t.Errorf("the backend's last call = %q, want %q (all: %q)", last, want, calls)
					}
					if len(invs) != 0 {
						t.Errorf("WriteAnnounce got %+v, want no call", invs)
					}
					if len(pubs) == 0 {
						t.Fatalf("Invalidator.Publish got nothing, want %+v", wantInv)
					}
					sent = pubs[len(pubs)-1:]
				}
				if diff := cmp.Diff([]memo.Invalidation{wantInv}, sent, ignoreOrigin); diff != "" {
					t.Errorf("invalidation sent (-want +got):\n%s", diff)
				}
				origin := sent[0].Origin
				if origin == "" {
					t.Errorf("invalidation sent with no Origin: %+v", sent[0])
				}
				for _, a := range be.asked {
					if a != memo.Invalidator(inv) {
						t.Errorf("Announces asked about %v, want the tier's Invalidator %v", a, inv)
					}
				}
				if len(be.asked) == 0 {
					t.Errorf("Announces never asked")
				}

				// The writer's own tier: updated at once.
				gets, before := be.gets.Load(), runs.Load()
				v, err := g.Call(ctx, id)
				if err != nil {
					t.Fatal(err)
				}
				switch o.name {
				case "Forget", "Clear":
					if runs.Load() != before+1 {
						t.Errorf("Call after %s = %q, want a new run of fn", o.name, v)
					}
				case "Set":
					if v != "set" || be.gets.Load() != gets {
						t.Errorf("Call after Set = %q (%d backend reads), want %q from the local tier", v, be.gets.Load()-gets, "set")
					}
				default:
					if runs.Load() != before || be.gets.Load() != gets {
						t.Errorf("Call after %s = %q, ran fn %d and read the backend %d times, want a local hit", o.name, v, runs.Load()-before, be.gets.Load()-gets)
					}
				}
				// The message's Origin is the writer's tier's: delivered to
				// it, it changes nothing; with another Origin, it drops the
				// copy.
				g.Call(ctx, id)
				gets = be.gets.Load()
				echo := sent[0]
				echo.ID = "7"
				inv.sub.Invalidate(echo)
				g.Call(ctx, id)
				if be.gets.Load() != gets {
					t.Errorf("the writer's tier dropped its copy on its own message (Origin %q)", origin)
				}
				echo.Origin = "another process"
				inv.sub.Invalidate(echo)
				g.Call(ctx, id)
				if be.gets.Load() != gets+1 {
					t.Errorf("the tier kept its copy after another process's message")
				}
			})
		}
	}
}

// A leased write that the lease no longer covers is refused, and neither
// WriteAnnounce's nor memo's publish makes the writer's tier keep it.
func TestAnnouncerFencedWriteRefused(t *testing.T) {
	ctx := context.Background()
	inv := &recInvalidator{}
	tier := memo.NewLocalTier(1<<20, inv)
	defer tier.Close()
	be := newFakeAnnouncer(inv, true)
	gate, entered := make(chan struct{}), make(chan struct{})
	fn := func(ctx context.Context, id int) (string, error) {
		close(entered)
		<-gate
		return "old", nil
	}
	f := memo.New(fn, memo.Namespace("fenced"), memo.WithBackend(be), memo.WithLocalTier(tier), memo.Lease(time.Minute))
	done := make(chan string)
	go func() {
		v, _ := f.Call(ctx, 1)
		done <- v
	}()
	<-entered
	// Another process voids the lease (its Forget), as the backend sees it.
	be.Void(ctx, f.Key(1))
	be.take()
	close(gate)
	<-done
	calls, _ := be.take()
	if diff := cmp.Diff([]string{fmt.Sprintf("announce %d %s", memo.OpSetFenced, f.Key(1))}, calls); diff != "" {
		t.Errorf("backend calls (-want +got):\n%s", diff)
	}
	if pubs := inv.take(); len(pubs) != 0 {
		t.Errorf("Publish got %+v after a refused fenced write, want nothing", pubs)
	}
	if _, ok, _ := be.Backend.Get(ctx, f.Key(1)); ok {
		t.Errorf("the refused write landed in the backend")
	}
}

// TestAnnouncerPublishFails: when an Announcer's write lands and only its
// publish fails (ErrNotPublished), the write counts as done, as when
// Invalidator.Publish fails after a write: the answer is stored and hit,
// Forget and Set return nil, and each failed publish is reported as a
// "publish" fault. It fails if memo treats the write as failed.
func TestAnnouncerPublishFails(t *testing.T) {
	ctx := context.Background()
	inv := &recInvalidator{}
	tier := memo.NewLocalTier(1<<20, inv)
	defer tier.Close()
	be := newFakeAnnouncer(inv, true)
	be.pubFails.Store(true)
	var mu sync.Mutex
	var ops []string
	runs := 0
	f := memo.New(func(_ context.Context, id int) (int, error) { runs++; return id, nil }, memo.Namespace("announce-pubfail"),
		memo.WithBackend(be), memo.WithLocalTier(tier), memo.OnError(func(_ context.Context, err error) {
			var be *memo.BackendError
			if errors.As(err, &be) && errors.Is(err, memo.ErrNotPublished) {
				mu.Lock()
				ops = append(ops, be.Op)
				mu.Unlock()
				return
			}
			t.Errorf("OnError(%v), want only publish faults", err)
		}))
	e, err := f.Lookup(ctx, 1, memo.UseCache)
	if err != nil || !e.Stored {
		t.Fatalf("Lookup(1) = %+v, %v; want an answer Stored", e, err)
	}
	if _, ok, _ := be.Backend.Get(ctx, f.Key(1)); !ok {
		t.Fatalf("the answer is not in the backend")
	}
	if err := f.Set(ctx, 2, 2); err != nil {
		t.Errorf("Set = %v, want nil: the write landed", err)
	}
	if err := f.Forget(ctx, 1); err != nil {
		t.Errorf("Forget = %v, want nil: the delete landed", err)
	}
	if err := f.Clear(ctx); err != nil {
		t.Errorf("Clear = %v, want nil: the clear landed", err)
	}
	mu.Lock()
	defer mu.Unlock()
	if diff := cmp.Diff([]string{"publish", "publish", "publish", "publish"}, ops); diff != "" {
		t.Errorf("faults reported (-want +got):\n%s", diff)
	}
	if runs != 1 {
		t.Errorf("fn ran %d times, want 1", runs)
	}
}

// failingInvalidator subscribes at once and refuses every Publish.
type failingInvalidator struct{ recInvalidator }

func (f *failingInvalidator) Publish(context.Context, memo.Invalidation) error {
	return errors.New("publish refused")
}

// TestPublishFailureHookMayForget: OnError is told of a failed publish
// outside the write's fence, as of every other fault of a write, so that
// a hook may call Forget for the key (Forget waits for a write under way:
// a report from inside it would wait for itself). It fails if the call
// hangs.
func TestPublishFailureHookMayForget(t *testing.T) {
	ctx := context.Background()
	tier := memo.NewLocalTier(1<<20, &failingInvalidator{})
	defer tier.Close()
	var f *memo.Func[int, int]
	var forgets atomic.Int64
	f = memo.New(func(_ context.Context, id int) (int, error) { return id, nil }, memo.Namespace("publish-hook-forget"),
		memo.WithBackend(memory.New()), memo.WithLocalTier(tier), memo.OnError(func(ctx context.Context, err error) {
			var be *memo.BackendError
			// Forget's own publish fails too: forget once per write.
			if errors.As(err, &be) && be.Op == "publish" && be.Key == f.Key(1) && forgets.Add(1)%2 == 1 {
				f.Forget(ctx, 1)
			}
		}))
	done := make(chan struct{})
	go func() {
		defer close(done)
		f.Call(ctx, 1)
		f.Set(ctx, 1, 2)
	}()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Call with a failing publish and an OnError hook that calls Forget did not return within 5 s")
	}
}
