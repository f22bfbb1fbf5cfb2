package memo

import (
	"context"
	"errors"
	"fmt"
	"math"
	"reflect"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/gomemo/memo/internal/deadline"
)

// Func is a memoized function: fn behind a cache. Create it with [New]; the
// zero value is not usable. All methods are safe for concurrent use.
type Func[A, R any] struct {
	fn    func(context.Context, A) (R, error)
	own   []Option
	ns    string
	kind  keyKind
	keyFn func(A) string
	fp    [8]byte
	cp    copier // copies decoded values kept in the local tier

	expireFn func(R) time.Duration // ExpireFunc, or nil
	backoff  backoff               // keys whose origin failed lately

	sizeHint atomic.Int64 // the last payload's size, to size the next buffer

	st      atomic.Pointer[state]
	flights group[result[R]]
	stats   counters

	attachMu sync.Mutex // guards attached
	attached []Observer // the comparable observers told of f (Observer.Attach)
}

// state is a function's configuration resolved against one generation of
// the package defaults.
type state struct {
	config
	gen        uint64
	ns         string                             // the function's namespace
	stats      *counters                          // the function's
	breaker    *breaker                           // in front of remote; nil: none
	pubBreaker *breaker                           // in front of local.inv's Publish; nil: none
	announce   Announcer                          // remote, when it publishes the local tier's invalidations
	sharded    Sharded                            // remote, when it has a breaker per shard
	nsKey      string                             // prefix:namespace
	localNS    string                             // the local tier's short name for nsKey
	sysClock   bool                               // clock is the system's
	orphan     func(context.Context, *PanicError) // reports a panic no caller received
}

// result is what one flight yields: an answer computed by fn, or an entry
// read from a tier.
type result[R any] struct {
	val     R      // fn's answer, or the decoded entry when hasVal
	hasVal  bool   // val holds the answer (otherwise decode entry.Payload)
	err     error  // fn's error, or a remembered one
	entry   Entry  // raw is nil when fn failed or its answer could not be encoded
	noStore bool   // ExpireFunc said not to store the answer
	refresh bool   // a stale answer served while revalidating: start a refresh
	token   string // the lease fencing the write; "" once used
	waited  bool   // the entry was read after waiting for another process's lease

	// fallback is what a caller not in Refresh mode gets in place of
	// err: StaleIfError's answer when a Refresh run failed.
	fallback *result[R]
}

// Wrap returns fn behind a cache: the same as New(fn, opts...).Call. It
// panics where [New] does. Keep the *[Func] from New instead when you need
// [Func.Forget], [Func.Clear] or the HTTP adapter.
//
//	getUser := memo.Wrap(fetchUser, memo.Expire(time.Minute))
func Wrap[A, R any](fn func(context.Context, A) (R, error), opts ...Option) func(context.Context, A) (R, error) {
	return New(fn, opts...).Call
}

// New returns a memoized fn. It panics with a "memo: ..." message on a
// programmer error: fn is nil; fn has no stable name of its own (a closure,
// a method value bound to a receiver, a generic instantiation) and no
// [Namespace] is given, since two such functions would share entries; A
// holds a func, channel, unsafe pointer or sync type that no [Keyer],
// MarshalText or `memo:"-"` tag covers, and no [KeyFunc] says how to key
// it; a KeyFunc is for another argument type; an option is the zero Option.
func New[A, R any](fn func(context.Context, A) (R, error), opts ...Option) *Func[A, R] {
	if fn == nil {
		panic("memo: New(nil)")
	}
	var own config
	for _, o := range opts {
		if o.apply == nil {
			panic("memo: New: zero Option")
		}
		o.apply(&own)
	}
	f := &Func[A, R]{fn: fn, own: append([]Option(nil), opts...), ns: own.namespace}
	if f.ns == "" {
		f.ns = defaultNamespace(fn)
	}
	argType := reflect.TypeFor[A]()
	if own.keyFn != nil {
		kf, ok := own.keyFn.(func(A) string)
		if !ok {
			panic(fmt.Sprintf("memo: KeyFunc takes %v but the function's argument is %v", reflect.TypeOf(own.keyFn).In(0), argType))
		}
		f.kind, f.keyFn = keyFunc, kf
	} else {
		k, err := keyKindOf(argType)
		if err != nil {
			panic(fmt.Sprintf("memo: cannot key arguments of type %v: %v; implement memo.Keyer or pass memo.KeyFunc", argType, err))
		}
		f.kind = k
	}
	if own.expireFn != nil {
		ef, ok := own.expireFn.(func(R) time.Duration)
		if !ok {
			panic(fmt.Sprintf("memo: ExpireFunc takes %v but the function's result is %v", reflect.TypeOf(own.expireFn).In(0), reflect.TypeFor[R]()))
		}
		f.expireFn = ef
	}
	f.fp = fingerprint(reflect.TypeFor[R]())
	f.cp = newCopier(reflect.TypeFor[R]())
	if err := f.load().validate(&own, f.expireFn != nil); err != nil {
		panic(err.Error())
	}
	return f
}

// load returns the configuration for the current package defaults.
func (f *Func[A, R]) load() *state {
	gen := defaultsGen.Load()
	if s := f.st.Load(); s != nil && s.gen == gen {
		return s
	}
	s := &state{config: resolve(f.own), gen: gen}
	_, s.sysClock = s.clock.(systemClock)
	s.orphan = func(ctx context.Context, p *PanicError) { s.fault(ctx, p) }
	s.nsKey = f.ns
	if s.prefix != "" {
		s.nsKey = s.prefix + ":" + f.ns
	}
	s.localNS = localName(s.nsKey)
	s.ns, s.stats = f.ns, &f.stats
	s.breaker = breakerFor(s.remote, s.breakerThreshold, s.breakerCooldown, s.clock)
	if s.breaker != nil {
		s.breaker.watch(f, f.ns, s.observer)
		s.sharded, _ = s.remote.(Sharded)
	}
	if s.observer != nil {
		f.attach(s.observer)
	}
	if s.local != nil && s.local.inv != nil {
		if a, ok := s.remote.(Announcer); ok && a.Announces(s.local.inv) {
			s.announce = a
		}
		s.pubBreaker = publishBreakerFor(s.local.inv, s.breakerThreshold, s.breakerCooldown, s.clock)
		if s.pubBreaker != nil {
			s.pubBreaker.watch(f, f.ns, s.observer)
		}
		s.local.owed.register(s.pubBreaker, s.timeout)
	}
	f.st.Store(s)
	return s
}

