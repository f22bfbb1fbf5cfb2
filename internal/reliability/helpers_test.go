package reliability_test

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"runtime"
	"runtime/pprof"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/gomemo/memo"
)

// figures logs what a test measured, in the one format that
// docs/reliability.md is built from:
//
//	FIGURES <test name> key=value key=value ...
func figures(t testing.TB, kv ...any) {
	t.Helper()
	var b strings.Builder
	b.WriteString("FIGURES ")
	b.WriteString(t.Name())
	for i := 0; i+1 < len(kv); i += 2 {
		v := kv[i+1]
		if d, ok := v.(time.Duration); ok {
			v = ms(d)
		}
		fmt.Fprintf(&b, " %v=%v", kv[i], v)
	}
	t.Log(b.String())
}

// ms renders d in milliseconds with one decimal: "12.3ms".
func ms(d time.Duration) string {
	return strconv.FormatFloat(float64(d)/float64(time.Millisecond), 'f', 1, 64) + "ms"
}

// mib renders n bytes in MiB with one decimal.
func mib(n uint64) string {
	return strconv.FormatFloat(float64(n)/(1<<20), 'f', 1, 64) + "MiB"
}

// need skips the test when ok is false, or fails it in CI (CI set), which
// must run everything: the logic of testenv.Require.
func need(t testing.TB, ok bool, format string, args ...any) {
	t.Helper()
	if ok {
		return
	}
	msg := fmt.Sprintf(format, args...)
	if os.Getenv("CI") != "" {
		t.Fatalf("%s: CI must provide it (see scripts/servers.sh)", msg)
	}
	t.Skip(msg + "; run `make test` or `bash scripts/servers.sh start; eval \"$(bash scripts/servers.sh env)\"`")
}

// Answer is what the memoized functions of these tests return: derived from
// the argument alone, so that every answer can be checked.
type Answer struct {
	Arg  int
	Sq   int64
	Name string
	Tags []string
}

func answer(a int) Answer {
	return Answer{Arg: a, Sq: int64(a) * int64(a), Name: "n" + strconv.Itoa(a), Tags: []string{"t", strconv.Itoa(a % 7)}}
}

func sameAnswer(x, y Answer) bool {
	return x.Arg == y.Arg && x.Sq == y.Sq && x.Name == y.Name && len(x.Tags) == len(y.Tags) &&
		(len(x.Tags) == 0 || x.Tags[0] == y.Tags[0] && x.Tags[1] == y.Tags[1])
}

// A call knows whether it was a hit by a token in its context: fn's context
// keeps the first caller's values, so fn marks the token of the caller that
// started its flight. Tests that use it give each goroutine keys of its
// own, so that no caller joins another's flight: a call whose token fn did
// not mark was answered from the cache.
type ranKey struct{}

func withToken(ctx context.Context) (context.Context, *atomic.Bool) {
	ran := new(atomic.Bool)
	return context.WithValue(ctx, ranKey{}, ran), ran
}

func markRan(ctx context.Context) {
	if ran, ok := ctx.Value(ranKey{}).(*atomic.Bool); ok {
		ran.Store(true)
	}
}

// faults collects what memo reports to OnError.
type faults struct {
	n    atomic.Int64
	mu   sync.Mutex
	byOp map[string]int
	all  []error
	keep bool // keep every error (small tests)
}

func (f *faults) hook(_ context.Context, err error) {
	f.n.Add(1)
	op := "?"
	if be, ok := err.(*memo.BackendError); ok {
		op = be.Op
	}
	f.mu.Lock()
	if f.byOp == nil {
		f.byOp = map[string]int{}
	}
	f.byOp[op]++
	if f.keep {
		f.all = append(f.all, err)
	}
	f.mu.Unlock()
}

// ops renders the count of reported faults by operation: "get:3,set:2".
func (f *faults) ops() string {
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.byOp) == 0 {
		return "none"
	}
	var parts []string
	for op, n := range f.byOp {
		parts = append(parts, fmt.Sprintf("%s:%d", op, n))
	}
	sort.Strings(parts)
	return strings.Join(parts, ",")
}

func (f *faults) errs() []error {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]error(nil), f.all...)
}

// maxDur keeps the largest duration stored into it.
type maxDur struct{ v atomic.Int64 }

func (m *maxDur) add(d time.Duration) {
	for {
		old := m.v.Load()
		if int64(d) <= old || m.v.CompareAndSwap(old, int64(d)) {
			return
		}
	}
}

func (m *maxDur) get() time.Duration { return time.Duration(m.v.Load()) }

// waitDone waits for wg, failing the test with every goroutine's stack when
// it takes longer than d: a hang is a failure, never a stuck test binary.
func waitDone(t testing.TB, wg *sync.WaitGroup, d time.Duration, what string) bool {
	t.Helper()
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
		return true
	case <-time.After(d):
		var buf bytes.Buffer
		pprof.Lookup("goroutine").WriteTo(&buf, 2)
		t.Errorf("%s did not finish within %v: a hang. Goroutines:\n%s", what, d, buf.String())
		return false
	}
}

// settleGoroutines waits up to d for the goroutine count to fall to at most
// want, and returns the last count seen.
func settleGoroutines(want int, d time.Duration) int {
	deadline := time.Now().Add(d)
	for {
		n := runtime.NumGoroutine()
		if n <= want || time.Now().After(deadline) {
			return n
		}
		time.Sleep(10 * time.Millisecond)
	}
}

var nsSeq atomic.Uint64

// namespace returns a namespace unique to this process and call, so that
// runs sharing a server never see each other's keys.
func namespace(name string) string {
	return fmt.Sprintf("rel.%s.%d.%d.%d", name, os.Getpid(), time.Now().UnixNano()%1e9, nsSeq.Add(1))
}

// quietRedis drops go-redis's log lines (dial failures while a server is
// down, by the thousand); the tests count faults through OnError instead.
type quietRedis struct{}

func (quietRedis) Printf(context.Context, string, ...any) {}

func init() { redis.SetLogger(quietRedis{}) }

// timed wraps a backend and records the longest Get and Set among the
// calls that started at or after since (UnixNano; 0: all): the figures that
// show whether memo's Timeout bounded each one.
type timed struct {
	memo.Backend
	since    atomic.Int64
	get, set maxDur
}

func (b *timed) Get(ctx context.Context, key string) ([]byte, bool, error) {
	start := time.Now()
	v, ok, err := b.Backend.Get(ctx, key)
	if start.UnixNano() >= b.since.Load() {
		b.get.add(time.Since(start))
	}
	return v, ok, err
}

func (b *timed) Set(ctx context.Context, key string, v []byte, ttl time.Duration) error {
	start := time.Now()
	err := b.Backend.Set(ctx, key, v, ttl)
	if start.UnixNano() >= b.since.Load() {
		b.set.add(time.Since(start))
	}
	return err
}

// callNoPanic calls f, failing the test if it panics.
func callNoPanic[A, R any](t *testing.T, f *memo.Func[A, R], a A) (v R, err error) {
	t.Helper()
	defer func() {
		if r := recover(); r != nil {
			msg := fmt.Sprint(r)
			if i := strings.IndexByte(msg, '\n'); i >= 0 {
				msg = msg[:i]
			}
			t.Errorf("Call panicked: %s", msg)
		}
	}()
	return f.Call(context.Background(), a)
}
