package memory_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/stretchr/testify/require"

	"github.com/harvesthub/hub/broker"
	"github.com/harvesthub/hub/broker/memory"
)

const keyDeliveryCount = "hub-delivery-count" // hub.KeyDeliveryCount

// waitTimeout bounds every wait of these tests; the waits themselves are on
// events, so it only matters when a test fails.
const waitTimeout = 10 * time.Second

func newBroker(t *testing.T, cfg memory.Config) *memory.Broker {
	t.Helper()
	b, err := memory.New(cfg)
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, b.Close()) })
	return b
}

func topicName(t *testing.T) string {
	return "topic-" + watermill.NewShortUUID()
}

func newMsg(payload string) *message.Message {
	return message.NewMessage(watermill.NewUUID(), []byte(payload))
}

func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(t.Context(), waitTimeout)
	t.Cleanup(cancel)
	return ctx
}

// receive returns the next message of ch, failing after waitTimeout.
func receive(t *testing.T, ch <-chan *message.Message) *message.Message {
	t.Helper()
	select {
	case m, ok := <-ch:
		require.True(t, ok, "channel closed")
		return m
	case <-time.After(waitTimeout):
		t.Fatal("no message received")
		return nil
	}
}

// requireClosed waits for ch to be closed, failing on a message.
func requireClosed(t *testing.T, ch <-chan *message.Message) {
	t.Helper()
	select {
	case m, ok := <-ch:
		require.False(t, ok, "unexpected message %s", m)
	case <-time.After(waitTimeout):
		t.Fatal("channel not closed")
	}
}

// waitStats waits until cond holds for b's Stats.
func waitStats(t *testing.T, b *memory.Broker, cond func(memory.Stats) bool) {
	t.Helper()
	require.NoError(t, b.WaitStats(testCtx(t), cond))
}

func TestConsumerGroups(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name         string
		groups       int
		subsPerGroup int
		prefetch     int
	}{
		{name: "competing consumers in one group", groups: 1, subsPerGroup: 4, prefetch: 1},
		{name: "competing consumers with prefetch", groups: 1, subsPerGroup: 3, prefetch: 8},
		{name: "fan-out to three groups", groups: 3, subsPerGroup: 1, prefetch: 1},
		{name: "fan-out and competition", groups: 2, subsPerGroup: 3, prefetch: 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			b := newBroker(t, memory.Config{})
			topic := topicName(t)
			const n = 300

			type got struct {
				group, sub int
				uuid       string
			}
			received := make(chan got, n*tt.groups)
			var wg sync.WaitGroup
			for g := range tt.groups {
				for s := range tt.subsPerGroup {
					ch, err := b.SubscribeGroup(t.Context(), topic, broker.Group{Name: fmt.Sprint("g", g), Prefetch: tt.prefetch})
					require.NoError(t, err)
					wg.Add(1)
					go func() {
						defer wg.Done()
						for m := range ch {
							received <- got{group: g, sub: s, uuid: m.UUID}
							m.Ack()
						}
					}()
				}
			}
			want := map[string]bool{}
			for range n {
				m := newMsg("x")
				want[m.UUID] = true
				require.NoError(t, b.Publish(topic, m))
			}

			perGroup := make([]map[string]int, tt.groups)
			perSub := map[[2]int]int{}
			for i := range perGroup {
				perGroup[i] = map[string]int{}
			}
			for range n * tt.groups {
				select {
				case r := <-received:
					perGroup[r.group][r.uuid]++
					perSub[[2]int{r.group, r.sub}]++
				case <-time.After(waitTimeout):
					t.Fatal("messages missing")
				}
			}
			require.NoError(t, b.WaitIdle(testCtx(t)))
			for g, counts := range perGroup {
				require.Len(t, counts, n, "group %d", g)
				for uuid, c := range counts {
					require.True(t, want[uuid])
					require.Equal(t, 1, c, "group %d got %s %d times", g, uuid, c)
				}
			}
			select {
			case r := <-received:
				t.Fatalf("extra delivery %+v", r)
			default:
			}
			require.NoError(t, b.Close())
			wg.Wait()
		})
	}
}

