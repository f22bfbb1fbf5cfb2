package memo_test

import (
	"context"
	"errors"
	"fmt"
	"math"
	"net"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/gomemo/memo"
	"github.com/gomemo/memo/backends/memory"
	"github.com/gomemo/memo/backends/redisbackend"
	"github.com/gomemo/memo/internal/testenv"
)

// Issue 10's performance claims: a hit with every freshness option on
// costs at most 5% more than a plain hit (BenchmarkHitFreshness), and
// under a steady load on one hot key EarlyRefresh and
// StaleWhileRevalidate keep callers from waiting for fn at each expiry
// (TestSteadyLoadFreshness in fake time, BenchmarkSteadyLoad in real
// time). docs/performance.md, "Freshness", has the figures.

var errBenchNotFound = errors.New("bench: not found")

// allFreshness is every option of issue 10, with lifetimes that keep a
// hit fresh for the whole benchmark: ExpireFunc gives an hour (jittered
// by up to 10%), so EarlyRefresh's draw is skipped (exp(-t/delta) with t
// an hour and delta microseconds) and no refresh ever runs.
func allFreshness[R any]() []memo.Option {
	return []memo.Option{
		memo.StaleWhileRevalidate(time.Minute),
		memo.StaleIfError(time.Minute),
		memo.EarlyRefresh(1),
		memo.NegativeCache(time.Minute, errBenchNotFound),
		memo.CacheErrors(time.Second),
		memo.ExpireJitter(0.1),
		memo.ExpireFunc(func(R) time.Duration { return time.Hour }),
	}
}

// hitTier is where a hit benchmark's entries live: the options that put a
// function there, given a name for its namespace.
type hitTier struct {
	name string
	opts func(b *testing.B, ns string) []memo.Option
}

func hitTiers() []hitTier {
	return []hitTier{
		{"local", func(b *testing.B, ns string) []memo.Option {
			local, _ := memo.OwnLocalTier(64 << 20)
			return []memo.Option{local, memo.Namespace(ns)}
		}},
		{"memory", func(b *testing.B, ns string) []memo.Option {
			return []memo.Option{memo.WithBackend(memory.New()), memo.Namespace(ns)}
		}},
		{"redis", func(b *testing.B, ns string) []memo.Option {
			c := redis.NewClient(&redis.Options{Addr: testenv.Require(b, "MEMO_REDIS_ADDR"), ContextTimeoutEnabled: true})
			b.Cleanup(func() { c.Close() })
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			if err := c.Ping(ctx).Err(); err != nil {
				b.Fatalf("redis is not answering: %v", err)
			}
			return []memo.Option{memo.WithBackend(redisbackend.New(c)), memo.Namespace(testenv.NS(b, ns))}
		}},
	}
}

// BenchmarkHitFreshness measures a hit on key 42 of a plain function
// (Expire an hour) beside the same hit with every freshness option on
// (allFreshness), on the local tier (no backend), on backends/memory (the
// in-process remote) and on Redis (MEMO_REDIS_ADDR; skipped when unset,
// outside CI). Sub-benchmarks per tier and result type:
//
//   - plain, fresh: each alone, b.N hits: ns/op and allocs/op.
//   - interleaved: b.N hits of each, in rounds of a block of 16 plain
//     hits and a block of 16 fresh ones, the order alternating from round
//     to round, each block timed. It reports the median per-hit latency
//     of each (plain-ns/hit, fresh-ns/hit) and the median over rounds of
//     the fresh block's to the plain block's (fresh/plain): the issue's
//     ratio, which must be at most 1.05. A stall or a burst of load from
//     elsewhere lands on one round and moves no median.
//
// Each function must run fn once (the miss that stores the entry), and
// once more at most per backend read that ran out of memo's Timeout (a
// stall of a loaded machine, logged), and report no other fault, or the
// benchmark measured misses and fails.
func BenchmarkHitFreshness(b *testing.B) {
	for _, tier := range hitTiers() {
		b.Run(tier.name+"/User", func(b *testing.B) { benchHitFreshness(b, tier, benchUser) })
		if tier.name == "local" {
			// A result without pointers: no copy to make, so the hit is
			// at its cheapest and any added work shows most.
			b.Run(tier.name+"/Score", func(b *testing.B) { benchHitFreshness(b, tier, benchScore) })
		}
	}
}

