package kafka_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/harvesthub/hub/broker"
)

// TestQueues: a group's depth is its lag on the topic.
func TestQueues(t *testing.T) {
	addrs := newCluster(t)
	b := newBroker(t, addrs)
	ctx := context.Background()
	topic := unique("stats")

	_, err := b.Queues(ctx, topic)
	require.ErrorIs(t, err, broker.ErrUnknownTopic)

	require.NoError(t, b.Declare(ctx, topic, "g"))
	stats, err := b.Queues(ctx, topic)
	require.NoError(t, err)
	require.Empty(t, stats, "no group has joined yet")

	for i := range 5 {
		require.NoError(t, b.Publish(topic, msg(fmt.Sprint("m", i))))
	}
	sctx, cancel := context.WithCancel(ctx)
	ch, err := b.SubscribeGroup(sctx, topic, broker.Group{Name: "g"})
	require.NoError(t, err)
	for range 2 {
		receive(t, ch).Ack()
	}
	want := broker.QueueStats{Topic: topic, Group: "g", Queue: topic + "~g", Depth: 3, InFlight: -1, Consumers: 1}
	require.Eventually(t, func() bool {
		stats, err := b.Queues(ctx, topic)
		return err == nil && len(stats) == 1 && stats[0] == want
	}, 10*time.Second, 20*time.Millisecond)

	// The third message, delivered and unacked, still counts when the
	// subscription ends.
	m := receive(t, ch)
	cancel()
	m.Nack()
	require.Eventually(t, func() bool {
		stats, err := b.Queues(ctx, "")
		if err != nil {
			return false
		}
		for _, s := range stats {
			if s.Topic == topic {
				return s.Depth == 3 && s.Consumers == 0
			}
		}
		return false
	}, 10*time.Second, 20*time.Millisecond)
}
