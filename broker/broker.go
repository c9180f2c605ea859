// Package broker defines what the hub needs from a message broker, and the
// TLS helpers adapters share.
//
// Users hold a concrete adapter (memory.Broker, amqp.Broker, sqs.Broker) and
// hand it to hub.New. Adapter authors implement [Broker]; the optional
// [Delayer] lets the hub schedule delayed retries broker-side.
//
// # Consumer groups
//
// Every hub handler consumes through its own consumer group, named after the
// handler: each message published to a topic reaches every group once, and
// within a group the subscribers compete (one of them gets it). A message
// published before a group first subscribes is kept for the topic's default
// group, whose name is the topic itself; adapters that can, keep it for every
// group they have declared.
package broker

import (
	"context"
	"errors"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
)

// ErrClosed is returned by adapters used after Close.
var ErrClosed = errors.New("broker: closed")

// Broker is a Watermill Publisher and Subscriber with consumer groups.
//
// Publish, Subscribe and SubscribeGroup may be called concurrently. Close
// stops every subscription and is safe to call more than once. A message
// delivered on a subscription channel must be acked or nacked; a nacked one is
// delivered again (to the same group). Closing a subscription (cancelling its
// context) stops new deliveries; a message already delivered and not yet
// acked stays owned by its handler until acked or nacked, and is delivered
// again if nacked or if the broker is closed first.
type Broker interface {
	message.Publisher
	// Subscribe joins the topic's default group, whose name is the topic.
	message.Subscriber
	// SubscribeGroup joins the consumer group g.Name of topic. Up to
	// g.Prefetch messages may be delivered and not yet acked at once on the
	// returned channel. The channel is closed when ctx is done or the broker
	// is closed, once no delivered message is left unacked.
	SubscribeGroup(ctx context.Context, topic string, g Group) (<-chan *message.Message, error)
	// Name is the value of the OpenTelemetry attribute messaging.system,
	// such as "rabbitmq", "aws_sqs" or "memory".
	Name() string
	// Ping returns nil when the broker is reachable.
	Ping(ctx context.Context) error
}

// Group names a consumer group and how many unacked messages one
// subscription of it may hold.
type Group struct {
	// Name of the group; empty means the topic's default group.
	Name string
	// Prefetch is the number of messages delivered and not yet acked that
	// one subscription may hold. Zero means 1.
	Prefetch int
}

// Delayer is implemented by brokers that can deliver a message later without
// holding a goroutine for it (a timer, an AMQP TTL queue, SQS DelaySeconds).
type Delayer interface {
	// PublishDelayed delivers msgs to topic once delay has passed. When group
	// is not empty only that consumer group receives them; otherwise every
	// group of the topic does. It returns once the broker has accepted the
	// messages.
	PublishDelayed(ctx context.Context, topic, group string, delay time.Duration, msgs ...*message.Message) error
}

// GroupName returns the group a subscription with name joins: the topic
// itself when name is empty.
func GroupName(topic, name string) string {
	if name == "" {
		return topic
	}
	return name
}

// Declarer is implemented by brokers that can create a consumer group's queue
// ahead of its first subscription, so that messages published in between are
// kept for it. The hub declares every handler's group when it is registered.
type Declarer interface {
	Declare(ctx context.Context, topic string, groups ...string) error
}

// ErrUnknownTopic is returned by an Inspector for a topic the broker has
// no queue for.
var ErrUnknownTopic = errors.New("broker: unknown topic")

// QueueStats describes one consumer group's queue.
type QueueStats struct {
	Topic string
	Group string
	// Queue is the broker's own name for the queue.
	Queue string
	// Depth counts messages waiting to be delivered.
	Depth int64
	// InFlight counts messages delivered and not yet acked; -1 when the
	// broker does not report it.
	InFlight int64
	// Consumers counts subscriptions; -1 when the broker does not report it.
	Consumers int
	// OldestAge is the age of the oldest message waiting or in flight; 0
	// when there is none or the broker does not report it.
	OldestAge time.Duration
}

// Inspector is implemented by brokers that report their queues, for
// operators (hubctl topics stats) and readiness checks.
type Inspector interface {
	// Queues returns the stats of every group queue of topic, or of every
	// queue the broker knows of the hub's when topic is empty. A topic with
	// no queue returns an error wrapping ErrUnknownTopic.
	Queues(ctx context.Context, topic string) ([]QueueStats, error)
}

// ErrMessageTooLarge is returned (wrapped) by a publish whose message the
// broker would refuse for its size: the payload and metadata together are
// over the broker's limit (SQS 256 KiB, RabbitMQ's max message size, headers
// over its frame_max). Adapters check before sending, so an oversize message
// never reaches the wire and never costs a connection.
var ErrMessageTooLarge = errors.New("broker: message too large")

// ContextPublisher is implemented by brokers whose publish honours a
// context: it returns, with ctx.Err() wrapped, once ctx ends, even when the
// broker is unreachable or a bounded queue is full. The hub publishes
// through it when the broker has it. A publish that returned an error may
// still have reached the broker (a lost confirm); publishing again is safe
// when the message carries an idempotency key.
type ContextPublisher interface {
	PublishContext(ctx context.Context, topic string, msgs ...*message.Message) error
}

// SizeLimiter is implemented by brokers with a message size limit, so the
// hub can keep room for the metadata a dead letter adds.
type SizeLimiter interface {
	// MaxMessageSize is the largest message, payload plus metadata keys and
	// values in bytes, the broker accepts; 0 means no limit.
	MaxMessageSize() int
}

// MessageSize is the size a SizeLimiter compares with its limit: the
// payload plus every metadata key and value, in bytes.
func MessageSize(m *message.Message) int {
	n := len(m.Payload) + len(m.UUID)
	for k, v := range m.Metadata {
		n += len(k) + len(v)
	}
	return n
}

// PublishContext publishes msgs to topic through b, honouring ctx when b is
// a ContextPublisher. Otherwise it checks ctx first, sets it as each
// message's context (Watermill publishers that wait, such as the memory
// broker on a full queue, watch it), then calls b.Publish.
func PublishContext(ctx context.Context, b message.Publisher, topic string, msgs ...*message.Message) error {
	if cp, ok := b.(ContextPublisher); ok {
		return cp.PublishContext(ctx, topic, msgs...)
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	for _, m := range msgs {
		m.SetContext(ctx)
	}
	return b.Publish(topic, msgs...)
}

// DelayLimiter is implemented by Delayers whose longest delay is bounded
// (SQS: 15 minutes a hop; RabbitMQ: the longest delay tier). The hub chains
// a longer delayed retry in hops, carrying the due time in hub-not-before.
type DelayLimiter interface {
	MaxDelay() time.Duration
}
