// Package backendtest is the conformance suite of memo backends, as
// testing/fstest is for file systems: every backend that memo ships passes
// it, on real servers and on in-process fakes, and a third-party
// [memo.Backend] can run it too.
//
// A backend's test calls [Run] with a [Factory] that opens a backend on the
// store under test, and [Options] that state the backend's documented
// limits:
//
//	func TestConformance(t *testing.T) {
//		backendtest.Run(t, func(t *testing.T) memo.Backend {
//			return mybackend.New(client)
//		}, backendtest.Options{TooLarge: 2 << 20})
//	}
//
// [Run] checks the byte-level contract of [memo.Backend] (and
// [memo.Clearer]) and then runs [RunMemo], which checks memo itself over
// the backend: typed round trips with both codecs, expiry, Forget, Clear,
// corrupt entries and oversized values; then [RunFreshness], which checks
// memo's freshness options (stale answers, remembered errors, lifetimes,
// Peek and Set) over it with a clock the suite moves by hand.
//
// The suite writes only keys under namespaces unique to each run
// ("test:<name>.<random>.<pid>.<n>"), so it can share a server with other
// tests and with other runs. It needs no server of its own and no
// environment variables. It is plain testing and go-cmp.
package backendtest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gomemo/memo"
	"github.com/gomemo/memo/internal/testenv"
)

// Factory opens a backend on the store under test. The suite calls it once
// per subtest, from that subtest's goroutine, and may use the backends it
// returns concurrently. It may call t.Skip or t.Fatal when the store is
// absent, and t.Cleanup to release what it opened. Backends it returns may
// share one store: the suite's keys never collide across subtests.
type Factory func(t *testing.T) memo.Backend

// Options tune the suite to a backend's documented limits.
type Options struct {
	// MaxValue is the largest value the backend is expected to store
	// (default 512 KiB). The suite stores a value of this size.
	MaxValue int
	// TooLarge, when positive, is a size the backend must refuse with an
	// error wrapping memo.ErrTooLarge.
	TooLarge int
	// ExpirySlack is how long past a value's ttl it may still be readable
	// (stores with whole-second expiry: about 2 s; default 50 ms).
	ExpirySlack time.Duration
	// Sleep, when set, is called instead of time.Sleep wherever the suite
	// waits for stored values to expire. A fake store with a clock of its
	// own (miniredis) advances that clock by d, and should also sleep d,
	// since memo checks freshness against the real clock.
	Sleep func(d time.Duration)
}

func (o Options) sleep(d time.Duration) {
	if o.Sleep != nil {
		o.Sleep(d)
		return
	}
	time.Sleep(d)
}

func ns(t testing.TB, name string) string { return testenv.NS(t, name) }

// Run runs the conformance suite against the backends f opens, each case
// as a subtest of t: Get, Set and Delete of binary values up to
// o.MaxValue, overwrites, sub-second and no expiry, refusal of values of
// o.TooLarge bytes with [memo.ErrTooLarge], Clear of one namespace (the
// backend must implement [memo.Clearer]), concurrent use, already
// cancelled contexts (every method must return an error wrapping
// context.Canceled), and that Set does not retain its value; then memo over
// the backend ([RunMemo]) as the subtest "Memo", and memo's freshness
// options over it ([RunFreshness]) as the subtest "Freshness", and its
// counters and Observer ([RunStats]) as the subtest "Stats". Zero fields of o take
// their documented defaults. Run takes a few seconds (it waits for values
// to expire) and fails t's subtests on any deviation.
func Run(t *testing.T, f Factory, o Options) {
	o = o.withDefaults()
	tests := []struct {
		name string
		fn   func(*testing.T, memo.Backend, Options)
	}{
		{"GetSetDelete", testGetSetDelete},
		{"BinaryValues", testBinaryValues},
		{"Overwrite", testOverwrite},
		{"SubSecondExpiry", testSubSecondExpiry},
		{"NoExpiry", testNoExpiry},
		{"TooLarge", testTooLarge},
		{"Clear", testClear},
		{"Concurrent", testConcurrent},
		{"CancelledContext", testCancelled},
		{"ValueNotRetained", testNotRetained},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := f(t)
			tt.fn(t, b, o)
		})
	}
	t.Run("Memo", func(t *testing.T) { RunMemo(t, f, o) })
	t.Run("Freshness", func(t *testing.T) { RunFreshness(t, f, o) })
	t.Run("Stats", func(t *testing.T) { RunStats(t, f, o) })
	if _, ok := f(t).(memo.Leaser); ok {
		t.Run("Lease", func(t *testing.T) { RunLeaser(t, f, o) })
	}
}

