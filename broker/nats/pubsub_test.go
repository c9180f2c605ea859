package nats_test

import (
	"testing"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/ThreeDotsLabs/watermill/pubsub/tests"
)

// TestPubSub runs Watermill's universal Pub/Sub suite against the server.
func TestPubSub(t *testing.T) {
	cfg := testConfig(t)
	tests.TestPubSub(t,
		tests.Features{
			ConsumerGroups: true,
			// At least once: a nack, a lost connection or a closed
			// subscriber redeliver.
			ExactlyOnceDelivery: false,
			// A nacked message is delivered again after the ones behind it.
			GuaranteedOrder: false,
			Persistent:      true,
		},
		func(t *testing.T) (message.Publisher, message.Subscriber) {
			return newBroker(t, cfg), groupSubscriber{b: newBroker(t, cfg)}
		},
		func(t *testing.T, group string) (message.Publisher, message.Subscriber) {
			return newBroker(t, cfg), groupSubscriber{b: newBroker(t, cfg), group: group}
		},
	)
}
