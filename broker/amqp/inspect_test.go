package amqp_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	amqp091 "github.com/rabbitmq/amqp091-go"
	"github.com/stretchr/testify/require"

	"github.com/harvesthub/hub/broker"
	"github.com/harvesthub/hub/broker/amqp"
	"github.com/harvesthub/hub/internal/testenv"
)

// inspectTopic returns a topic unique to this test and deletes its exchange
// and the queues named at the end of t.
func inspectTopic(t *testing.T, url string, groups ...string) string {
	t.Helper()
	var rb [4]byte
	_, _ = rand.Read(rb[:])
	topic := "hubtest.inspect." + hex.EncodeToString(rb[:])
	t.Cleanup(func() {
		c, err := amqp091.Dial(url)
		if err != nil {
			return
		}
		defer c.Close()
		ch, err := c.Channel()
		if err != nil {
			return
		}
		defer ch.Close()
		_ = ch.ExchangeDelete(topic, false, false)
		_, _ = ch.QueueDelete(topic, false, false, false)
		for _, g := range groups {
			_, _ = ch.QueueDelete(topic+"."+g, false, false, false)
		}
	})
	return topic
}

func TestQueues(t *testing.T) {
	testenv.Require(t, "RabbitMQ", testenv.AMQPURL())
	url := testenv.AMQPURL()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	topic := inspectTopic(t, url, "index")
	b, err := amqp.New(amqp.Config{URL: url})
	require.NoError(t, err)
	defer b.Close()

	var _ broker.Inspector = b
	_, err = b.Queues(ctx, topic)
	require.ErrorIs(t, err, broker.ErrUnknownTopic)
	_, err = b.Queues(ctx, topic)
	require.ErrorIs(t, err, broker.ErrUnknownTopic, "asking must not declare the queue")
	_, err = b.Queues(ctx, "")
	require.ErrorIs(t, err, errors.ErrUnsupported)

	const n = 5
	for range n {
		require.NoError(t, b.Publish(topic, message.NewMessage("m", []byte("x"))))
	}
	require.NoError(t, b.Declare(ctx, topic, "index"))
	qs, err := b.Queues(ctx, topic)
	require.NoError(t, err)
	require.Equal(t, []broker.QueueStats{{Topic: topic, Group: topic, Queue: topic, Depth: n, InFlight: -1, Consumers: 0}}, qs)

	sctx, stop := context.WithCancel(ctx)
	ch, err := b.SubscribeGroup(sctx, topic, broker.Group{Prefetch: 2})
	require.NoError(t, err)
	m1, m2 := <-ch, <-ch
	qs, err = b.GroupQueues(ctx, topic, "", "index")
	require.NoError(t, err)
	require.Equal(t, []broker.QueueStats{
		{Topic: topic, Group: topic, Queue: topic, Depth: n - 2, InFlight: -1, Consumers: 1},
		{Topic: topic, Group: "index", Queue: topic + ".index", Depth: 0, InFlight: -1, Consumers: 0},
	}, qs, "two delivered and unacked are not ready; the group declared after the publishes is empty")

	_, err = b.GroupQueues(ctx, topic, "nobody")
	require.ErrorIs(t, err, broker.ErrUnknownTopic)
	require.ErrorContains(t, err, topic+".nobody")

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
