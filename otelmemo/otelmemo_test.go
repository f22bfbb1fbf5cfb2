package otelmemo_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/google/go-cmp/cmp"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
	"go.uber.org/goleak"

	"github.com/gomemo/memo"
	"github.com/gomemo/memo/otelmemo"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// telemetry is an SDK meter and tracer provider that keep what they get.
type telemetry struct {
	reader *sdkmetric.ManualReader
	spans  *tracetest.SpanRecorder
	mp     *sdkmetric.MeterProvider
	tp     *sdktrace.TracerProvider
}

func newTelemetry(t testing.TB) *telemetry {
	tel := &telemetry{reader: sdkmetric.NewManualReader(), spans: tracetest.NewSpanRecorder()}
	tel.mp = sdkmetric.NewMeterProvider(sdkmetric.WithReader(tel.reader))
	tel.tp = sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(tel.spans))
	t.Cleanup(func() {
		tel.mp.Shutdown(context.Background())
		tel.tp.Shutdown(context.Background())
	})
	return tel
}

func (tel *telemetry) observer() memo.Observer {
	return otelmemo.New(otelmemo.WithMeterProvider(tel.mp), otelmemo.WithTracerProvider(tel.tp))
}

// histPoint is a histogram's data point as the tests compare it.
type histPoint struct {
	Count uint64
	Sum   float64
}

// metrics are the data points of one collection: sums and gauges in
// values, histograms in hists, each by "name{attributes}".
type metrics struct {
	values map[string]int64
	hists  map[string]histPoint
}

func (tel *telemetry) collect(t testing.TB) metrics {
	t.Helper()
	var rm metricdata.ResourceMetrics
	if err := tel.reader.Collect(context.Background(), &rm); err != nil {
		t.Fatalf("Collect: %v", err)
	}
	got := metrics{values: map[string]int64{}, hists: map[string]histPoint{}}
	for _, sm := range rm.ScopeMetrics {
		if sm.Scope.Name != otelmemo.ScopeName {
			t.Errorf("instrumentation scope %q, want %q", sm.Scope.Name, otelmemo.ScopeName)
		}
		for _, m := range sm.Metrics {
			switch d := m.Data.(type) {
			case metricdata.Sum[int64]:
				if !d.IsMonotonic {
					t.Errorf("%s is not monotonic", m.Name)
				}
				for _, p := range d.DataPoints {
					got.values[series(m.Name, p.Attributes)] = p.Value
				}
			case metricdata.Gauge[int64]:
				for _, p := range d.DataPoints {
					got.values[series(m.Name, p.Attributes)] = p.Value
				}
			case metricdata.Histogram[float64]:
				if m.Unit != "s" {
					t.Errorf("%s has unit %q, want s", m.Name, m.Unit)
				}
				for _, p := range d.DataPoints {
					got.hists[series(m.Name, p.Attributes)] = histPoint{p.Count, p.Sum}
				}
			default:
				t.Errorf("%s is a %T", m.Name, m.Data)
			}
		}
	}
	return got
}

func series(name string, attrs attribute.Set) string {
	return name + "{" + attrs.Encoded(attribute.DefaultEncoder()) + "}"
}

// notFound is fn's not-found error, remembered by NegativeCache.
type notFound struct{}

func (notFound) Error() string { return "not found" }

// originError is another error of fn.
type originError struct{ code int }

func (e originError) Error() string { return fmt.Sprintf("origin failed: %d", e.code) }

const pkg = "github.com/gomemo/memo/otelmemo_test."

// TestSequence runs a scripted sequence on the local tier (misses, hits, a
// remembered not-found, errors, a panic, five callers sharing one
// computation, a bypass, a stale hit and its background refresh) and
// checks every data point and span the Observer made.
func TestSequence(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		tel := newTelemetry(t)
		ctx, request := tel.tp.Tracer("test").Start(context.Background(), "request")
		defer request.End()

		var (
			mu      sync.Mutex
			started = map[int]int{}
			version atomic.Int64
		)
		hold := make(chan struct{})
		fnTracer := tel.tp.Tracer("fn")
		fn := func(ctx context.Context, n int) (int, error) {
			_, span := fnTracer.Start(ctx, "fn")
			defer span.End()
			mu.Lock()
			started[n]++
			mu.Unlock()
			time.Sleep(time.Duration(n) * 100 * time.Millisecond)
			switch n {
			case 2:
				return 0, notFound{}
			case 3:
				return 0, fmt.Errorf("fn: %w", originError{503})
			case 4:
				panic("fn broke")
			case 5:
				<-hold
			}
			return n*10 + int(version.Load()), nil
		}
		ns := "otelmemo.sequence"
		f := memo.New(fn, memo.Namespace(ns), memo.Expire(10*time.Second), memo.StaleWhileRevalidate(time.Minute),
			memo.NegativeCache(time.Hour, notFound{}), memo.Observe(tel.observer()))

		call := func(n, want int, wantErr error, what string) {
			t.Helper()
			got, err := f.Call(ctx, n)
			if got != want || !errors.Is(err, wantErr) {
				t.Errorf("%s: Call(%d) = %d, %v; want %d, %v", what, n, got, err, want, wantErr)
			}
		}
		call(1, 10, nil, "miss")
		call(1, 10, nil, "hit")
		call(1, 10, nil, "hit")
		call(2, 0, notFound{}, "not found")
		call(2, 0, notFound{}, "remembered not found")
		call(3, 0, originError{503}, "fn fails")
		func() {
			defer func() {
				if p, ok := recover().(*memo.PanicError); !ok || p.Value != "fn broke" {
					t.Errorf("Call(4) panicked with %v, want a *memo.PanicError of fn broke", p)
				}
			}()
			f.Call(ctx, 4)
			t.Errorf("Call(4) returned, want its panic")
		}()

		// Five callers of one key while fn is held: one runs it.
		var wg sync.WaitGroup
		for range 5 {
			wg.Go(func() { call(5, 50, nil, "five callers") })
		}
		synctest.Wait()
		close(hold)
		wg.Wait()

		if _, err := f.Lookup(ctx, 6, memo.Bypass); err != nil {
			t.Errorf("Lookup(6, Bypass) = %v", err)
		}

		// Stale: served at once, refreshed in the background.
		time.Sleep(11 * time.Second)
		version.Store(1)
		call(1, 10, nil, "stale")
		time.Sleep(time.Second)
		synctest.Wait()
		call(1, 11, nil, "after the refresh")

		// Misses: 5, the call that panicked with fn's panic included.
		wantStats := memo.Stats{Hits: 3, StaleHits: 1, Misses: 5, Coalesced: 4, NegativeHits: 1, Bypasses: 1,
			Computations: 7, Errors: 3, Refreshes: 1}
		if diff := cmp.Diff(wantStats, f.Stats()); diff != "" {
			t.Errorf("Stats() (-want +got):\n%s", diff)
		}
		wantStarted := map[int]int{1: 2, 2: 1, 3: 1, 4: 1, 5: 1, 6: 1}
		mu.Lock()
		if diff := cmp.Diff(wantStarted, started); diff != "" {
			t.Errorf("runs of fn by argument (-want +got):\n%s", diff)
		}
		mu.Unlock()

		nsa := "memo.namespace=" + ns
		req := func(result string) string { return "memo.requests{" + nsa + ",memo.result=" + result + "}" }
		ev := func(name string) string { return name + "{" + nsa + "}" }
		dur := func(reason, errType string) string {
			s := "memo.compute.duration{"
			if errType != "" {
				s += "error.type=" + errType + ","
			}
			return s + nsa + ",memo.reason=" + reason + "}"
		}
		want := metrics{
			values: map[string]int64{
				req("hit"): 3, req("stale"): 1, req("miss"): int64(wantStats.Misses), req("coalesced"): 4, req("negative"): 1, req("bypass"): 1,
				ev("memo.computations"): 7, ev("memo.errors"): 3, ev("memo.faults"): 0, ev("memo.refreshes"): 1,
				ev("memo.lease.waits"): 0, ev("memo.backend.skips"): 0,
			},
			hists: map[string]histPoint{
				dur("miss", ""):                {2, 0.1 + 0.5},
				dur("miss", pkg+"notFound"):    {1, 0.2},
				dur("miss", pkg+"originError"): {1, 0.3},
				dur("miss", "panic"):           {1, 0.4},
				dur("bypass", ""):              {1, 0.6},
				dur("refresh", ""):             {1, 0.1},
			},
		}
		got := tel.collect(t)
		if diff := cmp.Diff(want, got, cmp.AllowUnexported(metrics{}), cmp.Comparer(approx)); diff != "" {
			t.Errorf("metrics after the sequence (-want +got):\n%s", diff)
		}

		// Spans: one memo.compute per run of fn, none per hit.
		type spanInfo struct {
			Reason, Status string
			Parent         string // "request", "none"
			Link           string // "request" or ""
			Events         int
		}
		var computes []spanInfo
		computeIDs := map[trace.SpanID]bool{}
		for _, s := range tel.spans.Ended() {
			if s.Name() != "memo.compute" {
				continue
			}
			computeIDs[s.SpanContext().SpanID()] = true
			info := spanInfo{Parent: "none", Status: s.Status().Code.String(), Events: len(s.Events())}
			if s.Parent().IsValid() {
				info.Parent = "other"
				if s.Parent().SpanID() == request.SpanContext().SpanID() {
					info.Parent = "request"
				}
			}
			for _, l := range s.Links() {
				if l.SpanContext.Equal(request.SpanContext()) {
					info.Link = "request"
				} else {
					info.Link = "other"
				}
			}
			var keys []string
			for _, kv := range s.Attributes() {
				keys = append(keys, string(kv.Key))
				switch kv.Key {
				case "memo.namespace":
					if kv.Value.AsString() != ns {
						t.Errorf("span memo.namespace = %q, want %q", kv.Value.AsString(), ns)
					}
				case "memo.reason":
					info.Reason = kv.Value.AsString()
				}
			}
			slices.Sort(keys)
			if want := []string{"memo.namespace", "memo.reason"}; !slices.Equal(keys, want) {
				t.Errorf("memo.compute span attributes %v, want %v", keys, want)
			}
			if s.SpanKind() != trace.SpanKindInternal {
				t.Errorf("memo.compute span kind %v, want internal", s.SpanKind())
			}
			computes = append(computes, info)
		}
		ok, fail := codes.Unset.String(), codes.Error.String()
		wantSpans := []spanInfo{
			{"bypass", ok, "request", "", 0},
			{"miss", fail, "request", "", 1},
			{"miss", fail, "request", "", 1},
			{"miss", fail, "request", "", 1},
			{"miss", ok, "request", "", 0},
			{"miss", ok, "request", "", 0},
			{"refresh", ok, "none", "request", 0},
		}
		less := func(a, b spanInfo) int { return strings.Compare(fmt.Sprint(a), fmt.Sprint(b)) }
		slices.SortFunc(computes, less)
		slices.SortFunc(wantSpans, less)
		if diff := cmp.Diff(wantSpans, computes); diff != "" {
			t.Errorf("memo.compute spans (-want +got):\n%s", diff)
		}
		// fn's own spans nest under memo.compute.
		nfn := 0
		for _, s := range tel.spans.Ended() {
			if s.Name() == "fn" {
				nfn++
				if !computeIDs[s.Parent().SpanID()] {
					t.Errorf("fn's span has parent %v, not a memo.compute span", s.Parent().SpanID())
				}
			}
		}
		if nfn != 7 {
			t.Errorf("fn made %d spans, want 7", nfn)
		}
	})
}

// approx compares float64 sums of durations measured in nanoseconds.
func approx(a, b float64) bool {
	d := a - b
	return d < 1e-9 && d > -1e-9
}
