// Package natsbench compares the whole hub on NATS JetStream with
// Watermill's own NATS JetStream adapter (watermill-nats/v2), in one run,
// against the server at HUB_TEST_NATS_URL (default nats://127.0.0.1:4222).
// It is a module of its own so the baseline adapter stays out of every
// other module.
package natsbench

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"io"
	"log/slog"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	wmnats "github.com/ThreeDotsLabs/watermill-nats/v2/pkg/nats"
	"github.com/ThreeDotsLabs/watermill/message"
	natsgo "github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"

	"github.com/harvesthub/hub"
	hubnats "github.com/harvesthub/hub/broker/nats"
	"github.com/harvesthub/hub/internal/testenv"
)

const (
	payloadSize = 1024
	concurrency = 16
)

type record struct {
	ID   string `json:"id"`
	Body string `json:"body"`
}

func unique() string {
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// deleteStreams removes the streams whose names start with prefix.
func deleteStreams(b *testing.B, prefix string) {
	nc, err := natsgo.Connect(testenv.NATSURL())
	require.NoError(b, err)
	defer nc.Close()
	js, err := jetstream.New(nc)
	require.NoError(b, err)
	ctx := context.Background()
	names := js.StreamNames(ctx)
	var doomed []string
	for n := range names.Name() {
		if strings.HasPrefix(n, prefix) {
			doomed = append(doomed, n)
		}
	}
	for _, n := range doomed {
		_ = js.DeleteStream(ctx, n)
	}
}

// BenchmarkHub is the whole hub on JetStream: b.N records of 1 KB
// published with one hub.PublishBatch (asynchronous publishes, every ack
// awaited) while a hub.Handle with Concurrency(16) runs, so each message is
// claimed and completed in the memory idempotency store, decoded, handled
// and acked. File storage, one stream, one durable pull consumer.
func BenchmarkHub(b *testing.B) {
	testenv.Require(b, "NATS", testenv.NATSURL())
	prefix := "bench" + unique() + "_"
	defer deleteStreams(b, prefix)
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	br, err := hubnats.New(context.Background(), hubnats.Config{URL: testenv.NATSURL(), StreamPrefix: prefix, Logger: quiet})
	require.NoError(b, err)
	defer br.Close()
	h, err := hub.New(br, hub.Config{Logger: quiet})
	require.NoError(b, err)
	var handled atomic.Int64
	done := make(chan struct{})
	n := int64(b.N)
	require.NoError(b, hub.Handle(h, "records", func(ctx context.Context, m hub.Message[record]) error {
		if handled.Add(1) == n {
			close(done)
		}
		return nil
	}, hub.Concurrency(concurrency), hub.Name("worker")))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	runErr := make(chan error, 1)
	go func() { runErr <- h.Run(ctx) }()
	<-h.Running()
	recs := make([]record, b.N)
	for i := range recs {
		recs[i] = record{ID: "r", Body: strings.Repeat("x", payloadSize-20)}
	}
	b.ResetTimer()
	start := time.Now()
	require.NoError(b, hub.PublishBatch(ctx, h, "records", recs))
	published := time.Now()
	select {
	case <-done:
	case <-time.After(5 * time.Minute):
		b.Fatalf("handled %d of %d", handled.Load(), b.N)
	}
	end := time.Now()
	b.StopTimer()
	b.ReportMetric(float64(b.N)/end.Sub(start).Seconds(), "msg/s")
	b.ReportMetric(float64(b.N)/published.Sub(start).Seconds(), "pub-msg/s")
	cancel()
	require.NoError(b, <-runErr)
}

// BenchmarkWatermill is the baseline: watermill-nats/v2 with JetStream
// (auto-provisioned stream, durable queue-group subscription, Nats-Msg-Id
// tracking, explicit acks), b.N messages of 1 KB published with one
// Publish call while 16 subscribers of one queue group ack each message.
func BenchmarkWatermill(b *testing.B) {
	testenv.Require(b, "NATS", testenv.NATSURL())
	topic := "wmbench" + unique()
	defer deleteStreams(b, topic)
	logger := watermill.NopLogger{}
	js := wmnats.JetStreamConfig{
		AutoProvision: true,
		TrackMsgId:    true,
		DurablePrefix: "worker",
		SubscribeOptions: []natsgo.SubOpt{
			natsgo.DeliverAll(), natsgo.AckExplicit(),
		},
	}
	pub, err := wmnats.NewPublisher(wmnats.PublisherConfig{URL: testenv.NATSURL(), Marshaler: &wmnats.NATSMarshaler{}, JetStream: js}, logger)
	require.NoError(b, err)
	defer pub.Close()
	sub, err := wmnats.NewSubscriber(wmnats.SubscriberConfig{
		URL: testenv.NATSURL(), QueueGroupPrefix: "worker", SubscribersCount: concurrency,
		AckWaitTimeout: 30 * time.Second, Unmarshaler: &wmnats.NATSMarshaler{}, JetStream: js,
	}, logger)
	require.NoError(b, err)
	defer sub.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ch, err := sub.Subscribe(ctx, topic)
	require.NoError(b, err)
	msgs := make([]*message.Message, b.N)
	for i := range msgs {
		msgs[i] = message.NewMessage(watermill.NewUUID(), []byte(strings.Repeat("x", payloadSize)))
	}
	var handled atomic.Int64
	done := make(chan struct{})
	go func() {
		for m := range ch {
			m.Ack()
			if handled.Add(1) == int64(b.N) {
				close(done)
			}
		}
	}()
	b.ResetTimer()
	start := time.Now()
	require.NoError(b, pub.Publish(topic, msgs...))
	published := time.Now()
	select {
	case <-done:
	case <-time.After(5 * time.Minute):
		b.Fatalf("handled %d of %d", handled.Load(), b.N)
	}
	end := time.Now()
	b.StopTimer()
	b.ReportMetric(float64(b.N)/end.Sub(start).Seconds(), "msg/s")
	b.ReportMetric(float64(b.N)/published.Sub(start).Seconds(), "pub-msg/s")
}
