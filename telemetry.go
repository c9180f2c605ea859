package hub

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"sync"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
	tracenoop "go.opentelemetry.io/otel/trace/noop"

	"github.com/harvesthub/hub/retry"
)

const instrumentationName = "github.com/harvesthub/hub"

// Attribute keys of the OpenTelemetry messaging semantic conventions, and
// the hub's own.
const (
	attrSystem        = attribute.Key("messaging.system")
	attrDestination   = attribute.Key("messaging.destination.name")
	attrConsumerGroup = attribute.Key("messaging.consumer.group.name")
	attrOperationName = attribute.Key("messaging.operation.name")
	attrOperationType = attribute.Key("messaging.operation.type")
	attrMessageID     = attribute.Key("messaging.message.id")
	attrBatchCount    = attribute.Key("messaging.batch.message_count")
	attrErrorType     = attribute.Key("error.type")
	attrOutcome       = attribute.Key("hub.outcome")
	attrAttempt       = attribute.Key("hub.attempt")
)

// durationBuckets are the bucket boundaries (seconds) the messaging
// semantic conventions recommend for duration histograms.
var durationBuckets = []float64{0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1, 2.5, 5, 7.5, 10}

var outcomes = [...]string{OutcomeAck, OutcomeRetry, OutcomeDelayed, OutcomeDLQ, OutcomeDuplicate, OutcomeSkipped}

// globalPkg is the package of OpenTelemetry's global providers before an
// application installs its own: delegates that record nothing until then.
const globalPkg = "go.opentelemetry.io/otel/internal/global"

// isUnsetGlobal reports whether tp is the global delegate, not yet set.
// (Once set, otel.GetTracerProvider returns the installed provider.)
func isUnsetGlobal(tp trace.TracerProvider) bool {
	t := reflect.TypeOf(tp)
	return t != nil && t.Kind() == reflect.Pointer && t.Elem().PkgPath() == globalPkg
}

// telemetry records the OpenTelemetry messaging metrics and spans.
//
// It costs nothing when no SDK is installed: metrics are skipped when the
// instruments report Enabled false (the global no-op delegates do until an
// SDK is installed with otel.SetMeterProvider, at any time), and spans when
// the tracer provider is a no-op one, or is the global provider while no
// SDK has been installed with otel.SetTracerProvider. Both checks run per
// message and cost an atomic load, so an SDK installed globally after New is
// picked up. Attribute sets are built once per handler and topic.
type telemetry struct {
	system     attribute.KeyValue
	tracer     trace.Tracer
	prop       propagation.TextMapPropagator
	traceOn    bool // a non-global, non-noop TracerProvider
	followsGTP bool // tracer is the global provider's
	processDur metric.Float64Histogram
	consumed   metric.Int64Counter
	sent       metric.Int64Counter
	opDur      metric.Float64Histogram
	inflight   metric.Int64UpDownCounter

	mu       sync.RWMutex
	topics   map[string]*topicTel
	handlers map[*handler]*handlerTel
}

func newTelemetry(cfg Config, system string) *telemetry {
	mp := cfg.MeterProvider
	if mp == nil {
		mp = otel.GetMeterProvider()
	}
	tp := cfg.TracerProvider
	t := &telemetry{
		system:   attrSystem.String(system),
		prop:     cfg.Propagator,
		topics:   make(map[string]*topicTel),
		handlers: make(map[*handler]*handlerTel),
	}
	if tp == nil {
		tp = otel.GetTracerProvider()
		t.followsGTP = isUnsetGlobal(tp)
	}
	t.traceOn = !t.followsGTP && !isNoopTracerProvider(tp)
	if t.prop == nil {
		t.prop = otel.GetTextMapPropagator()
	}
	t.tracer = tp.Tracer(instrumentationName)
	m := mp.Meter(instrumentationName)
	t.processDur, _ = m.Float64Histogram("messaging.process.duration", metric.WithUnit("s"),
		metric.WithDescription("Duration of processing one delivery: claim, handler attempts with in-process retries, and the ack, delayed retry or dead letter."),
		metric.WithExplicitBucketBoundaries(durationBuckets...))
	t.consumed, _ = m.Int64Counter("messaging.client.consumed.messages", metric.WithUnit("{message}"),
		metric.WithDescription("Messages delivered to a handler."))
	t.sent, _ = m.Int64Counter("messaging.client.sent.messages", metric.WithUnit("{message}"),
		metric.WithDescription("Messages the hub published (the broker accepted them)."))
	t.opDur, _ = m.Float64Histogram("messaging.client.operation.duration", metric.WithUnit("s"),
		metric.WithDescription("Duration of a publish, until the broker accepted it."),
		metric.WithExplicitBucketBoundaries(durationBuckets...))
	t.inflight, _ = m.Int64UpDownCounter("hub.handler.inflight", metric.WithUnit("{message}"),
		metric.WithDescription("Deliveries being processed now."))
	return t
}

