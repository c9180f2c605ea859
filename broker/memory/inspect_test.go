package memory_test

import (
	"context"
	"testing"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/stretchr/testify/require"

	"github.com/harvesthub/hub/broker"
	"github.com/harvesthub/hub/broker/memory"
)

func TestQueues(t *testing.T) {
	ctx := context.Background()
	b, err := memory.New(memory.Config{})
	require.NoError(t, err)
	defer b.Close()

	_, err = b.Queues(ctx, "nothing")
	require.ErrorIs(t, err, broker.ErrUnknownTopic)
	_, err = b.Queues(ctx, "nothing")
	require.ErrorIs(t, err, broker.ErrUnknownTopic, "asking must not create the topic")

	// Published before any group: the implicit backlog.
	for i := range 5 {
		require.NoError(t, b.Publish("jobs", message.NewMessage(string(rune('a'+i)), nil)))
	}
	qs, err := b.Queues(ctx, "jobs")
	require.NoError(t, err)
	require.Equal(t, []broker.QueueStats{{Topic: "jobs", Group: "", Queue: "(backlog)", Depth: 5, InFlight: 0, Consumers: 0}}, qs)

	// A group takes the backlog over; two messages out, unacked.
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	ch, err := b.SubscribeGroup(sctx, "jobs", broker.Group{Name: "index", Prefetch: 2})
	require.NoError(t, err)
	m1, m2 := <-ch, <-ch
	require.NoError(t, b.Declare(ctx, "jobs", "audit"))
	require.NoError(t, b.WaitStats(ctx, func(s memory.Stats) bool { return s.Group("jobs", "index").Unacked == 2 }))

	qs, err = b.Queues(ctx, "jobs")
	require.NoError(t, err)
	require.Equal(t, []broker.QueueStats{
		{Topic: "jobs", Group: "audit", Queue: "audit", Depth: 0, InFlight: 0, Consumers: 0},
		{Topic: "jobs", Group: "index", Queue: "index", Depth: 3, InFlight: 2, Consumers: 1},
	}, qs)

	m1.Ack()
	m2.Nack()
	// Each deliverer settles its message before it takes the next: once
	// two more are out, one is acked, two are held and two are queued.
	m3, m4 := <-ch, <-ch
	// The ack and the nack are settled by the deliverers asynchronously.
	require.NoError(t, b.WaitStats(ctx, func(s memory.Stats) bool {
		g := s.Group("jobs", "index")
		return g.Queued == 2 && g.Unacked == 2
	}))
	require.NoError(t, b.Publish("other", message.NewMessage("x", nil)))
	all, err := b.Queues(ctx, "")
	require.NoError(t, err)
	require.Len(t, all, 3)
	require.Equal(t, "index", all[1].Group)
	require.Equal(t, int64(2), all[1].Depth, "one acked, one nacked back, two out again")
	require.Equal(t, int64(2), all[1].InFlight)
	require.Equal(t, "other", all[2].Topic)

	m3.Ack()
	m4.Ack()
	cancel()
	for m := range ch {
		m.Nack()
	}
	require.NoError(t, b.Close())
	_, err = b.Queues(ctx, "jobs")
	require.ErrorIs(t, err, broker.ErrClosed)
}
