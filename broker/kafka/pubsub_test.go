package kafka_test

import (
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/ThreeDotsLabs/watermill/pubsub/tests"
	"github.com/stretchr/testify/require"

	"context"
	"github.com/harvesthub/hub/broker"
	"github.com/harvesthub/hub/broker/kafka"
)

// groupSub subscribes a consumer group through Watermill's Subscriber
// interface.
type groupSub struct {
	*kafka.Broker
	group string
}

func (s groupSub) Subscribe(ctx context.Context, topic string) (<-chan *message.Message, error) {
	return s.SubscribeGroup(ctx, topic, broker.Group{Name: s.group})
}

// TestUniversal runs Watermill's universal Pub/Sub suite on kfake.
func TestUniversal(t *testing.T) {
	addrs := newCluster(t)
	newGroupPubSub := func(t *testing.T, group string) (message.Publisher, message.Subscriber) {
		tune := func(c *kafka.Config) { c.SessionTimeout = 2 * time.Second }
		pub, err := kafka.New(kafka.Config{Brokers: addrs, Partitions: 1, Logger: quiet})
		require.NoError(t, err)
		sub, err := kafka.New(func() kafka.Config {
			c := kafka.Config{Brokers: addrs, Partitions: 1, Logger: quiet, CommitInterval: 100 * time.Millisecond}
			tune(&c)
			return c
		}())
		require.NoError(t, err)
		t.Cleanup(func() { _ = pub.Close(); _ = sub.Close() })
		return pub, groupSub{sub, group}
	}
	newPubSub := func(t *testing.T) (message.Publisher, message.Subscriber) {
		return newGroupPubSub(t, "")
	}
	tests.TestPubSub(t, tests.Features{
		ConsumerGroups: true,
		// At least once: a nack, a moved partition or a closed subscriber
		// redeliver what was not acked.
		ExactlyOnceDelivery: false,
		// One partition (Partitions: 1 here), prefetch 1: Kafka's
		// per-partition order, a nacked message delivered again before the
		// next one. With more partitions order holds per key only.
		GuaranteedOrder:                     true,
		GuaranteedOrderWithSingleSubscriber: true,
		Persistent:                          true,
	}, newPubSub, newGroupPubSub)
}
