package hub_test

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"

	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/propagation"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/harvesthub/hub"
	"github.com/harvesthub/hub/hubtest"
	"github.com/harvesthub/hub/retry"
)

// upstreamError is a handler error with a type of its own, to check error.type.
type upstreamError struct{ code int }

func (e *upstreamError) Error() string { return fmt.Sprintf("upstream answered %d", e.code) }

type telemetryRig struct {
	reader *sdkmetric.ManualReader
	spans  *tracetest.SpanRecorder
	th     *hubtest.Harness
}

func newTelemetryRig(t *testing.T) *telemetryRig {
	r := &telemetryRig{reader: sdkmetric.NewManualReader(), spans: tracetest.NewSpanRecorder()}
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(r.reader))
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(r.spans))
	t.Cleanup(func() {
		require.NoError(t, mp.Shutdown(context.Background()))
		require.NoError(t, tp.Shutdown(context.Background()))
	})
	r.th = hubtest.New(t, hubtest.WithConfig(func(c *hub.Config) {
		c.MeterProvider = mp
		c.TracerProvider = tp
		c.Propagator = propagation.TraceContext{}
	}))
	return r
}

func (r *telemetryRig) metrics(t *testing.T) map[string]metricdata.Metrics {
	t.Helper()
	var rm metricdata.ResourceMetrics
	require.NoError(t, r.reader.Collect(context.Background(), &rm))
	out := map[string]metricdata.Metrics{}
	for _, sm := range rm.ScopeMetrics {
		require.Equal(t, "github.com/harvesthub/hub", sm.Scope.Name)
		for _, m := range sm.Metrics {
			out[m.Name] = m
		}
	}
	return out
}

func attrs(set attribute.Set) map[string]string {
	out := map[string]string{}
	for _, kv := range set.ToSlice() {
		out[string(kv.Key)] = kv.Value.String()
	}
	return out
}

// runOutcomes drives one message to each outcome: ack, duplicate, delayed
// (then ack), retry (a nack: the dead-letter publish fails once) then dlq,
// and an in-process retry that succeeds.
func runOutcomes(t *testing.T, r *telemetryRig) {
	th := r.th
	var delayCalls, flakyCalls atomic.Int32
	require.NoError(t, hub.Handle(th.Hub, "records", func(ctx context.Context, m hub.Message[Record]) error {
		switch m.Payload.ID {
		case "perm":
			return retry.Permanent(&upstreamError{code: 400})
		case "delay":
			if delayCalls.Add(1) <= 3 { // every in-process attempt of the first delivery
				return &upstreamError{code: 503}
			}
		case "flaky":
			if flakyCalls.Add(1) == 1 {
				return &upstreamError{code: 502}
			}
		}
		return nil
	}))
	th.Start()
	th.FailPublishes(th.Hub.DeadLetterTopic("records"), 1, nil)
	ctx := context.Background()
	for _, id := range []string{"ok", "delay", "perm", "flaky"} {
		require.NoError(t, hub.Publish(ctx, th.Hub, "records", Record{ID: id}, hub.WithID("id-"+id)))
	}
	require.NoError(t, hub.Publish(ctx, th.Hub, "records", Record{ID: "dup"}, hub.WithKey("k-dup"), hub.WithID("id-dup-1")))
	th.Settle(t)
	require.NoError(t, hub.Publish(ctx, th.Hub, "records", Record{ID: "dup"}, hub.WithKey("k-dup"), hub.WithID("id-dup-2")))
	th.Settle(t)
	require.Len(t, th.DeadLetters("records"), 1)
}

func TestTelemetryMetrics(t *testing.T) {
	r := newTelemetryRig(t)
	runOutcomes(t, r)
	ms := r.metrics(t)

	process := ms["messaging.process.duration"]
	require.Equal(t, "s", process.Unit)
	hist, ok := process.Data.(metricdata.Histogram[float64])
	require.True(t, ok, "%T", process.Data)
	perOutcome := map[string]uint64{}
	errTypes := map[string]string{}
	for _, dp := range hist.DataPoints {
		a := attrs(dp.Attributes)
		require.Equal(t, "memory", a["messaging.system"])
		require.Equal(t, "records", a["messaging.destination.name"])
		require.Equal(t, "records", a["messaging.consumer.group.name"])
		require.Equal(t, "process", a["messaging.operation.name"])
		require.NotContains(t, a, "messaging.message.id", "no per-message attributes on metrics")
		perOutcome[a["hub.outcome"]] += dp.Count
		if e := a["error.type"]; e != "" {
			errTypes[a["hub.outcome"]] = e
		}
	}
	// ok, flaky (after an in-process retry), delay (second delivery), the
	// first dup; the second dup; delay's first delivery; perm's failed
	// dead-letter publish; perm.
	require.Equal(t, map[string]uint64{"ack": 4, "duplicate": 1, "delayed": 1, "retry": 1, "dlq": 1}, perOutcome)
	require.Equal(t, map[string]string{
		"delayed": "github.com/harvesthub/hub_test.upstreamError",
		"dlq":     "github.com/harvesthub/hub_test.upstreamError",
		"retry":   "_OTHER", // hubtest's injected publish failure is an errors.New
	}, errTypes)

	consumed := ms["messaging.client.consumed.messages"].Data.(metricdata.Sum[int64])
	require.True(t, consumed.IsMonotonic)
	var n int64
	for _, dp := range consumed.DataPoints {
		require.Equal(t, "process", attrs(dp.Attributes)["messaging.operation.name"])
		n += dp.Value
	}
	require.EqualValues(t, 8, n)

	// Per destination: hub.Publish six times and one delayed retry to
	// records; one dead letter to records.dlq (its first publish failed).
	sent := ms["messaging.client.sent.messages"].Data.(metricdata.Sum[int64])
	sentBy := map[string]int64{}
	for _, dp := range sent.DataPoints {
		a := attrs(dp.Attributes)
		require.Equal(t, "send", a["messaging.operation.name"])
		require.Equal(t, "send", a["messaging.operation.type"])
		require.Equal(t, "memory", a["messaging.system"])
		require.NotContains(t, a, "error.type")
		sentBy[a["messaging.destination.name"]] += dp.Value
	}
	require.Equal(t, map[string]int64{"records": 7, "records.dlq": 1}, sentBy)

	op := ms["messaging.client.operation.duration"].Data.(metricdata.Histogram[float64])
	opBy := map[string]uint64{}
	for _, dp := range op.DataPoints {
		a := attrs(dp.Attributes)
		opBy[a["messaging.destination.name"]+" "+a["error.type"]] += dp.Count
	}
	require.Equal(t, map[string]uint64{"records ": 7, "records.dlq ": 1, "records.dlq _OTHER": 1}, opBy)

	inflight := ms["hub.handler.inflight"].Data.(metricdata.Sum[int64])
	require.False(t, inflight.IsMonotonic)
	require.Len(t, inflight.DataPoints, 1)
	require.EqualValues(t, 0, inflight.DataPoints[0].Value, "nothing in flight once settled")
}

func spanAttrs(s sdktrace.ReadOnlySpan) map[string]string {
	out := map[string]string{}
	for _, kv := range s.Attributes() {
		out[string(kv.Key)] = kv.Value.String()
	}
	return out
}

