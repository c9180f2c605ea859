package brokertest_test

import (
	"context"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/harvesthub/hub/broker"
	"github.com/harvesthub/hub/broker/amqp"
	"github.com/harvesthub/hub/broker/memory"
	"github.com/harvesthub/hub/broker/sqs"
	"github.com/harvesthub/hub/hubtest/brokertest"
	"github.com/harvesthub/hub/internal/testenv"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// The same hub-level delivery scenarios on every broker.

func TestMemory(t *testing.T) {
	// One memory broker stands for the server: the "new broker" of the
	// shutdown scenario is a second view on it.
	b, err := memory.New(memory.Config{MaxMessageSize: 1 << 20}) // a limit, as real brokers have
	require.NoError(t, err)
	t.Cleanup(func() { _ = b.Close() })
	brokertest.Run(t, brokertest.Config{NewBroker: func(t *testing.T) broker.Broker { return unclosable{b} }})
}

func TestRabbitMQ(t *testing.T) {
	testenv.Require(t, "RabbitMQ", testenv.AMQPURL())
	brokertest.Run(t, brokertest.Config{NewBroker: func(t *testing.T) broker.Broker {
		b, err := amqp.New(amqp.Config{URL: testenv.AMQPURL(), Logger: quiet()})
		require.NoError(t, err)
		return b
	}})
}

// TestRabbitMQQuorum runs the suite on quorum queues (every queue the
// adapter declares: group, dead-letter and delay queues).
func TestRabbitMQQuorum(t *testing.T) {
	testenv.Require(t, "RabbitMQ", testenv.AMQPURL())
	brokertest.Run(t, brokertest.Config{NewBroker: func(t *testing.T) broker.Broker {
		b, err := amqp.New(amqp.Config{URL: testenv.AMQPURL(), QueueType: amqp.QueueQuorum, Logger: quiet()})
		require.NoError(t, err)
		return b
	}})
}

func TestSQS(t *testing.T) {
	testenv.Require(t, "SQS emulator", testenv.SQSEndpoint())
	brokertest.Run(t, brokertest.Config{
		RedeliveryDelay: time.Second, // SQS delays in whole seconds
		NewBroker: func(t *testing.T) broker.Broker {
			b, err := sqs.New(context.Background(), sqs.Config{
				Endpoint:          testenv.SQSEndpoint(),
				Credentials:       &sqs.Credentials{AccessKeyID: "test", SecretAccessKey: "test"},
				WaitTime:          time.Second,
				VisibilityTimeout: 30 * time.Second,
				Logger:            quiet(),
			})
			require.NoError(t, err)
			return b
		},
	})
}

// unclosable lets the suite close its views without closing the shared
// memory broker.
type unclosable struct{ *memory.Broker }

func (unclosable) Close() error { return nil }

func quiet() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }
