// Package otelmemo sends what memo does to OpenTelemetry: metrics of calls,
// computations and backend calls, and a span for each run of fn.
//
//	memo.SetDefaults(memo.Observe(otelmemo.New()))
//
// It is a module of its own (github.com/gomemo/memo/otelmemo), so that
// OpenTelemetry's dependencies reach only the programs that import it.
//
// # Metrics
//
// Every name is under memo. (OpenTelemetry has no cache semantic
// conventions yet). Counters of calls and events are asynchronous: hits are
// never reported one by one, and cost a hit nothing here; each collection
// reads the [memo.Stats] of every function attached to the Observer.
//
//	memo.requests          counter    {request}      memo.namespace, memo.result
//	memo.computations      counter    {computation}  memo.namespace
//	memo.errors            counter    {error}        memo.namespace
//	memo.faults            counter    {fault}        memo.namespace
//	memo.refreshes         counter    {refresh}      memo.namespace
//	memo.lease.waits       counter    {wait}         memo.namespace
//	memo.backend.skips     counter    {call}         memo.namespace
//	memo.compute.duration  histogram  s              memo.namespace, memo.reason, error.type
//	memo.backend.duration  histogram  s              memo.operation, error.type
//	memo.breaker.changes   counter    {change}       memo.namespace, memo.breaker.state
//	memo.breaker.open      gauge      {breaker}      memo.namespace
//
// memo.result is one of hit, stale, miss, coalesced, negative and bypass,
// from the Stats fields Hits, StaleHits, Misses, Coalesced, NegativeHits and
// Bypasses: every call counts once, so the sum over memo.result is the
// number of calls. memo.reason is miss, refresh, forced or bypass
// ([memo.Reason]). error.type is present only on a failure: "panic" when fn
// (or the backend) panicked, "timeout" for an error wrapping
// context.DeadlineExceeded, "canceled" for context.Canceled, else the
// error's type as OpenTelemetry's semantic conventions say: the value of an
// ErrorType() string method in its chain, or the package path and name of
// its type once fmt.Errorf's wrappers are removed (the first error of
// several %w), such as "*net.OpError". Its values are bounded (100 Go
// types; 400 failed-run series per namespace, 600 failed-call series):
// past that, "_OTHER".
// memo.operation is get, set, delete, clear, lease or publish.
// memo.breaker.state is open or closed; memo.breaker.open is the number of
// open circuit breakers in front of a namespace's backend (reported once
// a breaker of the namespace has changed state).
//
// # Traces
//
// Each run of fn is a span named memo.compute, with the attributes
// memo.namespace and memo.reason, whose context fn receives: fn's own spans
// nest under it. It is a child of the caller's span; a background refresh
// ([memo.ReasonRefresh]), which no caller waits for, is a new root span
// with a link to the span of the call that started it. A failure sets the
// span's status to Error and records an exception event (a panic's value
// and stack). There is no span for a hit, nor for a backend call. Keys
// never appear in attributes: memo does not give them to an Observer.
package otelmemo

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"sync"
	"time"

	"github.com/gomemo/memo"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/trace"
)

// ScopeName is the instrumentation scope of the meter and tracer otelmemo
// uses: its import path.
const ScopeName = "github.com/gomemo/memo/otelmemo"

// Attribute keys.
const (
	keyNamespace = attribute.Key("memo.namespace")
	keyResult    = attribute.Key("memo.result")
	keyReason    = attribute.Key("memo.reason")
	keyOperation = attribute.Key("memo.operation")
	keyState     = attribute.Key("memo.breaker.state")
	keyErrorType = attribute.Key("error.type")
)

// errorTypeOther is error.type past maxErrorTypes distinct values, as the
// semantic conventions name a type they do not know.
const errorTypeOther = "_OTHER"

// maxErrorTypes bounds the distinct error.type values, and so the series a
// function whose errors name their own type could make.
const maxErrorTypes = 100

// An Option configures [New].
type Option func(*config)

type config struct {
	mp metric.MeterProvider
	tp trace.TracerProvider
}

// WithMeterProvider makes the Observer record its metrics with mp rather
// than with the global MeterProvider (otel.GetMeterProvider at New). It
// panics if mp is nil.
func WithMeterProvider(mp metric.MeterProvider) Option {
	if mp == nil {
		panic("otelmemo: WithMeterProvider(nil)")
	}
	return func(c *config) { c.mp = mp }
}

