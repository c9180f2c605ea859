package amqp_test

import (
	"context"
	"testing"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/ThreeDotsLabs/watermill/pubsub/tests"
	"github.com/stretchr/testify/require"

	"github.com/harvesthub/hub/broker"
	"github.com/harvesthub/hub/broker/amqp"
)

// groupSubscriber subscribes a broker's consumer group through Watermill's
// Subscriber interface, for the consumer-group part of the suite.
type groupSubscriber struct {
	*amqp.Broker
	group string
}

func (g groupSubscriber) Subscribe(ctx context.Context, topic string) (<-chan *message.Message, error) {
	return g.SubscribeGroup(ctx, topic, broker.Group{Name: g.group})
}

// TestUniversal runs Watermill's universal Pub/Sub suite, its reconnect test
// included, against the private node (which the reconnect test restarts).
func TestUniversal(t *testing.T) {
	node.require(t)
	url := node.url()
	// The suite closes the publisher and goes on using the subscriber: two
	// brokers, as Watermill adapters have a publisher and a subscriber.
	// Some of its tests never close a subscriber (TestPublishSubscribeInOrder
	// defers sub.Close() evaluated at once): every broker is also closed at
	// the end of its test.
	newBrokers := func(t *testing.T) (pub, sub *amqp.Broker) {
		pub, err := amqp.New(amqp.Config{URL: url})
		require.NoError(t, err)
		sub, err = amqp.New(amqp.Config{URL: url})
		require.NoError(t, err)
		t.Cleanup(func() { _ = pub.Close(); _ = sub.Close() })
		return pub, sub
	}
	newPubSub := func(t *testing.T) (message.Publisher, message.Subscriber) {
		return newBrokers(t)
	}
	newGroupPubSub := func(t *testing.T, group string) (message.Publisher, message.Subscriber) {
		pub, sub := newBrokers(t)
		return pub, groupSubscriber{sub, group}
	}
	var restart []string
	if !raceEnabled {
		restart = node.command("restart")
	}
	tests.TestPubSub(t, tests.Features{
		ConsumerGroups: true,
		// At least once: a nack, a lost connection or a closed subscriber
		// redeliver.
		ExactlyOnceDelivery: false,
		// One queue, one consumer, prefetch 1 (the default): RabbitMQ's FIFO
		// order, a nacked message requeued at its position.
		GuaranteedOrder:                     true,
		GuaranteedOrderWithSingleSubscriber: true,
		Persistent:                          true,
		// Watermill v1.5.1's TestReconnect races on its own slice of
		// published messages (test_pubsub.go:1086 against :1120), so the
		// race detector fails it whatever the adapter does: it runs in the
		// test binary built without -race; TestRestartMidStream covers
		// restarts under -race.
		RestartServiceCommand: restart,
	}, newPubSub, newGroupPubSub)
}
