package memo

import (
	"context"
	"fmt"
	"reflect"
	"sync/atomic"
	"time"
	"unsafe"
)

// Stats are a function's counters since it was created ([Func.Stats]).
//
// Every call of [Func.Call] or [Func.Lookup] counts once in exactly one of
// Hits, StaleHits, NegativeHits, Misses, Coalesced and Bypasses, so that
// their sum is the number of calls and Hits / that sum is the hit ratio.
// The other fields count events, not calls.
type Stats struct {
	// Hits counts calls answered by a fresh entry, of either tier.
	Hits uint64
	// StaleHits counts calls answered by a stale entry within a stale
	// window ([StaleWhileRevalidate], [StaleIfError]).
	StaleHits uint64
	// NegativeHits counts calls answered by a remembered error
	// ([NegativeCache], [CacheErrors]).
	NegativeHits uint64
	// Misses counts calls that found no usable entry and got fn's answer,
	// its error or its panic (or left before it came).
	Misses uint64
	// Coalesced counts calls that shared the computation another call
	// started, rather than running fn themselves.
	Coalesced uint64
	// Bypasses counts calls that did not use the cache: caching off
	// ([Enabled]), a key that could not be built, or [Bypass].
	Bypasses uint64

	// Computations counts runs of fn, background refreshes and bypasses
	// included.
	Computations uint64
	// Errors counts runs of fn that returned an error or panicked.
	Errors uint64
	// Faults counts cache faults: what memo reports to [OnError] (backend
	// errors and timeouts, corrupt entries, keys that cannot be built,
	// answers that cannot be encoded or stored).
	Faults uint64
	// Refreshes counts background refreshes started ([StaleWhileRevalidate],
	// [EarlyRefresh]).
	Refreshes uint64
	// LeaseWaits counts misses that waited for another process's [Lease]
	// and were answered by what it stored.
	LeaseWaits uint64
	// BackendSkips counts remote-tier calls skipped because the circuit
	// [Breaker] was open (not invalidations held by the breaker in front
	// of publishing).
	BackendSkips uint64
}

// counters are a function's Stats as they are counted. Hits, the one
// counter on the hit path, is striped over cache lines so that cores
// hitting at once do not contend for one; the others are plain atomics.
type counters struct {
	hits [hitStripes]struct {
		n atomic.Uint64
		_ [56]byte // one stripe per cache line
	}
	staleHits, negativeHits, misses, coalesced, bypasses atomic.Uint64
	computations, errors, faults, refreshes, leaseWaits  atomic.Uint64
	backendSkips                                         atomic.Uint64
}

const hitStripes = 8

// hit counts a hit on the stripe of the calling goroutine: its stack's
// address, which differs between goroutines and costs nothing to read.
func (c *counters) hit() {
	var probe byte
	i := uintptr(noescape(unsafe.Pointer(&probe))) >> 13 % hitStripes
	c.hits[i].n.Add(1)
}

func (c *counters) load() Stats {
	var hits uint64
	for i := range c.hits {
		hits += c.hits[i].n.Load()
	}
	return Stats{
		Hits:         hits,
		StaleHits:    c.staleHits.Load(),
		NegativeHits: c.negativeHits.Load(),
		Misses:       c.misses.Load(),
		Coalesced:    c.coalesced.Load(),
		Bypasses:     c.bypasses.Load(),
		Computations: c.computations.Load(),
		Errors:       c.errors.Load(),
		Faults:       c.faults.Load(),
		Refreshes:    c.refreshes.Load(),
		LeaseWaits:   c.leaseWaits.Load(),
		BackendSkips: c.backendSkips.Load(),
	}
}

// Stats returns the function's counters since it was created. It takes no
// lock and is safe to call at any time; each field is read atomically, but
// the fields are not read at one instant, so a call under way may show in
// one field and not yet in another.
func (f *Func[A, R]) Stats() Stats { return f.stats.load() }

// An Observer receives what memo does off the hit path, for metrics and
// traces (otelmemo is one, for OpenTelemetry): each run of fn, each call
// to a remote backend, each change of a circuit breaker's state. Hits are
// not reported one by one: they are counted in [Stats], which [Observer.Attach]
// gives a way to read. Methods are called on the goroutine doing the work,
// concurrently, and must be safe for concurrent use and return quickly: a
// call waits for them. A panic in them is recovered and logged.
type Observer interface {
	// Attach is called once for each function that reports to the
	// Observer, before its first report, with the function's namespace
	// and a function that returns its Stats (cheap, safe to call from any
	// goroutine at any time, for as long as the process lives). An
	// Observer whose type cannot be compared (==) is told again each time
	// SetDefaults changes the function's configuration; memo keeps a
	// reference to the function and the Observer for the process's life.
	Attach(namespace string, stats func() Stats)
	// Compute is called before each run of fn. It returns the context fn
	// runs with (ctx itself, or one derived from it, such as one carrying
	// a span) and a function memo calls once when fn returns, with how
	// long fn ran and its error (a *[PanicError] if fn panicked).
	Compute(ctx context.Context, c Computation) (context.Context, func(d time.Duration, err error))
	// BackendCall is called after each call memo makes to the remote tier
	// (the breaker's skipped calls excepted), with its context.
	BackendCall(ctx context.Context, c BackendCall)
	// BreakerChange is called when the circuit breaker in front of a
	// function's backend opens or closes, once for each function using
	// that backend.
	BreakerChange(c BreakerChange)
}

