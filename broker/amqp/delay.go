package amqp

import (
	"context"
	"fmt"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	amqp091 "github.com/rabbitmq/amqp091-go"

	"github.com/harvesthub/hub/broker"
)

// Delay tiers: a delay is rounded up to the next power of two of
// MinDelayTier (125ms, 250ms, 500ms, 1s, 2s, 4s, ... up to MaxDelayTier).
const (
	MinDelayTier = 125 * time.Millisecond
	MaxDelayTier = MinDelayTier << 20 // about 36h24m
)

// DelayTier returns the delay a message published with PublishDelayed(d)
// actually waits: d rounded up to a tier. It returns false when d exceeds
// MaxDelayTier.
func DelayTier(d time.Duration) (time.Duration, bool) {
	t := MinDelayTier
	for t < d {
		if t >= MaxDelayTier {
			return 0, false
		}
		t *= 2
	}
	return t, true
}

// PublishDelayed publishes msgs so that they reach topic once delay,
// rounded up to a tier (see DelayTier), has passed: to the queue of group
// only, or to every group of the topic when group is empty. Nothing waits
// in this process: the messages sit in a TTL queue per tier and target
// (named "hub.delay.<tier>.<queue>" or "hub.delay.<tier>.exchange.<topic>",
// "hub.qdelay." for quorum queues, with QueuePrefix) that dead-letters them
// to the target when the tier's TTL expires, so a pending retry survives a
// worker restart (and a broker restart when durable; on quorum queues, the
// loss of a node, with at-least-once dead-lettering). Delay queues delete
// themselves once unused for twice their tier plus a minute (quorum delay
// queues: plus an hour). A delay of zero or less publishes at
// once. PublishDelayed returns once RabbitMQ has confirmed every message,
// waiting at most Config.PublishTimeout (or until ctx ends, if sooner).
func (b *Broker) PublishDelayed(ctx context.Context, topic, group string, delay time.Duration, msgs ...*message.Message) error {
	if err := validTopic(topic); err != nil {
		return err
	}
	if b.isClosed() {
		return broker.ErrClosed
	}
	// Bounded like Publish: a confirm that never comes must not hold a
	// delayed retry (and the delivery that asked for it) forever.
	ctx, cancel := context.WithTimeout(ctx, b.cfg.PublishTimeout)
	defer cancel()
	tier, ok := DelayTier(delay)
	if !ok {
		return fmt.Errorf("amqp: delay %v exceeds the longest tier %v", delay, MaxDelayTier)
	}
	if err := b.declare(ctx, topic, []string{group}, false); err != nil {
		return err
	}
	var target string
	var args amqp091.Table
	if group != "" {
		q := b.queueName(topic, group)
		if delay <= 0 {
			return b.pub.publish(ctx, "", q, msgs)
		}
		target, args = b.delayQueue(tier, "", q)
	} else {
		if delay <= 0 {
			return b.pub.publish(ctx, b.exchangeName(topic), "", msgs)
		}
		target, args = b.delayQueue(tier, b.exchangeName(topic), "")
	}
	// Declared on every call, not cached: a declaration resets x-expires,
	// so the queue outlives every message published into it.
	if err := b.declareDelayQueue(ctx, target, args); err != nil {
		return err
	}
	return b.pub.publish(ctx, "", target, msgs)
}

func (b *Broker) declareDelayQueue(ctx context.Context, name string, args amqp091.Table) error {
	c, _, err := b.conn.get(ctx)
	if err != nil {
		return err
	}
	ch, err := c.Channel()
	if err != nil {
		return fmt.Errorf("amqp: declare delay queue %s: %w", name, err)
	}
	defer ch.Close()
	if _, err := ch.QueueDeclare(name, !b.cfg.Transient, false, false, false, args); err != nil {
		return b.declareError("delay queue", name, err)
	}
	return nil
}