func TestBacklogBeforeFirstGroup(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name  string
		first func(ctx context.Context, b *memory.Broker, topic string) (<-chan *message.Message, error)
	}{
		{
			name: "first subscription takes the backlog",
			first: func(ctx context.Context, b *memory.Broker, topic string) (<-chan *message.Message, error) {
				return b.SubscribeGroup(ctx, topic, broker.Group{Name: "h"})
			},
		},
		{
			name: "first declared group takes the backlog",
			first: func(ctx context.Context, b *memory.Broker, topic string) (<-chan *message.Message, error) {
				if err := b.Declare(ctx, topic, "h"); err != nil {
					return nil, err
				}
				return b.SubscribeGroup(ctx, topic, broker.Group{Name: "h"})
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			b := newBroker(t, memory.Config{})
			topic := topicName(t)
			var sent []string
			for i := range 3 {
				m := newMsg(fmt.Sprint(i))
				sent = append(sent, m.UUID)
				require.NoError(t, b.Publish(topic, m))
			}
			st := b.Stats()
			require.Equal(t, []memory.GroupStats{{Topic: topic, Implicit: true, Queued: 3}}, st.Groups)
			require.NoError(t, b.WaitIdle(testCtx(t)), "an implicit backlog does not count as busy")

			ch, err := tt.first(t.Context(), b, topic)
			require.NoError(t, err)
			for _, id := range sent {
				m := receive(t, ch)
				require.Equal(t, id, m.UUID, "backlog in publish order")
				m.Ack()
			}
			require.NoError(t, b.WaitIdle(testCtx(t)))

			// A later group starts empty and gets new messages only.
			late, err := b.Subscribe(t.Context(), topic)
			require.NoError(t, err)
			m := newMsg("new")
			require.NoError(t, b.Publish(topic, m))
			for _, c := range []<-chan *message.Message{ch, late} {
				got := receive(t, c)
				require.Equal(t, m.UUID, got.UUID)
				got.Ack()
			}
		})
	}
}

func TestDeclareKeepsMessagesForEveryGroup(t *testing.T) {
	t.Parallel()
	b := newBroker(t, memory.Config{})
	topic := topicName(t)
	require.NoError(t, b.Declare(t.Context(), topic, "a", "b"))
	m := newMsg("x")
	require.NoError(t, b.Publish(topic, m))
	st := b.Stats()
	require.Equal(t, 1, st.Group(topic, "a").Queued)
	require.Equal(t, 1, st.Group(topic, "b").Queued)
	require.False(t, st.Idle())

	for _, g := range []string{"a", "b"} {
		ch, err := b.SubscribeGroup(t.Context(), topic, broker.Group{Name: g})
		require.NoError(t, err)
		got := receive(t, ch)
		require.Equal(t, m.UUID, got.UUID)
		require.NotSame(t, m, got, "each group gets a copy")
		got.Ack()
	}
	require.NoError(t, b.WaitIdle(testCtx(t)))
}

func TestFullQueue(t *testing.T) {
	t.Parallel()

	t.Run("block waits for a consumer", func(t *testing.T) {
		t.Parallel()
		b := newBroker(t, memory.Config{QueueSize: 1})
		topic := topicName(t)
		require.NoError(t, b.Declare(t.Context(), topic))
		first := newMsg("1")
		require.NoError(t, b.Publish(topic, first))

		done := make(chan error, 1)
		go func() { done <- b.Publish(topic, newMsg("2")) }()
		// The broker reports the publisher waiting for room.
		waitStats(t, b, func(s memory.Stats) bool { return s.Group(topic, "").Waiting == 1 })
		select {
		case err := <-done:
			t.Fatalf("Publish returned %v with the queue full", err)
		default:
		}

		ch, err := b.Subscribe(t.Context(), topic)
		require.NoError(t, err)
		got := receive(t, ch)
		require.Equal(t, first.UUID, got.UUID)
		select {
		case err := <-done:
			require.NoError(t, err)
		case <-time.After(waitTimeout):
			t.Fatal("Publish still blocked after a consumer took a message")
		}
		got.Ack()
		receive(t, ch).Ack()
	})

	t.Run("block ends with Close", func(t *testing.T) {
		t.Parallel()
		b := newBroker(t, memory.Config{BacklogSize: 1})
		topic := topicName(t)
		require.NoError(t, b.Publish(topic, newMsg("1")))
		done := make(chan error, 1)
		go func() { done <- b.Publish(topic, newMsg("2")) }()
		waitStats(t, b, func(s memory.Stats) bool { return len(s.Groups) == 1 && s.Groups[0].Waiting == 1 })
		require.NoError(t, b.Close())
		require.ErrorIs(t, <-done, broker.ErrClosed)
	})

	t.Run("block ends with the message context", func(t *testing.T) {
		t.Parallel()
		b := newBroker(t, memory.Config{BacklogSize: 1})
		topic := topicName(t)
		require.NoError(t, b.Publish(topic, newMsg("1")))
		ctx, cancel := context.WithCancel(t.Context())
		m := newMsg("2")
		m.SetContext(ctx)
		done := make(chan error, 1)
		go func() { done <- b.Publish(topic, m) }()
		waitStats(t, b, func(s memory.Stats) bool { return len(s.Groups) == 1 && s.Groups[0].Waiting == 1 })
		cancel()
		require.ErrorIs(t, <-done, context.Canceled)
	})

	tests := []struct {
		name    string
		declare bool
		group   string
	}{
		{name: "reject from a group", declare: true, group: "h"},
		{name: "reject from the implicit backlog", group: "(backlog)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			b := newBroker(t, memory.Config{QueueSize: 2, BacklogSize: 2, Full: memory.Reject})
			topic := topicName(t)
			if tt.declare {
				require.NoError(t, b.Declare(t.Context(), topic, tt.group))
			}
			require.NoError(t, b.Publish(topic, newMsg("1"), newMsg("2")))
			err := b.Publish(topic, newMsg("3"))
			require.ErrorIs(t, err, memory.ErrQueueFull)
			require.Contains(t, err.Error(), topic)
			require.Contains(t, err.Error(), tt.group)
		})
	}
}