// WithTracerProvider makes the Observer start its spans with tp rather than
// with the global TracerProvider (otel.GetTracerProvider at New). It panics
// if tp is nil.
func WithTracerProvider(tp trace.TracerProvider) Option {
	if tp == nil {
		panic("otelmemo: WithTracerProvider(nil)")
	}
	return func(c *config) { c.tp = tp }
}

// New returns a [memo.Observer] that records memo's metrics and spans (see
// the package documentation) with the global providers, or those the
// options give; pass it to [memo.Observe], per function or in
// [memo.SetDefaults]. The global providers are read when New is called: a
// program that sets them must do so first.
//
// The Observer reads the Stats of every function attached to it at each
// collection, for as long as the process lives: make one Observer per
// process, not one per function. Functions sharing a namespace are summed
// under it. New panics if an instrument cannot be created.
func New(opts ...Option) memo.Observer {
	var c config
	for _, opt := range opts {
		opt(&c)
	}
	if c.mp == nil {
		c.mp = otel.GetMeterProvider()
	}
	if c.tp == nil {
		c.tp = otel.GetTracerProvider()
	}
	o := &observer{tracer: c.tp.Tracer(ScopeName)}
	for i, op := range ops {
		o.opOK[i] = record(attribute.NewSet(keyOperation.String(op)))
	}
	o.opOther = make(map[string][]metric.RecordOption)
	o.opErr = make(map[opErrKey][]metric.RecordOption)
	m := c.mp.Meter(ScopeName)
	must := func(err error) {
		if err != nil {
			panic(fmt.Sprintf("otelmemo: New: %v", err))
		}
	}
	var err error
	o.computeDur, err = m.Float64Histogram("memo.compute.duration",
		metric.WithUnit("s"),
		metric.WithDescription("How long each run of a memoized function's fn took."),
		metric.WithExplicitBucketBoundaries(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30))
	must(err)
	o.backendDur, err = m.Float64Histogram("memo.backend.duration",
		metric.WithUnit("s"),
		metric.WithDescription("How long each call memo made to a remote cache backend took."),
		metric.WithExplicitBucketBoundaries(0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1))
	must(err)
	o.breakerChanges, err = m.Int64Counter("memo.breaker.changes",
		metric.WithUnit("{change}"),
		metric.WithDescription("Changes of state of the circuit breaker in front of a memoized function's backend, by new state."))
	must(err)

	counter := func(name, unit, desc string) metric.Int64ObservableCounter {
		c, err := m.Int64ObservableCounter(name, metric.WithUnit(unit), metric.WithDescription(desc))
		must(err)
		return c
	}
	o.requests = counter("memo.requests", "{request}", "Calls of a memoized function, by how the cache answered them.")
	o.events = [nEvents]metric.Int64ObservableCounter{
		evComputations: counter("memo.computations", "{computation}", "Runs of fn, background refreshes and bypasses included."),
		evErrors:       counter("memo.errors", "{error}", "Runs of fn that returned an error or panicked."),
		evFaults:       counter("memo.faults", "{fault}", "Cache faults: backend errors and timeouts, corrupt entries, keys or answers that cannot be built, encoded or stored."),
		evRefreshes:    counter("memo.refreshes", "{refresh}", "Background refreshes started."),
		evLeaseWaits:   counter("memo.lease.waits", "{wait}", "Misses answered by what another process's lease stored."),
		evBackendSkips: counter("memo.backend.skips", "{call}", "Backend calls skipped because the circuit breaker was open."),
	}
	o.breakerOpen, err = m.Int64ObservableGauge("memo.breaker.open",
		metric.WithUnit("{breaker}"),
		metric.WithDescription("Circuit breakers open in front of a memoized function's backend."))
	must(err)
	insts := []metric.Observable{o.requests, o.breakerOpen}
	for _, c := range o.events {
		insts = append(insts, c)
	}
	_, err = m.RegisterCallback(o.observe, insts...)
	must(err)
	return o
}

// ops are the operations of BackendCall.Op, each with its attribute set
// precomputed.
var ops = [...]string{"get", "set", "delete", "clear", "lease", "publish"}

func opIndex(op string) int {
	for i, o := range ops {
		if o == op {
			return i
		}
	}
	return -1
}

// Indexes of the event counters.
const (
	evComputations = iota
	evErrors
	evFaults
	evRefreshes
	evLeaseWaits
	evBackendSkips
	nEvents
)

// Indexes of memo.result values.
const (
	resHit = iota
	resStale
	resMiss
	resCoalesced
	resNegative
	resBypass
	nResults
)

