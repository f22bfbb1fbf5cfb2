package memo

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/gomemo/memo/backends/memory"
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
	cp    copier // copies decoded values kept by the in-memory backend

	sizeHint atomic.Int64 // the last payload's size, to size the next buffer

	st      atomic.Pointer[state]
	flights group[result[R]]
}

// state is a function's configuration resolved against one generation of
// the package defaults.
type state struct {
	config
	gen      uint64
	nsKey    string          // prefix:namespace
	mem      *memory.Backend // the backend, when it is the in-memory one
	deadline bool            // the backend is DeadlineBounded
}

// result is what one computation of fn yields.
type result[R any] struct {
	val   R
	err   error
	entry Entry // its raw is nil when fn failed or the value could not be encoded
}

// Wrap returns fn behind a cache: the same as New(fn, opts...).Call. It
// panics where [New] does.
//
//	getUser := memo.Wrap(fetchUser, memo.Expire(time.Minute))
func Wrap[A, R any](fn func(context.Context, A) (R, error), opts ...Option) func(context.Context, A) (R, error) {
	return New(fn, opts...).Call
}

// New returns a memoized fn. It panics with a "memo: ..." message on a
// programmer error: fn is nil; fn is anonymous (a closure) and no
// [Namespace] is given, since a closure's generated name moves when code
// moves and would serve one function's entries to another after a deploy;
// A has no canonical key (it holds a func or channel) and neither a
// [Keyer] nor a [KeyFunc] says how to key it; a KeyFunc is for another
// argument type.
func New[A, R any](fn func(context.Context, A) (R, error), opts ...Option) *Func[A, R] {
	if fn == nil {
		panic("memo: New(nil)")
	}
	var own config
	for _, o := range opts {
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
	return f
}

// load returns the configuration for the current package defaults.
func (f *Func[A, R]) load() *state {
	gen := defaultsGen.Load()
	if s := f.st.Load(); s != nil && s.gen == gen {
		return s
	}
	s := &state{config: resolve(f.own), gen: gen}
	s.nsKey = f.ns
	if s.prefix != "" {
		s.nsKey = s.prefix + ":" + f.ns
	}
	s.mem, _ = s.backend.(*memory.Backend)
	if d, ok := s.backend.(DeadlineBounded); ok {
		s.deadline = d.DeadlineBounded()
	}
	f.st.Store(s)
	return s
}

func (s *state) report(ctx context.Context, op, key string, err error) {
	s.onError(ctx, &BackendError{Op: op, Key: key, Err: err})
}

// backendCtx bounds a backend call by the Timeout option.
func (s *state) backendCtx(ctx context.Context) (context.Context, context.CancelFunc) {
	switch {
	case s.mem != nil:
		return ctx, func() {}
	case s.deadline:
		return &deadlineCtx{ctx, time.Now().Add(s.timeout)}, func() {}
	}
	return context.WithTimeout(ctx, s.timeout)
}

// deadlineCtx is ctx with an earlier deadline and no timer: its Done closes
// only with ctx's, so it serves backends that stop at the deadline on their
// own (DeadlineBounded).
type deadlineCtx struct {
	context.Context
	d time.Time
}

func (c *deadlineCtx) Deadline() (time.Time, bool) {
	if d, ok := c.Context.Deadline(); ok && d.Before(c.d) {
		return d, true
	}
	return c.d, true
}

func (c *deadlineCtx) Err() error {
	if err := c.Context.Err(); err != nil {
		return err
	}
	if !time.Now().Before(c.d) {
		return context.DeadlineExceeded
	}
	return nil
}

// Call returns fn's answer for a, from the cache when it holds a fresh one.
//
// On a miss, concurrent calls for the same key run fn once, on a goroutine
// of its own whose context keeps the first caller's values but not its
// cancellation (on the in-memory backend, a first caller whose context can
// never be cancelled runs fn itself). Each caller waits on its own ctx and returns ctx.Err() when
// it ends; the others go on waiting, and fn's context is cancelled only when
// every waiting caller has gone. If fn panics, its callers panic with a
// *[PanicError] and later calls run fn again.
//
// fn's errors are returned unchanged and never cached. Faults of the cache
// (a backend error or timeout, a corrupt or foreign entry) never reach the
// caller: a failed read is a miss, a failed write is reported to [OnError],
// and fn's answer is returned either way. On a backend other than the
// in-memory one the write follows the answer (write-behind): callers
// never wait for it, and a call that comes while it is under way takes
// the answer being written. Every caller gets a value of its
// own: mutating it never changes what later calls return.
func (f *Func[A, R]) Call(ctx context.Context, a A) (R, error) {
	s := f.load()
	if !s.enabled {
		return f.fn(ctx, a)
	}
	var buf [MaxKeyLen + 8]byte
	kb, err := appendKey(buf[:0], s.nsKey, f.kind, f.keyFn, a)
	if err != nil {
		s.report(ctx, "key", s.nsKey, err)
		return f.fn(ctx, a)
	}
	if s.mem != nil {
		if v, ok := f.memHit(ctx, s, kb); ok {
			return v, nil
		}
	}
	key := string(kb)
	if s.mem == nil {
		env, hit, res, first, err := f.fetch(ctx, s, key, a, true, false)
		if !hit {
			return f.answer(s, res, first, err)
		}
		var v R
		if err := s.codec.Unmarshal(env.payload, &v); err == nil {
			return v, nil
		}
		s.report(ctx, "decode", key, err)
	}
	res, first, err := f.compute(ctx, s, key, a, false, noCheck)
	return f.answer(s, res, first, err)
}

// fetch reads key from the backend (when read is true) and, on a miss,
// computes the answer once among concurrent callers (see compute; fresh
// refuses the answer of a flight that finished before this call). A write
// of ours may land between the read and the computation: then fetch reads
// once more rather than compute what is already stored.
func (f *Func[A, R]) fetch(ctx context.Context, s *state, key string, a A, read, fresh bool) (env envelope, hit bool, res result[R], first bool, err error) {
	for try := 0; ; try++ {
		seen := noCheck
		if read {
			seen = f.flights.storedCount(key).Load()
			env, ok, failed := f.read(ctx, s, key)
			if ok {
				return env, true, res, false, nil
			}
			if failed || try == 1 {
				seen = noCheck // a failed read is not worth repeating
			}
		}
		if res, first, err = f.compute(ctx, s, key, a, fresh, seen); err != errReread {
			return envelope{}, false, res, first, err
		}
	}
}

// answer is what Call returns for a computation it took part in.
func (f *Func[A, R]) answer(s *state, res result[R], first bool, err error) (R, error) {
	if err != nil {
		var zero R
		return zero, err
	}
	if first || res.entry.raw == nil || res.err != nil {
		return res.val, res.err
	}
	// A caller sharing another's computation gets a copy of its own.
	var v R
	if err := s.codec.Unmarshal(res.entry.Payload, &v); err != nil {
		return res.val, nil
	}
	return v, nil
}

// Key returns the backend key for a: "prefix:namespace:id". The id is a
// as is when it is a short safe string, the decimal form of an integer, or
// "~" and the SHA-256 of a's canonical form otherwise (see docs/keys.md). Key
// returns "" when a cannot be keyed (a cyclic value, a MemoKey that panics).
func (f *Func[A, R]) Key(a A) string {
	k, err := f.key(f.load(), a)
	if err != nil {
		return ""
	}
	return k
}

func (f *Func[A, R]) key(s *state, a A) (string, error) {
	return buildKey(s.nsKey, f.kind, f.keyFn, a)
}

// Forget drops the entry for a, so that the next call runs fn. A
// computation for a already under way in this process does not store its
// answer (its callers still get it). The error, if any, is a
// *[BackendError].
func (f *Func[A, R]) Forget(ctx context.Context, a A) error {
	s := f.load()
	key, err := f.key(s, a)
	if err != nil {
		return &BackendError{Op: "key", Key: s.nsKey, Err: err}
	}
	f.flights.drop(key, true)
	if err := s.backend.Delete(ctx, key); err != nil {
		return &BackendError{Op: "delete", Key: key, Err: err}
	}
	return nil
}

// Clear drops every entry of the function's namespace, on every process
// sharing the backend, and nothing outside it; computations under way in
// this process do not store their answers. It returns
// [ErrClearUnsupported] when the backend does not implement [Clearer], and
// otherwise a *[BackendError] on failure.
func (f *Func[A, R]) Clear(ctx context.Context) error {
	s := f.load()
	c, ok := s.backend.(Clearer)
	if !ok {
		return ErrClearUnsupported
	}
	f.flights.drop(s.nsKey+":", false)
	if err := c.Clear(ctx, s.nsKey); err != nil {
		return &BackendError{Op: "clear", Key: s.nsKey, Err: err}
	}
	return nil
}

// Namespace returns the function's namespace key: the prefix and the
// namespace, as [Func.Clear] passes them to the backend.
func (f *Func[A, R]) Namespace() string { return f.load().nsKey }

// memHit answers a hit on the in-memory backend. The backend keeps a
// decoded copy of the value beside its bytes, so a hit copies rather than
// decodes: a plain assignment for result types without pointers, slices or
// maps, and fresh copies of those otherwise.
func (f *Func[A, R]) memHit(ctx context.Context, s *state, kb []byte) (R, bool) {
	var zero R
	if ctx.Err() != nil {
		return zero, false
	}
	val, aux, expires, ok := s.mem.Load(kb)
	if !ok {
		return zero, false
	}
	// Read the clock only for entries that expire: it costs as much as the
	// rest of a hit. memo's fresh-until never comes after the store's
	// expiry, but an entry written by another function may have its own.
	var now int64
	if expires != 0 {
		if now = nowNano(); now >= expires {
			return zero, false
		}
	}
	// A kept value was checked against its envelope when it was attached:
	// only its freshness and codec remain to check, and the envelope's
	// bytes are not read again.
	if k, ok := aux.(*kept[R]); ok && k.codec == s.codec.Name() {
		if k.freshUntil != 0 {
			if now == 0 {
				now = nowNano()
			}
			if now >= k.freshUntil {
				return zero, false
			}
		}
		if f.cp.fixup == nil {
			return k.v, true
		}
		return copyOut(&k.v, f.cp.fixup), true
	}
	env, ok, err := f.check(s, val, now)
	if err != nil {
		s.report(ctx, "decode", string(kb), err)
	}
	if !ok {
		return zero, false
	}
	var v R
	if err := s.codec.Unmarshal(env.payload, &v); err != nil {
		s.report(ctx, "decode", string(kb), err)
		return zero, false
	}
	if f.cp.ok {
		// Keep a copy of our own: v goes to the caller, who may mutate it.
		keep := &kept[R]{v: v, freshUntil: env.freshUntil, codec: s.codec.Name()}
		if f.cp.fixup != nil {
			keep.v = copyOut(&v, f.cp.fixup)
		}
		cost := memory.AllocSize(int(unsafe.Sizeof(*keep))) + footprint(reflect.ValueOf(&keep.v).Elem(), 0)
		s.mem.Attach(string(kb), val, keep, cost)
	}
	return v, true
}

// kept is a decoded value the in-memory backend holds beside an entry's
// bytes, with what a hit must still check. It is never modified.
type kept[R any] struct {
	v          R
	freshUntil int64
	codec      string
}

func copyOut[R any](d *R, fixup func(unsafe.Pointer)) R {
	v := *d
	fixup(unsafe.Pointer(&v))
	return v
}

// read returns the fresh entry stored under key, if any. Faults are
// reported and read as misses.
// failed is true when the backend call itself failed (an error or a
// timeout), which is not worth repeating at once.
func (f *Func[A, R]) read(ctx context.Context, s *state, key string) (env envelope, ok, failed bool) {
	bctx, cancel := s.backendCtx(ctx)
	b, ok, err := s.backend.Get(bctx, key)
	cancel()
	if err != nil {
		if ctx.Err() == nil { // the caller leaving is not a fault
			s.report(ctx, "get", key, err)
		}
		return envelope{}, false, true
	}
	if !ok {
		return envelope{}, false, false
	}
	env, ok, err = f.check(s, b, 0)
	if err != nil {
		s.report(ctx, "decode", key, err)
	}
	return env, ok, false
}

// check decodes an envelope read under key and says whether it can answer:
// well formed, of this codec and this R, and fresh.
// A malformed envelope is also reported through err. now is the time in
// Unix nanoseconds, or 0 for check to read the clock if it needs it.
func (f *Func[A, R]) check(s *state, b []byte, now int64) (envelope, bool, error) {
	env, err := decodeEnvelope(b)
	if err != nil {
		return envelope{}, false, err
	}
	if string(env.codec) != s.codec.Name() || env.fp != f.fp {
		return envelope{}, false, nil // another codec or another R: a miss, overwritten
	}
	if env.freshUntil != 0 {
		if now == 0 {
			now = nowNano()
		}
		if now >= env.freshUntil {
			return envelope{}, false, nil
		}
	}
	return env, true, nil
}

// compute runs fn for key once among concurrent callers and stores its
// answer.
func (f *Func[A, R]) compute(ctx context.Context, s *state, key string, a A, fresh bool, seen uint64) (result[R], bool, error) {
	// Callers get the answer as soon as fn returns; the store follows, so a
	// slow backend costs them its read timeout at most, not read and write.
	// Only the in-memory store is quick enough to run on a caller's
	// goroutine.
	if s.mem != nil {
		return f.flights.do(ctx, key, true, fresh, seen, func(fctx context.Context, fl *flight[result[R]]) result[R] {
			res := f.run(fctx, s, key, a)
			if res.entry.raw != nil && !fl.dropped.Load() {
				res.entry.Stored = f.store(fctx, s, key, &res.entry)
			}
			return res
		}, nil)
	}
	return f.flights.do(ctx, key, false, fresh, seen, func(fctx context.Context, fl *flight[result[R]]) result[R] {
		res := f.run(fctx, s, key, a)
		res.entry.Stored = res.entry.raw != nil // the write follows
		fl.noStore.Store(!res.entry.Stored)
		return res
	}, func(fctx context.Context, fl *flight[result[R]]) {
		if fl.val.entry.raw != nil && !fl.dropped.Load() {
			f.store(fctx, s, key, &fl.val.entry)
		}
	})
}

// run calls fn and encodes its answer into an entry (not yet stored).
func (f *Func[A, R]) run(ctx context.Context, s *state, key string, a A) result[R] {
	v, err := f.fn(ctx, a)
	if err != nil {
		return result[R]{val: v, err: err}
	}
	now := time.Now()
	var fresh int64
	if s.expire > 0 {
		fresh = now.Add(s.expire).UnixNano()
	}
	name := s.codec.Name()
	var env []byte
	var etag [16]byte
	if am, ok := s.codec.(appendMarshaler); ok {
		// Encode straight after a header left blank, then fill it in.
		hdr := envHeaderLen(name)
		env, err = am.appendMarshal(make([]byte, hdr, hdr+int(f.sizeHint.Load())), &v)
		if err == nil {
			f.sizeHint.Store(int64(len(env) - hdr + 32))
			etag = putEnvelopeHeader(env, name, f.fp, now.UnixNano(), fresh, fresh)
		}
	} else {
		var payload []byte
		if payload, err = s.codec.Marshal(&v); err == nil {
			env, etag = encodeEnvelope(name, f.fp, now.UnixNano(), fresh, fresh, payload)
		}
	}
	if err != nil {
		s.report(ctx, "encode", key, err)
		return result[R]{val: v}
	}
	payload := env[envHeaderLen(name):]
	return result[R]{val: v, entry: Entry{
		Payload:    payload,
		Codec:      s.codec,
		StoredAt:   unixTime(now.UnixNano()),
		FreshUntil: unixTime(fresh),
		Cached:     true,
		etag:       etag,
		raw:        env,
	}}
}

func (f *Func[A, R]) store(ctx context.Context, s *state, key string, e *Entry) bool {
	if ctx.Done() != nil {
		ctx = context.WithoutCancel(ctx) // the answer is worth keeping
	}
	bctx, cancel := s.backendCtx(ctx)
	defer cancel()
	if err := s.backend.Set(bctx, key, e.raw, s.expire); err != nil {
		s.report(ctx, "set", key, err)
		return false
	}
	return true
}

// Mode says how [Func.Lookup] uses the cache; the HTTP adapter derives it
// from the request's Cache-Control.
type Mode int

const (
	// UseCache answers from a fresh entry, or computes and stores one.
	UseCache Mode = iota
	// Refresh computes and stores without reading first (request no-cache).
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
	// Stored is true when this call computed the answer and stored it: on
	// the in-memory backend, when the backend accepted it; on the others,
	// when the write was started, since memo answers before the write ends
	// (a failed write goes to OnError). It is false on a hit, on a bypass,
	// and when Forget or Clear dropped the write.
	Stored bool
	// StoredAt is when fn computed the answer.
	StoredAt time.Time
	// FreshUntil is when the entry expires; zero when it never does.
	FreshUntil time.Time

	etag [16]byte
	raw  []byte // the whole envelope, for storing
}

// ETag returns the entry's strong entity tag, quoted as HTTP wants it: a
// hash of the payload, the same in every process for the same value.
func (e *Entry) ETag() string { return quoteETag(e.etag) }

// Lookup is the lower-level form of [Func.Call] for adapters that serve the
// stored bytes themselves (see httpadapter): it returns the entry rather than
// a decoded R. Concurrency, context and fail-open behave as in Call; fn's
// errors are returned unchanged. An error also comes back when fn's answer
// cannot be encoded, since there is no payload to serve.
func (f *Func[A, R]) Lookup(ctx context.Context, a A, mode Mode) (*Entry, error) {
	s := f.load()
	var key string
	if s.enabled && mode != Bypass {
		var err error
		if key, err = f.key(s, a); err != nil {
			s.report(ctx, "key", s.nsKey, err)
		}
	}
	if key == "" {
		res := f.run(ctx, s, key, a)
		if res.err != nil {
			return nil, res.err
		}
		if res.entry.raw == nil {
			return nil, errors.New("memo: the answer could not be encoded")
		}
		e := res.entry
		e.Cached = false
		e.FreshUntil = time.Time{}
		return &e, nil
	}
	env, hit, res, _, err := f.fetch(ctx, s, key, a, mode == UseCache, mode == Refresh)
	if hit {
		return &Entry{
			Payload:    env.payload,
			Codec:      s.codec,
			Hit:        true,
			Cached:     true,
			StoredAt:   unixTime(env.storedAt),
			FreshUntil: unixTime(env.freshUntil),
			etag:       env.etag,
		}, nil
	}
	if err != nil {
		return nil, err
	}
	if res.err != nil {
		return nil, res.err
	}
	if res.entry.raw == nil {
		return nil, errors.New("memo: the answer could not be encoded")
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

// The clock of the hit path. time.Now reads two clocks; nowNano reads only
// the monotonic one and adds it to the wall time at start-up, which halves
// the cost of the clock on a hit. A wall clock step after start-up shifts
// freshness checks by the step until the process restarts, as it would
// shift any TTL.
var (
	baseTime = time.Now()
	baseWall = baseTime.UnixNano()
)

func nowNano() int64 { return baseWall + int64(time.Since(baseTime)) }