// Call returns fn's answer for a, from the cache when it holds a fresh one
// (or a stale one the freshness options allow: see docs/freshness.md).
//
// Concurrent calls for one key in a process run fn at most once at a time
// (a [Func.Forget] or [Func.Clear] excepted: the next call starts a new run
// while the voided one ends). With caching on, each caller waits on its
// own ctx: a caller whose ctx is already done gets
// ctx.Err() at once, and one whose ctx ends while it waits gets ctx.Err()
// then, unless fn has answered and only the cache write is under way (it
// then gets the answer). Callers leaving never start another run of fn,
// and never cancel it: fn runs with a context that keeps the first
// caller's values but not its cancellation or deadline, and memo does not
// bound it, so give fn its own timeout if it can hang. Every caller of that
// run, and everyone who calls until it ends, gets its answer. Because
// callers share a run, fn must not read identity (a user, a tenant) from
// the context: put it in the argument.
//
// When Call returns an answer that fn computed, the answer has been
// written to the cache (or the write failed or ran out of [Timeout], and
// was reported): a call for the same key that starts afterwards, in any
// process sharing the backend, hits.
//
// If fn panics, its callers panic with a *[PanicError] and the next call
// runs fn again. The callers of the run of fn that failed get its error
// unchanged. It is never cached, except as [NegativeCache] and
// [CacheErrors] say: later calls then get the remembered error.
//
// A fault of the cache (a backend error or timeout, a corrupt or foreign
// entry, a key that cannot be built) never reaches the caller: a failed
// read is a miss, a failed write is reported to [OnError], and fn's answer
// is returned either way. A backend call takes at most [Timeout], and a
// read at most a third of the time the first caller has left, so that fn
// still has time to answer. Every caller gets a value of its own: mutating it never
// changes what later calls return.
func (f *Func[A, R]) Call(ctx context.Context, a A) (R, error) {
	s := f.load()
	if !s.enabled {
		return f.direct(ctx, s, a)
	}
	var zero R
	if err := ctx.Err(); err != nil {
		return zero, err
	}
	var buf [MaxKeyLen + 8]byte
	var key string
	if s.local != nil {
		// The local tier's key: a short name for the namespace, and the id.
		lk := append(append(buf[:0], s.localNS...), ':')
		lk, err := f.appendID(lk, s, a)
		if err != nil {
			s.report(ctx, "key", s.nsKey, err)
			return f.direct(ctx, s, a)
		}
		if it, now, ok := s.local.get(lk, s); ok {
			if it.kind != kindValue {
				if it.fp == f.fp && it.codec == s.codec.Name() {
					if err := s.remembered(it.kind, it.payload()); err != nil {
						s.stats.negativeHits.Add(1)
						return zero, err
					}
				}
			} else if !it.stale(now) {
				if v, ok := f.fromItem(ctx, s, it); ok {
					if s.beta > 0 && early(s.beta, now, it.freshMono, it.compute) {
						f.refresh(ctx, s, s.nsKey+":"+string(lk[len(s.localNS)+1:]), a, it.storedAt)
					}
					s.stats.hit()
					return v, nil
				}
			} else if now-it.freshMono < int64(s.swr) {
				if v, ok := f.fromItem(ctx, s, it); ok {
					f.refresh(ctx, s, s.nsKey+":"+string(lk[len(s.localNS)+1:]), a, it.storedAt)
					s.stats.staleHits.Add(1)
					return v, nil
				}
			}
		}
		key = s.nsKey + ":" + string(lk[len(s.localNS)+1:])
	} else {
		kb, err := f.appendKey(buf[:0], s, a)
		if err != nil {
			s.report(ctx, "key", s.nsKey, err)
			return f.direct(ctx, s, a)
		}
		key = string(kb)
	}
	res, first, err := f.fetch(ctx, s, key, a, UseCache, true)
	if err != nil {
		s.stats.misses.Add(1)
		return zero, err
	}
	if res.refresh {
		f.refresh(ctx, s, key, a, res.entry.meta.storedAt)
	}
	if res.fallback != nil {
		res, first = *res.fallback, false
	}
	s.count(&res.entry, res.err, first, res.waited)
	if res.err != nil || res.hasVal && first {
		return res.val, res.err
	}
	if res.hasVal && f.cp.ok {
		return f.copyOf(&res.val), nil
	}
	// A caller sharing another's answer decodes a value of its own.
	var v R
	if err := s.decode(res.entry.Payload, &v); err != nil {
		s.report(ctx, "decode", key, err)
		v, _, err := f.runFn(ctx, s, a, ReasonMiss) // fail open: never a zero value for an answer
		return v, err
	}
	return v, nil
}

// count counts a call answered by a flight: by an entry (Hit), or by a
// computation it ran (first) or shared (in this process, or in another
// one whose lease it waited for).
func (s *state) count(e *Entry, err error, first, waited bool) {
	switch {
	case waited:
		s.stats.coalesced.Add(1) // with another process's computation
	case e.Hit && err != nil:
		s.stats.negativeHits.Add(1)
	case e.Hit && e.Stale:
		s.stats.staleHits.Add(1)
	case e.Hit:
		s.stats.hit()
	case first:
		s.stats.misses.Add(1)
	default:
		s.stats.coalesced.Add(1)
	}
}

// direct answers a call that does not use the cache.
func (f *Func[A, R]) direct(ctx context.Context, s *state, a A) (R, error) {
	s.stats.bypasses.Add(1)
	v, _, err := f.runFn(ctx, s, a, ReasonBypass)
	return v, err
}

// copyOf returns a copy of *v that shares nothing mutable with it.
func (f *Func[A, R]) copyOf(v *R) R {
	if f.cp.fixup == nil {
		return *v
	}
	c := *v
	// The fix-up only writes fresh copies into c and keeps no pointer to
	// it: c need not move to the heap.
	f.cp.fixup(noescape(unsafe.Pointer(&c)))
	return c
}

// noescape hides p from escape analysis, as the runtime's own does.
//
//go:nosplit
func noescape(p unsafe.Pointer) unsafe.Pointer {
	x := uintptr(p)
	return *(*unsafe.Pointer)(unsafe.Pointer(&x))
}

// fromItem answers Call from a local item of an answer, or says it cannot
// (an item of another codec or result type, or one that does not decode).
// A kept decoded value serves whatever codec wrote it.
func (f *Func[A, R]) fromItem(ctx context.Context, s *state, it *item) (R, bool) {
	if p, ok := it.val.(*R); ok {
		return f.copyOf(p), true
	}
	var zero R
	if it.fp != f.fp || it.codec != s.codec.Name() {
		return zero, false
	}
	var v R
	if err := s.decode(it.payload(), &v); err != nil {
		s.report(ctx, "decode", "", err)
		return zero, false
	}
	return v, true
}

// revalidate is the mode of a background refresh: read the tiers for a
// fresh entry (another flight or process may have refreshed it), else run
// fn; a stale entry is never the answer, and fn's failure keeps it.
const revalidate Mode = -1

// fetch runs the miss path for key once among concurrent callers: read the
// tiers (unless mode is Refresh), else run fn and write its answer. needVal
// says whether the caller wants an R (Call) rather than an entry. The
// second result says whether the caller may own res.val.
func (f *Func[A, R]) fetch(ctx context.Context, s *state, key string, a A, mode Mode, needVal bool) (result[R], bool, error) {
	// The backend's share of the first caller's time, read now: fn gets
	// the rest.
	budget := s.timeout
	if d, ok := ctx.Deadline(); ok {
		budget = min(budget, time.Until(d)/3)
	}
	if mode == UseCache && (s.swr > 0 || s.beta > 0 || s.sie > 0) && f.flights.running(key) {
		// fn is running for key (a refresh, or a Refresh): an entry the
		// tiers hold (fresh, or stale within the window) answers at once,
		// rather than waiting for it.
		if res, ok, _, _ := f.readTiers(ctx, s, key, mode, needVal, budget, 0, 0, nil); ok {
			res.refresh = false
			return res, true, nil
		}
	}
	returned := false
	defer func() {
		if !returned { // fn panicked: its callers panic, each counted as a miss
			s.stats.misses.Add(1)
		}
	}()
	res, first, err := f.flights.do(ctx, key, mode == Refresh, func(fctx context.Context, fl *flight[result[R]]) result[R] {
		return f.miss(fctx, s, key, a, mode, needVal, budget, 0, fl)
	}, s.orphan)
	returned = true
	return res, first, err
}