var results = [nResults]string{"hit", "stale", "miss", "coalesced", "negative", "bypass"}

// reasons are the memo.Reason values with their own attribute sets.
const nReasons = int(memo.ReasonBypass) + 1

type observer struct {
	tracer         trace.Tracer
	computeDur     metric.Float64Histogram
	backendDur     metric.Float64Histogram
	breakerChanges metric.Int64Counter
	requests       metric.Int64ObservableCounter
	events         [nEvents]metric.Int64ObservableCounter
	breakerOpen    metric.Int64ObservableGauge

	opOK [len(ops)][]metric.RecordOption // memo.operation, no error

	nss      sync.Map // namespace → *namespace
	errTypes sync.Map // reflect.Type → its error.type string

	mu       sync.Mutex
	funcs    []attached
	breakers map[breakerID]bool // open or not, by namespace and backend
	nTypes   int                // entries of errTypes

	// The attribute sets of failures and of operations memo did not name
	// when this was written, made on first use; plain maps, so that a
	// look-up allocates nothing.
	setsMu  sync.RWMutex
	opOther map[string][]metric.RecordOption
	opErr   map[opErrKey][]metric.RecordOption
}

// record returns the options of a measurement with the attributes set:
// a slice made once, so that passing it allocates nothing.
func record(set attribute.Set) []metric.RecordOption {
	return []metric.RecordOption{metric.WithAttributeSet(set)}
}

type attached struct {
	ns    *namespace
	stats func() memo.Stats
}

type breakerID struct{ ns, backend string }

type opErrKey struct{ op, errType string }

// namespace holds the attribute sets of one namespace, made once.
type namespace struct {
	name    string
	attrs   attribute.Set                     // memo.namespace
	results [nResults]metric.ObserveOption    // memo.requests by memo.result
	events  metric.ObserveOption              // the event counters
	spans   [nReasons][]trace.SpanStartOption // memo.compute's options by reason
	refresh []trace.SpanStartOption           // a refresh's, without its link
	ok      [nReasons][]metric.RecordOption   // memo.compute.duration by reason, no error
	errs    map[errKey][]metric.RecordOption  // the same, failed; under observer.setsMu
	opened  []metric.AddOption                // memo.breaker.changes, open
	closed  []metric.AddOption                // memo.breaker.changes, closed
}

type errKey struct {
	reason  memo.Reason
	errType string
}

func newNamespace(name string) *namespace {
	ns := &namespace{name: name, attrs: attribute.NewSet(keyNamespace.String(name)), errs: make(map[errKey][]metric.RecordOption)}
	for i, r := range results {
		ns.results[i] = metric.WithAttributeSet(attribute.NewSet(keyNamespace.String(name), keyResult.String(r)))
	}
	ns.events = metric.WithAttributeSet(ns.attrs)
	for r := range memo.Reason(nReasons) {
		kv := []attribute.KeyValue{keyNamespace.String(name), keyReason.String(r.String())}
		ns.ok[r] = record(attribute.NewSet(kv...))
		ns.spans[r] = []trace.SpanStartOption{trace.WithSpanKind(trace.SpanKindInternal), trace.WithAttributes(kv...)}
	}
	ns.refresh = append([]trace.SpanStartOption{trace.WithNewRoot()}, ns.spans[memo.ReasonRefresh]...)
	ns.opened = []metric.AddOption{metric.WithAttributeSet(attribute.NewSet(keyNamespace.String(name), keyState.String("open")))}
	ns.closed = []metric.AddOption{metric.WithAttributeSet(attribute.NewSet(keyNamespace.String(name), keyState.String("closed")))}
	return ns
}

// namespace returns the attribute sets of namespace name.
func (o *observer) namespace(name string) *namespace {
	if ns, ok := o.nss.Load(name); ok {
		return ns.(*namespace)
	}
	ns, _ := o.nss.LoadOrStore(name, newNamespace(name))
	return ns.(*namespace)
}

// Attach makes the function's Stats part of each collection.
func (o *observer) Attach(name string, stats func() memo.Stats) {
	ns := o.namespace(name)
	o.mu.Lock()
	defer o.mu.Unlock()
	o.funcs = append(o.funcs, attached{ns, stats})
}

