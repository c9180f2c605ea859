package hub

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/otel"
	metricnoop "go.opentelemetry.io/otel/metric/noop"
	"go.opentelemetry.io/otel/propagation"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	tracenoop "go.opentelemetry.io/otel/trace/noop"

	"github.com/harvesthub/hub/retry"
)

func telemetryAllocs(t *testing.T, tel *telemetry) (process, publish float64) {
	hd := &handler{name: "records", topic: "records"}
	msg := message.NewMessage("id-1", []byte("{}"))
	msg.Metadata.Set(KeyTraceParent, "00-4bf92f3577b34da6a3ce929b0e0e4736-00f067aa0ba902b7-01")
	ctx := context.Background()
	process = testing.AllocsPerRun(200, func() {
		pctx, o := tel.startProcess(ctx, hd, msg)
		o.end(pctx, OutcomeAck, nil)
	})
	out := []*message.Message{message.NewMessage("id-2", nil)}
	publish = testing.AllocsPerRun(200, func() {
		pctx, o := tel.startPublish(ctx, "jobs", out...)
		o.end(pctx, 1, nil)
	})
	return process, publish
}

// With no SDK installed, telemetry allocates nothing per message.
func TestTelemetryNoSDKAllocatesNothing(t *testing.T) {
	for name, cfg := range map[string]Config{
		"globals":        {},
		"noop providers": {MeterProvider: metricnoop.NewMeterProvider(), TracerProvider: tracenoop.NewTracerProvider()},
	} {
		t.Run(name, func(t *testing.T) {
			tel := newTelemetry(cfg, "memory")
			require.False(t, tel.tracing())
			process, publish := telemetryAllocs(t, tel)
			require.Zero(t, process, "allocations per processed message")
			require.Zero(t, publish, "allocations per published message")
		})
	}
}

// With an SDK, the attribute sets are cached: the metrics add nothing per
// message and the spans little.
func TestTelemetrySDKAllocations(t *testing.T) {
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(sdkmetric.NewManualReader()))
	defer func() { require.NoError(t, mp.Shutdown(context.Background())) }()
	metricsOnly := newTelemetry(Config{MeterProvider: mp, TracerProvider: tracenoop.NewTracerProvider()}, "memory")
	process, publish := telemetryAllocs(t, metricsOnly)
	require.Zero(t, process, "metrics only, per processed message")
	require.Zero(t, publish, "metrics only, per published message")

	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(tracetest.NewSpanRecorder()))
	defer func() { require.NoError(t, tp.Shutdown(context.Background())) }()
	both := newTelemetry(Config{MeterProvider: mp, TracerProvider: tp, Propagator: propagation.TraceContext{}}, "memory")
	process, publish = telemetryAllocs(t, both)
	t.Logf("metrics and traces: %v allocs per processed message, %v per publish", process, publish)
	require.LessOrEqual(t, process, 30.0) // most are the SDK span itself
	require.LessOrEqual(t, publish, 15.0)
}

// An SDK installed globally after New is picked up by hubs on the globals.
func TestTelemetryFollowsGlobalProviders(t *testing.T) {
	if !isUnsetGlobal(otel.GetTracerProvider()) {
		t.Skip("the global providers were set by an earlier run in this process (-count > 1); OpenTelemetry delegates only once")
	}
	tel := newTelemetry(Config{}, "memory")
	require.False(t, tel.tracing())
	require.False(t, tel.consumed.Enabled(context.Background()))

	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(sdkmetric.NewManualReader()))
	otel.SetTracerProvider(tp)
	otel.SetMeterProvider(mp)
	defer func() {
		otel.SetTracerProvider(tracenoop.NewTracerProvider())
		otel.SetMeterProvider(metricnoop.NewMeterProvider())
		require.NoError(t, tp.Shutdown(context.Background()))
		require.NoError(t, mp.Shutdown(context.Background()))
	}()
	require.True(t, tel.tracing())
	require.True(t, tel.consumed.Enabled(context.Background()))
	ctx, o := tel.startPublish(context.Background(), "records", message.NewMessage("m", nil))
	o.end(ctx, 1, nil)
	require.Len(t, rec.Ended(), 1)
	require.Equal(t, "send records", rec.Ended()[0].Name())
}

type codeError struct{}

func (codeError) Error() string { return "code" }

func TestErrorTypeIsLowCardinality(t *testing.T) {
	tests := []struct {
		err  error
		want string
	}{
		{context.DeadlineExceeded, "timeout"},
		{fmt.Errorf("call: %w", context.Canceled), "canceled"},
		{fmt.Errorf("%w: key k1: bad tag", ErrDecrypt), "decrypt"},
		{fmt.Errorf("%w: bad json", ErrDecode), "decode"},
		{retry.Permanent(&PanicError{Value: 1}), "panic"},
		{retry.Permanent(fmt.Errorf("wrapped: %w", codeError{})), "github.com/harvesthub/hub.codeError"},
		{retry.AfterErr(1, &codeError{}), "github.com/harvesthub/hub.codeError"},
		{errors.New("message " + "with an id 42"), "_OTHER"},
		{fmt.Errorf("no wrap %d", 42), "_OTHER"},
		{errors.Join(codeError{}, codeError{}), "_OTHER"},
	}
	for _, tc := range tests {
		require.Equal(t, tc.want, errorType(tc.err), "%v", tc.err)
	}
}
