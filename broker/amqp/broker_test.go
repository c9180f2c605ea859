package amqp_test

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/stretchr/testify/require"

	"github.com/harvesthub/hub/broker"
	"github.com/harvesthub/hub/broker/amqp"
)

const waitFor = 15 * time.Second

func newMessages(n int, prefix string) []*message.Message {
	msgs := make([]*message.Message, n)
	for i := range msgs {
		msgs[i] = message.NewMessage(watermill.NewUUID(), []byte(fmt.Sprintf("%s-%d", prefix, i)))
	}
	return msgs
}

// receive reads n messages from ch, acking each, and returns their UUIDs.
func receive(t *testing.T, ch <-chan *message.Message, n int) []string {
	t.Helper()
	var ids []string
	timeout := time.After(waitFor)
	for len(ids) < n {
		select {
		case m, ok := <-ch:
			require.True(t, ok, "subscription closed after %d of %d messages", len(ids), n)
			ids = append(ids, m.UUID)
			m.Ack()
		case <-timeout:
			t.Fatalf("received %d of %d messages", len(ids), n)
		}
	}
	return ids
}

func uuids(msgs []*message.Message) []string {
	ids := make([]string, len(msgs))
	for i, m := range msgs {
		ids[i] = m.UUID
	}
	return ids
}

func TestPublishBeforeSubscribeIsKept(t *testing.T) {
	url := sharedURL(t)
	topic := uniqueTopic(t, url)
	b := newBroker(t, amqp.Config{URL: url})

	msgs := newMessages(5, "early")
	msgs[0].Metadata.Set("hub-key", "k1")
	msgs[0].Metadata.Set("correlation_id", "c1")
	require.NoError(t, b.Publish(topic, msgs...))
	require.Equal(t, 5, queueDepth(t, url, topic), "the default group's queue holds them")

	sub, err := b.Subscribe(context.Background(), topic)
	require.NoError(t, err)
	var got []*message.Message
	for range 5 {
		m := <-sub
		got = append(got, m)
		m.Ack()
	}
	require.ElementsMatch(t, uuids(msgs), uuids(got))
	for _, m := range got {
		if m.UUID == msgs[0].UUID {
			require.Equal(t, "k1", m.Metadata.Get("hub-key"))
			require.Equal(t, "c1", m.Metadata.Get("correlation_id"))
			require.Equal(t, "early-0", string(m.Payload))
			require.Empty(t, m.Metadata.Get("hub-delivery-count"), "first delivery")
		}
	}
}

func TestGroupsEachGetEveryMessage(t *testing.T) {
	url := sharedURL(t)
	topic := uniqueTopic(t, url)
	cleanupQueues(topic, topic+".a", topic+".b")
	b := newBroker(t, amqp.Config{URL: url})
	ctx := context.Background()

	require.NoError(t, b.Declare(ctx, topic, "a", "b"))
	msgs := newMessages(20, "m")
	require.NoError(t, b.Publish(topic, msgs...))

	a, err := b.SubscribeGroup(ctx, topic, broker.Group{Name: "a", Prefetch: 4})
	require.NoError(t, err)
	bb, err := b.SubscribeGroup(ctx, topic, broker.Group{Name: "b"})
	require.NoError(t, err)
	require.ElementsMatch(t, uuids(msgs), receive(t, a, 20))
	require.ElementsMatch(t, uuids(msgs), receive(t, bb, 20))
}

