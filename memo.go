package memo

import (
	"context"
	"fmt"
	"reflect"
	"runtime/debug"
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

	sizeHint atomic.Int64 // the last payload's size, to size the next buffer

	st      atomic.Pointer[state]
	flights group[result[R]]
}

// state is a function's configuration resolved against one generation of
// the package defaults.
type state struct {
	config
	gen      uint64
	nsKey    string                             // prefix:namespace
	localNS  string                             // the local tier's short name for nsKey
	sysClock bool                               // clock is the system's
	orphan   func(context.Context, *PanicError) // reports a panic no caller received
}

// result is what one flight yields: an answer computed by fn, or an entry
// read from a tier.
type result[R any] struct {
	val    R     // fn's answer, or the decoded entry when hasVal
	hasVal bool  // val holds the answer (otherwise decode entry.Payload)
	err    error // fn's error
	entry  Entry // raw is nil when fn failed or its answer could not be encoded
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
	f.fp = fingerprint(reflect.TypeFor[R]())
	f.cp = newCopier(reflect.TypeFor[R]())
	f.load() // validates the options against the defaults
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
	f.st.Store(s)
	return s
}

// Call returns fn's answer for a, from the cache when it holds a fresh one.
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
// runs fn again. fn's errors are returned unchanged and never cached.
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
		return f.fn(ctx, a)
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
			return f.fn(ctx, a)
		}
		if it, ok := s.local.get(lk, s); ok {
			if v, ok := f.fromItem(ctx, s, it); ok {
				return v, nil
			}
		}
		key = s.nsKey + ":" + string(lk[len(s.localNS)+1:])
	} else {
		kb, err := f.appendKey(buf[:0], s, a)
		if err != nil {
			s.report(ctx, "key", s.nsKey, err)
			return f.fn(ctx, a)
		}
		key = string(kb)
	}
	res, first, err := f.fetch(ctx, s, key, a, UseCache, true)
	if err != nil {
		return zero, err
	}
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
		return f.fn(ctx, a) // fail open: never a zero value for an answer
	}
	return v, nil
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

// fromItem answers Call from a local item, or says it cannot (an item of
// another codec or result type, or one that does not decode). A kept
// decoded value serves whatever codec wrote it.
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

// fetch runs the miss path for key once among concurrent callers: read the
// tiers (unless mode is Refresh), else run fn and write its answer. needVal
// says whether the caller wants an R (Call) rather than an entry.
func (f *Func[A, R]) fetch(ctx context.Context, s *state, key string, a A, mode Mode, needVal bool) (result[R], bool, error) {
	// The backend's share of the first caller's time, read now: fn gets
	// the rest.
	budget := s.timeout
	if d, ok := ctx.Deadline(); ok {
		budget = min(budget, time.Until(d)/3)
	}
	return f.flights.do(ctx, key, mode == Refresh, func(fctx context.Context, fl *flight[result[R]]) result[R] {
		return f.miss(fctx, s, key, a, mode, needVal, budget, fl)
	}, s.orphan)
}

// miss is a flight's body: the whole miss path of one key.
func (f *Func[A, R]) miss(ctx context.Context, s *state, key string, a A, mode Mode, needVal bool, budget time.Duration, fl *flight[result[R]]) result[R] {
	readFailed := false
	if mode == UseCache {
		// A flight that ended just before this one started may have
		// written what this caller missed: read the tiers again.
		if s.local != nil {
			var buf [MaxKeyLen + 8]byte
			if it, ok := s.local.get(s.appendLocalKey(buf[:0], key), s); ok {
				if res, ok := f.localResult(ctx, s, it, needVal); ok {
					return res
				}
			}
		}
		if s.remote != nil {
			env, ok, failed := f.read(ctx, s, key, budget)
			if ok {
				res := result[R]{entry: hitEntry(s, env)}
				if needVal || s.local != nil && f.cp.ok {
					if err := s.decode(env.payload, &res.val); err != nil {
						s.report(ctx, "decode", key, err)
						return f.compute(ctx, s, key, a, false, fl)
					}
					res.hasVal = true
				}
				if s.local != nil && f.flights.beginWrite(fl) {
					f.fill(s, key, &res, env.raw, env.freshUntil) // an entry the remote tier held: it fitted there
					f.flights.endWrite(fl)
				}
				return res
			}
			// A store that stalled for the whole Timeout would stall the
			// write too: skip it. A read cut short by the caller's
			// deadline says nothing of the store.
			readFailed = failed && budget >= s.timeout
		}
	}
	return f.compute(ctx, s, key, a, readFailed, fl)
}