func TestNackRedelivers(t *testing.T) {
	t.Parallel()
	b := newBroker(t, memory.Config{})
	topic := topicName(t)
	ch, err := b.Subscribe(t.Context(), topic)
	require.NoError(t, err)
	m := newMsg("x")
	m.Metadata.Set("k", "v")
	require.NoError(t, b.Publish(topic, m))

	first := receive(t, ch)
	require.Empty(t, first.Metadata.Get(keyDeliveryCount))
	for _, want := range []string{"2", "3"} {
		require.True(t, first.Nack())
		<-first.Context().Done() // a settled message's context is cancelled
		next := receive(t, ch)
		require.Equal(t, m.UUID, next.UUID)
		require.Equal(t, want, next.Metadata.Get(keyDeliveryCount))
		require.Equal(t, "v", next.Metadata.Get("k"))
		require.Equal(t, "x", string(next.Payload))
		first = next
	}
	first.Ack()
	require.NoError(t, b.WaitIdle(testCtx(t)))
}

func TestCancelledSubscriptionKeepsUnacked(t *testing.T) {
	t.Parallel()
	b := newBroker(t, memory.Config{})
	topic := topicName(t)
	ctxA, cancelA := context.WithCancel(t.Context())
	a, err := b.Subscribe(ctxA, topic)
	require.NoError(t, err)
	m := newMsg("x")
	require.NoError(t, b.Publish(topic, m))
	held := receive(t, a)

	cancelA()
	// A keeps its unacked message, so its channel stays open.
	waitStats(t, b, func(s memory.Stats) bool {
		g := s.Group(topic, "")
		return g.Unacked == 1 && g.Subscribers == 1
	})
	other, err := b.Subscribe(t.Context(), topic)
	require.NoError(t, err)

	require.True(t, held.Nack())
	got := receive(t, other)
	require.Equal(t, m.UUID, got.UUID)
	require.Equal(t, "2", got.Metadata.Get(keyDeliveryCount))
	requireClosed(t, a)
	got.Ack()
	require.NoError(t, b.WaitIdle(testCtx(t)))
	require.Equal(t, 1, b.Stats().Group(topic, "").Subscribers)
}

func TestCancelledSubscriptionClosesWhenAcked(t *testing.T) {
	t.Parallel()
	b := newBroker(t, memory.Config{})
	topic := topicName(t)
	ctx, cancel := context.WithCancel(t.Context())
	ch, err := b.SubscribeGroup(ctx, topic, broker.Group{Prefetch: 4})
	require.NoError(t, err)
	require.NoError(t, b.Publish(topic, newMsg("1"), newMsg("2")))
	m1, m2 := receive(t, ch), receive(t, ch)
	cancel()
	m1.Ack()
	m2.Ack()
	requireClosed(t, ch)
	require.NoError(t, b.Publish(topic, newMsg("3")))
	require.Equal(t, 1, b.Stats().Group(topic, "").Queued, "no delivery after cancel")
}

