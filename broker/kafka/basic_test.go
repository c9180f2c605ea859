package kafka_test

import (
	"context"
	"log/slog"
	"os"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/harvesthub/hub/broker"
	"github.com/harvesthub/hub/broker/kafka"
)

func TestPublishSubscribe(t *testing.T) {
	addrs := newCluster(t)
	b := newBroker(t, addrs, func(c *kafka.Config) { c.Logger = slog.New(slog.NewTextHandler(os.Stderr, nil)) })
	topic := unique("basic")
	require.NoError(t, b.Publish(topic, msg("a")))
	ch, err := b.SubscribeGroup(context.Background(), topic, broker.Group{Name: "g"})
	require.NoError(t, err)
	m := receive(t, ch)
	require.Equal(t, "a", m.UUID)
	m.Ack()
}