func isNoopTracerProvider(tp trace.TracerProvider) bool {
	switch tp.(type) {
	case tracenoop.TracerProvider, *tracenoop.TracerProvider:
		return true
	}
	return false
}

// tracing reports whether spans may be recorded.
func (t *telemetry) tracing() bool {
	if t.followsGTP {
		gtp := otel.GetTracerProvider()
		return !isUnsetGlobal(gtp) && !isNoopTracerProvider(gtp)
	}
	return t.traceOn
}

// opts are precomputed measurement options for one attribute set.
type opts struct {
	add []metric.AddOption
	rec []metric.RecordOption
}

func newOpts(kvs ...attribute.KeyValue) opts {
	o := metric.WithAttributeSet(attribute.NewSet(kvs...))
	return opts{add: []metric.AddOption{o}, rec: []metric.RecordOption{o}}
}

// topicTel is what a publish to one topic records, built once.
type topicTel struct {
	spanName  string
	spanStart []trace.SpanStartOption
	ok        opts
	errMu     sync.RWMutex
	errs      map[string]opts // by error.type
	base      []attribute.KeyValue
}

func (t *telemetry) topic(topic string) *topicTel {
	t.mu.RLock()
	tt := t.topics[topic]
	t.mu.RUnlock()
	if tt != nil {
		return tt
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if tt = t.topics[topic]; tt != nil {
		return tt
	}
	base := []attribute.KeyValue{t.system, attrDestination.String(topic),
		attrOperationName.String("send"), attrOperationType.String("send")}
	tt = &topicTel{
		spanName:  "send " + topic,
		spanStart: []trace.SpanStartOption{trace.WithSpanKind(trace.SpanKindProducer), trace.WithAttributes(base...)},
		ok:        newOpts(base...),
		errs:      make(map[string]opts),
		base:      base,
	}
	t.topics[topic] = tt
	return tt
}

func (tt *topicTel) withError(errType string) opts {
	tt.errMu.RLock()
	o, ok := tt.errs[errType]
	tt.errMu.RUnlock()
	if ok {
		return o
	}
	o = newOpts(append(append([]attribute.KeyValue(nil), tt.base...), attrErrorType.String(errType))...)
	tt.errMu.Lock()
	tt.errs[errType] = o
	tt.errMu.Unlock()
	return o
}

// handlerTel is what processing for one handler records, built once.
type handlerTel struct {
	spanName  string
	spanStart []trace.SpanStartOption
	base      opts            // consumed and inflight
	outcome   map[string]opts // process.duration without error.type
	errMu     sync.RWMutex
	errs      map[[2]string]opts // by outcome, error.type
	baseKVs   []attribute.KeyValue
}

func (t *telemetry) handler(hd *handler) *handlerTel {
	t.mu.RLock()
	ht := t.handlers[hd]
	t.mu.RUnlock()
	if ht != nil {
		return ht
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if ht = t.handlers[hd]; ht != nil {
		return ht
	}
	base := []attribute.KeyValue{t.system, attrDestination.String(hd.topic),
		attrConsumerGroup.String(hd.name), attrOperationName.String("process")}
	ht = &handlerTel{
		spanName: "process " + hd.topic,
		spanStart: []trace.SpanStartOption{trace.WithSpanKind(trace.SpanKindConsumer),
			trace.WithAttributes(append(append([]attribute.KeyValue(nil), base...), attrOperationType.String("process"))...)},
		base:    newOpts(base...),
		outcome: make(map[string]opts, len(outcomes)),
		errs:    make(map[[2]string]opts),
		baseKVs: base,
	}
	for _, o := range outcomes {
		ht.outcome[o] = newOpts(append(append([]attribute.KeyValue(nil), base...), attrOutcome.String(o))...)
	}
	t.handlers[hd] = ht
	return ht
}

func (ht *handlerTel) opts(outcome, errType string) opts {
	if errType == "" {
		if o, ok := ht.outcome[outcome]; ok {
			return o
		}
	}
	k := [2]string{outcome, errType}
	ht.errMu.RLock()
	o, ok := ht.errs[k]
	ht.errMu.RUnlock()
	if ok {
		return o
	}
	kvs := append(append([]attribute.KeyValue(nil), ht.baseKVs...), attrOutcome.String(outcome))
	if errType != "" {
		kvs = append(kvs, attrErrorType.String(errType))
	}
	o = newOpts(kvs...)
	ht.errMu.Lock()
	ht.errs[k] = o
	ht.errMu.Unlock()
	return o
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

// publishObs is one publish being observed. Its zero value observes nothing.
type publishObs struct {
	t       *telemetry
	tt      *topicTel
	span    trace.Span
	start   time.Time
	metrics bool
}

// startPublish starts a "send <topic>" producer span, injects the trace
// context into the messages, and returns the observation to end.
func (t *telemetry) startPublish(ctx context.Context, topic string, msgs ...*message.Message) (context.Context, publishObs) {
	o := publishObs{t: t, metrics: t.sent.Enabled(ctx)}
	tracing := t.tracing()
	if !o.metrics && !tracing {
		// No SDK: still pass on a trace context the caller carries.
		if trace.SpanContextFromContext(ctx).IsValid() {
			for _, m := range msgs {
				t.prop.Inject(ctx, metadataCarrier(m.Metadata))
			}
		}
		return ctx, o
	}
	o.tt = t.topic(topic)
	o.start = time.Now()
	if tracing {
		ctx, o.span = t.tracer.Start(ctx, o.tt.spanName, o.tt.spanStart...)
		switch {
		case len(msgs) == 1:
			o.span.SetAttributes(attrMessageID.String(msgs[0].UUID))
		case len(msgs) > 1:
			o.span.SetAttributes(attrBatchCount.Int(len(msgs)))
		}
	}
	for _, m := range msgs {
		t.prop.Inject(ctx, metadataCarrier(m.Metadata))
	}
	return ctx, o
}

// end records a publish of n messages that ended with err.
func (o publishObs) end(ctx context.Context, n int, err error) {
	if o.tt == nil {
		return
	}
	var errType string
	if err != nil {
		errType = errorType(err)
	}
	if o.metrics {
		mo := o.tt.ok
		if err != nil {
			mo = o.tt.withError(errType)
		}
		o.t.opDur.Record(ctx, time.Since(o.start).Seconds(), mo.rec...)
		if err == nil {
			o.t.sent.Add(ctx, int64(n), mo.add...)
		}
	}
	if o.span != nil {
		if err != nil {
			o.span.SetAttributes(attrErrorType.String(errType))
			o.span.RecordError(err)
			o.span.SetStatus(codes.Error, err.Error())
		}
		o.span.End()
	}
}

// processObs is one delivery being observed. Its zero value observes
// nothing.
type processObs struct {
	t       *telemetry
	ht      *handlerTel
	span    trace.Span
	start   time.Time
	metrics bool
}

// startProcess starts a "process <topic>" consumer span, a child of the
// producer's context carried in msg and linked to it, and counts the
// delivery.
func (t *telemetry) startProcess(ctx context.Context, hd *handler, msg *message.Message) (context.Context, processObs) {
	o := processObs{t: t, metrics: t.consumed.Enabled(ctx), start: time.Now()}
	tracing := t.tracing()
	if o.metrics || tracing {
		o.ht = t.handler(hd)
	}
	if tracing {
		producer := trace.SpanContextFromContext(t.prop.Extract(ctx, metadataCarrier(msg.Metadata)))
		opts := make([]trace.SpanStartOption, 0, len(o.ht.spanStart)+2)
		opts = append(opts, o.ht.spanStart...)
		opts = append(opts, trace.WithAttributes(attrMessageID.String(msg.UUID)))
		if producer.IsValid() {
			opts = append(opts, trace.WithLinks(trace.Link{SpanContext: producer}))
			ctx = trace.ContextWithRemoteSpanContext(ctx, producer)
		}
		ctx, o.span = t.tracer.Start(ctx, o.ht.spanName, opts...)
	}
	if cid := msg.Metadata.Get(KeyCorrelationID); cid != "" {
		ctx = WithCorrelationID(ctx, cid)
	}
	if o.metrics {
		t.inflight.Add(ctx, 1, o.ht.base.add...)
		t.consumed.Add(ctx, 1, o.ht.base.add...)
	}
	return ctx, o
}

// end records the delivery's outcome; err is the last failure, if any.
func (o processObs) end(ctx context.Context, outcome string, err error) {
	if o.ht == nil {
		return
	}
	var errType string
	if err != nil && outcome != OutcomeAck && outcome != OutcomeDuplicate {
		errType = errorType(err)
	}
	if o.metrics {
		o.t.inflight.Add(ctx, -1, o.ht.base.add...)
		o.t.processDur.Record(ctx, time.Since(o.start).Seconds(), o.ht.opts(outcome, errType).rec...)
	}
	if o.span != nil {
		o.span.SetAttributes(attrOutcome.String(outcome))
		if errType != "" {
			o.span.SetAttributes(attrErrorType.String(errType))
			o.span.SetStatus(codes.Error, err.Error())
		}
		o.span.End()
	}
}

// skipped counts a delivery addressed to another handler's group.
func (t *telemetry) skipped(ctx context.Context, hd *handler) {
	if !t.consumed.Enabled(ctx) {
		return
	}
	ht := t.handler(hd)
	t.consumed.Add(ctx, 1, ht.base.add...)
	t.processDur.Record(ctx, 0, ht.outcome[OutcomeSkipped].rec...)
}

// event adds a span event (retry, delayed_retry, dead_letter) to the
// process span in ctx.
func (t *telemetry) event(ctx context.Context, name string, attempt int, err error) {
	span := trace.SpanFromContext(ctx)
	if !span.IsRecording() {
		return
	}
	attrs := []attribute.KeyValue{attrAttempt.Int(attempt)}
	if err != nil {
		attrs = append(attrs, attrErrorType.String(errorType(err)), attribute.String("exception.message", err.Error()))
	}
	span.AddEvent(name, trace.WithAttributes(attrs...))
}

// errorType is a low-cardinality error.type: "timeout" or "canceled" for
// context errors, "decode" and "decrypt" for payloads the hub cannot read,
// "panic" for a panicking handler, else the Go type of the innermost error
// that is not a plain wrapper, or "_OTHER" when that is an errors.New string.
func errorType(err error) string {
	var pe *PanicError
	switch {
	case err == nil:
		return ""
	case errors.Is(err, context.DeadlineExceeded):
		return "timeout"
	case errors.Is(err, context.Canceled):
		return "canceled"
	case errors.Is(err, ErrDecrypt):
		return "decrypt"
	case errors.Is(err, ErrDecode), errors.Is(err, ErrUnknownVersion), errors.Is(err, ErrSchemaMismatch):
		return "decode"
	case errors.As(err, &pe):
		return "panic"
	}
	cause := err
	for {
		switch cause.(type) {
		case *retry.PermanentError, *retry.AfterError:
		default:
			if !isPlainWrapper(cause) {
				return errTypeName(cause)
			}
		}
		next := errors.Unwrap(cause)
		if next == nil {
			return errTypeName(cause)
		}
		cause = next
	}
}

var (
	errSample = errors.New("")
	// plainWrappers add text to an error and nothing else.
	plainWrappers = map[reflect.Type]bool{
		reflect.TypeOf(fmt.Errorf("%w", errSample)):               true,
		reflect.TypeOf(fmt.Errorf("%w %w", errSample, errSample)): true,
		reflect.TypeOf(errors.Join(errSample, errSample)):         true,
	}
	errorsStringType = reflect.TypeOf(errSample)
	errTypeNames     sync.Map // reflect.Type -> string
)

func isPlainWrapper(err error) bool { return plainWrappers[reflect.TypeOf(err)] }

func errTypeName(err error) string {
	t := reflect.TypeOf(err)
	if t == errorsStringType || plainWrappers[t] {
		return "_OTHER"
	}
	if n, ok := errTypeNames.Load(t); ok {
		return n.(string)
	}
	n := typeName(err)
	errTypeNames.Store(t, n)
	return n
}
