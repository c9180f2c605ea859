package sqs_test

import (
	"context"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/stretchr/testify/require"

	"github.com/harvesthub/hub/broker"
)

func TestQueues(t *testing.T) {
	cfg := testConfig(t)
	b := newBroker(t, cfg)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var _ broker.Inspector = b
	const topic = "jobs.dlq"

	_, err := b.Queues(ctx, topic)
	require.ErrorIs(t, err, broker.ErrUnknownTopic)
	_, err = b.Queues(ctx, topic)
	require.ErrorIs(t, err, broker.ErrUnknownTopic, "asking must not create the queue")
	all, err := b.Queues(ctx, "")
	require.NoError(t, err)
	require.Empty(t, all)

	const n = 5
	for range n {
		require.NoError(t, b.Publish(topic, message.NewMessage("m", []byte("x"))))
	}
	require.NoError(t, b.Declare(ctx, topic, "index.v2"))
	qs, err := b.Queues(ctx, topic)
	require.NoError(t, err)
	require.Len(t, qs, 2)
	require.Regexp(t, "^"+cfg.QueuePrefix+"jobs_dlq-[0-9a-f]{8}$", qs[0].Queue)
	qs[0].Queue = ""
	require.Equal(t, broker.QueueStats{Topic: topic, Group: topic, Depth: n, InFlight: 0, Consumers: -1}, qs[0])
	require.Equal(t, topic, qs[1].Topic)
	require.Equal(t, "index_v2", qs[1].Group)
	require.Zero(t, qs[1].Depth, "declared after the publishes")

	sctx, stop := context.WithCancel(ctx)
	ch, err := b.SubscribeGroup(sctx, topic, broker.Group{Prefetch: 2})
	require.NoError(t, err)
	m1, m2 := <-ch, <-ch
	qs, err = b.Queues(ctx, topic)
	require.NoError(t, err)
	require.Equal(t, int64(n-2), qs[0].Depth)
	require.Equal(t, int64(2), qs[0].InFlight)

	all, err = b.Queues(ctx, "")
	require.NoError(t, err)
	require.Len(t, all, 2)

	m1.Ack()
	m2.Ack()
	stop()
	for m := range ch {
		m.Nack()
	}
	require.NoError(t, b.Close())
	_, err = b.Queues(ctx, topic)
	require.ErrorIs(t, err, broker.ErrClosed)
}