// miss is a flight's body: the whole miss path of one key.
func (f *Func[A, R]) miss(ctx context.Context, s *state, key string, a A, mode Mode, needVal bool, budget time.Duration, after int64, fl *flight[result[R]]) result[R] {
	var fallback *result[R]
	readFailed := false
	seq := s.localSeq(key) // invalidations of key seen before reading or computing it
	if mode != Refresh {
		res, ok, stale, failed := f.readTiers(ctx, s, key, mode, needVal, budget, after, seq, fl)
		if ok {
			return res
		}
		// A store that stalled for the whole Timeout would stall the
		// write too: skip it. A read cut short by the caller's deadline
		// says nothing of the store.
		fallback, readFailed = stale, failed && budget >= s.timeout
	} else if s.sie > 0 {
		// A Refresh answers from fn, but StaleIfError may stand in for
		// its failure: read an entry to fall back on (any entry counts as
		// stale here).
		_, _, fallback, _ = f.readTiers(ctx, s, key, revalidate, needVal, budget, math.MaxInt64, seq, fl)
	}
	var token string
	if l := s.leaser(); l != nil && !readFailed {
		if mode == Refresh && after == 0 {
			// A Refresh waiting for another process's lease takes only
			// an answer stored from now on.
			after = s.clock.Wall() - 1
		}
		tok, r, ok := f.leaseFor(ctx, s, l, key, needVal, after, fallback == nil && !readFailed, seq, fl)
		if ok {
			return r
		}
		token = tok
	}
	return f.compute(ctx, s, key, a, mode, readFailed, fallback, seq, token, fl)
}

// readTiers reads the local tier, then the remote one, for key. ok says
// res answers the caller: a fresh entry, a remembered error, or (mode
// UseCache) a stale answer within StaleWhileRevalidate's window, or within
// StaleIfError's while the origin's backoff holds. Otherwise stale, if
// not nil, is a stale answer within StaleIfError's window, to stand in for
// fn's error; failed says the remote read itself failed. An answer stored
// at or before after (a refresh's trigger) counts as stale. fl fences the
// local copy of a remote entry; nil skips it.
func (f *Func[A, R]) readTiers(ctx context.Context, s *state, key string, mode Mode, needVal bool, budget time.Duration, after int64, seq uint64, fl *flight[result[R]]) (res result[R], ok bool, stale *result[R], failed bool) {
	var age int64 = -1 // how long ago the stale answer expired
	if s.local != nil {
		var buf [MaxKeyLen + 8]byte
		if it, now, found := s.local.get(s.appendLocalKey(buf[:0], key), s); found {
			if r, usable := f.localResult(ctx, s, it, now, needVal); usable {
				if r.err != nil || !it.stale(now) && it.storedAt > after {
					r.refresh = r.err == nil && s.beta > 0 && early(s.beta, now, it.freshMono, it.compute)
					return r, true, nil, false
				}
				r.entry.Stale = true
				stale, age = &r, now-it.freshMono
			}
		}
	}
	if s.remote != nil {
		env, st, rerr := f.read(ctx, s, key, budget)
		failed = rerr != nil
		if st != absent {
			r := result[R]{entry: hitEntry(s, env)}
			if env.kind != kindValue {
				if r.err = s.remembered(env.kind, env.payload); r.err == nil {
					st = absent
				}
			} else if needVal || s.local != nil && f.cp.ok {
				if err := s.decode(env.payload, &r.val); err != nil {
					s.report(ctx, "decode", key, err)
					st = absent
				} else {
					r.hasVal = true
				}
			}
			if st != absent {
				if s.local != nil && fl != nil && f.flights.beginWrite(fl) {
					f.fill(s, key, &r, env.raw, env.meta, seq) // an entry the remote tier held: it fitted there
					f.flights.endWrite(fl)
				}
				if st == fresh && env.storedAt > after {
					r.refresh = r.err == nil && s.beta > 0 && env.freshUntil != 0 && early(s.beta, env.readAt, env.freshUntil, env.compute)
					return r, true, nil, failed
				}
				r.entry.Stale = true
				stale, age = &r, env.readAt-env.freshUntil
			}
		}
	}
	if stale == nil {
		return res, false, nil, failed
	}
	if mode == UseCache {
		if age < int64(s.swr) {
			stale.refresh = true
			return *stale, true, nil, failed
		}
		if age < int64(s.sie) && f.backoff.holds(key, s.clock.Mono()) {
			return *stale, true, nil, failed
		}
	}
	if age >= int64(s.sie) {
		stale = nil
	}
	return res, false, stale, failed
}

// localResult turns a local item of this codec and result type into a
// flight result: an answer, or the error a remembered one answers with.
func (f *Func[A, R]) localResult(ctx context.Context, s *state, it *item, now int64, needVal bool) (result[R], bool) {
	res := result[R]{entry: it.entry(s.codec, now)}
	if it.fp != f.fp || it.codec != s.codec.Name() {
		return res, false
	}
	if it.kind != kindValue {
		res.err = s.remembered(it.kind, it.payload())
		return res, res.err != nil
	}
	if p, ok := it.val.(*R); ok {
		res.val, res.hasVal = f.copyOf(p), true
	} else if needVal {
		if err := s.decode(it.payload(), &res.val); err != nil {
			s.report(ctx, "decode", "", err)
			return res, false
		}
		res.hasVal = true
	}
	return res, true
}

// compute runs fn, makes its answer known to callers, and writes it to
// the tiers unless an invalidation came (or the remote tier has just
// failed a read: it would only stall again). fallback, if not nil, is a
// stale answer StaleIfError serves when fn fails.
func (f *Func[A, R]) compute(ctx context.Context, s *state, key string, a A, mode Mode, skipRemote bool, fallback *result[R], seq uint64, token string, fl *flight[result[R]]) result[R] {
	f.flights.computing(fl)
	res := result[R]{token: token}
	if token != "" {
		// A lease not used by a write ends here, fn's panic included.
		defer func() {
			if res.token != "" {
				s.release(ctx, key, token)
			}
		}()
	}
	reason := ReasonMiss
	switch mode {
	case revalidate:
		reason = ReasonRefresh
	case Refresh:
		reason = ReasonForced
	}
	r := f.run(ctx, s, key, a, reason)
	r.token = token
	res = r
	if res.err != nil {
		sn := s.sentinel(res.err)
		switch {
		case sn != nil:
			// Not found: remembered, and never masked by a stale answer.
			f.remember(ctx, s, key, kindNegative, s.negTTL, sn.Error(), &res, skipRemote, seq, fl)
		case mode == revalidate:
			// A failed refresh (its own timeout included) keeps the stale
			// entry, and fn is not called again for the key before a
			// backoff. A caller that joined it within StaleIfError's
			// window gets the stale answer.
			s.fault(ctx, res.err)
			f.failed(s, key, fl)
			if fallback != nil && s.clock.Wall()-fallback.entry.meta.freshUntil < int64(s.sie) {
				return *fallback
			}
		case !maskable(res.err):
		case fallback != nil && s.clock.Wall()-fallback.entry.meta.freshUntil < int64(s.sie):
			// StaleIfError serves the stale answer, still within its
			// window now that fn has failed; a Refresh's own caller
			// asked for fn's answer, and gets its error, while callers
			// that joined it get the stale answer.
			s.fault(ctx, res.err)
			f.failed(s, key, fl)
			if mode == Refresh {
				res.fallback = fallback
				return res
			}
			return *fallback
		case s.errTTL > 0 && mode == UseCache:
			// Remembered; never by a Refresh, which read no entry that a
			// remembered error could be overwriting.
			f.remember(ctx, s, key, kindError, s.errTTL, "", &res, skipRemote, seq, fl)
		}
		return res
	}
	if !f.flights.voided(fl) {
		f.backoff.ok(key)
	}
	if res.entry.raw == nil || res.noStore {
		return res
	}
	// Callers that take the answer before the write ends decode their own
	// value from the payload: the value itself goes to the first caller
	// after it and to the local tier, and must not be shared meanwhile.
	early := res
	early.hasVal = false
	f.flights.answer(fl, early)
	f.store(ctx, s, key, &res, skipRemote, seq, fl)
	return res
}

