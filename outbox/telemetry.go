package outbox

import (
	"context"
	"fmt"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
)

// telemetry holds the outbox's OpenTelemetry instruments:
//
//   - hub.outbox.pending (gauge, {row}): committed rows not yet published;
//   - hub.outbox.oldest_age (gauge, s): age of the oldest pending row;
//   - hub.outbox.relay.lag (histogram, s): from a row's insert to its publish;
//   - messaging.client.sent.messages (counter): messages the relay
//     published, with messaging.system, messaging.destination.name and
//     error.type on failures.
//
// Every instrument carries hub.outbox.table. The two gauges query the table
// when the SDK collects (one query, bounded by 5s).
type telemetry struct {
	lag     metric.Float64Histogram
	sentCtr metric.Int64Counter
	system  string
	table   attribute.KeyValue
	reg     metric.Registration
}

const statsTimeout = 5 * time.Second

func newTelemetry(o *Outbox) (*telemetry, error) {
	m := o.cfg.MeterProvider.Meter("github.com/harvesthub/hub/outbox")
	t := &telemetry{system: o.h.Broker().Name(), table: attribute.String("hub.outbox.table", o.name)}
	var err error
	if t.lag, err = m.Float64Histogram("hub.outbox.relay.lag", metric.WithUnit("s"),
		metric.WithDescription("Time from a row's insert to its publish by the relay.")); err != nil {
		return nil, fmt.Errorf("outbox: metrics: %w", err)
	}
	if t.sentCtr, err = m.Int64Counter("messaging.client.sent.messages", metric.WithUnit("{message}"),
		metric.WithDescription("Messages the outbox relay published.")); err != nil {
		return nil, fmt.Errorf("outbox: metrics: %w", err)
	}
	pending, err := m.Int64ObservableGauge("hub.outbox.pending", metric.WithUnit("{row}"),
		metric.WithDescription("Committed outbox rows not yet published."))
	if err != nil {
		return nil, fmt.Errorf("outbox: metrics: %w", err)
	}
	oldest, err := m.Float64ObservableGauge("hub.outbox.oldest_age", metric.WithUnit("s"),
		metric.WithDescription("Age of the oldest outbox row not yet published."))
	if err != nil {
		return nil, fmt.Errorf("outbox: metrics: %w", err)
	}
	set := metric.WithAttributes(t.table)
	t.reg, err = m.RegisterCallback(func(ctx context.Context, obs metric.Observer) error {
		ctx, cancel := context.WithTimeout(ctx, statsTimeout)
		defer cancel()
		s, err := o.Stats(ctx)
		if err != nil {
			return err
		}
		obs.ObserveInt64(pending, s.Pending, set)
		obs.ObserveFloat64(oldest, s.OldestAge.Seconds(), set)
		return nil
	}, pending, oldest)
	if err != nil {
		return nil, fmt.Errorf("outbox: metrics: %w", err)
	}
	return t, nil
}

func (t *telemetry) close() error { return t.reg.Unregister() }

// relayed records the lags (seconds, on the database clock) of rows just
// marked sent.
func (t *telemetry) relayed(ctx context.Context, lags []float64) {
	if !t.lag.Enabled(ctx) {
		return
	}
	set := metric.WithAttributes(t.table)
	for _, l := range lags {
		t.lag.Record(ctx, l, set)
	}
}

// sent counts one broker publish of n messages to topic.
func (t *telemetry) sent(ctx context.Context, topic string, n int, err error) {
	attrs := []attribute.KeyValue{
		t.table,
		attribute.String("messaging.system", t.system),
		attribute.String("messaging.destination.name", topic),
	}
	if err != nil {
		attrs = append(attrs, attribute.String("error.type", "publish_failed"))
	}
	t.sentCtr.Add(ctx, int64(n), metric.WithAttributes(attrs...))
}
