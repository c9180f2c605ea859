package hub

import (
	"context"
	"errors"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
)

const instrumentationName = "github.com/harvesthub/hub"

// telemetry records the OpenTelemetry messaging metrics and spans.
type telemetry struct {
	system     attribute.KeyValue
	tracer     trace.Tracer
	prop       propagation.TextMapPropagator
	processDur metric.Float64Histogram
	consumed   metric.Int64Counter
	sent       metric.Int64Counter
	opDur      metric.Float64Histogram
	inflight   metric.Int64UpDownCounter
}

func newTelemetry(cfg Config, system string) *telemetry {
	mp := cfg.MeterProvider
	if mp == nil {
		mp = otel.GetMeterProvider()
	}
	tp := cfg.TracerProvider
	if tp == nil {
		tp = otel.GetTracerProvider()
	}
	prop := cfg.Propagator
	if prop == nil {
		prop = otel.GetTextMapPropagator()
	}
	m := mp.Meter(instrumentationName)
	t := &telemetry{
		system: attribute.String("messaging.system", system),
		tracer: tp.Tracer(instrumentationName),
		prop:   prop,
	}
	t.processDur, _ = m.Float64Histogram("messaging.process.duration", metric.WithUnit("s"),
		metric.WithDescription("Duration of processing one message, retries included."))
	t.consumed, _ = m.Int64Counter("messaging.client.consumed.messages", metric.WithUnit("{message}"),
		metric.WithDescription("Messages delivered to a handler."))
	t.sent, _ = m.Int64Counter("messaging.client.sent.messages", metric.WithUnit("{message}"),
		metric.WithDescription("Messages the hub published."))
	t.opDur, _ = m.Float64Histogram("messaging.client.operation.duration", metric.WithUnit("s"),
		metric.WithDescription("Duration of a publish."))
	t.inflight, _ = m.Int64UpDownCounter("hub.handler.inflight", metric.WithUnit("{message}"),
		metric.WithDescription("Messages being handled now."))
	return t
}

type metadataCarrier message.Metadata

func (c metadataCarrier) Get(k string) string { return message.Metadata(c).Get(k) }
func (c metadataCarrier) Set(k, v string)     { message.Metadata(c).Set(k, v) }
func (c metadataCarrier) Keys() []string {
	keys := make([]string, 0, len(c))
	for k := range c {
		keys = append(keys, k)
	}
	return keys
}

// startPublish starts a "send <topic>" producer span, injects its context
// into the messages, and returns a func recording the outcome.
func (t *telemetry) startPublish(ctx context.Context, topic string, msgs ...*message.Message) (context.Context, func(n int, err error)) {
	start := time.Now()
	ctx, span := t.tracer.Start(ctx, "send "+topic, trace.WithSpanKind(trace.SpanKindProducer),
		trace.WithAttributes(t.system, attribute.String("messaging.destination.name", topic),
			attribute.String("messaging.operation.type", "send")))
	for _, m := range msgs {
		t.prop.Inject(ctx, metadataCarrier(m.Metadata))
	}
	return ctx, func(n int, err error) {
		attrs := []attribute.KeyValue{t.system, attribute.String("messaging.destination.name", topic),
			attribute.String("messaging.operation.name", "send")}
		if err != nil {
			attrs = append(attrs, attribute.String("error.type", errorType(err)))
			span.RecordError(err)
			span.SetStatus(codes.Error, err.Error())
		}
		set := metric.WithAttributes(attrs...)
		t.opDur.Record(ctx, time.Since(start).Seconds(), set)
		if err == nil {
			t.sent.Add(ctx, int64(n), set)
		}
		span.End()
	}
}

// startProcess starts a "process <topic>" consumer span linked to the
// producer's context carried in msg.
func (t *telemetry) startProcess(ctx context.Context, hd *handler, msg *message.Message) (context.Context, func(outcome string, err error)) {
	start := time.Now()
	producer := trace.SpanContextFromContext(t.prop.Extract(context.Background(), metadataCarrier(msg.Metadata)))
	opts := []trace.SpanStartOption{trace.WithSpanKind(trace.SpanKindConsumer),
		trace.WithAttributes(t.system, attribute.String("messaging.destination.name", hd.topic),
			attribute.String("messaging.consumer.group.name", hd.name),
			attribute.String("messaging.operation.type", "process"),
			attribute.String("messaging.message.id", msg.UUID))}
	if producer.IsValid() {
		opts = append(opts, trace.WithLinks(trace.Link{SpanContext: producer}))
		ctx = trace.ContextWithRemoteSpanContext(ctx, producer)
	}
	ctx, span := t.tracer.Start(ctx, "process "+hd.topic, opts...)
	if cid := msg.Metadata.Get(KeyCorrelationID); cid != "" {
		ctx = WithCorrelationID(ctx, cid)
	}
	base := []attribute.KeyValue{t.system, attribute.String("messaging.destination.name", hd.topic),
		attribute.String("messaging.consumer.group.name", hd.name)}
	t.inflight.Add(ctx, 1, metric.WithAttributes(base...))
	t.consumed.Add(ctx, 1, metric.WithAttributes(base...))
	return ctx, func(outcome string, err error) {
		t.inflight.Add(ctx, -1, metric.WithAttributes(base...))
		attrs := append(base, attribute.String("hub.outcome", outcome))
		if err != nil && outcome != OutcomeAck {
			attrs = append(attrs, attribute.String("error.type", errorType(err)))
			span.SetStatus(codes.Error, err.Error())
		}
		span.SetAttributes(attribute.String("hub.outcome", outcome))
		t.processDur.Record(ctx, time.Since(start).Seconds(), metric.WithAttributes(attrs...))
		span.End()
	}
}

// event adds a span event (retry, delayed_retry, dead_letter).
func (t *telemetry) event(ctx context.Context, name string, hd *handler, attempt int, err error) {
	span := trace.SpanFromContext(ctx)
	if !span.IsRecording() {
		return
	}
	attrs := []attribute.KeyValue{attribute.Int("hub.attempt", attempt)}
	if err != nil {
		attrs = append(attrs, attribute.String("exception.message", err.Error()))
	}
	span.AddEvent(name, trace.WithAttributes(attrs...))
}

// errorType is a low-cardinality error.type: the error's Go type.
func errorType(err error) string {
	switch {
	case err == nil:
		return ""
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return "context"
	}
	return typeName(err)
}