func TestCompetingConsumers(t *testing.T) {
	url := sharedURL(t)
	topic := uniqueTopic(t, url)
	cleanupQueues(topic, topic+".workers")
	// Two brokers stand for two processes.
	b1 := newBroker(t, amqp.Config{URL: url})
	b2 := newBroker(t, amqp.Config{URL: url})
	ctx := context.Background()
	g := broker.Group{Name: "workers", Prefetch: 1}
	s1, err := b1.SubscribeGroup(ctx, topic, g)
	require.NoError(t, err)
	s2, err := b2.SubscribeGroup(ctx, topic, g)
	require.NoError(t, err)

	const n = 200
	msgs := newMessages(n, "job")
	require.NoError(t, b1.Publish(topic, msgs...))

	var mu sync.Mutex
	got := map[string]int{}
	per := [2]int{}
	var wg sync.WaitGroup
	done := make(chan struct{})
	for i, s := range []<-chan *message.Message{s1, s2} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case m := <-s:
					mu.Lock()
					got[m.UUID]++
					per[i]++
					total := len(got)
					mu.Unlock()
					m.Ack()
					if total == n {
						close(done)
					}
				case <-done:
					return
				}
			}
		}()
	}
	select {
	case <-done:
	case <-time.After(waitFor):
		t.Fatal("not every message was consumed")
	}
	wg.Wait()
	require.Len(t, got, n)
	for id, c := range got {
		require.Equal(t, 1, c, "message %s delivered twice", id)
	}
	require.Positive(t, per[0], "both consumers get work")
	require.Positive(t, per[1], "both consumers get work")
	require.Equal(t, 0, queueDepth(t, url, topic+".workers"))
}

func TestDelayedToOneGroup(t *testing.T) {
	url := sharedURL(t)
	topic := uniqueTopic(t, url)
	delayQ := "hub.delay.1s." + topic + ".a"
	cleanupQueues(topic, topic+".a", topic+".b", delayQ)
	ctx := context.Background()

	// Publish and close: nothing in this process holds the delayed message.
	b1, err := amqp.New(amqp.Config{URL: url})
	require.NoError(t, err)
	require.NoError(t, b1.Declare(ctx, topic, "a", "b"))
	msg := message.NewMessage(watermill.NewUUID(), []byte("retry me"))
	msg.Metadata.Set("hub-attempt", "2")
	start := time.Now()
	require.NoError(t, b1.PublishDelayed(ctx, topic, "a", 700*time.Millisecond, msg))
	require.NoError(t, b1.Close())

	// The TTL queue holds it, until it dead-letters to a's queue. (It may
	// already be gone if this test machine is slow: then a's queue has it.)
	depth := queueDepth(t, url, delayQ)
	require.True(t, depth == 1 || time.Since(start) > 900*time.Millisecond, "delay queue depth %d", depth)

	b2 := newBroker(t, amqp.Config{URL: url})
	a, err := b2.SubscribeGroup(ctx, topic, broker.Group{Name: "a"})
	require.NoError(t, err)
	select {
	case m := <-a:
		require.Equal(t, msg.UUID, m.UUID)
		require.Equal(t, "2", m.Metadata.Get("hub-attempt"))
		require.GreaterOrEqual(t, time.Since(start), time.Second, "rounded up to the 1s tier")
		m.Ack()
	case <-time.After(waitFor):
		t.Fatal("delayed message not delivered to group a")
	}
	require.Equal(t, 0, queueDepth(t, url, topic+".b"), "group b does not see a retry of group a")
	require.LessOrEqual(t, queueDepth(t, url, topic), 0, "nor does the default group")
	require.Equal(t, 0, queueDepth(t, url, delayQ))
}

func TestDelayedToEveryGroup(t *testing.T) {
	url := sharedURL(t)
	topic := uniqueTopic(t, url)
	cleanupQueues(topic, topic+".a", topic+".b", "hub.delay.125ms.exchange."+topic)
	ctx := context.Background()
	b := newBroker(t, amqp.Config{URL: url})
	require.NoError(t, b.Declare(ctx, topic, "a", "b"))
	msg := message.NewMessage(watermill.NewUUID(), []byte("later"))
	require.NoError(t, b.PublishDelayed(ctx, topic, "", 100*time.Millisecond, msg))
	for _, g := range []string{"a", "b", ""} {
		sctx, cancel := context.WithCancel(ctx)
		s, err := b.SubscribeGroup(sctx, topic, broker.Group{Name: g})
		require.NoError(t, err)
		require.Equal(t, []string{msg.UUID}, receive(t, s, 1), "group %q", g)
		cancel()
		for range s { // until the subscription has stopped
		}
	}
	// Zero delay goes straight to the group.
	now := message.NewMessage(watermill.NewUUID(), nil)
	require.NoError(t, b.PublishDelayed(ctx, topic, "b", 0, now))
	require.Equal(t, 1, queueDepth(t, url, topic+".b"))
	require.Equal(t, 0, queueDepth(t, url, topic+".a"))
}

