package sqs_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/harvesthub/hub/broker"
	"github.com/harvesthub/hub/broker/sqs"
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

// prefix returns a queue prefix unique to one test.
func prefix() string {
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	return "t" + hex.EncodeToString(b) + "-"
}

// testConfig is a configuration for the emulator with short waits.
func testConfig(t testing.TB) sqs.Config {
	t.Helper()
	testenv.Require(t, "SQS emulator", testenv.SQSEndpoint())
	return sqs.Config{
		Endpoint:          testenv.SQSEndpoint(),
		Credentials:       &sqs.Credentials{AccessKeyID: "test", SecretAccessKey: "test"},
		QueuePrefix:       prefix(),
		WaitTime:          time.Second,
		VisibilityTimeout: 2 * time.Second,
	}
}

func newBroker(t testing.TB, cfg sqs.Config) *sqs.Broker {
	t.Helper()
	b, err := sqs.New(context.Background(), cfg)
	require.NoError(t, err)
	t.Cleanup(func() { _ = b.Close() })
	return b
}

// groupSubscriber subscribes to one consumer group.
type groupSubscriber struct {
	b     *sqs.Broker
	group string
}

func (g groupSubscriber) Subscribe(ctx context.Context, topic string) (<-chan *message.Message, error) {
	return g.b.SubscribeGroup(ctx, topic, broker.Group{Name: g.group, Prefetch: 10})
}

func (g groupSubscriber) Close() error { return g.b.Close() }
