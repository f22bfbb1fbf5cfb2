package otelmemo_test

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"go.opentelemetry.io/otel"
	semconv "go.opentelemetry.io/otel/semconv/v1.40.0"

	"github.com/gomemo/memo"
	"github.com/gomemo/memo/otelmemo"
)

// typedError names its own error.type.
type typedError string

func (e typedError) Error() string     { return "typed " + string(e) }
func (e typedError) ErrorType() string { return string(e) }

// TestErrorType: error.type as OpenTelemetry's semconv.ErrorType gives it,
// but for a panic, a timeout, a cancellation and fmt.Errorf's wrappers of
// several errors (the first one's type, not *fmt.wrapErrors).
func TestErrorType(t *testing.T) {
	o := newTelemetry(t).observer()
	for _, tc := range []struct {
		err     error
		want    string
		semconv bool // the same as semconv.ErrorType
	}{
		{errors.New("x"), "*errors.errorString", true},
		{originError{1}, pkg + "originError", true},
		{fmt.Errorf("a: %w", fmt.Errorf("b: %w", originError{2})), pkg + "originError", true},
		{&net.OpError{Op: "dial", Err: errors.New("refused")}, "*net.OpError", true},
		{fmt.Errorf("a: %w", &fs.PathError{}), "*fs.PathError", true},
		{typedError("quota"), "quota", true},
		{fmt.Errorf("a: %w", typedError("quota")), "quota", true},
		{typedError(""), pkg + "typedError", true},
		{&memo.PanicError{Value: "boom"}, "panic", false},
		{fmt.Errorf("get: %w", context.DeadlineExceeded), "timeout", false},
		{fmt.Errorf("get: %w (%w)", context.DeadlineExceeded, &net.OpError{}), "timeout", false},
		{context.Canceled, "canceled", false},
		{fmt.Errorf("set: %w: %w", originError{3}, errors.New("y")), pkg + "originError", false},
	} {
		got := otelmemo.ErrorType(o, tc.err)
		if got != tc.want {
			t.Errorf("error.type of %#v = %q, want %q", tc.err, got, tc.want)
		}
		if sc := semconv.ErrorType(tc.err).Value.AsString(); (sc == got) != tc.semconv {
			t.Errorf("error.type of %#v = %q, semconv.ErrorType %q: same = %v, want %v", tc.err, got, sc, sc == got, tc.semconv)
		}
	}
}

// TestErrorTypesBounded: errors naming their own error.type cannot make
// more than 100 series per operation; the rest are _OTHER.
func TestErrorTypesBounded(t *testing.T) {
	tel := newTelemetry(t)
	o := tel.observer()
	for i := range 1000 {
		o.BackendCall(context.Background(), memo.BackendCall{Op: "get", Duration: time.Millisecond, Err: typedError(fmt.Sprint(i))})
	}
	got := tel.collect(t)
	n, other := 0, uint64(0)
	for k, h := range got.hists {
		n++
		if strings.Contains(k, "error.type=_OTHER") {
			other = h.Count
		}
	}
	if n > 601 || other == 0 {
		t.Errorf("1,000 error types made %d series, %d calls _OTHER; want at most 601, and some _OTHER", n, other)
	}
}

// TestSharedNamespace: functions sharing a namespace are summed under it;
// others have series of their own.
func TestSharedNamespace(t *testing.T) {
	tel := newTelemetry(t)
	o := tel.observer()
	id := func(_ context.Context, n int) (int, error) { return n, nil }
	local := func() memo.Option { return memo.WithLocalTier(memo.NewLocalTier(1<<20, nil)) }
	a1 := memo.New(id, memo.Namespace("otelmemo.shared"), local(), memo.Observe(o))
	a2 := memo.New(id, memo.Namespace("otelmemo.shared"), local(), memo.Observe(o))
	b := memo.New(id, memo.Namespace("otelmemo.other"), local(), memo.Observe(o))
	ctx := context.Background()
	for _, f := range []*memo.Func[int, int]{a1, a1, a2, b, b, b} {
		f.Call(ctx, 1)
	}
	got := tel.collect(t)
	want := map[string]int64{
		"memo.requests{memo.namespace=otelmemo.shared,memo.result=hit}":  1,
		"memo.requests{memo.namespace=otelmemo.shared,memo.result=miss}": 2,
		"memo.requests{memo.namespace=otelmemo.other,memo.result=hit}":   2,
		"memo.requests{memo.namespace=otelmemo.other,memo.result=miss}":  1,
		"memo.computations{memo.namespace=otelmemo.shared}":              2,
		"memo.computations{memo.namespace=otelmemo.other}":               1,
	}
	nonzero := map[string]int64{}
	for k, v := range got.values {
		if v != 0 {
			nonzero[k] = v
		}
	}
	if diff := cmp.Diff(want, nonzero); diff != "" {
		t.Errorf("data points not 0 (-want +got):\n%s", diff)
	}
}

// TestGlobalProviders: New without options uses the global providers as
// they are when it is called.
func TestGlobalProviders(t *testing.T) {
	tel := newTelemetry(t)
	mp, tp := otel.GetMeterProvider(), otel.GetTracerProvider()
	otel.SetMeterProvider(tel.mp)
	otel.SetTracerProvider(tel.tp)
	o := otelmemo.New()
	otel.SetMeterProvider(mp)
	otel.SetTracerProvider(tp)

	f := memo.New(func(_ context.Context, n int) (int, error) { return n, nil },
		memo.Namespace("otelmemo.global"), memo.WithLocalTier(memo.NewLocalTier(1<<20, nil)), memo.Observe(o))
	f.Call(context.Background(), 1)
	got := tel.collect(t)
	if n := got.values["memo.requests{memo.namespace=otelmemo.global,memo.result=miss}"]; n != 1 {
		t.Errorf("memo.requests miss through the global MeterProvider = %d, want 1", n)
	}
	if n := len(tel.spans.Ended()); n != 1 {
		t.Errorf("%d spans through the global TracerProvider, want 1", n)
	}
}

// TestOptionsPanic: nil providers are programmer errors.
func TestOptionsPanic(t *testing.T) {
	for name, f := range map[string]func(){
		"WithMeterProvider(nil)":  func() { otelmemo.WithMeterProvider(nil) },
		"WithTracerProvider(nil)": func() { otelmemo.WithTracerProvider(nil) },
	} {
		func() {
			defer func() {
				if r := recover(); r == nil || !strings.HasPrefix(fmt.Sprint(r), "otelmemo: ") {
					t.Errorf("%s panicked with %v, want an otelmemo: panic", name, r)
				}
			}()
			f()
		}()
	}
}