func benchHitFreshness[R any](b *testing.B, tier hitTier, fetch func(context.Context, int64) (R, error)) {
	ctx := context.Background()
	var runs, faults, timeouts [2]atomic.Int64
	var calls [2]func() error
	for i, fresh := range []bool{false, true} {
		name := "bench.hitfresh.plain"
		opts := []memo.Option{memo.Expire(time.Hour)}
		if fresh {
			name = "bench.hitfresh.all"
			opts = allFreshness[R]()
		}
		opts = append(append(tier.opts(b, name), opts...), memo.OnError(func(_ context.Context, err error) {
			if ne := net.Error(nil); errors.Is(err, context.DeadlineExceeded) || errors.As(err, &ne) && ne.Timeout() {
				timeouts[i].Add(1) // a read stalled past Timeout (a loaded machine): a miss, not a fault of the code
				return
			}
			if faults[i].Add(1) == 1 {
				b.Logf("%s: memo fault: %v", name, err)
			}
		}))
		f := memo.New(func(ctx context.Context, id int64) (R, error) {
			runs[i].Add(1)
			return fetch(ctx, id)
		}, opts...)
		if _, err := f.Call(ctx, 42); err != nil { // the miss that stores it
			b.Fatal(err)
		}
		b.Cleanup(func() { f.Forget(context.Background(), 42) })
		calls[i] = func() error {
			_, err := f.Call(ctx, 42)
			return err
		}
	}
	loop := func(call func() error) func(b *testing.B) {
		return func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if err := call(); err != nil {
					b.Fatal(err)
				}
			}
		}
	}
	b.Run("plain", loop(calls[0]))
	b.Run("fresh", loop(calls[1]))
	b.Run("interleaved", func(b *testing.B) { interleavedHits(b, calls[0], calls[1]) })
	for i, name := range []string{"plain", "fresh"} {
		n, e, to := runs[i].Load(), faults[i].Load(), timeouts[i].Load()
		if n > 1+to || e != 0 {
			b.Fatalf("%s: fn ran %d times, and memo reported %d faults and %d read timeouts; the benchmark measured misses", name, n, e, to)
		}
		if to > 0 {
			b.Logf("%s: %d reads ran out of Timeout (fn ran %d times): the machine stalled", name, to, n)
		}
	}
}

// interleavedHits runs b.N calls of plain and of fresh in rounds of one
// block of 16 of each, alternating which block goes first, and reports
// the median per-call latency of each and the median per-round ratio.
func interleavedHits(b *testing.B, plain, fresh func() error) {
	const block = 64
	fns := [2]func() error{plain, fresh}
	for _, fn := range fns { // warm both
		for range 100 {
			if err := fn(); err != nil {
				b.Fatal(err)
			}
		}
	}
	var lat [2][]float64
	var ratios []float64
	b.ReportAllocs()
	b.ResetTimer()
	for round := 0; round*block < b.N || len(ratios) < 5; round++ {
		var ns [2]float64
		for j := range 2 {
			w := (round + j) & 1
			fn := fns[w]
			start := time.Now()
			for range block {
				if err := fn(); err != nil {
					b.Fatal(err)
				}
			}
			ns[w] = float64(time.Since(start)) / block
		}
		lat[0], lat[1] = append(lat[0], ns[0]), append(lat[1], ns[1])
		ratios = append(ratios, ns[1]/ns[0])
	}
	b.StopTimer()
	b.ReportMetric(medianOf(lat[0]), "plain-ns/hit")
	b.ReportMetric(medianOf(lat[1]), "fresh-ns/hit")
	b.ReportMetric(medianOf(ratios), "fresh/plain")
	b.ReportMetric(0, "ns/op") // an op is a hit of either kind: its mean says nothing here
}

func medianOf(xs []float64) float64 {
	slices.Sort(xs)
	n := len(xs)
	if n%2 == 1 {
		return xs[n/2]
	}
	return (xs[n/2-1] + xs[n/2]) / 2
}

// The steady load of issue 10: one hot key, Expire 1 s, fn takes 50 ms,
// loadCallers callers each calling in a loop every loadThink (800 calls
// a second in all), staggered evenly over loadThink.
const (
	loadExpire  = time.Second
	loadFn      = 50 * time.Millisecond
	loadCallers = 16
	loadThink   = 20 * time.Millisecond
)