func TestPrefetch(t *testing.T) {
	t.Parallel()
	b := newBroker(t, memory.Config{})
	topic := topicName(t)
	ch, err := b.SubscribeGroup(t.Context(), topic, broker.Group{Name: "g", Prefetch: 3})
	require.NoError(t, err)
	for i := range 5 {
		require.NoError(t, b.Publish(topic, newMsg(fmt.Sprint(i))))
	}
	var held []*message.Message
	for range 3 {
		held = append(held, receive(t, ch))
	}
	st := b.Stats().Group(topic, "g")
	require.Equal(t, 3, st.Unacked)
	require.Equal(t, 2, st.Queued)
	for _, m := range held {
		m.Ack()
	}
	receive(t, ch).Ack()
	receive(t, ch).Ack()
	require.NoError(t, b.WaitIdle(testCtx(t)))
}

func TestCloseWithInFlight(t *testing.T) {
	t.Parallel()
	b, err := memory.New(memory.Config{})
	require.NoError(t, err)
	topic := topicName(t)
	ch, err := b.Subscribe(t.Context(), topic)
	require.NoError(t, err)
	require.NoError(t, b.Publish(topic, newMsg("1"), newMsg("2")))
	held := receive(t, ch)

	require.NoError(t, b.Close())
	requireClosed(t, ch)
	<-held.Context().Done()
	st := b.Stats().Group(topic, "")
	require.Equal(t, 2, st.Queued, "the unacked message went back to its queue")
	require.Zero(t, st.Unacked)
	require.Zero(t, st.Subscribers)
	held.Ack() // harmless after Close

	require.NoError(t, b.Close(), "Close twice")
}

func TestClosed(t *testing.T) {
	t.Parallel()
	b, err := memory.New(memory.Config{})
	require.NoError(t, err)
	require.NoError(t, b.Ping(t.Context()))
	require.Equal(t, "memory", b.Name())
	require.NoError(t, b.Close())
	require.NoError(t, b.Close())

	ctx := t.Context()
	calls := map[string]error{
		"Publish":        b.Publish("t", newMsg("x")),
		"PublishDelayed": b.PublishDelayed(ctx, "t", "", time.Second, newMsg("x")),
		"Declare":        b.Declare(ctx, "t"),
		"Ping":           b.Ping(ctx),
		"WaitIdle":       b.WaitIdle(ctx),
	}
	_, err = b.Subscribe(ctx, "t")
	calls["Subscribe"] = err
	for name, err := range calls {
		require.ErrorIs(t, err, broker.ErrClosed, name)
	}
}

func TestPublishDelayed(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name  string
		group string
		want  map[string]int // queued per group once due
	}{
		{name: "to one group", group: "a", want: map[string]int{"a": 1, "b": 0}},
		{name: "to every group", group: "", want: map[string]int{"a": 1, "b": 1}},
		{name: "to a group not declared yet", group: "c", want: map[string]int{"a": 0, "b": 0, "c": 1}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			b := newBroker(t, memory.Config{})
			topic := topicName(t)
			require.NoError(t, b.Declare(t.Context(), topic, "a", "b"))

			// One far in the future stays pending; one soon arrives.
			require.NoError(t, b.PublishDelayed(t.Context(), topic, tt.group, time.Hour, newMsg("later")))
			st := b.Stats()
			require.Equal(t, 1, st.Delayed)
			require.Zero(t, st.Group(topic, "a").Queued+st.Group(topic, "b").Queued)

			soon := newMsg("soon")
			require.NoError(t, b.PublishDelayed(t.Context(), topic, tt.group, time.Millisecond, soon))
			waitStats(t, b, func(s memory.Stats) bool { return s.Delayed == 1 })
			st = b.Stats()
			for g, n := range tt.want {
				require.Equal(t, n, st.Group(topic, g).Queued, "group %s", g)
			}
			for g, n := range tt.want {
				if n == 0 {
					continue
				}
				ch, err := b.SubscribeGroup(t.Context(), topic, broker.Group{Name: g})
				require.NoError(t, err)
				got := receive(t, ch)
				require.Equal(t, soon.UUID, got.UUID)
				got.Ack()
			}
			require.False(t, b.Stats().Idle(), "the delayed message keeps the broker busy")
		})
	}
}

func TestMaxDelayed(t *testing.T) {
	t.Parallel()
	b := newBroker(t, memory.Config{MaxDelayed: 2})
	topic := topicName(t)
	ctx := t.Context()
	err := b.PublishDelayed(ctx, topic, "", time.Hour, newMsg("1"), newMsg("2"), newMsg("3"))
	require.ErrorIs(t, err, memory.ErrQueueFull)
	require.Zero(t, b.Stats().Delayed, "all or nothing")
	require.NoError(t, b.PublishDelayed(ctx, topic, "", time.Hour, newMsg("1"), newMsg("2")))
	require.ErrorIs(t, b.PublishDelayed(ctx, topic, "g", time.Hour, newMsg("3")), memory.ErrQueueFull)
	require.Equal(t, 2, b.Stats().Delayed)
}