// observe is the callback of the asynchronous instruments: the Stats of
// every attached function, summed by namespace.
func (o *observer) observe(_ context.Context, obs metric.Observer) error {
	o.mu.Lock()
	funcs := o.funcs
	var open map[*namespace]int64
	if len(o.breakers) > 0 {
		open = make(map[*namespace]int64, len(o.breakers))
		for id, isOpen := range o.breakers {
			n := int64(0)
			if isOpen {
				n = 1
			}
			open[o.namespace(id.ns)] += n
		}
	}
	o.mu.Unlock()

	sums := make(map[*namespace]*memo.Stats, len(funcs))
	order := make([]*namespace, 0, len(funcs))
	for _, f := range funcs {
		st := f.stats()
		sum := sums[f.ns]
		if sum == nil {
			sum = new(memo.Stats)
			sums[f.ns] = sum
			order = append(order, f.ns)
		}
		add(sum, &st)
	}
	for _, ns := range order {
		st := sums[ns]
		for i, n := range [nResults]uint64{
			resHit:       st.Hits,
			resStale:     st.StaleHits,
			resMiss:      st.Misses,
			resCoalesced: st.Coalesced,
			resNegative:  st.NegativeHits,
			resBypass:    st.Bypasses,
		} {
			obs.ObserveInt64(o.requests, int64(n), ns.results[i])
		}
		for i, n := range [nEvents]uint64{
			evComputations: st.Computations,
			evErrors:       st.Errors,
			evFaults:       st.Faults,
			evRefreshes:    st.Refreshes,
			evLeaseWaits:   st.LeaseWaits,
			evBackendSkips: st.BackendSkips,
		} {
			obs.ObserveInt64(o.events[i], int64(n), ns.events)
		}
	}
	for ns, n := range open {
		obs.ObserveInt64(o.breakerOpen, n, ns.events)
	}
	return nil
}

// add adds the counters of b to a.
func add(a, b *memo.Stats) {
	a.Hits += b.Hits
	a.StaleHits += b.StaleHits
	a.NegativeHits += b.NegativeHits
	a.Misses += b.Misses
	a.Coalesced += b.Coalesced
	a.Bypasses += b.Bypasses
	a.Computations += b.Computations
	a.Errors += b.Errors
	a.Faults += b.Faults
	a.Refreshes += b.Refreshes
	a.LeaseWaits += b.LeaseWaits
	a.BackendSkips += b.BackendSkips
}

// Compute starts fn's span; its done records the duration and ends it.
func (o *observer) Compute(ctx context.Context, c memo.Computation) (context.Context, func(time.Duration, error)) {
	ns := o.namespace(c.Namespace)
	r := c.Reason
	if int(r) >= nReasons {
		r = memo.ReasonMiss
	}
	var span trace.Span
	if r == memo.ReasonRefresh {
		opts := ns.refresh
		if sc := trace.SpanContextFromContext(ctx); sc.IsValid() {
			opts = append(opts[:len(opts):len(opts)], trace.WithLinks(trace.Link{SpanContext: sc}))
		}
		ctx, span = o.tracer.Start(ctx, "memo.compute", opts...)
	} else {
		ctx, span = o.tracer.Start(ctx, "memo.compute", ns.spans[r]...)
	}
	return ctx, func(d time.Duration, err error) {
		if err == nil {
			o.computeDur.Record(ctx, d.Seconds(), ns.ok[r]...)
			span.End()
			return
		}
		et := o.errorType(err)
		o.computeDur.Record(ctx, d.Seconds(), o.computeErr(ns, r, et)...)
		if p, ok := err.(*memo.PanicError); ok {
			msg := fmt.Sprint(p.Value)
			span.AddEvent("exception", trace.WithAttributes(
				attribute.String("exception.type", "panic"),
				attribute.String("exception.message", msg),
				attribute.String("exception.stacktrace", string(p.Stack))))
			span.SetStatus(codes.Error, "fn panicked: "+msg)
		} else {
			span.RecordError(err)
			span.SetStatus(codes.Error, err.Error())
		}
		span.End()
	}
}

// computeErr returns the attribute set of a failed run.
func (o *observer) computeErr(ns *namespace, r memo.Reason, et string) []metric.RecordOption {
	return cached(&o.setsMu, ns.errs, errKey{r, et}, errKey{r, errorTypeOther}, maxErrorTypes*nReasons, func(k errKey) attribute.Set {
		return attribute.NewSet(keyNamespace.String(ns.name), keyReason.String(k.reason.String()), keyErrorType.String(k.errType))
	})
}

