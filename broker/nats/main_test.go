package nats_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	natsgo "github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/harvesthub/hub/broker"
	"github.com/harvesthub/hub/broker/nats"
	"github.com/harvesthub/hub/internal/testenv"
)

// Watermill's universal suite leaves the goroutines of its subscriber
// multiplier (TestConcurrentSubscribe) blocked on a channel nobody reads
// after the test: they belong to its harness, not to this adapter.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m,
		goleak.IgnoreAnyFunction("github.com/ThreeDotsLabs/watermill/internal/subscriber.(*multiplier).Subscribe.func2"),
		goleak.IgnoreAnyFunction("github.com/ThreeDotsLabs/watermill/internal/subscriber.(*multiplier).Subscribe.func3"),
	)
}

// randomPrefix returns a stream prefix unique to one test.
func randomPrefix() string {
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	return "t" + hex.EncodeToString(b) + "_"
}

func quiet() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// testConfig is a configuration for the test server with a stream prefix
// of t's own; every stream with it is deleted when t ends.
func testConfig(t testing.TB) nats.Config {
	t.Helper()
	testenv.Require(t, "NATS", testenv.NATSURL())
	cfg := nats.Config{
		URL:          testenv.NATSURL(),
		StreamPrefix: randomPrefix(),
		PollWait:     time.Second,
		Logger:       quiet(),
	}
	t.Cleanup(func() { deleteStreams(t, cfg.StreamPrefix) })
	return cfg
}

// deleteStreams removes every stream whose name starts with prefix.
func deleteStreams(t testing.TB, prefix string) {
	nc, err := natsgo.Connect(testenv.NATSURL())
	if err != nil {
		t.Logf("cleanup: %v", err)
		return
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Logf("cleanup: %v", err)
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	names := js.StreamNames(ctx)
	var doomed []string
	for n := range names.Name() {
		if strings.HasPrefix(n, prefix) {
			doomed = append(doomed, n)
		}
	}
	for _, n := range doomed {
		if err := js.DeleteStream(ctx, n); err != nil {
			t.Logf("cleanup: delete stream %s: %v", n, err)
		}
	}
}

func newBroker(t testing.TB, cfg nats.Config) *nats.Broker {
	t.Helper()
	b, err := nats.New(context.Background(), cfg)
	require.NoError(t, err)
	t.Cleanup(func() { _ = b.Close() })
	return b
}

// groupSubscriber subscribes to one consumer group.
type groupSubscriber struct {
	b     *nats.Broker
	group string
}

func (g groupSubscriber) Subscribe(ctx context.Context, topic string) (<-chan *message.Message, error) {
	return g.b.SubscribeGroup(ctx, topic, broker.Group{Name: g.group, Prefetch: 16})
}

func (g groupSubscriber) Close() error { return g.b.Close() }

// receive waits for one message on ch.
func receive(t testing.TB, ch <-chan *message.Message) *message.Message {
	t.Helper()
	select {
	case m, ok := <-ch:
		require.True(t, ok, "subscription closed")
		return m
	case <-time.After(15 * time.Second):
		t.Fatal("no message within 15s")
		return nil
	}
}
