package sqs_test

import (
	"testing"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/ThreeDotsLabs/watermill/pubsub/tests"
)

// TestPubSub runs Watermill's universal Pub/Sub suite against the emulator.
func TestPubSub(t *testing.T) {
	cfg := testConfig(t)
	tests.TestPubSub(t,
		tests.Features{
			ConsumerGroups:      true,
			ExactlyOnceDelivery: false,
			GuaranteedOrder:     false,
			Persistent:          true,
		},
		func(t *testing.T) (message.Publisher, message.Subscriber) {
			return newBroker(t, cfg), newBroker(t, cfg)
		},
		func(t *testing.T, group string) (message.Publisher, message.Subscriber) {
			return newBroker(t, cfg), groupSubscriber{b: newBroker(t, cfg), group: group}
		},
	)
}
