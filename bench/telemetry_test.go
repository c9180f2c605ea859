package bench

import (
	"context"
	"crypto/rand"
	"testing"

	"go.opentelemetry.io/otel/propagation"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"

	"github.com/harvesthub/hub"
	"github.com/harvesthub/hub/middleware"
)

// dropSpans is a span processor that keeps nothing: spans are recorded
// (sampled, attributes, links, events) and dropped at End, so the benchmark
// measures the hub's instrumentation and the SDK, not an exporter.
type dropSpans struct{}

func (dropSpans) OnStart(context.Context, sdktrace.ReadWriteSpan) {}
func (dropSpans) OnEnd(sdktrace.ReadOnlySpan)                     {}
func (dropSpans) Shutdown(context.Context) error                  { return nil }
func (dropSpans) ForceFlush(context.Context) error                { return nil }

// BenchmarkTelemetry publishes b.N records with hub.Publish and handles
// them with hub.Handle (concurrency 8) on the memory broker, for each
// telemetry and encryption setting.
func BenchmarkTelemetry(b *testing.B) {
	key := make([]byte, middleware.KeySize)
	if _, err := rand.Read(key); err != nil {
		b.Fatal(err)
	}
	keyring, err := middleware.NewKeyring("k1", map[string][]byte{"k1": key})
	if err != nil {
		b.Fatal(err)
	}
	sdk := func(c *hub.Config) func() {
		reader := sdkmetric.NewManualReader()
		mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
		tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(dropSpans{}))
		c.MeterProvider, c.TracerProvider, c.Propagator = mp, tp, propagation.TraceContext{}
		return func() {
			_ = mp.Shutdown(context.Background())
			_ = tp.Shutdown(context.Background())
		}
	}
	for _, c := range []struct {
		name string
		set  func(*hub.Config) func()
	}{
		{"noop", func(*hub.Config) func() { return func() {} }},
		{"sdk-metrics+traces", sdk},
		{"encrypted", func(c *hub.Config) func() { c.Encryption = keyring; return func() {} }},
		{"sdk+encrypted", func(c *hub.Config) func() { c.Encryption = keyring; return sdk(c) }},
	} {
		b.Run(c.name, func(b *testing.B) {
			cfg := hub.Config{Logger: discard}
			defer c.set(&cfg)()
			benchHub(b, cfg, 8)
		})
	}
}
