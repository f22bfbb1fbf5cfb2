package memo

import (
	"context"
	"fmt"
	"reflect"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// Option configures a memoized function ([New], [Wrap]) or, through
// [SetDefaults], every function of the process. Options are values: when the
// same option is given twice the last one wins, and a function's own options
// win over the defaults. Each constructor validates its argument and panics
// with a "memo: ..." message on a programmer error.
type Option struct {
	name  string
	apply func(*config)
}

// config is the resolved configuration of one function.
type config struct {
	expire    time.Duration
	namespace string
	prefix    string
	remote    Backend    // the remote tier; nil: none
	local     *localTier // the local tier; nil: none
	clock     clock      // read for every deadline
	codec     Codec
	enabled   bool
	timeout   time.Duration
	onError   func(context.Context, error)
	keyFn     any // func(A) string, checked in New

	// Freshness (freshness.go).
	swr            time.Duration // StaleWhileRevalidate window
	sie            time.Duration // StaleIfError window
	refreshTimeout time.Duration // bounds a background refresh
	beta           float64       // EarlyRefresh; 0: off
	negTTL         time.Duration // NegativeCache lifetime; 0: off
	notFound       []error       // NegativeCache sentinels
	errTTL         time.Duration // CacheErrors lifetime; 0: off
	expireFn       any           // func(R) time.Duration, checked in New
	jitter         float64       // ExpireJitter fraction
	localTTL       time.Duration // bounds a local copy of a remote entry
	lease          time.Duration // Lease ttl; 0: off
	leaseWait      time.Duration // LeaseWait; 0: the lease ttl

	// Operations (observe.go, breaker.go).
	observer         Observer      // Observe; nil: none
	breakerThreshold int           // Breaker; 0: off
	breakerCooldown  time.Duration // Breaker
}

// DefaultTimeout bounds each backend call unless [Timeout] says otherwise.
const DefaultTimeout = 100 * time.Millisecond

// DefaultPrefix is the first part of every key unless [Prefix] says otherwise.
const DefaultPrefix = "memo"

// Expire sets how long a stored answer stays fresh. Any positive duration is
// honoured on every backend, sub-second included. Expire(0), the default,
// means entries never expire: bounded stores (the local tier,
// backends/memory, Memcached) still evict them. A negative duration panics.
func Expire(d time.Duration) Option {
	if d < 0 {
		panic(fmt.Sprintf("memo: Expire(%v): negative duration", d))
	}
	return Option{"Expire", func(c *config) { c.expire = d }}
}

// Namespace sets the function's namespace: the middle part of its keys and
// the unit that [Func.Clear] drops. The default is the function's package
// path and name; closures, method values (svc.Get: every receiver has one
// name) and generic functions (every instantiation has one name) have no
// default and must be given one, so that no function is ever served
// another's entries. It must be 1 to 150 bytes of printable ASCII without
// spaces, so that every key fits in [MaxKeyLen]. Only per function:
// SetDefaults panics on it.
func Namespace(ns string) Option {
	mustKeyPart("Namespace", ns, false, maxNamespace)
	return Option{"Namespace", func(c *config) { c.namespace = ns }}
}

// Prefix sets the first part of every key (default "memo"), to separate
// applications sharing one store. Prefix("") leaves it out. It must be at
// most 54 bytes of printable ASCII without spaces, so that every key fits
// in [MaxKeyLen].
func Prefix(p string) Option {
	mustKeyPart("Prefix", p, true, maxPrefix)
	return Option{"Prefix", func(c *config) { c.prefix = p }}
}

// WithBackend sets the remote tier: a store of bytes, usually shared by
// processes (Redis, Memcached, DynamoDB under backends/). Without it, a
// function answers from the local tier, a bounded store of decoded answers
// in the process ([DefaultLocalBytes]) shared by every function without a
// backend. With it, the function reads and writes the backend only: a
// call's answer is then visible to every process sharing it.
func WithBackend(b Backend) Option {
	if b == nil || (reflect.ValueOf(b).Kind() == reflect.Pointer && reflect.ValueOf(b).IsNil()) {
		panic("memo: WithBackend(nil)")
	}
	return Option{"WithBackend", func(c *config) { c.remote = b }}
}

// WithCodec sets how results are encoded; the default is [JSON].
func WithCodec(cd Codec) Option {
	if cd == nil {
		panic("memo: WithCodec(nil)")
	}
	if n := cd.Name(); n == "" || len(n) > 255 {
		panic(fmt.Sprintf("memo: WithCodec: codec name %q must be 1 to 255 bytes", n))
	}
	return Option{"WithCodec", func(c *config) { c.codec = cd }}
}

// Enabled turns caching on or off. Disabled, a function calls fn directly:
// no key is built and the backend is never touched.
func Enabled(on bool) Option {
	return Option{"Enabled", func(c *config) { c.enabled = on }}
}

// Timeout bounds each call to the backend (default [DefaultTimeout]): the
// call's context gets a deadline Timeout away; a read's ends at a third of
// the time the first caller has left when that is sooner, so that fn keeps
// a fair share of it. Func.Clear runs on the caller's ctx as it is. A call that runs past it counts as a fault of the cache: a read is
// a miss, a write is reported. It does not bound fn, nor the local tier,
// which never waits.
func Timeout(d time.Duration) Option {
	if d <= 0 {
		panic(fmt.Sprintf("memo: Timeout(%v): must be positive", d))
	}
	return Option{"Timeout", func(c *config) { c.timeout = d }}
}

// OnError sets the hook that receives what memo cannot return to a caller:
// cache faults (backend errors and timeouts, entries that cannot be
// decoded, answers that cannot be encoded or are too large to store, keys
// that cannot be built), each a *[BackendError], and panics of fn that no
// caller was left to receive, each a *[PanicError]. The default logs them
// at slog.LevelWarn on slog.Default(), throttled: the first fault of a kind
// at once, then at most one line per [LogInterval] saying how many it
// stood for. Every fault counts in [Stats].Faults either way.
//
// The hook runs on the goroutine that met the fault: the caller's, or the
// goroutine that runs a shared computation, with a context that keeps the
// first caller's values but not its cancellation. It must be safe for
// concurrent use and should return quickly: a computation's callers wait
// for it. A panic of the hook is recovered and logged.
func OnError(fn func(ctx context.Context, err error)) Option {
	if fn == nil {
		panic("memo: OnError(nil)")
	}
	return Option{"OnError", func(c *config) { c.onError = fn }}
}

// KeyFunc sets how an argument becomes the id part of its key, for argument
// types with no canonical form or to ignore some of their fields. The
// returned string is used as is when it is short printable ASCII without
// spaces or ':' (and does not start with '~'), and hashed otherwise. A must
// be the function's argument type: [New] panics otherwise. A KeyFunc that
// panics is recovered: that call runs fn uncached and the panic is reported
// to [OnError] as a key fault. Only per function: SetDefaults panics on it.
func KeyFunc[A any](fn func(A) string) Option {
	if fn == nil {
		panic("memo: KeyFunc(nil)")
	}
	return Option{"KeyFunc", func(c *config) { c.keyFn = fn }}
}

// mustKeyPart panics unless s is a legal Prefix or Namespace: printable
// ASCII without spaces, at most max bytes, and non-empty unless emptyOK.
func mustKeyPart(opt, s string, emptyOK bool, max int) {
	if s == "" && !emptyOK {
		panic(fmt.Sprintf("memo: %s(%q): must not be empty", opt, s))
	}
	if len(s) > max {
		panic(fmt.Sprintf("memo: %s(%.20q...): %d bytes, more than %d: keys must fit in %d bytes", opt, s, len(s), max, MaxKeyLen))
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; c <= ' ' || c >= 0x7f {
			panic(fmt.Sprintf("memo: %s(%q): must be printable ASCII without spaces", opt, s))
		}
	}
}

var (
	defaultsMu sync.Mutex
	defaults   atomic.Pointer[[]Option]
	// defaultsGen counts SetDefaults calls so that functions re-resolve
	// their configuration only when the defaults changed.
	defaultsGen atomic.Uint64
)

// SetDefaults sets options for every memoized function in the process, like
// fastapi-cache's FastAPICache.init. It is meant for main, before serving.
//
// Each call adds to the defaults already set: an option given again
// replaces its earlier value, and options not given keep theirs, so that
// SetDefaults(memo.Enabled(false)) from a flag never drops a backend set
// earlier. Defaults are read when a function is called, not when it is
// wrapped, so functions wrapped at package level see what main sets later;
// a function's own options win. SetDefaults is safe for concurrent use.
// It panics on Namespace, KeyFunc and ExpireFunc, which are per function, and on the
// zero Option.
func SetDefaults(opts ...Option) {
	for _, o := range opts {
		if o.apply == nil {
			panic("memo: SetDefaults: zero Option")
		}
		if o.name == "Namespace" || o.name == "KeyFunc" || o.name == "ExpireFunc" {
			panic(fmt.Sprintf("memo: SetDefaults(%s(...)): %s is per function", o.name, o.name))
		}
	}
	defaultsMu.Lock()
	defer defaultsMu.Unlock()
	var cp []Option
	if d := defaults.Load(); d != nil {
		for _, o := range *d {
			if !slices.ContainsFunc(opts, func(n Option) bool { return n.name == o.name }) {
				cp = append(cp, o)
			}
		}
	}
	cp = append(cp, opts...)
	defaults.Store(&cp)
	defaultsGen.Add(1)
}

// ResetDefaults drops every option set by [SetDefaults].
func ResetDefaults() {
	defaultsMu.Lock()
	defaults.Store(nil)
	defaultsGen.Add(1)
	defaultsMu.Unlock()
}

// resolve merges the built-in defaults, SetDefaults and a function's options.
func resolve(own []Option) config {
	c := config{
		clock:   systemClock{},
		prefix:  DefaultPrefix,
		codec:   JSON,
		enabled: true,
		timeout: DefaultTimeout,

		refreshTimeout: DefaultRefreshTimeout,
		localTTL:       DefaultLocalTTL,

		breakerThreshold: DefaultBreakerThreshold,
		breakerCooldown:  DefaultBreakerCooldown,
	}
	if d := defaults.Load(); d != nil {
		for _, o := range *d {
			o.apply(&c)
		}
	}
	for _, o := range own {
		o.apply(&c)
	}
	if c.remote == nil && c.local == nil {
		c.local = defaultLocal()
	}
	if c.onError == nil {
		c.onError = logError
	}
	return c
}
