package telemetry

import (
	"context"
	"crypto/rand"
	"io"
	"log/slog"
	"strings"
	"sync/atomic"
	"testing"

	"go.opentelemetry.io/otel/propagation"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"

	"github.com/harvesthub/hub"
	"github.com/harvesthub/hub/broker/memory"
	"github.com/harvesthub/hub/middleware"
)

// Record is the benchmark payload: about 1 KB of JSON.
type Record struct {
	ID     string   `json:"id"`
	Source string   `json:"source"`
	Title  string   `json:"title"`
	Body   string   `json:"body"`
	Tags   []string `json:"tags"`
}

var record = Record{
	ID:     "rec-0001",
	Source: "gov-datasets",
	Title:  "Quarterly cyber security breaches survey",
	Body:   strings.Repeat("Harvested body text. ", 44),
	Tags:   []string{"cyber", "survey", "statistics"},
}

var discard = slog.New(slog.NewTextHandler(io.Discard, nil))

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

func benchHub(b *testing.B, cfg hub.Config, concurrency int) {
	br, err := memory.New(memory.Config{})
	if err != nil {
		b.Fatal(err)
	}
	defer br.Close()
	h, err := hub.New(br, cfg)
	if err != nil {
		b.Fatal(err)
	}
	var sink, handled atomic.Int64
	done := make(chan struct{})
	n := int64(b.N)
	if err := hub.Handle(h, "records", func(ctx context.Context, m hub.Message[Record]) error {
		sink.Add(int64(len(m.Payload.Title)))
		if handled.Add(1) == n {
			close(done)
		}
		return nil
	}, hub.Concurrency(concurrency)); err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	runErr := make(chan error, 1)
	go func() { runErr <- h.Run(ctx) }()
	<-h.Running()
	b.SetBytes(1024)
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		if err := hub.Publish(ctx, h, "records", record); err != nil {
			b.Fatal(err)
		}
	}
	<-done
	b.StopTimer()
	cancel()
	if err := <-runErr; err != nil {
		b.Fatal(err)
	}
}