func (o Options) withDefaults() Options {
	if o.MaxValue == 0 {
		o.MaxValue = 512 << 10
	}
	if o.ExpirySlack == 0 {
		o.ExpirySlack = 50 * time.Millisecond
	}
	return o
}

func mustSet(t *testing.T, b memo.Backend, key string, v []byte, ttl time.Duration) {
	t.Helper()
	if err := b.Set(context.Background(), key, v, ttl); err != nil {
		t.Fatalf("Set(%q, %d bytes, %v) = %v, want nil", key, len(v), ttl, err)
	}
}

func get(t *testing.T, b memo.Backend, key string) ([]byte, bool) {
	t.Helper()
	v, ok, err := b.Get(context.Background(), key)
	if err != nil {
		t.Fatalf("Get(%q) error = %v, want nil", key, err)
	}
	if !ok && v != nil {
		t.Fatalf("Get(%q) = %q, false; want nil on a miss", key, v)
	}
	return v, ok
}

func wantValue(t *testing.T, b memo.Backend, key string, want []byte) {
	t.Helper()
	got, ok := get(t, b, key)
	if !ok {
		t.Fatalf("Get(%q) = miss, want %d bytes", key, len(want))
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("Get(%q) = %d bytes %.40q, want %d bytes %.40q", key, len(got), got, len(want), want)
	}
}

func wantMiss(t *testing.T, b memo.Backend, key string) {
	t.Helper()
	if got, ok := get(t, b, key); ok {
		t.Fatalf("Get(%q) = hit %.40q, want miss", key, got)
	}
}

func testGetSetDelete(t *testing.T, b memo.Backend, _ Options) {
	ns := ns(t, "gsd")
	k := ns + ":k1"
	wantMiss(t, b, k)
	mustSet(t, b, k, []byte("hello"), time.Minute)
	wantValue(t, b, k, []byte("hello"))
	if err := b.Delete(context.Background(), k); err != nil {
		t.Fatalf("Delete(%q) = %v, want nil", k, err)
	}
	wantMiss(t, b, k)
	if err := b.Delete(context.Background(), ns+":never"); err != nil {
		t.Fatalf("Delete(missing) = %v, want nil", err)
	}
}

func testBinaryValues(t *testing.T, b memo.Backend, o Options) {
	ns := ns(t, "bin")
	all := make([]byte, 256)
	for i := range all {
		all[i] = byte(i)
	}
	large := make([]byte, o.MaxValue)
	r := rand.New(rand.NewPCG(1, 2))
	for i := range large {
		large[i] = byte(r.Uint32())
	}
	cases := []struct {
		name string
		v    []byte
	}{
		{"zero", []byte{0}},
		{"zeros", make([]byte, 100)},
		{"allbytes", all},
		{"crlf", []byte("a\r\nEND\r\nb")},
		{"large", large},
	}
	for _, c := range cases {
		k := ns + ":" + c.name
		mustSet(t, b, k, c.v, time.Minute)
		wantValue(t, b, k, c.v)
	}
	// An empty value is stored and read back as a hit of length 0.
	k := ns + ":empty"
	mustSet(t, b, k, []byte{}, time.Minute)
	if got, ok := get(t, b, k); !ok || len(got) != 0 {
		t.Fatalf("Get(empty) = %q, %v; want \"\", true", got, ok)
	}
}

func testOverwrite(t *testing.T, b memo.Backend, _ Options) {
	k := ns(t, "ow") + ":k"
	mustSet(t, b, k, []byte("one"), time.Minute)
	mustSet(t, b, k, []byte("two-longer"), time.Minute)
	wantValue(t, b, k, []byte("two-longer"))
	mustSet(t, b, k, []byte("3"), time.Minute)
	wantValue(t, b, k, []byte("3"))
}

func testSubSecondExpiry(t *testing.T, b memo.Backend, o Options) {
	ns := ns(t, "exp")
	k, long := ns+":short", ns+":long"
	ttl := 300 * time.Millisecond
	mustSet(t, b, k, []byte("v"), ttl)
	mustSet(t, b, long, []byte("v"), time.Minute)
	wantValue(t, b, k, []byte("v")) // a sub-second ttl is not rounded to 0
	deadline := time.Now().Add(ttl + o.ExpirySlack + time.Second)
	for {
		if _, ok := get(t, b, k); !ok {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("Get(%q) still hits %v after a %v ttl", k, ttl+o.ExpirySlack+time.Second, ttl)
		}
		o.sleep(20 * time.Millisecond)
	}
	wantValue(t, b, long, []byte("v"))
}