// localResult turns a local item of this codec and result type into a
// flight result.
func (f *Func[A, R]) localResult(ctx context.Context, s *state, it *item, needVal bool) (result[R], bool) {
	res := result[R]{entry: it.entry(s.codec)}
	if it.fp != f.fp || it.codec != s.codec.Name() {
		return res, false
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
// failed a read: it would only stall again).
func (f *Func[A, R]) compute(ctx context.Context, s *state, key string, a A, skipRemote bool, fl *flight[result[R]]) result[R] {
	f.flights.computing(fl)
	res := f.run(ctx, s, key, a)
	if res.entry.raw == nil {
		return res
	}
	// Callers that take the answer before the write ends decode their own
	// value from the payload: the value itself goes to the first caller
	// after it and to the local tier, and must not be shared meanwhile.
	early := res
	early.hasVal = false
	f.flights.answer(fl, early)
	if !f.flights.beginWrite(fl) {
		return res
	}
	var werr error
	stored := false
	if s.remote != nil && !skipRemote {
		werr = s.call(ctx, s.timeout, func(bctx context.Context) error {
			return s.remote.Set(bctx, key, res.entry.raw, s.expire)
		})
		stored = werr == nil
	}
	if s.local != nil {
		kept, lerr := f.fill(s, key, &res, res.entry.raw, unixNano(res.entry.FreshUntil))
		stored = kept || stored
		if lerr != nil && werr == nil {
			werr = lerr
		}
	}
	f.flights.endWrite(fl)
	if werr != nil {
		// Reported outside the fence: the hook may call Forget or Clear.
		s.report(ctx, "set", key, werr)
	}
	res.entry.Stored = stored
	return res
}

// fill keeps an answer in the local tier: its envelope and, when R can be
// copied, a decoded copy of its own. freshUntil is the entry's wall-clock
// expiry; the local copy lives for the time that remains of it.
// It returns whether it kept the answer, and why not when the tier refused
// it (too large for its bound).
func (f *Func[A, R]) fill(s *state, key string, res *result[R], raw []byte, freshUntil int64) (bool, error) {
	it := &item{env: raw, hdr: envHeaderLen(s.codec.Name()), codec: s.codec.Name(), fp: f.fp, etag: res.entry.etag,
		storedAt: unixNano(res.entry.StoredAt), freshUntil: freshUntil}
	var cost int64
	if res.hasVal && f.cp.ok {
		p := new(R)
		*p = f.copyOf(&res.val)
		it.val = p
		cost = footprint(reflect.ValueOf(p).Elem(), 0) + allocSize(int(unsafe.Sizeof(*p)))
	}
	now := s.clock.Mono()
	var deadline int64
	if freshUntil != 0 {
		left := freshUntil - s.clock.Wall()
		if left <= 0 {
			return false, nil
		}
		deadline = now + left
	}
	var buf [MaxKeyLen + 8]byte
	if err := s.local.set(string(s.appendLocalKey(buf[:0], key)), it, cost, deadline, now); err != nil {
		return false, err
	}
	return true, nil
}

// run calls fn and encodes its answer into an entry (not yet stored).
func (f *Func[A, R]) run(ctx context.Context, s *state, key string, a A) result[R] {
	v, err := f.fn(ctx, a)
	if err != nil {
		return result[R]{val: v, err: err, hasVal: true}
	}
	res := result[R]{val: v, hasVal: true}
	now := s.clock.Wall()
	var fresh int64
	if s.expire > 0 {
		fresh = now + int64(s.expire)
	}
	name := s.codec.Name()
	var env []byte
	var etag [16]byte
	err = safely(func() error {
		var err error
		if am, ok := s.codec.(appendMarshaler); ok {
			// Encode straight after a header left blank, then fill it in.
			hdr := envHeaderLen(name)
			env, err = am.appendMarshal(make([]byte, hdr, hdr+int(f.sizeHint.Load())), &v)
			if err == nil {
				f.sizeHint.Store(int64(len(env) - hdr + 32))
				etag = putEnvelopeHeader(env, name, f.fp, now, fresh, fresh)
			}
			return err
		}
		var payload []byte
		if payload, err = s.codec.Marshal(&v); err == nil {
			env, etag = encodeEnvelope(name, f.fp, now, fresh, fresh, payload)
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
		FreshUntil: unixTime(fresh),
		Cached:     true,
		etag:       etag,
		raw:        env,
	}
	return res
}

// read returns the fresh entry stored under key in the remote tier, if
// any. Faults are reported and read as misses; failed says the backend
// call itself failed (an error or a timeout), which is not worth repeating
// at once.
func (f *Func[A, R]) read(ctx context.Context, s *state, key string, budget time.Duration) (env envelope, ok, failed bool) {
	b, ok, err := s.get(ctx, budget, key)
	if err != nil {
		s.report(ctx, "get", key, err)
		return envelope{}, false, true
	}
	if !ok {
		return envelope{}, false, false
	}
	env, err = decodeEnvelope(b)
	if err != nil {
		s.report(ctx, "decode", key, err)
		return envelope{}, false, false
	}
	if string(env.codec) != s.codec.Name() || env.fp != f.fp {
		return envelope{}, false, false // another codec or another R: a miss, overwritten
	}
	if env.freshUntil != 0 && s.clock.Wall() >= env.freshUntil {
		return envelope{}, false, false
	}
	env.raw = b
	return env, true, false
}

// call runs a backend call bounded by d, turning a panic into an error.
// The bound is a context closed by a timer shared by every call in flight:
// a runtime timer per call would cost a microsecond and a thread wake-up.
func (s *state) call(ctx context.Context, d time.Duration, op func(context.Context) error) (err error) {
	bctx := deadline.New(ctx, d)
	defer bctx.Release()
	defer func() {
		if r := recover(); r != nil {
			err = &PanicError{Value: r, Stack: debug.Stack()}
		}
	}()
	return op(bctx)
}

// get is call for the remote tier's Get, without a closure (the hit path).
func (s *state) get(ctx context.Context, d time.Duration, key string) (b []byte, ok bool, err error) {
	bctx := deadline.New(ctx, d)
	defer bctx.Release()
	defer func() {
		if r := recover(); r != nil {
			err = &PanicError{Value: r, Stack: debug.Stack()}
		}
	}()
	return s.remote.Get(bctx, key)
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
func (s *state) report(ctx context.Context, op, key string, err error) {
	s.fault(ctx, &BackendError{Op: op, Key: key, Err: err})
}

func (s *state) fault(ctx context.Context, err error) {
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
		etag:       env.etag,
	}
}

func unixNano(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixNano()
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
// backend: other processes sharing it are not fenced (a computation under
// way there may still write), and a write that memo gave up on at
// [Timeout] may still reach the store after the delete. The error, if any, is a *[BackendError]: the remote delete
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
	if s.local != nil {
		var buf [MaxKeyLen + 8]byte
		s.local.delete(string(s.appendLocalKey(buf[:0], key)))
	}
	if s.remote == nil {
		return nil
	}
	err = s.call(ctx, s.timeout, func(bctx context.Context) error { return s.remote.Delete(bctx, key) })
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
	if err := c.Clear(ctx, s.nsKey); err != nil {
		return &BackendError{Op: "clear", Key: s.nsKey, Err: err}
	}
	return nil
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
	// Hit is true when the entry was read from the cache.
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

	etag      [16]byte
	raw       []byte // the whole envelope, for storing
	encodeErr error  // why fn's answer has no payload
}

// ETag returns the entry's strong entity tag, quoted as HTTP wants it: a
// hash of the payload, the same in every process for the same value.
func (e *Entry) ETag() string { return quoteETag(e.etag) }

// Lookup is the lower-level form of [Func.Call] for adapters that serve the
// stored bytes themselves (see httpadapter): it returns the entry rather
// than a decoded R. Concurrency, context, read-your-writes and fail-open
// behave as in Call; fn's errors are returned unchanged. When fn's answer
// cannot be encoded there is no payload to serve: Lookup returns an
// *[EncodeError].
func (f *Func[A, R]) Lookup(ctx context.Context, a A, mode Mode) (*Entry, error) {
	s := f.load()
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	var key string
	if s.enabled && mode != Bypass {
		var buf [MaxKeyLen + 8]byte
		kb, err := f.appendKey(buf[:0], s, a)
		if err != nil {
			s.report(ctx, "key", s.nsKey, err)
		} else {
			key = string(kb)
		}
	}
	if key == "" {
		res := f.run(ctx, s, key, a)
		if res.err != nil {
			return nil, res.err
		}
		if res.entry.raw == nil {
			return nil, &EncodeError{Err: res.entry.encodeErr}
		}
		e := res.entry
		e.Cached = false
		e.FreshUntil = time.Time{}
		return &e, nil
	}
	if mode == UseCache && s.local != nil {
		var buf [MaxKeyLen + 8]byte
		if it, ok := s.local.get(s.appendLocalKey(buf[:0], key), s); ok && it.codec == s.codec.Name() && it.fp == f.fp {
			e := it.entry(s.codec)
			return &e, nil
		}
	}
	res, _, err := f.fetch(ctx, s, key, a, mode, false)
	if err != nil {
		return nil, err
	}
	if res.err != nil {
		return nil, res.err
	}
	if res.entry.Payload == nil {
		return nil, &EncodeError{Err: res.entry.encodeErr}
	}
	e := res.entry // each caller gets its own Entry; they share the bytes
	return &e, nil
}

// Decode decodes an entry's payload into a new R.
func (f *Func[A, R]) Decode(e *Entry) (R, error) {
	var v R
	err := e.Codec.Unmarshal(e.Payload, &v)
	return v, err
}
