package amqp

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/cenkalti/backoff/v4"
	amqp091 "github.com/rabbitmq/amqp091-go"

	"github.com/harvesthub/hub/broker"
)

// Metadata keys of the hub (package hub, metadata.go) this package writes.
const (
	keyDeliveryCount = "hub-delivery-count" // hub.KeyDeliveryCount
	keyContentType   = "hub-content-type"   // hub.KeyContentType
	// watermillUUIDHeader is where watermill-amqp's marshaler puts the
	// message UUID; read so that its publishers interoperate.
	watermillUUIDHeader = "_watermill_message_uuid"
)

// Subscribe joins the topic's default group (the queue named after the
// topic). See SubscribeGroup.
func (b *Broker) Subscribe(ctx context.Context, topic string) (<-chan *message.Message, error) {
	return b.SubscribeGroup(ctx, topic, broker.Group{})
}

// SubscribeGroup consumes the queue of group g of topic ("<topic>.<group>",
// or "<topic>" for the default group), declaring and binding it first.
// Subscriptions of one group, in this process or others, compete for its
// messages. Up to the prefetch (Group.Prefetch, else Config.Prefetch)
// messages are delivered and unacked at once; Ack and Nack map to
// basic.ack and basic.nack with requeue. A redelivered message carries
// hub-delivery-count (from x-delivery-count on quorum queues, else 2).
//
// When ctx is done the subscription stops consuming, nacks the deliveries it
// has not handed out, and closes the channel once every message handed out
// is acked or nacked. After a lost connection it consumes again once
// reconnected; messages handed out on the lost channel are redelivered by
// RabbitMQ and acking them is a no-op. Each message's context is cancelled
// once it is acked or nacked, or the broker is closed.
func (b *Broker) SubscribeGroup(ctx context.Context, topic string, g broker.Group) (<-chan *message.Message, error) {
	if err := validTopic(topic); err != nil {
		return nil, err
	}
	if g.Prefetch < 0 {
		return nil, fmt.Errorf("amqp: Group.Prefetch %d: must not be negative", g.Prefetch)
	}
	if b.isClosed() {
		return nil, broker.ErrClosed
	}
	s := &subscription{
		b:        b,
		ctx:      ctx,
		topic:    topic,
		group:    g.Name,
		queue:    b.queueName(topic, g.Name),
		prefetch: g.Prefetch,
		tag:      "hub-" + randomHex(8),
		out:      make(chan *message.Message),
	}
	if s.prefetch == 0 {
		s.prefetch = b.cfg.Prefetch
	}
	ch, deliveries, err := s.start()
	if err != nil {
		return nil, err
	}
	b.wg.Add(1)
	go func() {
		defer b.wg.Done()
		s.run(ch, deliveries)
	}()
	return s.out, nil
}

type subscription struct {
	b                   *Broker
	ctx                 context.Context
	topic, group, queue string
	prefetch            int
	tag                 string
	out                 chan *message.Message
	inflight            sync.WaitGroup
}

// start opens the first consumer for SubscribeGroup, waiting for a
// connection at most Config.PublishTimeout, so that a subscription that
// cannot start fails promptly (RabbitMQ unreachable, access refused)
// instead of blocking its caller. A queue deleted since this broker
// declared it is declared again once.
func (s *subscription) start() (*amqp091.Channel, <-chan amqp091.Delivery, error) {
	ctx, cancel := context.WithTimeout(s.ctx, s.b.cfg.PublishTimeout)
	defer cancel()
	ch, deliveries, err := s.open(ctx)
	if isNotFound(err) {
		ch, deliveries, err = s.open(ctx)
	}
	if err != nil {
		return nil, nil, fmt.Errorf("amqp: subscribe to topic %q group %q: %w", s.topic, broker.GroupName(s.topic, s.group), err)
	}
	return ch, deliveries, nil
}

// open declares the group's queue and starts consuming it on a new channel.
func (s *subscription) open(ctx context.Context) (*amqp091.Channel, <-chan amqp091.Delivery, error) {
	if err := s.b.declare(ctx, s.topic, []string{s.group}, false); err != nil {
		return nil, nil, err
	}
	c, _, err := s.b.conn.get(ctx)
	if err != nil {
		return nil, nil, err
	}
	ch, err := c.Channel()
	if err != nil {
		return nil, nil, fmt.Errorf("amqp: subscribe %s: %w", s.queue, err)
	}
	if err := ch.Qos(s.prefetch, 0, false); err != nil {
		_ = ch.Close()
		return nil, nil, fmt.Errorf("amqp: subscribe %s: qos: %w", s.queue, err)
	}
	deliveries, err := ch.Consume(s.queue, s.tag, false, false, false, false, nil)
	if err != nil {
		_ = ch.Close()
		if isNotFound(err) {
			// Deleted behind our back (or transient and lost): declare again.
			s.b.forget(s.queue)
		}
		return nil, nil, fmt.Errorf("amqp: consume %s: %w", s.queue, err)
	}
	return ch, deliveries, nil
}

func isNotFound(err error) bool {
	var ae *amqp091.Error
	return errors.As(err, &ae) && ae.Code == amqp091.NotFound
}

func isAccessRefused(err error) bool {
	var ae *amqp091.Error
	return errors.As(err, &ae) && ae.Code == amqp091.AccessRefused
}

func (b *Broker) forget(queue string) {
	b.mu.Lock()
	delete(b.declared, queue)
	b.mu.Unlock()
}