func TestWaitIdle(t *testing.T) {
	t.Parallel()
	b := newBroker(t, memory.Config{})
	topic := topicName(t)
	require.NoError(t, b.WaitIdle(testCtx(t)), "a new broker is idle")

	ch, err := b.Subscribe(t.Context(), topic)
	require.NoError(t, err)
	require.NoError(t, b.Publish(topic, newMsg("x")))
	require.NoError(t, b.Publish(topic+".dlq", newMsg("dead")), "nobody subscribes to this one")
	m := receive(t, ch)

	short, cancel := context.WithTimeout(t.Context(), 20*time.Millisecond)
	defer cancel()
	err = b.WaitIdle(short)
	require.ErrorIs(t, err, context.DeadlineExceeded, "an unacked message keeps the broker busy")

	done := make(chan error, 1)
	go func() { done <- b.WaitIdle(testCtx(t)) }()
	m.Ack()
	require.NoError(t, <-done)
}

func TestWaitIdleWaitsForDelayed(t *testing.T) {
	t.Parallel()
	b := newBroker(t, memory.Config{})
	topic := topicName(t)
	ch, err := b.Subscribe(t.Context(), topic)
	require.NoError(t, err)
	require.NoError(t, b.PublishDelayed(t.Context(), topic, "", 5*time.Millisecond, newMsg("x")))
	done := make(chan error, 1)
	go func() { done <- b.WaitIdle(testCtx(t)) }()
	m := receive(t, ch)
	select {
	case err := <-done:
		t.Fatalf("WaitIdle returned %v with a message unacked", err)
	default:
	}
	m.Ack()
	require.NoError(t, <-done)
}

func TestRedeliverAfterAck(t *testing.T) {
	t.Parallel()
	b := newBroker(t, memory.Config{})
	topic := topicName(t)
	ch, err := b.Subscribe(t.Context(), topic)
	require.NoError(t, err)
	b.RedeliverAfterAck(topic, 1)
	m := newMsg("x")
	require.NoError(t, b.Publish(topic, m))

	first := receive(t, ch)
	require.True(t, first.Ack())
	again := receive(t, ch)
	require.Equal(t, m.UUID, again.UUID)
	require.Equal(t, "2", again.Metadata.Get(keyDeliveryCount))
	again.Ack()
	require.NoError(t, b.WaitIdle(testCtx(t)))

	// The budget is spent: the next message is delivered once.
	require.NoError(t, b.Publish(topic, newMsg("y")))
	receive(t, ch).Ack()
	require.NoError(t, b.WaitIdle(testCtx(t)))
	require.Zero(t, b.Stats().Group(topic, "").Queued)
}

func TestBadConfig(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		cfg  memory.Config
		want string
	}{
		{name: "negative queue size", cfg: memory.Config{QueueSize: -1}, want: "Config.QueueSize"},
		{name: "negative max delayed", cfg: memory.Config{MaxDelayed: -5}, want: "Config.MaxDelayed"},
		{name: "unknown full policy", cfg: memory.Config{Full: memory.FullPolicy(7)}, want: "Config.Full"},
		{name: "negative backlog size", cfg: memory.Config{BacklogSize: -1}, want: "Config.BacklogSize"},
		{name: "negative max message size", cfg: memory.Config{MaxMessageSize: -1}, want: "Config.MaxMessageSize"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := memory.New(tt.cfg)
			require.Error(t, err)
			require.Contains(t, err.Error(), tt.want)
			require.True(t, strings.HasPrefix(err.Error(), "memory: "))
		})
	}

	b := newBroker(t, memory.Config{})
	_, err := b.SubscribeGroup(t.Context(), "t", broker.Group{Prefetch: -1})
	require.ErrorContains(t, err, "Prefetch")
	require.False(t, errors.Is(err, broker.ErrClosed))
}

type ctxKey struct{}

func TestMessageContext(t *testing.T) {
	t.Parallel()
	b := newBroker(t, memory.Config{})
	topic := topicName(t)
	ctx := context.WithValue(t.Context(), ctxKey{}, "sub")
	ch, err := b.Subscribe(ctx, topic)
	require.NoError(t, err)
	require.NoError(t, b.Publish(topic, newMsg("x")))
	m := receive(t, ch)
	require.Equal(t, "sub", m.Context().Value(ctxKey{}), "a child of the subscription context")
	require.NoError(t, m.Context().Err())
	m.Ack()
	<-m.Context().Done()
}