// remember stores fn's error in res as an entry of kind for ttl.
func (f *Func[A, R]) remember(ctx context.Context, s *state, key string, kind byte, ttl time.Duration, sentinel string, res *result[R], skipRemote bool, seq uint64, fl *flight[result[R]]) {
	now := s.clock.Wall()
	ttl = min(ttl, maxLifetime)
	m := meta{storedAt: now, freshUntil: now + int64(ttl), staleUntil: now + int64(ttl), kind: kind}
	name := s.codec.Name()
	env, etag := encodeEnvelope(name, f.fp, m, errorPayload(sentinel, res.err.Error()))
	res.entry = Entry{Payload: env[envHeaderLen(name):], Codec: s.codec, StoredAt: unixTime(now), FreshUntil: unixTime(m.freshUntil), Cached: true, etag: etag, raw: env, meta: m}
	f.store(ctx, s, key, res, skipRemote, seq, fl)
	res.entry.Payload, res.entry.raw = nil, nil // no answer to serve: callers get fn's error
}

// store writes res's entry to the tiers, fenced by invalidations, and
// reports a failed write.
func (f *Func[A, R]) store(ctx context.Context, s *state, key string, res *result[R], skipRemote bool, seq uint64, fl *flight[result[R]]) {
	if !f.flights.beginWrite(fl) {
		return
	}
	werr, perr := f.write(ctx, s, key, res, skipRemote, seq)
	f.flights.endWrite(fl)
	// Reported outside the fence: the hook may call Forget or Clear.
	if werr != nil {
		s.report(ctx, "set", key, werr)
	}
	if perr != nil {
		s.report(ctx, "publish", key, perr)
	}
}

// write writes res's entry to the tiers (the remote one unless
// skipRemote), sets Entry.Stored, and returns why a write failed (werr)
// and why its invalidation was not published (perr), for the caller to
// report outside any fence.
func (f *Func[A, R]) write(ctx context.Context, s *state, key string, res *result[R], skipRemote bool, seq uint64) (werr, perr error) {
	stored, announced := false, false
	if s.remote != nil && !skipRemote {
		announced = s.announce != nil
		ttl := time.Duration(0)
		if m := res.entry.meta; m.staleUntil != 0 {
			ttl = time.Duration(m.staleUntil - m.storedAt)
		}
		if token := res.token; token != "" {
			res.token = ""
			werr = s.call(ctx, s.timeout, "set", key, func(bctx context.Context) error {
				var err error
				if announced {
					stored, err = s.announce.WriteAnnounce(bctx, Write{Op: OpSetFenced, Key: key, Value: res.entry.raw, TTL: ttl, Token: token}, s.invalidation(key))
					if stored && errors.Is(err, ErrNotPublished) {
						perr, err = err, nil
					}
				} else {
					stored, err = s.leaser().SetFenced(bctx, key, res.entry.raw, ttl, token)
				}
				return err
			})
			if !stored {
				// The lease was voided (an invalidation in some process)
				// or lost: the answer is not kept here either.
				if announced {
					s.oweIfUnsure(ctx, key, werr)
				}
				res.entry.Stored = false
				return werr, perr
			}
		} else {
			werr = s.call(ctx, s.timeout, "set", key, func(bctx context.Context) error {
				if announced {
					_, err := s.announce.WriteAnnounce(bctx, Write{Op: OpSet, Key: key, Value: res.entry.raw, TTL: ttl}, s.invalidation(key))
					if errors.Is(err, ErrNotPublished) {
						perr, err = err, nil
					}
					return err
				}
				return s.remote.Set(bctx, key, res.entry.raw, ttl)
			})
			stored = werr == nil
		}
	}
	if s.local != nil {
		kept, lerr := f.fill(s, key, res, res.entry.raw, res.entry.meta, seq)
		stored = kept || stored
		if lerr != nil && werr == nil {
			werr = lerr
		}
	}
	switch {
	case stored && s.remote != nil && !announced:
		perr = s.publish(ctx, key)
	case announced && perr != nil: // written, not published
		s.owe(key)
	case announced && werr == nil:
		s.paid(ctx)
	case announced:
		s.oweIfUnsure(ctx, key, werr)
	}
	res.entry.Stored = stored
	return werr, perr
}

// fill keeps an entry in the local tier: its envelope and, when R can be
// copied, a decoded copy of its own. m holds the entry's wall-clock times;
// the local copy is fresh, then stale, for the time that remains of each.
// It returns whether it kept the entry, and why not when the tier refused
// it (too large for its bound).
func (f *Func[A, R]) fill(s *state, key string, res *result[R], raw []byte, m meta, seq uint64) (bool, error) {
	name := s.codec.Name()
	it := &item{meta: m, env: raw, hdr: len(raw) - len(res.entry.Payload), codec: name, fp: f.fp, etag: res.entry.etag}
	var cost int64
	if m.kind == kindValue && res.hasVal && f.cp.ok {
		p := new(R)
		*p = f.copyOf(&res.val)
		it.val = p
		cost = footprint(reflect.ValueOf(p).Elem(), 0) + allocSize(int(unsafe.Sizeof(*p)))
	}
	now := s.clock.Mono()
	var deadline int64
	if m.freshUntil != 0 {
		wall := s.clock.Wall()
		left := max(m.staleUntil, m.freshUntil) - wall
		if left <= 0 {
			return false, nil
		}
		deadline = now + left
		it.freshMono = now + (m.freshUntil - wall)
	}
	if s.remote != nil {
		// A copy of the backend's entry: read again after LocalTTL.
		if d := now + int64(s.localTTL); deadline == 0 || d < deadline {
			deadline = d
		}
	}
	var buf [MaxKeyLen + 8]byte
	return s.local.set(string(s.appendLocalKey(buf[:0], key)), it, cost, deadline, now, seq)
}

// run calls fn and encodes its answer into an entry (not yet stored).
func (f *Func[A, R]) run(ctx context.Context, s *state, key string, a A, reason Reason) result[R] {
	v, d, err := f.runFn(ctx, s, a, reason)
	if err != nil {
		return result[R]{val: v, err: err, hasVal: true}
	}
	return f.encode(ctx, s, key, v, d)
}

