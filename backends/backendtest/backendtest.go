// Package backendtest is the conformance suite that every memo backend
// passes identically: the in-memory default and the real servers alike.
//
// A backend's test calls [Run] with a function that opens a fresh backend on
// the target under test:
//
//	func TestConformance(t *testing.T) {
//		backendtest.Run(t, func(t *testing.T) memo.Backend { return New(client) })
//	}
//
// The suite uses keys under a namespace unique to each run, so it can share a
// server with other tests. It is plain testing + cmp.
package backendtest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gomemo/memo"
)

// Factory opens a backend on the target under test. It may call t.Skip when
// its server is absent (see [Require]).
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
}

var (
	runSeq atomic.Uint64
	seed   = rand.Uint32()
)

// NS returns a namespace key unique to this process and call, so that runs
// sharing a server never see each other's keys.
func NS(t testing.TB, name string) string {
	return fmt.Sprintf("test:%s.%x.%d.%d", name, seed, os.Getpid(), runSeq.Add(1))
}

// Require reads the address of a test server from the environment variable
// env. Outside CI an unset variable skips the test; in CI (CI=true) it fails
// it, since CI must run every backend.
func Require(t testing.TB, env string) string {
	t.Helper()
	v := os.Getenv(env)
	if v == "" {
		if os.Getenv("CI") != "" {
			t.Fatalf("%s is not set: CI must start this server (see scripts/servers.sh)", env)
		}
		t.Skipf("%s is not set; run `make test` to start the test servers", env)
	}
	return v
}

// Run runs the conformance suite against the backends f opens: the
// backend's own contract, then memo over it ([RunMemo]).
func Run(t *testing.T, f Factory, o Options) {
	if o.MaxValue == 0 {
		o.MaxValue = 512 << 10
	}
	if o.ExpirySlack == 0 {
		o.ExpirySlack = 50 * time.Millisecond
	}
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

// WantGet fails t unless b holds want under key; want "" means a miss.
func WantGet(t *testing.T, b memo.Backend, key, want string) {
	t.Helper()
	if want == "" {
		wantMiss(t, b, key)
		return
	}
	wantValue(t, b, key, []byte(want))
}

func wantMiss(t *testing.T, b memo.Backend, key string) {
	t.Helper()
	if got, ok := get(t, b, key); ok {
		t.Fatalf("Get(%q) = hit %.40q, want miss", key, got)
	}
}

func testGetSetDelete(t *testing.T, b memo.Backend, _ Options) {
	ns := NS(t, "gsd")
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
	ns := NS(t, "bin")
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
	k := NS(t, "ow") + ":k"
	mustSet(t, b, k, []byte("one"), time.Minute)
	mustSet(t, b, k, []byte("two-longer"), time.Minute)
	wantValue(t, b, k, []byte("two-longer"))
	mustSet(t, b, k, []byte("3"), time.Minute)
	wantValue(t, b, k, []byte("3"))
}

func testSubSecondExpiry(t *testing.T, b memo.Backend, o Options) {
	ns := NS(t, "exp")
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
		time.Sleep(20 * time.Millisecond)
	}
	wantValue(t, b, long, []byte("v"))
}

func testNoExpiry(t *testing.T, b memo.Backend, _ Options) {
	k := NS(t, "noexp") + ":k"
	mustSet(t, b, k, []byte("forever"), 0)
	wantValue(t, b, k, []byte("forever"))
}

func testTooLarge(t *testing.T, b memo.Backend, o Options) {
	if o.TooLarge <= 0 {
		t.Skip("backend has no item size limit")
	}
	k := NS(t, "big") + ":k"
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
	base := NS(t, "clr")
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
	ns := NS(t, "conc")
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
	k := NS(t, "cancel") + ":k"
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
		if err := c.Clear(ctx, NS(t, "cancel")); !errors.Is(err, context.Canceled) {
			t.Errorf("Clear(cancelled ctx) = %v, want context.Canceled", err)
		}
	}
	wantMiss(t, b, k)
}

func testNotRetained(t *testing.T, b memo.Backend, _ Options) {
	k := NS(t, "retain") + ":k"
	v := []byte("original")
	mustSet(t, b, k, v, time.Minute)
	copy(v, "MUTATED!")
	wantValue(t, b, k, []byte("original"))
}
