package platform

import (
	"context"
	"fmt"
	"net/http"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.opentelemetry.io/otel/attribute"
	otelprom "go.opentelemetry.io/otel/exporters/prometheus"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/resource"
)

// Metrics is an OpenTelemetry MeterProvider whose metrics Prometheus scrapes
// from Handler. Each Metrics has its own registry, so several services in one
// process (harvest, tests) never collide.
type Metrics struct {
	Provider *sdkmetric.MeterProvider
	Registry *prometheus.Registry
}

// NewMetrics builds the provider and its Prometheus exporter, with Go
// runtime and process collectors.
func NewMetrics(service string) (*Metrics, error) {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	exp, err := otelprom.New(otelprom.WithRegisterer(reg))
	if err != nil {
		return nil, fmt.Errorf("platform: prometheus exporter: %w", err)
	}
	res := resource.NewSchemaless(attribute.String("service.name", service))
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(exp), sdkmetric.WithResource(res))
	return &Metrics{Provider: mp, Registry: reg}, nil
}

// Handler serves the metrics in the Prometheus text format.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.Registry, promhttp.HandlerOpts{})
}

// Shutdown stops the provider.
func (m *Metrics) Shutdown(ctx context.Context) error { return m.Provider.Shutdown(ctx) }