func TestDelayTier(t *testing.T) {
	tests := []struct {
		in   time.Duration
		want time.Duration
		ok   bool
	}{
		{0, amqp.MinDelayTier, true},
		{time.Millisecond, 125 * time.Millisecond, true},
		{time.Second, time.Second, true},
		{1001 * time.Millisecond, 2 * time.Second, true},
		{3 * time.Second, 4 * time.Second, true},
		{amqp.MaxDelayTier, amqp.MaxDelayTier, true},
		{amqp.MaxDelayTier + 1, 0, false},
	}
	for _, tt := range tests {
		got, ok := amqp.DelayTier(tt.in)
		require.Equal(t, tt.ok, ok, "%v", tt.in)
		require.Equal(t, tt.want, got, "%v", tt.in)
	}
	b := &amqp.Broker{}
	err := b.PublishDelayed(context.Background(), "t", "", 48*time.Hour)
	require.ErrorContains(t, err, "exceeds the longest tier")
}

func TestNackRedeliversWithCount(t *testing.T) {
	url := sharedURL(t)
	for _, qt := range []string{amqp.QueueClassic, amqp.QueueQuorum} {
		t.Run(qt, func(t *testing.T) {
			topic := uniqueTopic(t, url)
			b := newBroker(t, amqp.Config{URL: url, QueueType: qt})
			sub, err := b.Subscribe(context.Background(), topic)
			require.NoError(t, err)
			msg := message.NewMessage(watermill.NewUUID(), []byte("x"))
			msg.Metadata.Set("hub-delivery-count", "7") // stale: never trusted
			require.NoError(t, b.Publish(topic, msg))

			want := []string{"", "2", "3"}
			if qt == amqp.QueueClassic {
				want = []string{"", "2", "2"} // classic queues only flag a redelivery
			}
			for i, w := range want {
				select {
				case m := <-sub:
					require.Equal(t, msg.UUID, m.UUID)
					require.Equal(t, w, m.Metadata.Get("hub-delivery-count"), "delivery %d", i+1)
					if i < len(want)-1 {
						m.Nack()
					} else {
						m.Ack()
					}
				case <-time.After(waitFor):
					t.Fatalf("delivery %d missing", i+1)
				}
			}
		})
	}
}

func TestCancelKeepsChannelUntilAck(t *testing.T) {
	url := sharedURL(t)
	topic := uniqueTopic(t, url)
	b := newBroker(t, amqp.Config{URL: url})
	ctx, cancel := context.WithCancel(context.Background())
	sub, err := b.SubscribeGroup(ctx, topic, broker.Group{Prefetch: 5})
	require.NoError(t, err)
	require.NoError(t, b.Publish(topic, newMessages(3, "m")...))

	held := <-sub
	cancel()
	// The subscription gives back the two messages it holds and has not
	// handed out, then stops consuming but stays open while held is unacked.
	require.Eventually(t, func() bool { return queueDepth(t, url, topic) == 2 }, waitFor, 10*time.Millisecond)
	select {
	case m, ok := <-sub:
		t.Fatalf("subscription must stay open and idle while a message is unacked (got %v, open %v)", m, ok)
	default:
	}
	select {
	case <-held.Context().Done():
		t.Fatal("the message context must live until ack")
	default:
	}
	held.Ack()
	select {
	case _, ok := <-sub:
		require.False(t, ok, "closed once the held message is acked")
	case <-time.After(waitFor):
		t.Fatal("subscription not closed after ack")
	}
	<-held.Context().Done()
	// The ack went through on the kept channel: 2 left, not 3.
	require.Equal(t, 2, queueDepth(t, url, topic))
}

