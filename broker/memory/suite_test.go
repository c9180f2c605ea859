package memory_test

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/ThreeDotsLabs/watermill/pubsub/tests"
	"github.com/stretchr/testify/require"

	"github.com/harvesthub/hub/broker"
	"github.com/harvesthub/hub/broker/memory"
)

// TestPubSub runs Watermill's universal Pub/Sub suite.
//
// The suite creates several "instances" of a Pub/Sub per test and closes
// them independently, the way the AMQP suite opens several connections to one
// RabbitMQ. Here every instance of one test is a client view onto one shared
// Broker (closed at the end of the test): closing a view cancels its
// subscriptions, and its channels close once their messages are acked or
// nacked (held ones go back to the queue).
//
// Features, honestly:
//   - ConsumerGroups: true, through SubscribeGroup.
//   - ExactlyOnceDelivery: false. The broker contract is at-least-once: a
//     nack, a cancelled subscription or RedeliverAfterAck deliver again.
//   - GuaranteedOrder with GuaranteedOrderWithSingleSubscriber: true. A group
//     is a FIFO queue, and a single subscription with Prefetch 1 (what
//     Subscribe gives) sees publish order, a nacked message first again.
//     Competing subscriptions or Prefetch > 1 give no order, which the flag
//     pair expresses.
//   - Persistent: true in the suite's sense: messages outlive the
//     publishers and subscribers (views) that come and go, for as long as the
//     Broker lives. Nothing survives the process: it is in memory.
//   - NewSubscriberReceivesOldMessages: false. An acked message is gone; the
//     broker is a queue, not a log to replay.
//   - RequireSingleInstance: false (views share the Broker), no
//     RestartServiceCommand (no server to restart), ContextPreserved: false
//     (a delivered message carries a child of the subscription context).
func TestPubSub(t *testing.T) {
	tests.TestPubSub(t, tests.Features{
		ConsumerGroups:                      true,
		ExactlyOnceDelivery:                 false,
		GuaranteedOrder:                     true,
		GuaranteedOrderWithSingleSubscriber: true,
		Persistent:                          true,
		NewSubscriberReceivesOldMessages:    false,
		RequireSingleInstance:               false,
	}, suiteDefault, suiteGroup)
}

var (
	suiteMu      sync.Mutex
	suiteBrokers = map[*testing.T]*memory.Broker{}
)

// suiteBroker returns the Broker shared by t's views.
func suiteBroker(t *testing.T) *memory.Broker {
	suiteMu.Lock()
	defer suiteMu.Unlock()
	if b := suiteBrokers[t]; b != nil {
		return b
	}
	// The suite publishes up to 10,000 messages before anyone subscribes;
	// with the default bound (1024) Publish would rightly block forever.
	b, err := memory.New(memory.Config{QueueSize: 16384})
	require.NoError(t, err)
	suiteBrokers[t] = b
	t.Cleanup(func() {
		require.NoError(t, b.Close())
		suiteMu.Lock()
		delete(suiteBrokers, t)
		suiteMu.Unlock()
	})
	return b
}

func suiteDefault(t *testing.T) (message.Publisher, message.Subscriber) {
	b := suiteBroker(t)
	return &publisherView{b: b}, newView(b, "")
}

func suiteGroup(t *testing.T, group string) (message.Publisher, message.Subscriber) {
	b := suiteBroker(t)
	return &publisherView{b: b}, newView(b, group)
}

// publisherView is one publisher "instance" of the suite.
type publisherView struct {
	b      *memory.Broker
	closed atomic.Bool
}

func (p *publisherView) Publish(topic string, msgs ...*message.Message) error {
	if p.closed.Load() {
		return fmt.Errorf("publisher closed: %w", broker.ErrClosed)
	}
	return p.b.Publish(topic, msgs...)
}

func (p *publisherView) Close() error {
	p.closed.Store(true)
	return nil
}

// view is one subscriber "instance" of the suite: a client of a shared
// Broker with its own Close.
type view struct {
	b      *memory.Broker
	group  string
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup // forwarders

	mu     sync.Mutex
	closed bool
}

func newView(b *memory.Broker, group string) *view {
	ctx, cancel := context.WithCancel(context.Background())
	return &view{b: b, group: group, ctx: ctx, cancel: cancel}
}

// Subscribe subscribes on the Broker with a context cancelled by the
// caller's or by the view's Close. A forwarder hands the broker's messages
// on; when the view is closed it nacks those the test still holds, as a
// real broker requeues the unacked messages of a closed connection.
func (v *view) Subscribe(ctx context.Context, topic string) (<-chan *message.Message, error) {
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.closed {
		return nil, fmt.Errorf("view closed: %w", broker.ErrClosed)
	}
	subCtx, cancel := context.WithCancel(ctx)
	stop := context.AfterFunc(v.ctx, cancel)
	in, err := v.b.SubscribeGroup(subCtx, topic, broker.Group{Name: v.group})
	if err != nil {
		stop()
		cancel()
		return nil, err
	}
	out := make(chan *message.Message)
	v.wg.Add(1)
	go func() {
		defer v.wg.Done()
		defer close(out)
		defer stop()
		defer cancel()
		var held []*message.Message
		for {
			select {
			case m, ok := <-in:
				if !ok {
					return
				}
				select {
				case out <- m:
					held = append(unsettled(held), m)
				case <-subCtx.Done():
					m.Nack()
				}
			case <-v.ctx.Done():
				for _, m := range held {
					m.Nack()
				}
				for m := range in {
					m.Nack()
				}
				return
			}
		}
	}()
	return out, nil
}

// unsettled drops the messages acked or nacked already.
func unsettled(msgs []*message.Message) []*message.Message {
	keep := msgs[:0]
	for _, m := range msgs {
		select {
		case <-m.Acked():
		case <-m.Nacked():
		default:
			keep = append(keep, m)
		}
	}
	return keep
}

func (v *view) Close() error {
	v.mu.Lock()
	v.closed = true
	v.mu.Unlock()
	v.cancel()
	v.wg.Wait()
	return nil
}
