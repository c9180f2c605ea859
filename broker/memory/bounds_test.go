package memory_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/stretchr/testify/require"

	"github.com/harvesthub/hub/broker"
	"github.com/harvesthub/hub/broker/memory"
)

// A topic nobody consumes (a dead-letter topic, a Pipe output) keeps every
// message published to it without blocking its publisher: the hub's dead
// letters must never wedge the queue they come from.
func TestImplicitBacklogNeverBlocks(t *testing.T) {
	t.Parallel()
	b := newBroker(t, memory.Config{QueueSize: 2})
	topic := topicName(t) + ".dlq"
	const n = 10 // five times QueueSize
	for i := range n {
		m := newMsg(string(rune('a' + i)))
		ctx, cancel := context.WithTimeout(t.Context(), waitTimeout)
		m.SetContext(ctx) // bounds the old, blocking behaviour
		err := b.Publish(topic, m)
		cancel()
		require.NoError(t, err, "publish %d to a topic with no group", i)
	}
	require.Equal(t, n, b.Stats().Groups[0].Queued)

	// The first group takes the whole backlog over, in order.
	ch, err := b.Subscribe(t.Context(), topic)
	require.NoError(t, err)
	for i := range n {
		m := receive(t, ch)
		require.Equal(t, string(rune('a'+i)), string(m.Payload))
		m.Ack()
	}
	require.NoError(t, b.WaitIdle(testCtx(t)))
}

func TestPublishContext(t *testing.T) {
	t.Parallel()

	t.Run("full queue: returns when ctx ends, earlier messages kept", func(t *testing.T) {
		t.Parallel()
		b := newBroker(t, memory.Config{QueueSize: 1})
		topic := topicName(t)
		require.NoError(t, b.Declare(t.Context(), topic, "g"))
		ctx, cancel := context.WithTimeout(t.Context(), 50*time.Millisecond)
		defer cancel()
		start := time.Now()
		err := b.PublishContext(ctx, topic, newMsg("1"), newMsg("2"))
		require.ErrorIs(t, err, context.DeadlineExceeded)
		require.Contains(t, err.Error(), topic)
		require.Less(t, time.Since(start), waitTimeout)
		s := b.Stats().Group(topic, "g")
		require.Equal(t, 1, s.Queued, "the first message is queued")
		require.Zero(t, s.Waiting, "no publisher left waiting")
	})

	t.Run("full queue: ignores the message context", func(t *testing.T) {
		t.Parallel()
		b := newBroker(t, memory.Config{QueueSize: 1})
		topic := topicName(t)
		require.NoError(t, b.Declare(t.Context(), topic, "g"))
		require.NoError(t, b.Publish(topic, newMsg("1")))
		ctx, cancel := context.WithCancel(t.Context())
		done := make(chan error, 1)
		m := newMsg("2")
		go func() { done <- b.PublishContext(ctx, topic, m) }()
		waitStats(t, b, func(s memory.Stats) bool { return s.Group(topic, "g").Waiting == 1 })
		cancel()
		require.ErrorIs(t, <-done, context.Canceled)
	})

	t.Run("room: publishes", func(t *testing.T) {
		t.Parallel()
		b := newBroker(t, memory.Config{})
		topic := topicName(t)
		ch, err := b.Subscribe(t.Context(), topic)
		require.NoError(t, err)
		require.NoError(t, b.PublishContext(t.Context(), topic, newMsg("x")))
		require.Equal(t, "x", string(receive(t, ch).Payload))
	})

	t.Run("cancelled before: nothing published", func(t *testing.T) {
		t.Parallel()
		b := newBroker(t, memory.Config{})
		topic := topicName(t)
		require.NoError(t, b.Declare(t.Context(), topic))
		ctx, cancel := context.WithCancel(t.Context())
		cancel()
		require.ErrorIs(t, b.PublishContext(ctx, topic, newMsg("x")), context.Canceled)
		require.Zero(t, b.Stats().Group(topic, "").Queued)
	})

	t.Run("after Close", func(t *testing.T) {
		t.Parallel()
		b, err := memory.New(memory.Config{})
		require.NoError(t, err)
		require.NoError(t, b.Close())
		require.ErrorIs(t, b.PublishContext(t.Context(), "t", newMsg("x")), broker.ErrClosed)
	})

	t.Run("helper uses it", func(t *testing.T) {
		t.Parallel()
		b := newBroker(t, memory.Config{QueueSize: 1})
		topic := topicName(t)
		require.NoError(t, b.Declare(t.Context(), topic))
		require.NoError(t, b.Publish(topic, newMsg("1")))
		ctx, cancel := context.WithTimeout(t.Context(), 20*time.Millisecond)
		defer cancel()
		require.ErrorIs(t, broker.PublishContext(ctx, b, topic, newMsg("2")), context.DeadlineExceeded)
	})
}

func TestMaxMessageSize(t *testing.T) {
	t.Parallel()
	const limit = 100
	sized := func(n int) *message.Message {
		m := message.NewMessage("id", nil)
		m.Metadata.Set("k", "v")
		m.Payload = []byte(strings.Repeat("p", n-broker.MessageSize(m)))
		require.Equal(t, n, broker.MessageSize(m))
		return m
	}
	tests := []struct {
		name    string
		limit   int
		size    int
		refused bool
	}{
		{name: "at the limit", limit: limit, size: limit},
		{name: "one byte over", limit: limit, size: limit + 1, refused: true},
		{name: "far over", limit: limit, size: 10 * limit, refused: true},
		{name: "no limit", limit: 0, size: 1 << 20},
	}
	publishers := []struct {
		name    string
		publish func(b *memory.Broker, topic string, msgs ...*message.Message) error
	}{
		{"Publish", func(b *memory.Broker, topic string, msgs ...*message.Message) error { return b.Publish(topic, msgs...) }},
		{"PublishContext", func(b *memory.Broker, topic string, msgs ...*message.Message) error {
			return b.PublishContext(context.Background(), topic, msgs...)
		}},
		{"PublishDelayed", func(b *memory.Broker, topic string, msgs ...*message.Message) error {
			return b.PublishDelayed(context.Background(), topic, "", time.Hour, msgs...)
		}},
	}
	for _, tt := range tests {
		for _, p := range publishers {
			t.Run(tt.name+"/"+p.name, func(t *testing.T) {
				t.Parallel()
				b := newBroker(t, memory.Config{MaxMessageSize: tt.limit})
				require.Equal(t, tt.limit, b.MaxMessageSize())
				topic := topicName(t)
				require.NoError(t, b.Declare(t.Context(), topic))
				// A small message first: a refusal takes the whole call.
				err := p.publish(b, topic, sized(50), sized(tt.size))
				s := b.Stats()
				queued := s.Group(topic, "").Queued + s.Delayed
				if !tt.refused {
					require.NoError(t, err)
					require.Equal(t, 2, queued)
					return
				}
				require.ErrorIs(t, err, broker.ErrMessageTooLarge)
				require.Contains(t, err.Error(), topic)
				require.Zero(t, queued, "nothing of a refused call is published")
				// The broker goes on.
				require.NoError(t, p.publish(b, topic, sized(limit)))
			})
		}
	}
}
