package hub_test

import (
	"context"
	"fmt"
	"slices"

	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"

	"github.com/harvesthub/hub"
	"github.com/harvesthub/hub/hubtest"
)

// The hub records the OpenTelemetry messaging metrics on the
// MeterProvider it is given (here one read by a ManualReader; in a service,
// the Prometheus or OTLP exporter).
func ExampleConfig_telemetry() {
	t := hubtest.NewStandalone()
	defer t.Close()
	reader := sdkmetric.NewManualReader()
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
	defer func() { _ = mp.Shutdown(context.Background()) }()
	th := hubtest.New(t, hubtest.WithConfig(func(c *hub.Config) { c.MeterProvider = mp }))

	type Record struct{ ID string }
	_ = hub.Handle(th.Hub, "records", func(ctx context.Context, m hub.Message[Record]) error { return nil })
	th.Start()
	hubtest.Send(t, th, "records", Record{ID: "r1"}, hub.WithKey("r1"))
	hubtest.Send(t, th, "records", Record{ID: "r1"}, hub.WithKey("r1")) // a duplicate
	th.Settle(t)

	var lines []string
	var rm metricdata.ResourceMetrics
	_ = reader.Collect(context.Background(), &rm)
	for _, m := range rm.ScopeMetrics[0].Metrics {
		if m.Name != "messaging.process.duration" {
			continue
		}
		for _, dp := range m.Data.(metricdata.Histogram[float64]).DataPoints {
			outcome, _ := dp.Attributes.Value("hub.outcome")
			dest, _ := dp.Attributes.Value("messaging.destination.name")
			lines = append(lines, fmt.Sprintf("%s %s: %d", dest.AsString(), outcome.AsString(), dp.Count))
		}
	}
	slices.Sort(lines)
	for _, l := range lines {
		fmt.Println(l)
	}
	// Output:
	// records ack: 1
	// records duplicate: 1
}