// runFn is the one place fn runs: counted, timed and observed. d is how
// long it ran, in nanoseconds.
func (f *Func[A, R]) runFn(ctx context.Context, s *state, a A, reason Reason) (v R, d int64, err error) {
	s.stats.computations.Add(1)
	fctx, done := s.startCompute(ctx, reason)
	start := s.clock.Mono()
	returned := false
	defer func() {
		if returned {
			return
		}
		// fn panicked (or called runtime.Goexit: recover is then nil).
		s.stats.errors.Add(1)
		r := recover()
		if done != nil {
			observing(func() { done(time.Duration(max(s.clock.Mono()-start, 0)), &PanicError{Value: r, Stack: debug.Stack()}) })
		}
		if r != nil {
			panic(r)
		}
	}()
	v, err = f.fn(fctx, a)
	returned = true
	d = max(s.clock.Mono()-start, 0)
	if err != nil {
		s.stats.errors.Add(1)
	}
	if done != nil {
		observing(func() { done(time.Duration(d), err) })
	}
	return v, d, err
}

// encode encodes v, computed in compute nanoseconds, into an entry.
func (f *Func[A, R]) encode(ctx context.Context, s *state, key string, v R, compute int64) result[R] {
	res := result[R]{val: v, hasVal: true}
	now := s.clock.Wall()
	m := meta{storedAt: now, compute: compute}
	if d := f.lifetime(s, &v); d > 0 {
		m.freshUntil = now + int64(d)
		m.staleUntil = m.freshUntil + int64(min(s.window(), maxLifetime))
	} else if d < 0 {
		res.noStore = true
		m.freshUntil, m.staleUntil = now, now
	}
	name := s.codec.Name()
	var env []byte
	var etag [16]byte
	err := safely(func() error {
		var err error
		if am, ok := s.codec.(appendMarshaler); ok {
			// Encode straight after a header left blank, then fill it in.
			hdr := envHeaderLen(name)
			env, err = am.appendMarshal(make([]byte, hdr, hdr+int(f.sizeHint.Load())), &v)
			if err == nil {
				f.sizeHint.Store(int64(len(env) - hdr + 32))
				etag = putEnvelopeHeader(env, name, f.fp, m)
			}
			return err
		}
		var payload []byte
		if payload, err = s.codec.Marshal(&v); err == nil {
			env, etag = encodeEnvelope(name, f.fp, m, payload)
		}
		return err
	})
	if err != nil {
		s.report(ctx, "encode", key, err)
		res.entry.encodeErr = err
		return res
	}
	res.entry = Entry{
		Payload:    env[envHeaderLen(name):],
		Codec:      s.codec,
		StoredAt:   unixTime(now),
		FreshUntil: unixTime(m.freshUntil),
		Cached:     true,
		etag:       etag,
		raw:        env,
		meta:       m,
	}
	return res
}

// Freshness of an entry read from the remote tier.
const (
	absent = iota // no entry, or one this function cannot use
	fresh
	stale // past fresh-until, before stale-until
)

// read returns the entry stored under key in the remote tier, if any,
// with its freshness. Faults are reported and read as misses; failed says
// the backend call itself failed (an error or a timeout), which is not
// worth repeating at once.
func (f *Func[A, R]) read(ctx context.Context, s *state, key string, budget time.Duration) (env envelope, st int, failed error) {
	b, ok, err := s.get(ctx, budget, key)
	if err != nil {
		s.report(ctx, "get", key, err)
		return envelope{}, absent, err
	}
	if !ok {
		return envelope{}, absent, nil
	}
	env, err = decodeEnvelope(b)
	if err != nil {
		s.report(ctx, "decode", key, err)
		return envelope{}, absent, nil
	}
	if string(env.codec) != s.codec.Name() || env.fp != f.fp {
		return envelope{}, absent, nil // another codec or another R: a miss, overwritten
	}
	env.raw = b
	if env.freshUntil == 0 {
		return env, fresh, nil
	}
	now := s.clock.Wall()
	env.readAt = now
	switch {
	case now < env.freshUntil:
		return env, fresh, nil
	case now < env.staleUntil && env.kind == kindValue:
		return env, stale, nil
	}
	return envelope{}, absent, nil
}

// call runs the remote-tier operation op (named name, for the Observer)
// on key ("": none) bounded by d (d <= 0: by ctx alone), turning a panic
// into an error. It returns ErrBreakerOpen, without running op, while the
// breaker (key's shard's) is open.
// The bound is a context closed by a timer shared by every call in
// flight: a runtime timer per call would cost a microsecond and a thread
// wake-up.
func (s *state) call(ctx context.Context, d time.Duration, name, key string, op func(context.Context) error) error {
	b, probe, ok := s.allow(ctx, key)
	if !ok {
		return ErrBreakerOpen
	}
	return s.run(ctx, b, probe, d, name, op)
}

// run is call once breaker b (nil: none) let the call through.
func (s *state) run(ctx context.Context, b *breaker, probe bool, d time.Duration, name string, op func(context.Context) error) (err error) {
	var start int64
	if s.observer != nil {
		start = s.clock.Mono()
	}
	bctx := ctx
	if d > 0 {
		dc := deadline.New(ctx, d)
		defer dc.Release()
		bctx = dc
	}
	defer func() {
		if r := recover(); r != nil {
			err = &PanicError{Value: r, Stack: debug.Stack()}
		}
		s.called(ctx, name, b, start, probe, err)
	}()
	return op(bctx)
}

// get is call for the remote tier's Get, without a closure (the hit path).
func (s *state) get(ctx context.Context, d time.Duration, key string) (b []byte, ok bool, err error) {
	br, probe, allowed := s.allow(ctx, key)
	if !allowed {
		return nil, false, ErrBreakerOpen
	}
	var start int64
	if s.observer != nil {
		start = s.clock.Mono()
	}
	bctx := deadline.New(ctx, d)
	defer func() {
		bctx.Release()
		if r := recover(); r != nil {
			err = &PanicError{Value: r, Stack: debug.Stack()}
		}
		s.called(ctx, "get", br, start, probe, err)
	}()
	return s.remote.Get(bctx, key)
}

// allow asks the breaker of key's shard (or the backend's) whether a
// remote call may go through, counting the calls it skips; probe says the
// call is an open breaker's probe.
func (s *state) allow(ctx context.Context, key string) (b *breaker, probe, ok bool) {
	if b = s.breaker; b == nil {
		return nil, false, true
	}
	if s.sharded != nil && key != "" {
		if name := shardOf(ctx, s.sharded, key); name != "" {
			b = b.child(name)
		}
	}
	ok, probe = b.allow()
	if !ok {
		s.stats.backendSkips.Add(1)
	}
	return b, probe, ok
}

// shardOf asks sh for key's shard; a panic means it cannot tell.
func shardOf(ctx context.Context, sh Sharded, key string) (name string) {
	defer func() {
		if recover() != nil {
			name = ""
		}
	}()
	return sh.Shard(ctx, key)
}

// called tells the breaker and the observer how a remote call went.
func (s *state) called(ctx context.Context, name string, b *breaker, start int64, probe bool, err error) {
	if b != nil {
		b.done(probe, err, isFault(ctx, err))
	}
	if s.observer != nil {
		s.observed(ctx, name, start, err)
	}
}