func TestCloseAndErrors(t *testing.T) {
	url := sharedURL(t)
	topic := uniqueTopic(t, url)
	b, err := amqp.New(amqp.Config{URL: url})
	require.NoError(t, err)
	require.Equal(t, "rabbitmq", b.Name())
	require.NoError(t, b.Ping(context.Background()))

	sub, err := b.Subscribe(context.Background(), topic)
	require.NoError(t, err)
	require.NoError(t, b.Publish(topic, message.NewMessage(watermill.NewUUID(), nil)))
	held := <-sub

	require.NoError(t, b.Close())
	require.NoError(t, b.Close(), "Close twice")
	_, ok := <-sub
	require.False(t, ok, "subscriptions end at Close")
	<-held.Context().Done()
	held.Ack() // too late: a no-op, the message went back to the queue
	require.Equal(t, 1, queueDepth(t, url, topic), "Close nacks nothing; RabbitMQ requeued the unacked message")

	require.ErrorIs(t, b.Publish(topic, message.NewMessage("x", nil)), broker.ErrClosed)
	_, err = b.Subscribe(context.Background(), topic)
	require.ErrorIs(t, err, broker.ErrClosed)
	require.ErrorIs(t, b.Ping(context.Background()), broker.ErrClosed)
	require.ErrorIs(t, b.Declare(context.Background(), topic), broker.ErrClosed)
	require.ErrorIs(t, b.PublishDelayed(context.Background(), topic, "", time.Second), broker.ErrClosed)
}

func TestConfigErrors(t *testing.T) {
	tests := []struct {
		name string
		cfg  amqp.Config
		want string
	}{
		{"scheme", amqp.Config{URL: "http://localhost/"}, "scheme must be amqp or amqps"},
		{"tls without amqps", amqp.Config{TLS: &broker.TLSFiles{}}, "Config.TLS is set but Config.URL is not amqps"},
		{"queue type", amqp.Config{QueueType: "stream"}, `Config.QueueType "stream"`},
		{"transient quorum", amqp.Config{QueueType: amqp.QueueQuorum, Transient: true}, "quorum queues are always durable"},
		{"channels", amqp.Config{PublisherChannels: -1}, "PublisherChannels"},
		{"prefetch", amqp.Config{Prefetch: -2}, "Prefetch"},
		{"backoff", amqp.Config{ReconnectMin: time.Second, ReconnectMax: time.Millisecond}, "ReconnectMax"},
		{"tls files", amqp.Config{URL: "amqps://127.0.0.1:1/", TLS: &broker.TLSFiles{CA: "/nonexistent/ca.pem"}}, "broker: TLS CA file"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := amqp.New(tt.cfg)
			require.ErrorContains(t, err, tt.want)
			require.True(t, strings.HasPrefix(err.Error(), "amqp: ") || strings.HasPrefix(err.Error(), "broker: "), err.Error())
		})
	}
}

func TestUnreachable(t *testing.T) {
	start := time.Now()
	_, err := amqp.New(amqp.Config{URL: "amqp://guest:secret@127.0.0.1:1/", DialTimeout: 2 * time.Second})
	require.ErrorContains(t, err, "amqp: connect to amqp://guest:xxxxx@127.0.0.1:1/")
	require.ErrorContains(t, err, "connection refused")
	require.NotContains(t, err.Error(), "secret")
	require.Less(t, time.Since(start), 3*time.Second)
}

func TestBadTopic(t *testing.T) {
	url := sharedURL(t)
	b := newBroker(t, amqp.Config{URL: url})
	require.ErrorContains(t, b.Publish(""), "amqp: empty topic")
	_, err := b.SubscribeGroup(context.Background(), "t", broker.Group{Prefetch: -1})
	require.ErrorContains(t, err, "Prefetch")
}

func TestTopologyDeletedBehindOurBack(t *testing.T) {
	url := sharedURL(t)
	topic := uniqueTopic(t, url)
	b := newBroker(t, amqp.Config{URL: url})
	require.NoError(t, b.Publish(topic, message.NewMessage(watermill.NewUUID(), nil)))
	deleteTopology(url, topic)

	// The first publish meets the missing exchange (a channel exception)
	// and fails fast instead of retrying until PublishTimeout; the next
	// one declares the topic again.
	err := b.Publish(topic, message.NewMessage(watermill.NewUUID(), nil))
	require.ErrorIs(t, err, amqp.ErrChannelClosed)
	require.NoError(t, b.Publish(topic, message.NewMessage(watermill.NewUUID(), nil)))
	require.Equal(t, 1, queueDepth(t, url, topic))
}
