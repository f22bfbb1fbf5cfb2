package memo

import (
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"
)

// Freshness: what memo does around an entry's expiry, and with fn's
// errors. Every option here lives in one place of the miss path (memo.go)
// and works the same on the local tier and on every backend, since the
// envelope carries what it needs: fresh-until, stale-until (the end of the
// stale windows, which is also the store's TTL), how long fn took, and the
// kind of entry (an answer, a remembered not-found, a remembered error).

// DefaultRefreshTimeout bounds a background refresh unless
// [RefreshTimeout] says otherwise.
const DefaultRefreshTimeout = 30 * time.Second

// ErrCached is matched (errors.Is) by the error a call returns when it
// answers with an error of fn remembered by [CacheErrors] rather than
// running fn. The error's text contains fn's error text.
var ErrCached = errors.New("memo: remembered error")

// StaleWhileRevalidate keeps serving an entry for d after it expires: a
// call that finds such a stale entry answers at once with it and starts
// one refresh of the key in the background, shared by every caller that
// sees the stale entry meanwhile (fn still runs at most once at a time per
// key). [Func.Lookup] marks such an answer with Entry.Stale. The refresh
// runs fn on a context that keeps the first stale caller's values but not
// its cancellation, bounded by [RefreshTimeout]. A refresh that fails
// keeps the stale entry, goes to [OnError], and is not retried for that
// key before a backoff (1 s, doubling to 1 min). Past the window, a call
// is a plain miss. d must be positive, and the function needs [Expire] >
// 0 or [ExpireFunc]: New panics otherwise.
func StaleWhileRevalidate(d time.Duration) Option {
	mustPositive("StaleWhileRevalidate", d)
	return Option{"StaleWhileRevalidate", func(c *config) { c.swr = d }}
}

// StaleIfError answers with an entry that expired less than d ago when fn
// fails, with a nil error; fn's error goes to [OnError]. fn is then not
// called again for that key, while such a stale entry lasts, before a
// backoff (1 s doubling to 1 min, or the [CacheErrors] ttl when longer):
// callers meanwhile get the stale entry. Context errors, panics and
// not-found answers ([NegativeCache]) are never masked. d must be
// positive, and the function needs [Expire] > 0 or [ExpireFunc]: New
// panics otherwise.
func StaleIfError(d time.Duration) Option {
	mustPositive("StaleIfError", d)
	return Option{"StaleIfError", func(c *config) { c.sie = d }}
}

// RefreshTimeout bounds a background refresh ([StaleWhileRevalidate],
// [EarlyRefresh]): fn's context gets a deadline d away (default
// [DefaultRefreshTimeout]). d must be positive.
func RefreshTimeout(d time.Duration) Option {
	mustPositive("RefreshTimeout", d)
	return Option{"RefreshTimeout", func(c *config) { c.refreshTimeout = d }}
}

// EarlyRefresh refreshes hot entries before they expire, by XFetch
// (Vattani, Chierichetti and Lowenstein, VLDB 2015): a hit with t left
// before expiry starts a background refresh (as [StaleWhileRevalidate]
// does) with probability exp(-t / (beta * delta)), delta being how long
// fn took to compute the entry. The caller still gets the fresh value at
// once. beta 1 is the paper's choice; a larger beta refreshes earlier.
// beta must be positive and finite, and the function needs [Expire] > 0
// or [ExpireFunc]: New panics otherwise.
func EarlyRefresh(beta float64) Option {
	if !(beta > 0) || math.IsInf(beta, 0) {
		panic(fmt.Sprintf("memo: EarlyRefresh(%v): beta must be positive and finite", beta))
	}
	return Option{"EarlyRefresh", func(c *config) { c.beta = beta }}
}

// NegativeCache remembers "not found" for ttl: when fn's error matches one
// of the sentinels (errors.Is), that outcome is stored, and later calls
// for the key, in any process sharing the backend and giving the same
// sentinels, return an error e for which errors.Is(e, sentinel) holds,
// with fn's error text, without running fn. The call that ran fn gets
// fn's error itself. A remembered not-found is never served stale, and
// never masked by [StaleIfError]. Sentinels are matched across processes
// by their text. ttl must be positive and at least one non-nil sentinel
// given.
func NegativeCache(ttl time.Duration, notFound ...error) Option {
	mustPositive("NegativeCache", ttl)
	if len(notFound) == 0 {
		panic("memo: NegativeCache: no sentinel error given")
	}
	for _, e := range notFound {
		if e == nil {
			panic("memo: NegativeCache: nil sentinel error")
		}
	}
	sentinels := append([]error(nil), notFound...)
	return Option{"NegativeCache", func(c *config) { c.negTTL, c.notFound = ttl, sentinels }}
}

