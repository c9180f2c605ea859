package amqp_test

import (
	"context"
	"sync"
	"testing"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/ThreeDotsLabs/watermill/pubsub/tests"
	"github.com/stretchr/testify/require"

	"github.com/harvesthub/hub/broker"
	"github.com/harvesthub/hub/broker/amqp"
)

// The universal suite records a message as published after Publish
// returns, in another goroutine, and compares that record with what was
// received as soon as the last message arrives. A publish that awaits its
// confirm can return after the message is delivered, so the record may lag
// the deliveries (TestReconnect then reports "extra" messages, and the race
// detector flags the suite's unsynchronised slice). suitePub and suiteSub
// close that gap: a message is handed to the suite only once the Publish
// that sent it has returned.
var publishing = struct {
	sync.Mutex
	calls map[string]chan struct{}
}{calls: map[string]chan struct{}{}}

type suitePub struct{ *amqp.Broker }

func (p suitePub) Publish(topic string, msgs ...*message.Message) error {
	done := make(chan struct{})
	publishing.Lock()
	for _, m := range msgs {
		publishing.calls[m.UUID] = done
	}
	publishing.Unlock()
	defer func() {
		publishing.Lock()
		for _, m := range msgs {
			if publishing.calls[m.UUID] == done {
				delete(publishing.calls, m.UUID)
			}
		}
		publishing.Unlock()
		close(done)
	}()
	return p.Broker.Publish(topic, msgs...)
}

// suiteSub subscribes a consumer group (empty: the default group) through
// Watermill's Subscriber interface.
type suiteSub struct {
	b       *amqp.Broker
	group   string
	closing chan struct{}
	once    sync.Once
	wg      sync.WaitGroup // forwarders
}

func (s *suiteSub) Subscribe(ctx context.Context, topic string) (<-chan *message.Message, error) {
	in, err := s.b.SubscribeGroup(ctx, topic, broker.Group{Name: s.group})
	if err != nil {
		return nil, err
	}
	out := make(chan *message.Message)
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		defer close(out)
		for m := range in {
			publishing.Lock()
			done := publishing.calls[m.UUID]
			publishing.Unlock()
			if done != nil {
				select {
				case <-done:
				case <-s.closing:
				}
			}
			select {
			case out <- m:
			case <-s.closing:
				return
			}
		}
	}()
	return out, nil
}

// Close closes the broker and returns once every subscription channel is
// closed, as Broker.Close does.
func (s *suiteSub) Close() error {
	s.once.Do(func() { close(s.closing) })
	err := s.b.Close()
	s.wg.Wait()
	return err
}

// TestUniversal runs Watermill's universal Pub/Sub suite, its reconnect test
// included, against the private node (which the reconnect test restarts).
func TestUniversal(t *testing.T) {
	node.require(t)
	var restart []string
	if !raceEnabled {
		restart = node.command("restart")
	}
	universal(t, amqp.Config{URL: node.url()}, restart)
}

func universal(t *testing.T, cfg amqp.Config, restart []string) {
	// The suite closes the publisher and goes on using the subscriber: two
	// brokers, as Watermill adapters have a publisher and a subscriber.
	// Some of its tests never close a subscriber (TestPublishSubscribeInOrder
	// defers sub.Close() evaluated at once): every broker is also closed at
	// the end of its test.
	newGroupPubSub := func(t *testing.T, group string) (message.Publisher, message.Subscriber) {
		pub, err := amqp.New(cfg)
		require.NoError(t, err)
		sb, err := amqp.New(cfg)
		require.NoError(t, err)
		sub := &suiteSub{b: sb, group: group, closing: make(chan struct{})}
		t.Cleanup(func() { _ = pub.Close(); _ = sub.Close() })
		return suitePub{pub}, sub
	}
	newPubSub := func(t *testing.T) (message.Publisher, message.Subscriber) {
		return newGroupPubSub(t, "")
	}
	tests.TestPubSub(t, tests.Features{
		ConsumerGroups: true,
		// At least once: a nack, a lost connection or a closed subscriber
		// redeliver.
		ExactlyOnceDelivery: false,
		// One queue, one consumer, prefetch 1 (the default): RabbitMQ's FIFO
		// order, a nacked message requeued at its position.
		GuaranteedOrder:                     true,
		GuaranteedOrderWithSingleSubscriber: true,
		Persistent:                          true,
		// Watermill v1.5.1's TestReconnect races on its own slice of
		// published messages (test_pubsub.go:1086 against :1120), so the
		// race detector fails it whatever the adapter does: it runs in the
		// test binary built without -race; TestRestartMidStream covers
		// restarts under -race.
		RestartServiceCommand: restart,
	}, newPubSub, newGroupPubSub)
}
