package brokertest

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/stretchr/testify/require"

	"github.com/harvesthub/hub/broker"
)

// Broker-level rows: what the hub relies on from the adapter alone.

// publishContextEnds: a publish with a context already done returns its
// error (never nil, never a wait), and the broker goes on.
func (s suite) publishContextEnds(t *testing.T) {
	b := s.cfg.NewBroker(t)
	t.Cleanup(func() { require.NoError(t, b.Close()) })
	topic := unique("ctx")
	if d, ok := b.(broker.Declarer); ok {
		require.NoError(t, d.Declare(context.Background(), topic))
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	start := time.Now()
	err := broker.PublishContext(ctx, b, topic, message.NewMessage(watermill.NewUUID(), []byte("x")))
	require.ErrorIs(t, err, context.Canceled)
	require.Less(t, time.Since(start), s.cfg.Timeout)

	ok, cancelOK := context.WithTimeout(context.Background(), s.cfg.Timeout)
	defer cancelOK()
	require.NoError(t, broker.PublishContext(ok, b, topic, message.NewMessage(watermill.NewUUID(), []byte("y"))))
}

// oversizeRefused: a message over the broker's size limit is refused
// before sending with an error wrapping broker.ErrMessageTooLarge, and a
// subscriber on the same broker keeps receiving. Skipped for a broker
// without a limit.
func (s suite) oversizeRefused(t *testing.T) {
	b := s.cfg.NewBroker(t)
	t.Cleanup(func() { require.NoError(t, b.Close()) })
	sl, ok := b.(broker.SizeLimiter)
	if !ok || sl.MaxMessageSize() == 0 {
		t.Skip("the broker has no message size limit")
	}
	topic := unique("size")
	ctx, cancel := context.WithTimeout(context.Background(), s.cfg.Timeout)
	defer cancel()
	msgs, err := b.SubscribeGroup(ctx, topic, broker.Group{Name: "g"})
	require.NoError(t, err)

	big := message.NewMessage(watermill.NewUUID(), []byte(strings.Repeat("x", sl.MaxMessageSize()+1)))
	err = broker.PublishContext(ctx, b, topic, big)
	require.ErrorIs(t, err, broker.ErrMessageTooLarge)

	small := message.NewMessage(watermill.NewUUID(), []byte("small"))
	require.NoError(t, broker.PublishContext(ctx, b, topic, small))
	select {
	case m := <-msgs:
		require.Equal(t, small.UUID, m.UUID, "the oversize message was not sent")
		m.Ack()
	case <-ctx.Done():
		t.Fatal("the subscriber stopped receiving after an oversize publish")
	}
}