// CacheErrors remembers fn's other errors for ttl (meant to be short), so
// that a failing origin is called about once per ttl per key rather than
// once per call. Later calls get an error e for which errors.Is(e,
// [ErrCached]) holds and whose text contains fn's error text; the call
// that ran fn gets fn's error itself. Context errors and panics are never
// remembered, nor an error of a background refresh (the stale entry is
// kept). With [StaleIfError], callers get the stale entry instead while
// one lasts. ttl must be positive.
func CacheErrors(ttl time.Duration) Option {
	mustPositive("CacheErrors", ttl)
	return Option{"CacheErrors", func(c *config) { c.errTTL = ttl }}
}

// ExpireFunc chooses each answer's lifetime from the answer, in place of
// [Expire]: a result of 0 or less means "do not store" (callers sharing
// the computation still get it). R must be the function's result type:
// [New] panics otherwise. Only per function: SetDefaults panics on it.
func ExpireFunc[R any](fn func(R) time.Duration) Option {
	if fn == nil {
		panic("memo: ExpireFunc(nil)")
	}
	return Option{"ExpireFunc", func(c *config) { c.expireFn = fn }}
}

// ExpireJitter shortens each answer's lifetime by a random fraction in
// [0, frac), so that entries written together do not expire together.
// frac must be in [0, 1); 0 turns jitter off.
func ExpireJitter(frac float64) Option {
	if !(frac >= 0 && frac < 1) {
		panic(fmt.Sprintf("memo: ExpireJitter(%v): must be in [0, 1)", frac))
	}
	return Option{"ExpireJitter", func(c *config) { c.jitter = frac }}
}

func mustPositive(opt string, d time.Duration) {
	if d <= 0 {
		panic(fmt.Sprintf("memo: %s(%v): must be positive", opt, d))
	}
}

// validate checks the options that depend on each other; New panics with
// its error. own is the function's own options: a stale window set only
// by SetDefaults is no error for a function whose entries never expire
// (they are never stale).
func (c *config) validate(own *config, hasExpireFn bool) error {
	if c.expire == 0 && !hasExpireFn {
		for _, o := range []struct {
			name string
			on   bool
		}{{"StaleWhileRevalidate", own.swr > 0}, {"StaleIfError", own.sie > 0}, {"EarlyRefresh", own.beta > 0}} {
			if o.on {
				return fmt.Errorf("memo: %s needs Expire > 0 or ExpireFunc: an entry that never expires is never stale", o.name)
			}
		}
	}
	return nil
}

// maxLifetime bounds lifetimes and stale windows (100 years), so that
// adding them to a time never overflows.
const maxLifetime = 100 * 365 * 24 * time.Hour

// window is how long past its freshness an answer stays in the stores:
// the longer of the stale windows.
func (c *config) window() time.Duration { return max(c.swr, c.sie) }

// lifetime is how long an answer v stays fresh: 0 never expires, and a
// negative one is not stored.
func (f *Func[A, R]) lifetime(s *state, v *R) time.Duration {
	d := s.expire
	if f.expireFn != nil {
		if d = f.expireFn(*v); d <= 0 {
			return -1
		}
	}
	d = min(d, maxLifetime)
	if d > 0 && s.jitter > 0 {
		d -= time.Duration(float64(d) * s.jitter * rand.Float64())
		d = max(d, 1)
	}
	return d
}

// early reports whether a hit on an entry fresh until the monotonic time
// freshMono, read at now and computed in compute nanoseconds, starts an
// early refresh (XFetch): with probability exp(-t / (beta * compute)),
// t being the time left. It is small enough to inline: the common case,
// far from expiry, costs a multiplication and no random draw.
func early(beta float64, now, freshMono, compute int64) bool {
	return float64(freshMono-now) <= 40*beta*float64(compute) && earlyDraw(beta, now, freshMono, compute)
}

func earlyDraw(beta float64, now, freshMono, compute int64) bool {
	t := freshMono - now
	if compute <= 0 || t <= 0 {
		return false
	}
	x := float64(t) / (beta * float64(compute))
	if x > 40 { // exp(-40) < 1e-17
		return false
	}
	return rand.Float64() < math.Exp(-x)
}

