package telemetry_test

import (
	"context"
	"crypto/rand"
	"fmt"
	"io"
	"log/slog"
	"testing"

	amqp091 "github.com/rabbitmq/amqp091-go"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/otel/propagation"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/harvesthub/hub"
	"github.com/harvesthub/hub/broker/amqp"
	"github.com/harvesthub/hub/internal/testenv"
)

// A trace crosses two hubs, each on its own RabbitMQ connection and with
// its own tracer provider: hub B's process span is a child of, and linked
// to, hub A's send span, through traceparent in the AMQP headers.
func TestTraceCrossesTwoHubsOverRabbitMQ(t *testing.T) {
	testenv.Require(t, "RabbitMQ", testenv.AMQPURL())
	var rb [6]byte
	_, _ = rand.Read(rb[:])
	topic := fmt.Sprintf("hubtest.trace.%x", rb)
	t.Cleanup(func() { deleteAMQPTopology(testenv.AMQPURL(), topic) })

	rec := tracetest.NewSpanRecorder()
	newHub := func() *hub.Hub {
		b, err := amqp.New(amqp.Config{URL: testenv.AMQPURL(), Transient: true})
		require.NoError(t, err)
		tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
		h, err := hub.New(b, hub.Config{TracerProvider: tp, Propagator: propagation.TraceContext{},
			Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
		require.NoError(t, err)
		t.Cleanup(func() {
			require.NoError(t, h.Close())
			require.NoError(t, b.Close())
			require.NoError(t, tp.Shutdown(context.Background()))
		})
		return h
	}
	a, b := newHub(), newHub()

	handled := make(chan hub.Message[Record], 1)
	require.NoError(t, hub.Handle(b, topic, func(ctx context.Context, m hub.Message[Record]) error {
		handled <- m
		return nil
	}))
	runCtx, stop := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- b.Run(runCtx) }()
	defer stop() // on failure, Close in the cleanup ends Run too
	<-b.Running()

	require.NoError(t, hub.Publish(context.Background(), a, topic, Record{ID: "r1"}, hub.WithID("trace-1")))
	m := <-handled
	require.Equal(t, "r1", m.Payload.ID)
	require.NotEmpty(t, m.Metadata.Get(hub.KeyTraceParent))
	stop()
	require.NoError(t, <-done)

	var send, process sdktrace.ReadOnlySpan
	for _, s := range rec.Ended() {
		switch s.Name() {
		case "send " + topic:
			send = s
		case "process " + topic:
			process = s
		}
	}
	require.NotNil(t, send, "hub A's send span")
	require.NotNil(t, process, "hub B's process span")
	require.Equal(t, "rabbitmq", spanAttrs(send)["messaging.system"])
	require.Equal(t, "trace-1", spanAttrs(process)["messaging.message.id"])
	require.Equal(t, send.SpanContext().TraceID(), process.SpanContext().TraceID(), "one trace")
	require.Equal(t, send.SpanContext().SpanID(), process.Parent().SpanID())
	require.True(t, process.Parent().IsRemote())
	require.Len(t, process.Links(), 1)
	require.Equal(t, send.SpanContext().SpanID(), process.Links()[0].SpanContext.SpanID())
}

// deleteAMQPTopology removes a test topic's exchange and queues.
func deleteAMQPTopology(url, topic string) {
	c, err := amqp091.Dial(url)
	if err != nil {
		return
	}
	defer c.Close()
	for _, q := range []string{topic, topic + "." + topic} {
		ch, err := c.Channel()
		if err != nil {
			return
		}
		_, _ = ch.QueueDelete(q, false, false, false)
		_ = ch.Close()
	}
	if ch, err := c.Channel(); err == nil {
		_ = ch.ExchangeDelete(topic, false, false)
		_ = ch.Close()
	}
}