// BackendCall records the call's duration.
func (o *observer) BackendCall(ctx context.Context, c memo.BackendCall) {
	var opts []metric.RecordOption
	switch i := opIndex(c.Op); {
	case c.Err != nil:
		opts = cached(&o.setsMu, o.opErr, opErrKey{c.Op, o.errorType(c.Err)}, opErrKey{c.Op, errorTypeOther}, maxErrorTypes*len(ops), func(k opErrKey) attribute.Set {
			return attribute.NewSet(keyOperation.String(k.op), keyErrorType.String(k.errType))
		})
	case i >= 0:
		opts = o.opOK[i]
	default:
		opts = cached(&o.setsMu, o.opOther, c.Op, "", 0, func(op string) attribute.Set {
			return attribute.NewSet(keyOperation.String(op))
		})
	}
	o.backendDur.Record(ctx, c.Duration.Seconds(), opts...)
}

// cached returns m[k], made by newSet on first use under mu. Once m holds
// max entries (max > 0), a new k is replaced by other.
func cached[K comparable](mu *sync.RWMutex, m map[K][]metric.RecordOption, k, other K, max int, newSet func(K) attribute.Set) []metric.RecordOption {
	mu.RLock()
	opts, ok := m[k]
	mu.RUnlock()
	if ok {
		return opts
	}
	mu.Lock()
	defer mu.Unlock()
	if opts, ok := m[k]; ok {
		return opts
	}
	if max > 0 && len(m) >= max {
		k = other
		if opts, ok := m[k]; ok {
			return opts
		}
	}
	opts = record(newSet(k))
	m[k] = opts
	return opts
}

// BreakerChange counts the change and keeps the state for memo.breaker.open.
func (o *observer) BreakerChange(c memo.BreakerChange) {
	ns := o.namespace(c.Namespace)
	o.mu.Lock()
	if o.breakers == nil {
		o.breakers = make(map[breakerID]bool)
	}
	o.breakers[breakerID{c.Namespace, c.Backend}] = c.Open
	o.mu.Unlock()
	opt := ns.closed
	if c.Open {
		opt = ns.opened
	}
	o.breakerChanges.Add(context.Background(), 1, opt...)
}

// errorType returns err's error.type: "panic" for a *memo.PanicError, the
// value of an ErrorType() string method in its chain, or the package path
// and name of its type once fmt.Errorf's wrappers are removed (its string
// form for a type without a name), as OpenTelemetry's semconv.ErrorType
// does; "_OTHER" past maxErrorTypes types.
func (o *observer) errorType(err error) string {
	if _, ok := err.(*memo.PanicError); ok {
		return "panic"
	}
	if errors.Is(err, context.DeadlineExceeded) {
		return "timeout"
	}
	if errors.Is(err, context.Canceled) {
		return "canceled"
	}
	if s := namedType(err); s != "" {
		return s
	}
	t := reflect.TypeOf(unwrapFmt(err))
	if s, ok := o.errTypes.Load(t); ok {
		return s.(string)
	}
	s := t.String()
	if pkg, name := t.PkgPath(), t.Name(); pkg != "" && name != "" {
		s = pkg + "." + name
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.nTypes >= maxErrorTypes {
		return errorTypeOther
	}
	if _, loaded := o.errTypes.LoadOrStore(t, s); !loaded {
		o.nTypes++
	}
	return s
}

// namedType returns the ErrorType() string of the first error in err's
// chain that has the method, as errors.As finds it (its As methods aside),
// or "".
func namedType(err error) string {
	for err != nil {
		if et, ok := err.(interface{ ErrorType() string }); ok {
			return et.ErrorType()
		}
		switch u := err.(type) {
		case interface{ Unwrap() error }:
			err = u.Unwrap()
		case interface{ Unwrap() []error }:
			for _, e := range u.Unwrap() {
				if s := namedType(e); s != "" {
					return s
				}
			}
			return ""
		default:
			return ""
		}
	}
	return ""
}

// The types of fmt.Errorf's errors wrapping one error and several.
var (
	fmtWrap  = reflect.TypeOf(fmt.Errorf("%w", errors.New("")))
	fmtWraps = reflect.TypeOf(fmt.Errorf("%w%w", errors.New(""), errors.New("")))
)

// unwrapFmt removes fmt.Errorf's wrappers from err: down to the one error
// it wraps, or the first of several.
func unwrapFmt(err error) error {
	for {
		var u error
		switch reflect.TypeOf(err) {
		case fmtWrap:
			u = errors.Unwrap(err)
		case fmtWraps:
			if us := err.(interface{ Unwrap() []error }).Unwrap(); len(us) > 0 {
				u = us[0]
			}
		}
		if u == nil {
			return err
		}
		err = u
	}
}