// loadModes are the functions the steady load compares.
var loadModes = []struct {
	name string
	opts []memo.Option
}{
	{"plain", nil},
	{"EarlyRefresh", []memo.Option{memo.EarlyRefresh(1)}},
	{"SWR", []memo.Option{memo.StaleWhileRevalidate(time.Second)}},
	{"both", []memo.Option{memo.EarlyRefresh(1), memo.StaleWhileRevalidate(time.Second)}},
}

// loadFigures is what a steady load measured. Calls that began before the
// first answer was stored are the warm-up, left out of every figure but
// runs.
type loadFigures struct {
	calls         int           // calls after warm-up
	p50, p99, max time.Duration // their latency
	waits         int           // calls after warm-up that waited for fn
	stale         int           // calls after warm-up answered with an entry past its Expire
	bursts        int           // runs of fn that had such a caller waiting
	runs          int           // runs of fn, warm-up included
	slow          int           // in fake time, calls that took time without waiting for fn: must be 0
	span          time.Duration // from the first answer to the last call
}

// runsPerExpire is how many times fn ran per Expire after warm-up.
func (l loadFigures) runsPerExpire() float64 {
	return float64(l.runs-1) / (float64(l.span) / float64(loadExpire))
}

func (l loadFigures) String() string {
	return fmt.Sprintf("%d calls: p50 %v, p99 %v, max %v; %d waited for fn, in %d bursts; %d answered stale; fn ran %d times (%.2f per Expire after warm-up)",
		l.calls, l.p50, l.p99, l.max, l.waits, l.bursts, l.stale, l.runs, l.runsPerExpire())
}

// steadyLoad runs the steady load for d on a function with opts (and a
// local tier of its own), on whichever clock time has: fake in a synctest
// bubble, real otherwise. fn returns its run's number, and notes when the
// run ended: a call waited for fn when the answer it got was computed by
// a run that ended after the call began (in fake time exactly the calls
// that took any time: a call that does not wait takes none), and was
// answered stale when it began Expire or more after that run ended (in
// real time the entry is stored a little after fn returns, so a call at
// the edge may count as stale while memo still found it fresh).
func steadyLoad(tb testing.TB, name string, opts []memo.Option, d time.Duration) loadFigures {
	var mu sync.Mutex
	var ends []time.Time // ends[v-1]: when run v returned
	local, _ := memo.OwnLocalTier(1 << 20)
	f := memo.New(func(ctx context.Context, id int) (int64, error) {
		time.Sleep(loadFn)
		mu.Lock()
		defer mu.Unlock()
		ends = append(ends, time.Now())
		return int64(len(ends)), nil
	}, append([]memo.Option{local, memo.Namespace("steadyload." + name), memo.Expire(loadExpire),
		memo.OnError(func(_ context.Context, err error) { tb.Errorf("%s: memo fault: %v", name, err) })}, opts...)...)

	type call struct {
		start time.Time
		lat   time.Duration
		v     int64
	}
	ctx := context.Background()
	start := time.Now()
	stop := start.Add(d)
	per := make([][]call, loadCallers)
	var wg sync.WaitGroup
	for i := range loadCallers {
		wg.Go(func() {
			// Caller i calls on a schedule of its own, every loadThink
			// from i*loadThink/loadCallers: one that waited skips the
			// ticks it missed rather than falling in step with the
			// others.
			next := start.Add(loadThink * time.Duration(i) / loadCallers)
			for {
				time.Sleep(time.Until(next))
				t0 := time.Now()
				if !t0.Before(stop) {
					return
				}
				v, err := f.Call(ctx, 1)
				lat := time.Since(t0)
				if err != nil {
					tb.Errorf("%s: Call(1) = %v", name, err)
					return
				}
				per[i] = append(per[i], call{t0, lat, v})
				for now := time.Now(); !next.After(now); {
					next = next.Add(loadThink)
				}
			}
		})
	}
	wg.Wait()
	// A refresh started by the last calls may still be running: let it
	// end, so that no goroutine outlives the load. In a bubble this is
	// fake time, and exact (no call comes now to start another); in real
	// time (the benchmark) it is a fn's run and as much again to spare.
	time.Sleep(2 * loadFn)

	mu.Lock()
	defer mu.Unlock()
	var l loadFigures
	l.runs = len(ends)
	if l.runs == 0 {
		tb.Fatalf("%s: fn never ran", name)
	}
	warm := ends[0]
	fake := synctestBubble(start)
	var lats []time.Duration
	waited := map[int64]bool{}
	last := warm
	for _, cs := range per {
		for _, c := range cs {
			if c.start.Before(warm) {
				continue
			}
			lats = append(lats, c.lat)
			if c.start.After(last) {
				last = c.start
			}
			end := ends[c.v-1]
			if end.After(c.start) {
				l.waits++
				waited[c.v] = true
			} else if fake && c.lat > 0 {
				l.slow++
			}
			if !c.start.Before(end.Add(loadExpire)) {
				l.stale++
			}
		}
	}
	l.calls, l.bursts, l.span = len(lats), len(waited), last.Sub(warm)
	if l.calls == 0 {
		tb.Fatalf("%s: no call after warm-up", name)
	}
	slices.Sort(lats)
	l.p50 = lats[(l.calls+1)/2-1]
	l.p99 = lats[int(math.Ceil(0.99*float64(l.calls)))-1]
	l.max = lats[l.calls-1]
	return l
}

