package amqp

import (
	"context"
	"errors"
	"fmt"

	"github.com/harvesthub/hub/broker"
)

var _ broker.Inspector = (*Broker)(nil)

// ErrNoQueueListing is returned by Queues with an empty topic: AMQP 0-9-1
// has no way to list queues (RabbitMQ's management API does, and the
// adapter does not depend on it). It wraps errors.ErrUnsupported.
var ErrNoQueueListing = fmt.Errorf("amqp: listing every queue is not possible over AMQP 0-9-1; name a topic: %w", errors.ErrUnsupported)

// Queues reports the queue of topic's default group: Depth is the number
// of messages ready for delivery and Consumers the number of consumers, as
// RabbitMQ answers a passive queue.declare; InFlight is -1 (AMQP does not
// report unacked messages). A topic whose default queue does not exist
// returns an error wrapping [broker.ErrUnknownTopic]. Nothing is declared:
// asking never creates a queue. Named groups' queues cannot be discovered
// over AMQP; ask for them with [Broker.GroupQueues]. An empty topic returns
// [ErrNoQueueListing].
func (b *Broker) Queues(ctx context.Context, topic string) ([]broker.QueueStats, error) {
	if topic == "" {
		return nil, ErrNoQueueListing
	}
	return b.GroupQueues(ctx, topic)
}

// GroupQueues reports the queues of groups of topic (the default group when
// groups is empty) the way [Broker.Queues] does, with passive declares. A
// queue that does not exist returns an error wrapping
// [broker.ErrUnknownTopic] that names it.
func (b *Broker) GroupQueues(ctx context.Context, topic string, groups ...string) ([]broker.QueueStats, error) {
	if err := validTopic(topic); err != nil {
		return nil, err
	}
	if b.isClosed() {
		return nil, broker.ErrClosed
	}
	if len(groups) == 0 {
		groups = []string{""}
	}
	c, _, err := b.conn.get(ctx)
	if err != nil {
		return nil, err
	}
	out := make([]broker.QueueStats, 0, len(groups))
	for _, g := range groups {
		name := b.queueName(topic, g)
		// A failed passive declare closes the channel: one per queue.
		ch, err := c.Channel()
		if err != nil {
			return nil, fmt.Errorf("amqp: inspect queue %s: %w", name, err)
		}
		q, err := ch.QueueDeclarePassive(name, false, false, false, false, nil)
		if err != nil {
			_ = ch.Close()
			if isNotFound(err) {
				return nil, fmt.Errorf("amqp: queue %s of topic %q: %w", name, topic, broker.ErrUnknownTopic)
			}
			return nil, fmt.Errorf("amqp: inspect queue %s: %w", name, err)
		}
		_ = ch.Close()
		out = append(out, broker.QueueStats{
			Topic:     topic,
			Group:     broker.GroupName(topic, g),
			Queue:     name,
			Depth:     int64(q.Messages),
			InFlight:  -1,
			Consumers: q.Consumers,
		})
	}
	return out, nil
}
