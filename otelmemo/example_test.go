package otelmemo_test

import (
	"context"
	"fmt"
	"slices"

	"go.opentelemetry.io/otel/attribute"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"

	"github.com/gomemo/memo"
	"github.com/gomemo/memo/otelmemo"
)

func ExampleNew() {
	// A program would rather say, once in main, after setting its
	// providers: memo.SetDefaults(memo.Observe(otelmemo.New())).
	reader := sdkmetric.NewManualReader()
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
	obs := otelmemo.New(otelmemo.WithMeterProvider(mp))

	square := memo.New(func(_ context.Context, n int) (int, error) { return n * n, nil },
		memo.Namespace("example.square"), memo.WithLocalTier(memo.NewLocalTier(1<<20, nil)), memo.Observe(obs))
	ctx := context.Background()
	for _, n := range []int{2, 3, 2, 2} {
		square.Call(ctx, n)
	}

	var rm metricdata.ResourceMetrics
	reader.Collect(ctx, &rm)
	var lines []string
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			switch d := m.Data.(type) {
			case metricdata.Sum[int64]:
				for _, p := range d.DataPoints {
					if p.Value != 0 {
						lines = append(lines, fmt.Sprintf("%s{%s} %d", m.Name, p.Attributes.Encoded(attribute.DefaultEncoder()), p.Value))
					}
				}
			case metricdata.Histogram[float64]:
				for _, p := range d.DataPoints {
					lines = append(lines, fmt.Sprintf("%s{%s} count %d", m.Name, p.Attributes.Encoded(attribute.DefaultEncoder()), p.Count))
				}
			}
		}
	}
	slices.Sort(lines)
	for _, l := range lines {
		fmt.Println(l)
	}
	// Output:
	// memo.computations{memo.namespace=example.square} 2
	// memo.compute.duration{memo.namespace=example.square,memo.reason=miss} count 2
	// memo.requests{memo.namespace=example.square,memo.result=hit} 2
	// memo.requests{memo.namespace=example.square,memo.result=miss} 2
}