func testNoExpiry(t *testing.T, b memo.Backend, _ Options) {
	k := ns(t, "noexp") + ":k"
	mustSet(t, b, k, []byte("forever"), 0)
	wantValue(t, b, k, []byte("forever"))
}

func testTooLarge(t *testing.T, b memo.Backend, o Options) {
	if o.TooLarge <= 0 {
		t.Skip("backend has no item size limit")
	}
	k := ns(t, "big") + ":k"
	err := b.Set(context.Background(), k, make([]byte, o.TooLarge), time.Minute)
	if !errors.Is(err, memo.ErrTooLarge) {
		t.Fatalf("Set(%d bytes) = %v, want an error wrapping memo.ErrTooLarge", o.TooLarge, err)
	}
	wantMiss(t, b, k)
}

func testClear(t *testing.T, b memo.Backend, _ Options) {
	c, ok := b.(memo.Clearer)
	if !ok {
		t.Fatalf("%T does not implement memo.Clearer; every backend memo ships must", b)
	}
	base := ns(t, "clr")
	a, ab, nested, other := base+".a", base+".ab", base+".a:sub", base+".other"
	const n = 120 // more than one SCAN / batch page on small settings
	for i := range n {
		for _, ns := range []string{a, ab, nested, other} {
			mustSet(t, b, fmt.Sprintf("%s:%d", ns, i), []byte("x"), time.Minute)
		}
	}
	if err := c.Clear(context.Background(), a); err != nil {
		t.Fatalf("Clear(%q) = %v, want nil", a, err)
	}
	for i := range n {
		wantMiss(t, b, fmt.Sprintf("%s:%d", a, i))
		for _, ns := range []string{ab, nested, other} {
			wantValue(t, b, fmt.Sprintf("%s:%d", ns, i), []byte("x"))
		}
	}
	// The namespace is usable again after a clear.
	mustSet(t, b, a+":0", []byte("again"), time.Minute)
	wantValue(t, b, a+":0", []byte("again"))
	// Clearing an empty namespace is fine.
	if err := c.Clear(context.Background(), base+".empty"); err != nil {
		t.Fatalf("Clear(empty) = %v, want nil", err)
	}
}

func testConcurrent(t *testing.T, b memo.Backend, _ Options) {
	ns := ns(t, "conc")
	var wg sync.WaitGroup
	errs := make(chan error, 16)
	for g := range 16 {
		wg.Go(func() {
			for i := range 50 {
				k := fmt.Sprintf("%s:%d-%d", ns, g, i%5)
				v := []byte(strings.Repeat(fmt.Sprint(g), 10+i))
				ctx := context.Background()
				if err := b.Set(ctx, k, v, time.Minute); err != nil {
					errs <- fmt.Errorf("Set(%q) = %w", k, err)
					return
				}
				got, ok, err := b.Get(ctx, k)
				if err != nil || !ok || !bytes.Equal(got, v) {
					errs <- fmt.Errorf("Get(%q) = %q, %v, %v; want %q", k, got, ok, err, v)
					return
				}
				if i%7 == 0 {
					if err := b.Delete(ctx, k); err != nil {
						errs <- fmt.Errorf("Delete(%q) = %w", k, err)
						return
					}
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

func testCancelled(t *testing.T, b memo.Backend, _ Options) {
	k := ns(t, "cancel") + ":k"
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, _, err := b.Get(ctx, k); !errors.Is(err, context.Canceled) {
		t.Errorf("Get(cancelled ctx) error = %v, want context.Canceled", err)
	}
	if err := b.Set(ctx, k, []byte("v"), time.Minute); !errors.Is(err, context.Canceled) {
		t.Errorf("Set(cancelled ctx) = %v, want context.Canceled", err)
	}
	if err := b.Delete(ctx, k); !errors.Is(err, context.Canceled) {
		t.Errorf("Delete(cancelled ctx) = %v, want context.Canceled", err)
	}
	if c, ok := b.(memo.Clearer); ok {
		if err := c.Clear(ctx, ns(t, "cancel")); !errors.Is(err, context.Canceled) {
			t.Errorf("Clear(cancelled ctx) = %v, want context.Canceled", err)
		}
	}
	wantMiss(t, b, k)
}

func testNotRetained(t *testing.T, b memo.Backend, _ Options) {
	k := ns(t, "retain") + ":k"
	v := []byte("original")
	mustSet(t, b, k, v, time.Minute)
	copy(v, "MUTATED!")
	wantValue(t, b, k, []byte("original"))
}