// safely runs op, turning a panic into an error.
func safely(op func() error) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = &PanicError{Value: r, Stack: debug.Stack()}
		}
	}()
	return op()
}

// decode decodes a payload, turning a panic of the codec into an error.
func (s *state) decode(payload []byte, v any) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = &PanicError{Value: r, Stack: debug.Stack()}
		}
	}()
	return s.codec.Unmarshal(payload, v)
}

// report sends a fault to OnError. A panic of the hook is recovered and
// logged: it must not take the process down from a background goroutine.
// A call the open breaker skipped is not a fault: the breaker reported
// the one that opened it.
func (s *state) report(ctx context.Context, op, key string, err error) {
	if err == ErrBreakerOpen {
		return
	}
	s.fault(ctx, &BackendError{Op: op, Key: key, Err: err})
}

func (s *state) fault(ctx context.Context, err error) {
	s.stats.faults.Add(1)
	defer func() {
		if r := recover(); r != nil {
			logError(ctx, fmt.Errorf("memo: OnError panicked: %v (reporting %w)", r, err))
		}
	}()
	s.onError(ctx, err)
}

// hitEntry is the Entry of an envelope read from the remote tier.
func hitEntry(s *state, env envelope) Entry {
	return Entry{
		Payload:    env.payload,
		Codec:      s.codec,
		Hit:        true,
		Cached:     true,
		StoredAt:   unixTime(env.storedAt),
		FreshUntil: unixTime(env.freshUntil),
		CheckedAt:  checkedAt(env.freshUntil, env.readAt),
		etag:       env.etag,
		meta:       env.meta,
	}
}

// appendKey appends the key of a, recovering a panic of key building.
func (f *Func[A, R]) appendKey(dst []byte, s *state, a A) ([]byte, error) {
	dst = append(append(dst, s.nsKey...), ':')
	return f.appendID(dst, s, a)
}

// appendID appends the id of a, recovering a panic of key building. The id
// is the same whether it follows the namespace key or the local tier's
// short name for it.
func (f *Func[A, R]) appendID(dst []byte, s *state, a A) (b []byte, err error) {
	room := MaxKeyLen - len(s.nsKey) - 1
	if f.kind <= keyFloat {
		return appendID(dst, room, f.kind, f.keyFn, a) // scalars: cannot panic
	}
	defer func() {
		if r := recover(); r != nil {
			b, err = nil, fmt.Errorf("memo: building the key panicked: %v", r)
		}
	}()
	return appendID(dst, room, f.kind, f.keyFn, a)
}

// Key returns the backend key for a: "prefix:namespace:id". The id is a
// as is when it is a short safe string, the decimal form of an integer,
// "true" or "false", the shortest decimal of a float (-0 as 0), or
// "~" and the SHA-256 of a's canonical form otherwise (see
// docs/keys-and-codecs.md). Key returns "" when a cannot be keyed (a
// cyclic value, a MemoKey that panics).
func (f *Func[A, R]) Key(a A) string {
	var buf [MaxKeyLen + 8]byte
	b, err := f.appendKey(buf[:0], f.load(), a)
	if err != nil {
		return ""
	}
	return string(b)
}

// Forget drops the cached answer for a, in both tiers. After Forget
// returns, no call in this process returns an answer computed before
// Forget was called, and no write of such an answer lands: a computation
// for a already under way keeps its callers but writes nothing, and a
// write already under way is waited for before the delete. Calls that
// overlap Forget may get the old answer. Two exceptions, both on a remote
// backend: other processes sharing it are fenced only with [Lease] (a
// computation under way there may still write otherwise), and a write
// that memo gave up on at [Timeout] may still reach the store after the
// delete. The error, if any, is a *[BackendError]: the remote delete
// failed or ran out of [Timeout], and the entry may remain there.
func (f *Func[A, R]) Forget(ctx context.Context, a A) error {
	s := f.load()
	var buf [MaxKeyLen + 8]byte
	kb, err := f.appendKey(buf[:0], s, a)
	if err != nil {
		return &BackendError{Op: "key", Key: s.nsKey, Err: err}
	}
	key := string(kb)
	for _, w := range f.flights.invalidate(key, false) {
		<-w
	}
	defer f.flights.invalidated(key, false)
	return f.drop(ctx, s, key)
}

// drop deletes key from both tiers.
func (f *Func[A, R]) drop(ctx context.Context, s *state, key string) error {
	f.backoff.ok(key)
	if s.local != nil {
		var buf [MaxKeyLen + 8]byte
		s.local.delete(string(s.appendLocalKey(buf[:0], key)))
	}
	if s.remote == nil {
		return nil
	}
	err := s.call(ctx, s.timeout, "delete", key, func(bctx context.Context) error {
		if s.announce != nil {
			_, err := s.announce.WriteAnnounce(bctx, Write{Op: OpDelete, Key: key}, s.invalidation(key))
			return s.published(ctx, key, err)
		}
		return s.remote.Delete(bctx, key)
	})
	if s.announce != nil {
		s.oweIfUnsure(ctx, key, err)
	} else {
		if perr := s.publish(ctx, key); perr != nil {
			s.report(ctx, "publish", key, perr)
		}
	}
	if err != nil {
		return &BackendError{Op: "delete", Key: key, Err: err}
	}
	return nil
}

// Clear drops every cached answer of the function's namespace, in both
// tiers, on every process sharing the backend, and nothing outside it. It
// fences computations under way in this process as [Func.Forget] does. It
// returns an error satisfying errors.Is(err, [ErrClearUnsupported]) when
// the backend does not implement [Clearer] (the local tier is cleared
// anyway), and otherwise a *[BackendError] on failure.
func (f *Func[A, R]) Clear(ctx context.Context) error {
	s := f.load()
	for _, w := range f.flights.invalidate("", true) {
		<-w
	}
	defer f.flights.invalidated("", true)
	f.backoff.reset()
	if s.local != nil {
		s.local.clear(s.localNS)
	}
	if s.remote == nil {
		return nil
	}
	c, ok := s.remote.(Clearer)
	if !ok {
		return ErrClearUnsupported
	}
	err := s.call(ctx, 0, "clear", "", func(ctx context.Context) error {
		if s.announce != nil {
			_, err := s.announce.WriteAnnounce(ctx, Write{Op: OpClear, Key: s.nsKey}, s.invalidation(""))
			return s.published(ctx, s.nsKey, err)
		}
		return c.Clear(ctx, s.nsKey)
	})
	if s.announce != nil {
		s.oweIfUnsure(ctx, "", err)
	} else {
		if perr := s.publish(ctx, ""); perr != nil {
			s.report(ctx, "publish", s.nsKey, perr)
		}
	}
	if err != nil {
		return &BackendError{Op: "clear", Key: s.nsKey, Err: err}
	}
	return nil
}

// publish tells the other processes' local tiers that key (a key of this
// namespace; "": all of them) was written or dropped, when the function's
// local tier has an Invalidator, and returns why it could not: the caller
// reports it (their copies then live at most LocalTTL).
//
// An invalidation that is not published (a fault, or the breaker in front
// of publishing skipped it) is owed: the tier publishes it again, for the
// whole namespace, once a publish goes through or its subscription is
// renewed (see owed).
func (s *state) publish(ctx context.Context, key string) error {
	if s.local == nil || s.local.inv == nil {
		return nil
	}
	inv := s.invalidation(key)
	if err := s.send(ctx, inv); err != nil {
		s.local.owed.owe(s.local, inv)
		return err
	}
	s.paid(ctx)
	return nil
}