// Computation describes a run of fn for an [Observer].
type Computation struct {
	// Namespace is the function's namespace, as [Namespace] gives it or
	// its default (the package path and name), without the [Prefix] that
	// [Func.Namespace] adds. Attach, BackendCall and BreakerChange carry
	// the same.
	Namespace string
	Reason    Reason // why fn runs
}

// Reason says why fn runs.
type Reason uint8

const (
	// ReasonMiss: no usable entry was cached.
	ReasonMiss Reason = iota
	// ReasonRefresh: a background refresh of an entry that is stale or due
	// ([StaleWhileRevalidate], [EarlyRefresh]); the caller that triggered
	// it did not wait for it.
	ReasonRefresh
	// ReasonForced: the caller asked for a fresh answer ([Refresh]).
	ReasonForced
	// ReasonBypass: the cache is not used for this call (see
	// [Stats].Bypasses).
	ReasonBypass
)

// String returns "miss", "refresh", "forced" or "bypass".
func (r Reason) String() string {
	switch r {
	case ReasonMiss:
		return "miss"
	case ReasonRefresh:
		return "refresh"
	case ReasonForced:
		return "forced"
	case ReasonBypass:
		return "bypass"
	}
	return fmt.Sprintf("Reason(%d)", r)
}

// BackendCall describes one call to the remote tier for an [Observer].
// It carries no key: keys may hold what callers passed.
type BackendCall struct {
	Namespace string        // the function's namespace
	Op        string        // "get", "set", "delete", "clear", "lease" or "publish"
	Duration  time.Duration // how long the call took
	Err       error         // the call's error; nil on success and on a miss
}

// BreakerChange describes a change of a circuit breaker's state for an
// [Observer].
type BreakerChange struct {
	Namespace string    // the function reporting it (see Computation.Namespace)
	Open      bool      // true: the breaker opened; false: it closed
	Err       error     // the fault that opened it; nil when it closed
	At        time.Time // when it changed
	Backend   string    // the backend's type, such as "*redisbackend.Backend"; for the breaker in front of publishing, the Invalidator's ("*redisbackend.PubSub")
	Shard     string    // the shard whose breaker changed ([Sharded]); "" for the backend's own
}

// Observe sends what the function does to o (see [Observer]); valid in
// [SetDefaults], so that one Observer sees every function. It panics if o
// is nil. Observe does not change what a call returns, nor add any cost to
// a hit.
func Observe(o Observer) Option {
	if o == nil || (reflect.ValueOf(o).Kind() == reflect.Pointer && reflect.ValueOf(o).IsNil()) {
		panic("memo: Observe(nil)")
	}
	return Option{"Observe", func(c *config) { c.observer = o }}
}

// attach tells o about f once per Func and Observer, on the first
// configuration that uses it.
func (f *Func[A, R]) attach(o Observer) {
	f.attachMu.Lock()
	defer f.attachMu.Unlock()
	if reflect.TypeOf(o).Comparable() {
		for _, a := range f.attached {
			if a == o {
				return
			}
		}
		f.attached = append(f.attached, o)
	}
	observing(func() { o.Attach(f.ns, f.Stats) })
}

// observing runs a call into an Observer, recovering and logging its panic.
func observing(fn func()) {
	defer func() {
		if r := recover(); r != nil {
			logOnce(context.Background(), "observer", fmt.Errorf("memo: Observer panicked: %v", r))
		}
	}()
	fn()
}

// startCompute tells the observer that fn starts; the returned context is
// fn's, and done must be called when fn returns.
func (s *state) startCompute(ctx context.Context, r Reason) (context.Context, func(time.Duration, error)) {
	if s.observer == nil {
		return ctx, nil
	}
	var (
		octx = ctx
		done func(time.Duration, error)
	)
	observing(func() { octx, done = s.observer.Compute(ctx, Computation{Namespace: s.ns, Reason: r}) })
	if octx == nil {
		octx = ctx
	}
	return octx, done
}

// observed reports a backend call to the observer.
func (s *state) observed(ctx context.Context, op string, start int64, err error) {
	d := time.Duration(s.clock.Mono() - start)
	observing(func() { s.observer.BackendCall(ctx, BackendCall{Namespace: s.ns, Op: op, Duration: d, Err: err}) })
}