type stopReason int

const (
	lost        stopReason = iota // the channel closed under us
	cancelled                     // the subscription's ctx is done
	closingDown                   // the broker is closing
)

func (s *subscription) run(ch *amqp091.Channel, deliveries <-chan amqp091.Delivery) {
	defer close(s.out)
	for {
		dead := make(chan struct{})
		notify := ch.NotifyClose(make(chan *amqp091.Error, 1))
		s.b.wg.Add(1)
		go func() {
			defer s.b.wg.Done()
			for range notify {
			}
			close(dead)
		}()

		why := s.consume(deliveries, dead)
		switch why {
		case cancelled:
			// Stop new deliveries, give back those not handed out, then
			// keep the channel open for the handlers still working.
			if err := ch.Cancel(s.tag, false); err == nil {
				for d := range deliveries {
					_ = d.Nack(false, true)
				}
			}
			s.inflight.Wait()
			_ = ch.Close()
			return
		case closingDown:
			_ = ch.Close() // unacked deliveries return to the queue
			s.inflight.Wait()
			return
		}
		_ = ch.Close()
		s.b.cfg.Logger.Warn("amqp: subscription channel lost, consuming again", "queue", s.queue)

		var err error
		ch, deliveries, err = s.reopen()
		if err != nil {
			s.inflight.Wait()
			return
		}
	}
}

// reopen opens a new consumer with backoff until it succeeds, ctx is done or
// the broker closes.
func (s *subscription) reopen() (*amqp091.Channel, <-chan amqp091.Delivery, error) {
	bo := backoff.NewExponentialBackOff()
	bo.InitialInterval = s.b.cfg.ReconnectMin
	bo.MaxInterval = s.b.cfg.ReconnectMax
	bo.MaxElapsedTime = 0
	for {
		ch, deliveries, err := s.open(s.ctx)
		if err == nil {
			return ch, deliveries, nil
		}
		if s.ctx.Err() != nil || s.b.isClosed() {
			return nil, nil, err
		}
		level := slog.LevelDebug
		if isAccessRefused(err) {
			level = slog.LevelError // no retry heals this without an operator
		}
		s.b.cfg.Logger.Log(s.ctx, level, "amqp: subscribe again failed, retrying", "queue", s.queue, "error", err)
		t := time.NewTimer(bo.NextBackOff())
		select {
		case <-t.C:
		case <-s.ctx.Done():
			t.Stop()
			return nil, nil, s.ctx.Err()
		case <-s.b.closing:
			t.Stop()
			return nil, nil, broker.ErrClosed
		}
	}
}

// consume hands deliveries out until the channel dies, ctx is done or the
// broker closes.
func (s *subscription) consume(deliveries <-chan amqp091.Delivery, dead <-chan struct{}) stopReason {
	base := context.WithoutCancel(s.ctx)
	for {
		select {
		case d, ok := <-deliveries:
			if !ok {
				return lost
			}
			msg := s.b.unmarshal(&d)
			mctx, cancel := context.WithCancel(base)
			msg.SetContext(mctx)
			select {
			case s.out <- msg:
				s.inflight.Add(1)
				go s.await(d, msg, cancel, dead)
			case <-s.ctx.Done():
				cancel()
				_ = d.Nack(false, true)
				return cancelled
			case <-s.b.closing:
				cancel()
				return closingDown
			case <-dead:
				cancel()
				return lost
			}
		case <-s.ctx.Done():
			return cancelled
		case <-s.b.closing:
			return closingDown
		}
	}
}

// await maps the handler's Ack or Nack to the delivery.
func (s *subscription) await(d amqp091.Delivery, msg *message.Message, cancel context.CancelFunc, dead <-chan struct{}) {
	defer s.inflight.Done()
	defer cancel()
	select {
	case <-msg.Acked():
		_ = d.Ack(false)
	case <-msg.Nacked():
		_ = d.Nack(false, true)
	case <-dead: // RabbitMQ requeued it with the channel
	case <-s.b.closing: // idem once Close closes the channel
	}
}

// unmarshal maps a delivery to a message: MessageId as UUID, string headers
// as metadata (x- headers of RabbitMQ left out), body as payload.
func (b *Broker) unmarshal(d *amqp091.Delivery) *message.Message {
	id := d.MessageId
	if id == "" {
		id, _ = d.Headers[watermillUUIDHeader].(string)
	}
	msg := message.NewMessage(id, d.Body)
	for k, v := range d.Headers {
		if strings.HasPrefix(k, "x-") || k == watermillUUIDHeader || k == keyDeliveryCount {
			continue
		}
		if s, ok := v.(string); ok {
			msg.Metadata[k] = s
		} else {
			msg.Metadata[k] = fmt.Sprint(v)
		}
	}
	if n := deliveryCount(d); n > 1 {
		msg.Metadata[keyDeliveryCount] = strconv.Itoa(n)
	}
	b.markDeadLetter(d, msg)
	return msg
}

// deliveryCount is the 1-based number of this delivery when RabbitMQ tells:
// x-delivery-count (quorum queues) counts earlier deliveries; otherwise the
// Redelivered flag only says it is at least the second.
func deliveryCount(d *amqp091.Delivery) int {
	switch n := d.Headers["x-delivery-count"].(type) {
	case int64:
		return int(n) + 1
	case int32:
		return int(n) + 1
	case int:
		return n + 1
	}
	if d.Redelivered {
		return 2
	}
	return 1
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}