func TestTelemetrySpans(t *testing.T) {
	r := newTelemetryRig(t)
	runOutcomes(t, r)

	sends := map[trace.SpanID]sdktrace.ReadOnlySpan{}
	var dlqSends []sdktrace.ReadOnlySpan
	processes := map[string][]sdktrace.ReadOnlySpan{} // by message id
	processByID := map[trace.SpanID]sdktrace.ReadOnlySpan{}
	for _, s := range r.spans.Ended() {
		a := spanAttrs(s)
		switch s.Name() {
		case "send records", "send records.dlq":
			require.Equal(t, trace.SpanKindProducer, s.SpanKind())
			require.Equal(t, "send", a["messaging.operation.type"])
			require.Equal(t, "memory", a["messaging.system"])
			require.NotEmpty(t, a["messaging.message.id"])
			sends[s.SpanContext().SpanID()] = s
			if s.Name() == "send records.dlq" {
				dlqSends = append(dlqSends, s)
			}
		case "process records":
			require.Equal(t, trace.SpanKindConsumer, s.SpanKind())
			require.Equal(t, "process", a["messaging.operation.type"])
			require.Equal(t, "records", a["messaging.consumer.group.name"])
			processes[a["messaging.message.id"]] = append(processes[a["messaging.message.id"]], s)
			processByID[s.SpanContext().SpanID()] = s
		default:
			t.Fatalf("unexpected span %q", s.Name())
		}
	}
	require.Len(t, sends, 9, "six publishes, one delayed retry, two dead-letter publishes")
	for id, ps := range processes {
		for _, p := range ps {
			send := sends[p.Parent().SpanID()]
			require.NotNil(t, send, "%s: the process span is a child of a send span", id)
			require.Equal(t, id, spanAttrs(send)["messaging.message.id"])
			require.Equal(t, send.SpanContext().TraceID(), p.SpanContext().TraceID(), "%s: one trace", id)
			require.Len(t, p.Links(), 1)
			require.Equal(t, send.SpanContext(), p.Links()[0].SpanContext.WithRemote(false), "%s: linked to send", id)
		}
	}
	// The delayed retry is sent from inside the first process span: the
	// second delivery's trace runs through the first.
	delayed := processes["id-delay"]
	require.Len(t, delayed, 2)
	retrySend := sends[delayed[1].Parent().SpanID()]
	require.Equal(t, delayed[0].SpanContext().SpanID(), retrySend.Parent().SpanID())
	// Dead-letter publishes are children of the process span; the failed
	// one is marked.
	require.Len(t, dlqSends, 2)
	for _, s := range dlqSends {
		require.Contains(t, processByID, s.Parent().SpanID())
	}
	require.Equal(t, "Error", dlqSends[0].Status().Code.String())
	require.Equal(t, "_OTHER", spanAttrs(dlqSends[0])["error.type"])
	require.Equal(t, "Unset", dlqSends[1].Status().Code.String())
	outcomeOf := func(id string) []string {
		var out []string
		for _, p := range processes[id] {
			out = append(out, spanAttrs(p)["hub.outcome"])
		}
		return out
	}
	require.Equal(t, []string{"ack"}, outcomeOf("id-ok"))
	require.Equal(t, []string{"delayed", "ack"}, outcomeOf("id-delay"))
	require.Equal(t, []string{"retry", "dlq"}, outcomeOf("id-perm"))
	require.Equal(t, []string{"duplicate"}, outcomeOf("id-dup-2"))

	events := func(s sdktrace.ReadOnlySpan) []string {
		var out []string
		for _, e := range s.Events() {
			out = append(out, e.Name)
		}
		return out
	}
	require.Equal(t, []string{"retry"}, events(processes["id-flaky"][0]))
	require.Equal(t, []string{"retry", "retry", "delayed_retry"}, events(processes["id-delay"][0]))
	require.Empty(t, events(processes["id-delay"][1]))
	dl := processes["id-perm"][1]
	require.Equal(t, []string{"dead_letter"}, events(dl))
	ev := dl.Events()[0]
	evAttrs := map[string]string{}
	for _, kv := range ev.Attributes {
		evAttrs[string(kv.Key)] = kv.Value.String()
	}
	require.Equal(t, "github.com/harvesthub/hub_test.upstreamError", evAttrs["error.type"])
	require.Contains(t, evAttrs["exception.message"], "upstream answered 400")
	require.Equal(t, "Error", dl.Status().Code.String())
	require.Equal(t, "Unset", processes["id-ok"][0].Status().Code.String())
}

// A Pipe's outputs are sent from inside the process span: their send span
// is its child, so a trace runs through every hop.
func TestTelemetryPipeContinuesTheTrace(t *testing.T) {
	r := newTelemetryRig(t)
	th := r.th
	require.NoError(t, hub.Pipe(th.Hub, "records", "jobs", func(ctx context.Context, m hub.Message[Record]) ([]IndexJob, error) {
		return []IndexJob{{RecordID: m.Payload.ID}}, nil
	}))
	require.NoError(t, hub.Handle(th.Hub, "jobs", func(ctx context.Context, m hub.Message[IndexJob]) error { return nil }))
	th.Start()
	hubtest.Send(t, th, "records", Record{ID: "r1"})
	th.Settle(t)
	byName := map[string]sdktrace.ReadOnlySpan{}
	for _, s := range r.spans.Ended() {
		byName[s.Name()] = s
	}
	require.Len(t, byName, 4)
	trace := byName["send records"].SpanContext().TraceID()
	for _, s := range byName {
		require.Equal(t, trace, s.SpanContext().TraceID(), s.Name())
	}
	require.Equal(t, byName["process records"].SpanContext().SpanID(), byName["send jobs"].Parent().SpanID())
	require.Equal(t, byName["send jobs"].SpanContext().SpanID(), byName["process jobs"].Parent().SpanID())
}

// The handler's context carries the consumed message's correlation ID, so
// what it publishes carries it on.
func TestCorrelationIDFlowsIntoHandlerContext(t *testing.T) {
	th := hubtest.New(t)
	require.NoError(t, hub.Handle(th.Hub, "records", func(ctx context.Context, m hub.Message[Record]) error {
		return hub.Publish(ctx, th.Hub, "jobs", IndexJob{RecordID: m.Payload.ID})
	}))
	th.Start()
	ctx := hub.WithCorrelationID(context.Background(), "req-9")
	require.NoError(t, hub.Publish(ctx, th.Hub, "records", Record{ID: "r1"}))
	th.Settle(t)
	jobs := th.Messages("jobs")
	require.Len(t, jobs, 1)
	require.Equal(t, "req-9", jobs[0].Metadata.Get(hub.KeyCorrelationID))
}