// refresh starts a background refresh of key, whose answer stored at
// storedAt (wall clock) is stale or due, unless a computation of key is
// under way or the key's backoff holds. The refresh keeps ctx's values
// but not its cancellation, and is bounded by RefreshTimeout; it runs fn
// unless the tiers hold an answer stored after storedAt.
func (f *Func[A, R]) refresh(ctx context.Context, s *state, key string, a A, storedAt int64) {
	if f.backoff.holds(key, s.clock.Mono()) {
		return
	}
	started := f.flights.start(ctx, key, s.refreshTimeout, func(ctx context.Context, fl *flight[result[R]]) result[R] {
		normal := false
		defer func() {
			if !normal { // fn panicked: reported as an orphan; back off too
				f.failed(s, key, fl)
			}
		}()
		res := f.miss(ctx, s, key, a, revalidate, false, s.timeout, storedAt, fl)
		normal = true
		return res
	}, s.orphan)
	if started {
		s.stats.refreshes.Add(1)
	}
}

// failed notes a failure of key's origin, unless an invalidation voided
// the flight (its outcome says nothing of what comes after).
func (f *Func[A, R]) failed(s *state, key string, fl *flight[result[R]]) {
	if !f.flights.voided(fl) {
		f.backoff.fail(key, s.clock.Mono(), s.errTTL)
	}
}

// backoff holds the keys whose origin failed lately, to call it no sooner
// than a backoff: a background refresh that failed, or a StaleIfError
// answer. It is bounded: past maxBackoffKeys, expired keys are dropped,
// and all of them if that is not enough.
type backoff struct {
	n  atomic.Int32          // len(m), read without the lock on the hit path
	mu sync.Mutex            // guards m
	m  map[string]backoffKey // guarded by mu
}

type backoffKey struct {
	until int64 // monotonic
	fails int
}

const (
	minBackoff     = time.Second
	maxBackoff     = time.Minute
	maxBackoffKeys = 4096
)

func (b *backoff) holds(key string, now int64) bool {
	if b.n.Load() == 0 {
		return false
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	k, ok := b.m[key]
	return ok && now < k.until
}

// fail notes a failure of key's origin at now: the backoff doubles from
// minBackoff to maxBackoff, and is at least least.
func (b *backoff) fail(key string, now int64, least time.Duration) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.m == nil {
		b.m = make(map[string]backoffKey)
	}
	if len(b.m) >= maxBackoffKeys {
		for k, v := range b.m {
			if now >= v.until {
				delete(b.m, k)
			}
		}
		if len(b.m) >= maxBackoffKeys {
			clear(b.m)
		}
	}
	k := b.m[key]
	d := min(minBackoff<<min(k.fails, 6), maxBackoff)
	k.fails++
	k.until = now + int64(max(d, least))
	b.m[key] = k
	b.n.Store(int32(len(b.m)))
}

// ok forgets key's failures.
func (b *backoff) ok(key string) {
	if b.n.Load() == 0 {
		return
	}
	b.mu.Lock()
	delete(b.m, key)
	b.n.Store(int32(len(b.m)))
	b.mu.Unlock()
}

// reset forgets every key's failures.
func (b *backoff) reset() {
	b.mu.Lock()
	clear(b.m)
	b.n.Store(0)
	b.mu.Unlock()
}

// cachedError is a remembered error of fn: a not-found (target is the
// sentinel) or another error (target is ErrCached).
type cachedError struct {
	text   string // fn's error text
	target error
}

func (e *cachedError) Error() string {
	if e.target == ErrCached {
		return "memo: remembered error: " + e.text
	}
	return e.text
}

func (e *cachedError) Unwrap() error { return e.target }

// sentinel returns the NegativeCache sentinel err matches, if any.
func (s *state) sentinel(err error) error {
	for _, sn := range s.notFound {
		if errors.Is(err, sn) {
			return sn
		}
	}
	return nil
}

// remembered returns the error a remembered entry answers with, or nil
// when this function cannot answer it (a not-found whose sentinel it does
// not give): then the entry is a miss.
func (s *state) remembered(kind byte, payload []byte) error {
	sn, text := splitErrorPayload(payload)
	if kind == kindError {
		if s.errTTL == 0 { // this function does not remember errors
			return nil
		}
		return &cachedError{text: text, target: ErrCached}
	}
	for _, e := range s.notFound {
		if e.Error() == sn {
			return &cachedError{text: text, target: e}
		}
	}
	return nil
}

// maskable reports whether StaleIfError or CacheErrors may stand in for
// err: not a context error. fn runs without its callers' cancellation, so
// such an error comes from a deadline fn set itself (or RefreshTimeout);
// the contract keeps them unmasked and unremembered all the same:
// return an error of your own from fn to have a timeout of the origin
// masked or remembered.
func maskable(err error) bool {
	return !errors.Is(err, context.Canceled) && !errors.Is(err, context.DeadlineExceeded)
}