// owe records that the invalidation of key (a key of this namespace, or
// the namespace key or "" for all of it) is owed.
func (s *state) owe(key string) {
	if key == s.nsKey {
		key = ""
	}
	s.local.owed.owe(s.local, s.invalidation(key))
}

// oweIfUnsure owes key's invalidation after an Announcer's write failed
// in a way that may have landed (a fault: a timeout, a broken connection;
// not a skip, a refusal for size, nor the caller's own cancellation): its
// publish may not have gone out with it.
func (s *state) oweIfUnsure(ctx context.Context, key string, err error) {
	if err != nil && !errors.Is(err, ErrBreakerOpen) && isFault(ctx, err) {
		s.owe(key)
	}
}

// send publishes inv through the breaker in front of publishing.
func (s *state) send(ctx context.Context, inv Invalidation) error {
	b, probe := s.pubBreaker, false
	if b != nil {
		var ok bool
		if ok, probe = b.allow(); !ok {
			return ErrBreakerOpen
		}
	}
	return s.run(ctx, b, probe, s.timeout, "publish", func(bctx context.Context) error { return s.local.inv.Publish(bctx, inv) })
}

// paid pays what the tier owes after one of its invalidations went out.
func (s *state) paid(ctx context.Context) {
	if !s.local.owed.owing.Load() {
		return
	}
	s.local.owed.pay(s.local.id, func(inv Invalidation) error { return s.send(ctx, inv) })
}

// published reports an Announcer's failed publish after a write that
// landed, which is then no error of the write, and owes its invalidation;
// after one that went out, it pays what the tier owes.
func (s *state) published(ctx context.Context, key string, err error) error {
	if errors.Is(err, ErrNotPublished) {
		s.owe(key)
		s.report(ctx, "publish", key, err)
		return nil
	}
	if err == nil {
		s.paid(ctx)
	}
	return err
}

// invalidation is the message that says key (a key of this namespace;
// "": all of them) was written or dropped.
func (s *state) invalidation(key string) Invalidation {
	inv := Invalidation{Origin: s.local.id, Namespace: s.nsKey}
	if key != "" {
		inv.ID = key[len(s.nsKey)+1:]
	}
	return inv
}

// localSeq returns key's invalidation count in the local tier (0 without
// one): a fill made later keeps nothing if an invalidation came between.
func (s *state) localSeq(key string) uint64 {
	if s.local == nil {
		return 0
	}
	var buf [MaxKeyLen + 8]byte
	return s.local.seqBytes(s.appendLocalKey(buf[:0], key))
}

// Namespace returns the function's namespace key: the prefix and the
// namespace, as [Func.Clear] passes them to the backend.
func (f *Func[A, R]) Namespace() string { return f.load().nsKey }

// Mode says how [Func.Lookup] uses the cache; the HTTP adapter derives it
// from the request's Cache-Control.
type Mode int

const (
	// UseCache answers from a fresh entry, or computes and stores one.
	UseCache Mode = iota
	// Refresh computes and stores without reading first (request no-cache).
	// It shares a computation of fn already under way, and waits for one
	// that answers from the cache to end before running fn.
	Refresh
	// Bypass computes without reading or storing (request no-store).
	Bypass
)

// Entry is an answer as memo stores it: the encoded payload with its
// metadata. An Entry is immutable; its Payload must not be modified.
type Entry struct {
	// Payload is the codec's encoding of the result; with [JSON] it is the
	// JSON text.
	Payload []byte
	// Codec encoded Payload.
	Codec Codec
	// Hit is true when the entry was read from the cache (fresh, stale, or
	// a remembered error).
	Hit bool
	// Cached is false when the cache was bypassed ([Bypass], Enabled(false)
	// or a key that could not be built): the answer was neither read from
	// nor written to the cache, and has no expiry.
	Cached bool
	// Stored is true when this call's computation wrote the answer to the
	// cache. It is false on a hit, on a bypass, when the write failed, and
	// when Forget or Clear came first.
	Stored bool
	// StoredAt is when fn computed the answer.
	StoredAt time.Time
	// FreshUntil is when the entry expires; zero when it never does.
	FreshUntil time.Time
	// Stale is true when the entry expired before this call read it and is
	// served within a stale window ([StaleWhileRevalidate], [StaleIfError]).
	Stale bool
	// CheckedAt is when the call judged a stored entry fresh or stale:
	// FreshUntil.Sub(CheckedAt) is the lifetime memo found it had left.
	// For a copy in the local tier that lifetime is counted on the
	// monotonic clock (a step of the wall clock since the copy was made
	// does not change it), and CheckedAt is FreshUntil less it. It is zero
	// when fn computed the answer in the call, and when the entry never
	// expires. A stale answer served because fn failed ([StaleIfError])
	// is sent after fn ran: CheckedAt is still the time of the read.
	CheckedAt time.Time
	// StaleWhileRevalidate and StaleIfError are the function's stale
	// windows past FreshUntil (0 when off, or on a remembered error): how
	// long it may serve this entry stale, as RFC 5861's directives of the
	// same names say to HTTP caches.
	StaleWhileRevalidate, StaleIfError time.Duration

	meta      meta // the envelope's times, compute duration and kind
	etag      [16]byte
	raw       []byte // the whole envelope, for storing
	encodeErr error  // why fn's answer has no payload
}

// ETag returns the entry's strong entity tag, quoted as HTTP wants it: a
// hash of the payload, the same in every process for the same value.
func (e *Entry) ETag() string { return quoteETag(e.etag) }

// AppendETag appends the entry's ETag, as [Entry.ETag] returns it, to dst
// and returns the extended buffer: a caller that only compares tags
// allocates nothing.
func (e *Entry) AppendETag(dst []byte) []byte { return appendETag(dst, e.etag) }

// Lookup is the lower-level form of [Func.Call] for adapters that serve the
// stored bytes themselves (see httpadapter): it returns the entry rather
// than a decoded R. Concurrency, context, read-your-writes and fail-open
// behave as in Call; fn's errors are returned unchanged. A remembered
// error ([NegativeCache], [CacheErrors]) is returned with its entry (Hit
// true, no Payload, FreshUntil its end), so that an adapter can say it
// came from the cache. When fn's answer cannot be encoded there is no
// payload to serve: Lookup returns an *[EncodeError]. Lookup starts
// refreshes as Call does.
func (f *Func[A, R]) Lookup(ctx context.Context, a A, mode Mode) (*Entry, error) {
	// Small enough to be inlined, so that the Entry of a caller that keeps
	// it to itself lives on that caller's stack.
	return f.lookup(ctx, a, mode, new(Entry))
}