// synctestBubble reports whether t was read in a synctest bubble, whose
// clock starts in 2000.
func synctestBubble(t time.Time) bool { return t.Year() < 2010 }

// loadStart is read at package init, outside any bubble, as memo's own
// monotonic base (clock.go's monoBase) is.
var loadStart = time.Now()

// TestSteadyLoadFreshness is issue 10's steady load, in a synctest bubble
// (fake time: 10 s of load run in a fraction of a second, and a call that
// does not wait for fn takes no time at all, so "waited" is exact). It
// checks, after warm-up:
//
//   - plain: callers wait for fn about once per expiry: the bursts of
//     waiting callers number between loadFor/(Expire+fn+think) - 1 (an
//     expiry every Expire+fn, the last one possibly past the end) and
//     loadFor/Expire, and each caller waits at most once per burst;
//   - EarlyRefresh, StaleWhileRevalidate, both: no caller waits for fn.
//     With EarlyRefresh alone that is a bound on chance: a refresh that
//     starts with less than fn's 50 ms left lets callers reach the expired
//     entry. XFetch skips a hit with t left with probability
//     1-exp(-t/delta), delta = 50 ms; at 800 hits a second the chance
//     that no hit starts a refresh while 50 ms or more are left is about
//     exp(-800/s * 50 ms * e^-1) = exp(-14.7), 4e-7 per expiry: the test
//     asserts 0;
//   - plain, EarlyRefresh: no answer is served past its Expire (only
//     StaleWhileRevalidate may do that);
//   - every mode: fn runs about once per Expire, not once per caller:
//     between 0.8 and 1.5 times per Expire (EarlyRefresh refreshes
//     about delta*ln(800/s*delta) = 184 ms before expiry, so about 1.2).
//
// It first checks that memo's local tier keeps time in a bubble.
func TestSteadyLoadFreshness(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		// memo's monotonic clock is time.Since(monoBase), monoBase read at
		// init outside the bubble. In the bubble time.Now has no monotonic
		// reading, so Since falls back to the wall clocks: a fake 2000
		// minus the real start, about -26 years, but moving with the fake
		// clock, which is all memo needs of it (it only compares and
		// subtracts readings, and 0 is the only value it treats apart).
		m0 := time.Since(loadStart)
		time.Sleep(time.Second)
		if m1 := time.Since(loadStart); m1-m0 != time.Second || m0 >= 0 {
			t.Fatalf("in a bubble: time.Since(a time read at init) = %v, then %v a second later; want a negative reading moving by 1s", m0, m1)
		} else {
			t.Logf("in a bubble, memo's monotonic clock reads %v (time.Since(init)), and moves with the fake clock", m0)
		}
		var runs atomic.Int64
		local, _ := memo.OwnLocalTier(1 << 20)
		f := memo.New(func(ctx context.Context, id int) (int64, error) {
			time.Sleep(loadFn)
			return runs.Add(1), nil
		}, local, memo.Namespace("steadyload.check"), memo.Expire(loadExpire), memo.EarlyRefresh(1))
		ctx := context.Background()
		for _, step := range []struct {
			after time.Duration
			want  int64
		}{{0, 1}, {loadExpire - 1, 1}, {1, 2}} {
			time.Sleep(step.after)
			if v, err := f.Call(ctx, 1); v != step.want || err != nil {
				t.Fatalf("Call(1) %v later = %v, %v; want %v (Expire %v, on the fake clock)", step.after, v, err, step.want, loadExpire)
			}
		}
		// The compute time an entry holds is read on the same clock:
		// with a hit every millisecond, XFetch (beta 1, delta 50 ms)
		// refreshes the second entry about 200 ms before it expires, and
		// no call waits; a delta read as 0 (or a refresh that does not
		// run fn) would not refresh early, and the first call after
		// expiry would wait for fn.
		for runs.Load() == 2 {
			time.Sleep(time.Millisecond)
			t0 := time.Now()
			if _, err := f.Call(ctx, 1); err != nil || time.Since(t0) > 0 {
				t.Fatalf("Call(1) at %s = %v after %v: no early refresh before the entry expired", t0.Format("15:04:05.000"), err, time.Since(t0))
			}
		}
		synctest.Wait()
	})

	const loadFor = 10 * time.Second
	for _, m := range loadModes {
		var l loadFigures
		synctest.Test(t, func(t *testing.T) { l = steadyLoad(t, m.name, m.opts, loadFor) })
		t.Logf("%-13s %v", m.name, l)
		expiries := float64(l.span) / float64(loadExpire)
		if m.name == "plain" {
			lo := int(loadFor/(loadExpire+loadFn+loadThink)) - 1
			hi := int(loadFor / loadExpire)
			if l.bursts < lo || l.bursts > hi {
				t.Errorf("%s: callers waited for fn in %d bursts, want one per expiry: %d to %d", m.name, l.bursts, lo, hi)
			}
			if l.waits > loadCallers*l.bursts {
				t.Errorf("%s: %d waits in %d bursts: a caller waited more than once per burst", m.name, l.waits, l.bursts)
			}
		} else if l.waits != 0 {
			t.Errorf("%s: %d calls after warm-up waited for fn (in %d bursts), want 0", m.name, l.waits, l.bursts)
		}
		if r := l.runsPerExpire(); r < 0.8 || r > 1.5 {
			t.Errorf("%s: fn ran %.2f times per Expire (%d runs in %.1f expiries), want about once (0.8 to 1.5)", m.name, r, l.runs, expiries)
		}
		if (m.name == "plain" || m.name == "EarlyRefresh") && l.stale != 0 {
			t.Errorf("%s: %d calls answered with an entry past its Expire, without StaleWhileRevalidate", m.name, l.stale)
		}
		if l.slow != 0 {
			t.Errorf("%s: %d calls took fake time without waiting for fn", m.name, l.slow)
		}
	}
}

