package memo_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/gomemo/memo"
	"github.com/gomemo/memo/backends/memory"
)

type Address struct {
	City string
	Zip  *string
}

type Profile struct {
	ID      int64
	Name    string
	Tags    []string
	Scores  map[string]int
	Home    Address
	Work    *Address
	Avatar  []byte
	Created time.Time
	Nested  []map[string][]int
}

func sample(id int64) Profile {
	zip := "75001"
	return Profile{
		ID:      id,
		Name:    fmt.Sprintf("user-%d", id),
		Tags:    []string{"a", "b"},
		Scores:  map[string]int{"x": 1, "y": 2},
		Home:    Address{City: "Paris", Zip: &zip},
		Work:    &Address{City: "Lyon"},
		Avatar:  []byte{0, 1, 2, 255},
		Created: time.Date(2026, 11, 25, 8, 0, 0, 123456789, time.UTC),
		Nested:  []map[string][]int{{"k": {1, 2}}},
	}
}

// counter counts calls of a function returning sample profiles.
type counter struct{ n atomic.Int64 }

func (c *counter) fetch(ctx context.Context, id int64) (Profile, error) {
	c.n.Add(1)
	return sample(id), nil
}

func newMem() *memory.Backend { return memory.New() }

func TestRoundTrip(t *testing.T) {
	for _, codec := range []memo.Codec{memo.JSON, memo.Msgpack} {
		t.Run(codec.Name(), func(t *testing.T) {
			var c counter
			f := memo.New(c.fetch, memo.Namespace("rt"), memo.WithBackend(newMem()), memo.WithCodec(codec))
			ctx := context.Background()
			first, err := f.Call(ctx, 7)
			if err != nil {
				t.Fatal(err)
			}
			hit, err := f.Call(ctx, 7)
			if err != nil {
				t.Fatal(err)
			}
			if n := c.n.Load(); n != 1 {
				t.Fatalf("fn ran %d times, want 1", n)
			}
			if diff := cmp.Diff(sample(7), first); diff != "" {
				t.Errorf("miss value differs (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(sample(7), hit); diff != "" {
				t.Errorf("Call(7) hit differs from fn's value (-want +got):\n%s", diff)
			}
			// Mutating what a hit returned never changes later hits.
			hit.Tags[0] = "MUT"
			hit.Scores["x"] = 99
			*hit.Home.Zip = "MUT"
			hit.Avatar[0] = 9
			first.Tags[1] = "MUT"
			again, _ := f.Call(ctx, 7)
			if diff := cmp.Diff(sample(7), again); diff != "" {
				t.Errorf("a caller's mutation leaked into the cache (-want +got):\n%s", diff)
			}
		})
	}
}

func TestScalarResults(t *testing.T) {
	ctx := context.Background()
	b := newMem()
	s := memo.New(func(_ context.Context, n int) (string, error) { return strings.Repeat("x", n), nil }, memo.Namespace("s"), memo.WithBackend(b))
	for range 2 {
		if got, _ := s.Call(ctx, 3); got != "xxx" {
			t.Fatalf("Call(3) = %q, want xxx", got)
		}
	}
	p := memo.New(func(_ context.Context, n int) (*int, error) {
		if n == 0 {
			return nil, nil
		}
		return &n, nil
	}, memo.Namespace("p"), memo.WithBackend(b))
	for range 2 {
		if got, _ := p.Call(ctx, 0); got != nil {
			t.Fatalf("Call(0) = %v, want nil", got)
		}
		if got, _ := p.Call(ctx, 5); got == nil || *got != 5 {
			t.Fatalf("Call(5) = %v, want pointer to 5", got)
		}
	}
}

type Query struct {
	Name   string
	Limit  int
	Filter map[string]string
	Skip   string `memo:"-"`
}

type userKey struct{ Org, User string }

func (k userKey) MemoKey() string { return k.Org + "/" + k.User }

func noop[A any](context.Context, A) (int, error) { return 0, nil }

func TestKeys(t *testing.T) {
	ns := "keys"
	str := memo.New(noop[string], memo.Namespace(ns))
	i64 := memo.New(noop[int64], memo.Namespace(ns), memo.Prefix("app"))
	q := memo.New(noop[Query], memo.Namespace(ns))
	uk := memo.New(noop[userKey], memo.Namespace(ns))
	kf := memo.New(noop[Query], memo.Namespace(ns), memo.KeyFunc(func(q Query) string { return "q-" + q.Name }))
	tests := []struct {
		name string
		got  string
		want string
	}{
		{"safe string", str.Key("alice"), "memo:keys:alice"},
		{"int64", i64.Key(-42), "app:keys:-42"},
		{"Keyer", uk.Key(userKey{"acme", "bob"}), "memo:keys:acme/bob"},
		{"KeyFunc", kf.Key(Query{Name: "n"}), "memo:keys:q-n"},
		{"no prefix", memo.New(noop[bool], memo.Namespace(ns), memo.Prefix("")).Key(true), "keys:true"},
	}
	for _, tt := range tests {
		if tt.got != tt.want {
			t.Errorf("%s: Key = %q, want %q", tt.name, tt.got, tt.want)
		}
	}
	// Unsafe strings are hashed, and never collide with a safe one.
	for _, s := range []string{"", "a b", "a:b", "new\nline", "nul\x00", "\xff\xfe", "~tilde", strings.Repeat("x", 1<<20)} {
		k := str.Key(s)
		if !strings.HasPrefix(k, "memo:keys:~") || len(k) != len("memo:keys:")+44 {
			t.Errorf("Key(%.20q) = %q, want a hashed id", s, k)
		}
		assertLegal(t, k)
	}
	// Struct keys: canonical across map orders, tags honoured.
	a := Query{Name: "n", Limit: 1, Filter: map[string]string{"a": "1", "b": "2", "c": "3"}}
	b := Query{Name: "n", Limit: 1, Filter: map[string]string{"c": "3", "b": "2", "a": "1"}, Skip: "ignored"}
	if q.Key(a) != q.Key(b) {
		t.Errorf("Key(%v) = %q, Key(%v) = %q, want equal", a, q.Key(a), b, q.Key(b))
	}
	// The default namespace is a plain function's package path and name
	// (generic functions have none: see TestDefaultNamespace).
	if got, want := memo.New(benchUser).Namespace(), "memo:github.com/gomemo/memo_test.benchUser"; got != want {
		t.Errorf("default Namespace() = %q, want %q", got, want)
	}
}

// A golden key pins the canonical encoding: if it changes, every stored
// entry of every user becomes a miss after upgrading memo.
func TestKeyStable(t *testing.T) {
	q := memo.New(noop[Query], memo.Namespace("golden"))
	got := q.Key(Query{Name: "n", Limit: 3, Filter: map[string]string{"b": "2", "a": "1"}})
	const want = "memo:golden:~" // followed by the hash checked below
	if !strings.HasPrefix(got, want) {
		t.Fatalf("Key = %q, want prefix %q", got, want)
	}
	if got != goldenQueryKey {
		t.Errorf("Key = %q, want %q (the canonical encoding changed)", got, goldenQueryKey)
	}
}

const goldenQueryKey = "memo:golden:~-_uOF5eio6F6PHDM5fn8h5_A7oerTHyKy76ko4dbcJs"

func assertLegal(t *testing.T, k string) {
	t.Helper()
	if len(k) > memo.MaxKeyLen {
		t.Errorf("key %.40q is %d bytes, over %d", k, len(k), memo.MaxKeyLen)
	}
	for i := 0; i < len(k); i++ {
		if k[i] <= ' ' || k[i] >= 0x7f {
			t.Errorf("key %q has byte %#x at %d", k, k[i], i)
		}
	}
}

func TestKeysDistinct(t *testing.T) {
	type S struct {
		A string
		B string
	}
	type P struct{ P *int }
	one, two := 1, 1
	s := memo.New(noop[S], memo.Namespace("d"))
	if s.Key(S{"a b", "c"}) == s.Key(S{"a", "b c"}) {
		t.Error("S{a b, c} and S{a, b c} share a key (fmt output is equal)")
	}
	p := memo.New(noop[P], memo.Namespace("d"))
	if p.Key(P{&one}) != p.Key(P{&two}) {
		t.Error("pointers to equal values have different keys: pointer addresses leak into keys")
	}
	if p.Key(P{&one}) == p.Key(P{nil}) {
		t.Error("nil and non-nil pointer share a key")
	}
	sl := memo.New(noop[[]string], memo.Namespace("d"))
	if sl.Key([]string{"ab", "c"}) == sl.Key([]string{"a", "bc"}) {
		t.Error("[ab c] and [a bc] share a key")
	}
	if sl.Key(nil) == sl.Key([]string{}) {
		t.Log("nil and empty slices differ in key; that is allowed")
	}
	an := memo.New(noop[any], memo.Namespace("d"))
	if an.Key(int64(1)) == an.Key(int32(1)) {
		t.Error("int64(1) and int32(1) in an interface share a key")
	}
	if an.Key("1") == an.Key(1) {
		t.Error(`"1" and 1 in an interface share a key`)
	}
}

func TestKeyAllocs(t *testing.T) {
	i := memo.New(noop[int64], memo.Namespace("alloc"))
	s := memo.New(noop[string], memo.Namespace("alloc"))
	for name, f := range map[string]func(){
		"int64":  func() { i.Key(123456) },
		"string": func() { s.Key("alice") },
	} {
		if n := testing.AllocsPerRun(100, f); n > 1 {
			t.Errorf("Key(%s) allocates %v times, want 1 (the key string)", name, n)
		}
	}
}

func TestNewPanics(t *testing.T) {
	tests := map[string]func(){
		"nil fn":          func() { memo.New[int, int](nil) },
		"anonymous":       func() { memo.New(func(context.Context, int) (int, error) { return 0, nil }) },
		"unkeyable":       func() { memo.New(noop[func()], memo.Namespace("x")) },
		"chan field":      func() { memo.New(noop[struct{ C chan int }], memo.Namespace("x")) },
		"KeyFunc type":    func() { memo.New(noop[int], memo.KeyFunc(func(string) string { return "" })) },
		"Expire(-1)":      func() { memo.Expire(-1) },
		"Namespace()":     func() { memo.Namespace("") },
		"Namespace(sp)":   func() { memo.Namespace("a b") },
		"Prefix(ctl)":     func() { memo.Prefix("a\n") },
		"WithBackend":     func() { memo.WithBackend(nil) },
		"nil *Backend":    func() { memo.WithBackend((*memory.Backend)(nil)) },
		"WithCodec":       func() { memo.WithCodec(nil) },
		"Timeout(0)":      func() { memo.Timeout(0) },
		"OnError(nil)":    func() { memo.OnError(nil) },
		"SetDefaults(ns)": func() { memo.SetDefaults(memo.Namespace("x")) },
	}
	for name, f := range tests {
		t.Run(name, func(t *testing.T) {
			defer func() {
				r := recover()
				if r == nil {
					t.Fatalf("%s did not panic", name)
				}
				if msg := fmt.Sprint(r); !strings.HasPrefix(msg, "memo: ") {
					t.Errorf("panic %q does not start with \"memo: \"", msg)
				}
			}()
			f()
		})
	}
	// Closures are fine with a Namespace.
	memo.New(func(context.Context, int) (int, error) { return 0, nil }, memo.Namespace("closure"))
}

type V1 struct {
	ID   int64
	Name string
}
type V2 struct {
	ID   int64
	Name string `json:"full_name"`
}

// After a deploy that changes R, old entries are misses, not half-decoded.
func TestFingerprintSafeDeploy(t *testing.T) {
	ctx := context.Background()
	b := newMem()
	old := memo.New(func(_ context.Context, id int64) (V1, error) { return V1{id, "old"}, nil }, memo.Namespace("deploy"), memo.WithBackend(b))
	if _, err := old.Call(ctx, 1); err != nil {
		t.Fatal(err)
	}
	var runs int
	nw := memo.New(func(_ context.Context, id int64) (V2, error) { runs++; return V2{id, "new"}, nil }, memo.Namespace("deploy"), memo.WithBackend(b))
	got, _ := nw.Call(ctx, 1)
	if got != (V2{1, "new"}) || runs != 1 {
		t.Fatalf("Call after R changed = %+v (fn ran %d times), want fresh {1 new} from fn", got, runs)
	}
	// Same for a codec change.
	mp := memo.New(func(_ context.Context, id int64) (V2, error) { runs++; return V2{id, "mp"}, nil }, memo.Namespace("deploy"), memo.WithBackend(b), memo.WithCodec(memo.Msgpack))
	if got, _ := mp.Call(ctx, 1); got.Name != "mp" {
		t.Fatalf("Call after codec changed = %+v, want a miss", got)
	}
}

func TestExpiry(t *testing.T) {
	ctx := context.Background()
	var c counter
	f := memo.New(c.fetch, memo.Namespace("exp"), memo.WithBackend(newMem()), memo.Expire(150*time.Millisecond))
	f.Call(ctx, 1)
	f.Call(ctx, 1)
	if n := c.n.Load(); n != 1 {
		t.Fatalf("fn ran %d times before expiry, want 1", n)
	}
	e, _ := f.Lookup(ctx, 1, memo.UseCache)
	if rem := time.Until(e.FreshUntil); !e.Hit || rem <= 0 || rem > 150*time.Millisecond {
		t.Fatalf("Lookup = hit %v, remaining %v; want a hit with 0 < remaining <= 150ms", e.Hit, rem)
	}
	time.Sleep(200 * time.Millisecond)
	f.Call(ctx, 1)
	if n := c.n.Load(); n != 2 {
		t.Fatalf("fn ran %d times after expiry, want 2", n)
	}
	// Without Expire entries do not expire.
	g := memo.New(c.fetch, memo.Namespace("noexp"), memo.WithBackend(newMem()))
	e, _ = g.Lookup(ctx, 1, memo.UseCache)
	if !e.FreshUntil.IsZero() {
		t.Errorf("FreshUntil = %v without Expire, want zero", e.FreshUntil)
	}
}

func TestErrorsNotCached(t *testing.T) {
	ctx := context.Background()
	errBoom := errors.New("boom")
	var n int
	f := memo.New(func(_ context.Context, id int) (int, error) {
		n++
		if n == 1 {
			return 0, fmt.Errorf("wrapped: %w", errBoom)
		}
		return n, nil
	}, memo.Namespace("errs"), memo.WithBackend(newMem()))
	if _, err := f.Call(ctx, 1); !errors.Is(err, errBoom) {
		t.Fatalf("Call = %v, want errBoom", err)
	}
	if got, err := f.Call(ctx, 1); err != nil || got != 2 {
		t.Fatalf("Call after an error = %v, %v; want 2, nil (errors are not cached)", got, err)
	}
}

func TestForgetClear(t *testing.T) {
	ctx := context.Background()
	b := newMem()
	var c counter
	f := memo.New(c.fetch, memo.Namespace("fc"), memo.WithBackend(b))
	other := memo.New(c.fetch, memo.Namespace("fcx"), memo.WithBackend(b))
	f.Call(ctx, 1)
	f.Call(ctx, 2)
	other.Call(ctx, 1)
	if err := f.Forget(ctx, 1); err != nil {
		t.Fatal(err)
	}
	f.Call(ctx, 1) // miss
	f.Call(ctx, 2) // hit
	if n := c.n.Load(); n != 4 {
		t.Fatalf("fn ran %d times, want 4 after Forget(1)", n)
	}
	if err := f.Clear(ctx); err != nil {
		t.Fatal(err)
	}
	f.Call(ctx, 1)
	f.Call(ctx, 2)
	other.Call(ctx, 1) // a namespace that has f's as a prefix is untouched
	if n := c.n.Load(); n != 6 {
		t.Fatalf("fn ran %d times, want 6 after Clear", n)
	}
	plain := memo.New(c.fetch, memo.Namespace("fc"), memo.WithBackend(plainBackend{b}))
	if err := plain.Clear(ctx); !errors.Is(err, memo.ErrClearUnsupported) {
		t.Errorf("Clear on a backend without Clearer = %v, want ErrClearUnsupported", err)
	}
}

// plainBackend hides the Clearer of the backend it wraps.
type plainBackend struct{ memo.Backend }

func TestEnabledFalse(t *testing.T) {
	ctx := context.Background()
	fb := &faultBackend{}
	var c counter
	f := memo.New(c.fetch, memo.Namespace("off"), memo.WithBackend(fb), memo.Enabled(false))
	f.Call(ctx, 1)
	f.Call(ctx, 1)
	e, err := f.Lookup(ctx, 1, memo.UseCache)
	if err != nil || e.Cached || e.Hit {
		t.Fatalf("Lookup disabled = %+v, %v; want uncached", e, err)
	}
	if n := c.n.Load(); n != 3 {
		t.Errorf("fn ran %d times, want 3 with caching disabled", n)
	}
	if n := fb.calls.Load(); n != 0 {
		t.Errorf("backend called %d times with caching disabled, want 0", n)
	}
}

// SetDefaults is read at call time; a function's own options win.
func TestSetDefaults(t *testing.T) {
	ctx := context.Background()
	t.Cleanup(memo.ResetDefaults)
	var c counter
	f := memo.New(c.fetch, memo.Namespace("defaults"))
	own := memo.New(c.fetch, memo.Namespace("defaults-own"), memo.Prefix("mine"))
	b := newMem()
	memo.SetDefaults(memo.WithBackend(b), memo.Prefix("app"))
	f.Call(ctx, 1)
	own.Call(ctx, 1)
	if got, want := f.Key(1), "app:defaults:1"; got != want {
		t.Errorf("Key after SetDefaults = %q, want %q", got, want)
	}
	if got, want := own.Key(1), "mine:defaults-own:1"; got != want {
		t.Errorf("Key with own Prefix = %q, want %q", got, want)
	}
	if _, ok, _ := b.Get(ctx, "app:defaults:1"); !ok {
		t.Error("entry not stored in the backend set by SetDefaults")
	}
	memo.SetDefaults(memo.Enabled(false))
	f.Call(ctx, 1)
	f.Call(ctx, 1)
	if n := c.n.Load(); n != 4 {
		t.Errorf("fn ran %d times, want 4 (two uncached calls after SetDefaults(Enabled(false)))", n)
	}
	// Each call adds to the defaults: turning the cache back on finds the
	// backend set earlier.
	memo.SetDefaults(memo.Enabled(true))
	f.Call(ctx, 2)
	if _, ok, _ := b.Get(ctx, "app:defaults:2"); !ok {
		t.Error("SetDefaults(Enabled(true)) lost the backend set by an earlier SetDefaults")
	}
}

func TestLookupModes(t *testing.T) {
	ctx := context.Background()
	var n atomic.Int64
	f := memo.New(func(context.Context, string) (int64, error) { return n.Add(1), nil }, memo.Namespace("modes"), memo.WithBackend(newMem()), memo.Expire(5*time.Second))
	steps := []struct {
		mode    memo.Mode
		want    string
		wantHit bool
	}{
		{memo.UseCache, "1", false},
		{memo.UseCache, "1", true},
		{memo.Refresh, "2", false},
		{memo.UseCache, "2", true},
		{memo.Bypass, "3", false},
		{memo.UseCache, "2", true},
	}
	for i, s := range steps {
		e, err := f.Lookup(ctx, "k", s.mode)
		if err != nil {
			t.Fatal(err)
		}
		if string(e.Payload) != s.want || e.Hit != s.wantHit {
			t.Fatalf("step %d: Lookup(%v) = %s hit=%v, want %s hit=%v", i, s.mode, e.Payload, e.Hit, s.want, s.wantHit)
		}
		if s.mode == memo.Bypass && (e.Cached || !e.FreshUntil.IsZero()) {
			t.Errorf("Bypass entry = Cached %v FreshUntil %v, want uncached", e.Cached, e.FreshUntil)
		}
		if v, err := f.Decode(e); err != nil || fmt.Sprint(v) != s.want {
			t.Errorf("Decode = %v, %v; want %s", v, err, s.want)
		}
	}
	// The ETag is a quoted hash of the payload: equal payloads, equal tags.
	a, _ := f.Lookup(ctx, "k", memo.UseCache)
	b, _ := f.Lookup(ctx, "k", memo.UseCache)
	if a.ETag() != b.ETag() || !strings.HasPrefix(a.ETag(), `"`) || !strings.HasSuffix(a.ETag(), `"`) {
		t.Errorf("ETag = %s and %s, want equal quoted tags", a.ETag(), b.ETag())
	}
	c, _ := f.Lookup(ctx, "other", memo.UseCache)
	if c.ETag() == a.ETag() {
		t.Errorf("different payloads share ETag %s", a.ETag())
	}
}

func TestStampede(t *testing.T) {
	ctx := context.Background()
	var runs atomic.Int64
	release := make(chan struct{})
	f := memo.New(func(ctx context.Context, id int) (Profile, error) {
		runs.Add(1)
		<-release
		return sample(int64(id)), nil
	}, memo.Namespace("stampede"), memo.WithBackend(newMem()))

	const n = 200
	firstCtx, cancelFirst := context.WithCancel(ctx)
	var wg sync.WaitGroup
	errs := make([]error, n)
	vals := make([]Profile, n)
	wg.Go(func() { vals[0], errs[0] = f.Call(firstCtx, 1) })
	for runs.Load() == 0 {
		time.Sleep(time.Millisecond) // the first caller leads
	}
	for i := 1; i < n; i++ {
		wg.Go(func() { vals[i], errs[i] = f.Call(ctx, 1) })
	}
	time.Sleep(50 * time.Millisecond)
	cancelFirst()
	time.Sleep(10 * time.Millisecond)
	close(release)
	wg.Wait()
	if r := runs.Load(); r != 1 {
		t.Errorf("fn ran %d times for %d concurrent callers, want 1", r, n)
	}
	if !errors.Is(errs[0], context.Canceled) {
		t.Errorf("cancelled first caller got %v, want context.Canceled", errs[0])
	}
	for i := 1; i < n; i++ {
		if errs[i] != nil || !cmp.Equal(vals[i], sample(1)) {
			t.Fatalf("caller %d got %v, %v; want the value", i, vals[i].Name, errs[i])
		}
	}
	// Each caller got a value of its own.
	vals[1].Tags[0] = "MUT"
	if vals[2].Tags[0] == "MUT" {
		t.Error("two waiters share one result value")
	}
}

type ctxKey struct{}

// fn runs with the first caller's values, never its cancellation: callers
// that leave neither cancel the run nor start another, and the run's answer
// is stored for the next caller.
func TestSharedContext(t *testing.T) {
	local, _ := memo.OwnLocalTier(1 << 20) // a tier of its own: -count=N starts cold
	started := make(chan struct{})
	release := make(chan struct{})
	var runs atomic.Int64
	var seen any
	var fnDone <-chan struct{}
	f := memo.New(func(ctx context.Context, id int) (int, error) {
		if runs.Add(1) == 1 {
			seen, fnDone = ctx.Value(ctxKey{}), ctx.Done()
			close(started)
		}
		<-release
		return id * 10, nil
	}, memo.Namespace("sharedctx"), local)
	c1, cancel1 := context.WithCancel(context.WithValue(context.Background(), ctxKey{}, "first"))
	c2, cancel2 := context.WithTimeout(context.Background(), time.Millisecond)
	defer cancel2()
	errs := make(chan error, 2)
	go func() { _, err := f.Call(c1, 1); errs <- err }()
	<-started
	go func() { _, err := f.Call(c2, 1); errs <- err }()
	cancel1()
	for range 2 {
		if err := <-errs; err == nil {
			t.Fatal("a caller whose context ended got no error")
		}
	}
	// Both callers have left; a caller with a done context starts nothing.
	done, cancel3 := context.WithCancel(context.Background())
	cancel3()
	if _, err := f.Call(done, 1); !errors.Is(err, context.Canceled) {
		t.Errorf("Call(done ctx) = %v, want context.Canceled at once", err)
	}
	close(release)
	if got, err := f.Call(context.Background(), 1); got != 10 || err != nil {
		t.Errorf("Call(1) = %v, %v; want 10, nil", got, err)
	}
	if n := runs.Load(); n != 1 {
		t.Errorf("fn ran %d times, want 1: callers leaving must not start another run", n)
	}
	if seen != "first" {
		t.Errorf("fn saw ctx value %v, want the first caller's", seen)
	}
	if fnDone != nil {
		t.Error("fn's context can be cancelled; want it never cancelled by callers")
	}
}

func TestPanic(t *testing.T) {
	var n atomic.Int64
	f := memo.New(func(ctx context.Context, id int) (int, error) {
		if n.Add(1) == 1 {
			panic("kaboom")
		}
		return id, nil
	}, memo.Namespace("panic"), memo.WithBackend(newMem()))
	func() {
		defer func() {
			r := recover()
			pe, ok := r.(*memo.PanicError)
			if !ok || pe.Value != "kaboom" {
				t.Fatalf("recovered %v, want *memo.PanicError{kaboom}", r)
			}
		}()
		f.Call(context.Background(), 1)
	}()
	done := make(chan struct{})
	go func() {
		defer close(done)
		if got, err := f.Call(context.Background(), 1); got != 1 || err != nil {
			t.Errorf("Call after a panic = %v, %v; want 1, nil", got, err)
		}
	}()
	select {
	case <-done:
	case <-time.After(2 * time.Second):
		t.Fatal("Call after a panic hangs")
	}
}

// A Forget during a computation keeps that computation from storing.
func TestForgetDuringCompute(t *testing.T) {
	ctx := context.Background()
	started, release := make(chan struct{}), make(chan struct{})
	var runs atomic.Int64
	f := memo.New(func(ctx context.Context, id int) (int64, error) {
		if runs.Add(1) == 1 {
			close(started)
			<-release
		}
		return runs.Load(), nil
	}, memo.Namespace("forget-inflight"), memo.WithBackend(newMem()))
	for _, drop := range []func() error{
		func() error { return f.Forget(ctx, 1) },
		func() error { return f.Clear(ctx) },
	} {
		f.Forget(ctx, 1)
		runs.Store(0)
		started, release = make(chan struct{}), make(chan struct{})
		done := make(chan int64)
		go func() { v, _ := f.Call(ctx, 1); done <- v }()
		<-started
		if err := drop(); err != nil {
			t.Fatal(err)
		}
		close(release)
		if v := <-done; v != 1 {
			t.Fatalf("the waiting caller got %d, want 1", v)
		}
		if v, _ := f.Call(ctx, 1); v != 2 {
			t.Fatalf("Call after Forget/Clear during the computation = %d, want 2 (the dropped answer was stored)", v)
		}
	}
}

var checkedAtSeq atomic.Int64 // numbers TestLookupCheckedAt's namespaces

// TestLookupCheckedAt: a hit's CheckedAt is when memo judged the entry,
// so that FreshUntil.Sub(CheckedAt) is the lifetime it had left, on the
// local tier (whose clock is monotonic), on a backend, and on a local copy
// of a backend's entry; zero for an answer fn computed in the call and for
// an entry that never expires.
func TestLookupCheckedAt(t *testing.T) {
	for _, tc := range []struct {
		name string
		opts func() []memo.Option
	}{
		{"local", func() []memo.Option { return nil }},
		{"backend", func() []memo.Option { return []memo.Option{memo.WithBackend(memory.New())} }},
		{"local-copy", func() []memo.Option {
			return []memo.Option{memo.WithBackend(memory.New()), memo.WithLocalTier(memo.NewLocalTier(1<<20, nil))}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ns := fmt.Sprintf("checkedat.%s.%d", tc.name, checkedAtSeq.Add(1)) // the local tier outlives a test
			clk := memo.NewFakeClock(time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC))
			ctx := context.Background()
			f := memo.New(func(context.Context, int) (int, error) { return 1, nil },
				append(tc.opts(), memo.Namespace(ns), memo.WithClock(clk), memo.Expire(time.Minute))...)
			e, err := f.Lookup(ctx, 1, memo.UseCache)
			if err != nil || e.Hit || !e.CheckedAt.IsZero() {
				t.Fatalf("Lookup(1) on a miss = %+v, %v; want a computed answer with no CheckedAt", e, err)
			}
			for _, step := range []time.Duration{20500 * time.Millisecond, time.Nanosecond, 39 * time.Second} {
				clk.Advance(step)
				e, err := f.Lookup(ctx, 1, memo.UseCache)
				if err != nil || !e.Hit {
					t.Fatalf("Lookup(1) = %+v, %v; want a hit", e, err)
				}
				if got, want := e.FreshUntil.Sub(e.CheckedAt), e.FreshUntil.Sub(clk.Now()); got != want {
					t.Errorf("Lookup(1) at +%v: FreshUntil - CheckedAt = %v, want %v", clk.Now().Sub(e.StoredAt), got, want)
				}
			}
			forever := memo.New(func(context.Context, int) (int, error) { return 1, nil },
				append(tc.opts(), memo.Namespace(ns+".forever"), memo.WithClock(clk))...)
			forever.Call(ctx, 1)
			if e, err := forever.Lookup(ctx, 1, memo.UseCache); err != nil || !e.Hit || !e.CheckedAt.IsZero() {
				t.Fatalf("Lookup(1) of an entry that never expires = %+v, %v; want a hit with no CheckedAt", e, err)
			}
		})
	}
}