// lookup does Lookup's work, filling out and returning it, or nil when
// there is no entry to return (err says why).
func (f *Func[A, R]) lookup(ctx context.Context, a A, mode Mode, out *Entry) (*Entry, error) {
	s := f.load()
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	var key string
	var buf [MaxKeyLen + 8]byte
	if s.enabled && mode != Bypass {
		if mode == UseCache && s.local != nil {
			// The local tier's key, as in Call: the backend key is built
			// only on a local miss.
			lk := append(append(buf[:0], s.localNS...), ':')
			lk, err := f.appendID(lk, s, a)
			if err != nil {
				s.report(ctx, "key", s.nsKey, err)
			} else {
				if f.localHit(ctx, s, lk, a, out, &err) {
					return out, err
				}
				key = s.nsKey + ":" + string(lk[len(s.localNS)+1:])
			}
		} else {
			kb, err := f.appendKey(buf[:0], s, a)
			if err != nil {
				s.report(ctx, "key", s.nsKey, err)
			} else {
				key = string(kb)
			}
		}
	}
	if key == "" {
		s.stats.bypasses.Add(1)
		res := f.run(ctx, s, key, a, ReasonBypass)
		if res.err != nil {
			return nil, res.err
		}
		if res.entry.raw == nil {
			return nil, &EncodeError{Err: res.entry.encodeErr}
		}
		*out = res.entry
		out.Cached = false
		out.FreshUntil = time.Time{}
		return out, nil
	}
	res, first, err := f.fetch(ctx, s, key, a, mode, false)
	if err != nil {
		s.stats.misses.Add(1)
		return nil, err
	}
	if res.refresh {
		f.refresh(ctx, s, key, a, res.entry.meta.storedAt)
	}
	if res.fallback != nil && mode != Refresh {
		res, first = *res.fallback, false
	}
	s.count(&res.entry, res.err, first, res.waited)
	if res.err != nil {
		if res.entry.Hit { // a remembered error: its entry says how fresh it is
			*out = res.entry
			out.Payload = nil
			return out, res.err
		}
		return nil, res.err
	}
	if res.entry.Payload == nil {
		return nil, &EncodeError{Err: res.entry.encodeErr}
	}
	*out = res.entry // each caller gets its own Entry; they share the bytes
	s.windows(out)
	return out, nil
}

// localHit answers Lookup from the local tier, whose key is lk: it reports
// whether it did, and sets *errp for a remembered error.
func (f *Func[A, R]) localHit(ctx context.Context, s *state, lk []byte, a A, out *Entry, errp *error) bool {
	it, now, ok := s.local.get(lk, s)
	if !ok || it.codec != s.codec.Name() || it.fp != f.fp {
		return false
	}
	switch {
	case it.kind != kindValue:
		if err := s.remembered(it.kind, it.payload()); err != nil {
			s.stats.negativeHits.Add(1)
			*out = it.entry(s.codec, now)
			out.Payload = nil
			*errp = err
			return true
		}
	case !it.stale(now):
		if s.beta > 0 && early(s.beta, now, it.freshMono, it.compute) {
			f.refresh(ctx, s, s.nsKey+":"+string(lk[len(s.localNS)+1:]), a, it.storedAt)
		}
		s.stats.hit()
		*out = it.entry(s.codec, now)
		s.windows(out)
		return true
	case now-it.freshMono < int64(s.swr):
		f.refresh(ctx, s, s.nsKey+":"+string(lk[len(s.localNS)+1:]), a, it.storedAt)
		s.stats.staleHits.Add(1)
		*out = it.entry(s.codec, now)
		out.Stale = true
		s.windows(out)
		return true
	}
	return false
}

// windows sets an answer's stale windows from the function's options.
func (s *state) windows(e *Entry) *Entry {
	if e.meta.staleUntil > e.meta.freshUntil && e.meta.kind == kindValue {
		e.StaleWhileRevalidate, e.StaleIfError = s.swr, s.sie
	}
	return e
}

// Peek returns the answer cached for a when a fresh one is stored, and
// never runs fn nor starts a refresh: ok is false on a miss, a stale
// entry, or with caching off. A remembered error ([NegativeCache],
// [CacheErrors]) is an answer: Peek returns it with ok true. err is
// ctx.Err() for a done ctx, or a *[BackendError] when the key cannot be
// built or the remote read fails or runs out of [Timeout]; an entry that
// cannot be decoded is reported to [OnError] and is a miss.
func (f *Func[A, R]) Peek(ctx context.Context, a A) (v R, ok bool, err error) {
	s := f.load()
	if !s.enabled {
		return v, false, nil
	}
	if err := ctx.Err(); err != nil {
		return v, false, err
	}
	var buf [MaxKeyLen + 8]byte
	kb, err := f.appendKey(buf[:0], s, a)
	if err != nil {
		return v, false, &BackendError{Op: "key", Key: s.nsKey, Err: err}
	}
	key := string(kb)
	if s.local != nil {
		var buf [MaxKeyLen + 8]byte
		if it, now, found := s.local.get(s.appendLocalKey(buf[:0], key), s); found && !it.stale(now) {
			if r, usable := f.localResult(ctx, s, it, now, true); usable {
				return r.val, true, r.err
			}
		}
	}
	if s.remote == nil {
		return v, false, nil
	}
	env, st, rerr := f.read(ctx, s, key, s.timeout)
	if rerr != nil {
		return v, false, &BackendError{Op: "get", Key: key, Err: rerr}
	}
	if st != fresh {
		return v, false, nil
	}
	if env.kind != kindValue {
		if err := s.remembered(env.kind, env.payload); err != nil {
			return v, true, err
		}
		return v, false, nil
	}
	if err := s.decode(env.payload, &v); err != nil {
		s.report(ctx, "decode", key, err)
		var zero R
		return zero, false, nil
	}
	return v, true, nil
}

// Set stores v as the answer for a, in both tiers, with the lifetime a
// computed answer would get (so [ExpireFunc] saying "do not store" drops
// the entry instead). It wins over a computation for a already under way
// in this process, as [Func.Forget] does: no answer computed before Set
// is written after it. With caching off Set does nothing. The error is a
// *[EncodeError] when v cannot be encoded, or a *[BackendError] when the
// key cannot be built or a tier refused the write (a remote write is
// bounded by [Timeout]).
func (f *Func[A, R]) Set(ctx context.Context, a A, v R) error {
	s := f.load()
	if !s.enabled {
		return nil
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	var buf [MaxKeyLen + 8]byte
	kb, err := f.appendKey(buf[:0], s, a)
	if err != nil {
		return &BackendError{Op: "key", Key: s.nsKey, Err: err}
	}
	key := string(kb)
	for _, w := range f.flights.invalidate(key, false) {
		<-w
	}
	defer f.flights.invalidated(key, false)
	f.backoff.ok(key)
	seq := s.localSeq(key)
	res := f.encode(ctx, s, key, v, 0)
	if res.entry.raw == nil {
		return &EncodeError{Err: res.entry.encodeErr}
	}
	if res.noStore {
		return f.drop(ctx, s, key)
	}
	if l := s.leaser(); l != nil {
		// A lease taken before Set must not fence a write after it.
		if err := s.call(ctx, s.timeout, "lease", key, func(bctx context.Context) error { return l.Void(bctx, key) }); err != nil {
			return &BackendError{Op: "lease", Key: key, Err: err}
		}
	}
	werr, perr := f.write(ctx, s, key, &res, false, seq)
	if perr != nil {
		s.report(ctx, "publish", key, perr)
	}
	if werr != nil {
		return &BackendError{Op: "set", Key: key, Err: werr}
	}
	return nil
}

// Decode decodes an entry's payload into a new R.
func (f *Func[A, R]) Decode(e *Entry) (R, error) {
	var v R
	err := e.Codec.Unmarshal(e.Payload, &v)
	return v, err
}