// BenchmarkSteadyLoad is the steady load of TestSteadyLoadFreshness in
// real time, through three expiries (3.5 s an op: run it with
// -benchtime=1x), for each mode. It reports the callers' latency after
// warm-up (p50-µs, p99-µs, max-µs), the calls that waited for fn (waits)
// or were answered stale (stale), and the runs of fn per Expire: each the
// median over the -count runs' ops. Real time adds what fake time leaves
// out: the scheduler, the machine's load, memo's own CPU time.
func BenchmarkSteadyLoad(b *testing.B) {
	for _, m := range loadModes {
		b.Run(m.name, func(b *testing.B) {
			var p50, p99, mx, waits, stale, rpe []float64
			for b.Loop() {
				l := steadyLoad(b, m.name, m.opts, 3*loadExpire+loadExpire/2)
				p50 = append(p50, float64(l.p50)/1e3)
				p99 = append(p99, float64(l.p99)/1e3)
				mx = append(mx, float64(l.max)/1e3)
				waits = append(waits, float64(l.waits))
				stale = append(stale, float64(l.stale))
				rpe = append(rpe, l.runsPerExpire())
			}
			b.ReportMetric(medianOf(p50), "p50-µs")
			b.ReportMetric(medianOf(p99), "p99-µs")
			b.ReportMetric(medianOf(mx), "max-µs")
			b.ReportMetric(medianOf(waits), "waits")
			b.ReportMetric(medianOf(stale), "stale")
			b.ReportMetric(medianOf(rpe), "fn-runs/expire")
			b.ReportMetric(0, "ns/op") // an op is a whole load
		})
	}
}
