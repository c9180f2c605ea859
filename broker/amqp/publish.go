package amqp

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"

	"github.com/ThreeDotsLabs/watermill/message"
	amqp091 "github.com/rabbitmq/amqp091-go"

	"github.com/harvesthub/hub/broker"
)

// publisher spreads publishes over a fixed set of channels in confirm mode.
// A batch is written without waiting, then its confirms are awaited
// together, so throughput is bounded by bandwidth, not by round trips.
type publisher struct {
	b     *Broker
	next  atomic.Uint64
	slots []pubSlot
}

type pubSlot struct {
	lock chan struct{} // cap 1: held while the slot's channel is used or opened
	ch   *amqp091.Channel
	conn *amqp091.Connection
}

func newPublisher(b *Broker) *publisher {
	p := &publisher{b: b, slots: make([]pubSlot, b.cfg.PublisherChannels)}
	for i := range p.slots {
		p.slots[i].lock = make(chan struct{}, 1)
	}
	return p
}

// channel returns an open channel of the pool, opening it (after a
// reconnection if need be) when the previous one was closed. It waits for
// the slot, the connection and RabbitMQ's replies at most until ctx ends.
func (p *publisher) channel(ctx context.Context) (*amqp091.Channel, *amqp091.Connection, error) {
	s := &p.slots[p.next.Add(1)%uint64(len(p.slots))]
	select {
	case s.lock <- struct{}{}:
	case <-ctx.Done():
		return nil, nil, fmt.Errorf("amqp: waiting for a publisher channel: %w", ctx.Err())
	}
	defer func() { <-s.lock }()
	if s.ch != nil && !s.ch.IsClosed() {
		return s.ch, s.conn, nil
	}
	for {
		c, _, err := p.b.conn.get(ctx)
		if err != nil {
			return nil, nil, err
		}
		ch, err := p.b.calls.await(ctx, "open publisher channel", func() (*amqp091.Channel, error) {
			ch, err := c.Channel()
			if err == nil && !p.b.cfg.NoConfirms {
				if err = ch.Confirm(false); err != nil {
					_ = ch.Close()
					return nil, err
				}
			}
			return ch, err
		})
		if err == nil {
			s.ch, s.conn = ch, c
			return ch, c, nil
		}
		if ctx.Err() != nil {
			return nil, nil, err // await's error names what was awaited
		}
		if !errors.Is(err, amqp091.ErrClosed) && !c.IsClosed() {
			return nil, nil, fmt.Errorf("amqp: open publisher channel: %w", err)
		}
		// The connection went down under us: wait for the next one.
	}
}

// publish sends msgs to exchange with routing key and returns once every
// one is confirmed. Messages whose channel closes before their confirm
// arrives (a lost connection) are sent again on a new channel until ctx is
// done: a message may then be delivered twice, never lost silently.
//
// Every message is checked against RabbitMQ's size limits first (see
// checkSize): one too large fails the call with an error wrapping
// broker.ErrMessageTooLarge and nothing is sent, so an oversize message
// never costs the connection or its consumers.
func (p *publisher) publish(ctx context.Context, exchange, key string, msgs []*message.Message) error {
	wire := make(map[*message.Message]amqp091.Publishing, len(msgs))
	frameMax := int(p.b.conn.frameMax.Load())
	for _, m := range msgs {
		pub := p.b.marshal(m)
		if err := checkSize(m, &pub, frameMax, p.b.cfg.MaxMessageSize); err != nil {
			return fmt.Errorf("amqp: publish to %q: %w", exchange, err)
		}
		wire[m] = pub
	}
	pending := msgs
	for len(pending) > 0 {
		ch, conn, err := p.channel(ctx)
		if err != nil {
			return fmt.Errorf("amqp: publish to %q: %w", exchange, err)
		}
		var retry []*message.Message
		dcs := make([]*amqp091.DeferredConfirmation, 0, len(pending))
		sent := pending
		for i, m := range pending {
			dc, err := ch.PublishWithDeferredConfirmWithContext(ctx, exchange, key, false, false, wire[m])
			if err != nil {
				if errors.Is(err, amqp091.ErrClosed) && ctx.Err() == nil {
					retry = append(retry, pending[i:]...)
					sent = pending[:i]
					break
				}
				return fmt.Errorf("amqp: publish message %s to %q: %w", m.UUID, exchange, err)
			}
			dcs = append(dcs, dc) // nil when confirms are off
		}
		for i, dc := range dcs {
			if dc == nil {
				continue
			}
			ok, err := dc.WaitContext(ctx)
			if err != nil {
				if errors.Is(err, context.DeadlineExceeded) {
					p.discard(ch)
				}
				return fmt.Errorf("amqp: waiting for the confirm of message %s: %w", sent[i].UUID, err)
			}
			if !ok {
				if !ch.IsClosed() {
					return fmt.Errorf("amqp: message %s to %q: %w", sent[i].UUID, exchange, ErrNacked)
				}
				retry = append(retry, sent[i])
			}
		}
		if len(retry) > 0 {
			if !conn.IsClosed() {
				// The channel died, not the connection: a channel
				// exception such as a deleted exchange. Sending again
				// would fail the same way.
				return fmt.Errorf("amqp: publish to %q: %d messages unconfirmed: %w", exchange, len(retry), ErrChannelClosed)
			}
			if err := ctx.Err(); err != nil {
				return fmt.Errorf("amqp: publish to %q: %d messages unconfirmed: %w", exchange, len(retry), err)
			}
			if p.b.isClosed() {
				return fmt.Errorf("amqp: publish to %q: %d messages unconfirmed: %w", exchange, len(retry), broker.ErrClosed)
			}
		}
		pending = retry
	}
	return nil
}

// discard closes ch, a channel whose confirm did not come in time, so that
// the next publish on its slot opens a new one. A confirm may never come:
// RabbitMQ 3.10 lost the confirms of a channel publishing to a quorum queue
// whose leader's node was killed (package clustertest), and every later
// publish on that channel would wait for its deadline too. The close runs
// in the background (it awaits RabbitMQ's reply) and ends at the latest
// with the connection, which Close waits for.
func (p *publisher) discard(ch *amqp091.Channel) {
	if ch.IsClosed() {
		return
	}
	p.b.wg.Add(1)
	go func() {
		defer p.b.wg.Done()
		_ = ch.Close()
	}()
}

// ErrChannelClosed is returned when RabbitMQ closes a publishing channel
// with an exception while the connection stays up (a deleted exchange or
// queue, for instance). The next publish declares the topic again.
var ErrChannelClosed = errors.New("amqp: channel closed by the broker")

// ErrNacked is returned when RabbitMQ refuses a published message
// (basic.nack: an internal error of the queue).
var ErrNacked = errors.New("amqp: message nacked by the broker")

// marshal maps a message to an AMQP publishing: UUID in MessageId, metadata
// in headers, payload as body, persistent unless the broker is transient.
func (b *Broker) marshal(m *message.Message) amqp091.Publishing {
	headers := make(amqp091.Table, len(m.Metadata))
	for k, v := range m.Metadata {
		headers[k] = v
	}
	p := amqp091.Publishing{Headers: headers, MessageId: m.UUID, Body: m.Payload}
	if !b.cfg.Transient {
		p.DeliveryMode = amqp091.Persistent
	}
	if ct := m.Metadata.Get(keyContentType); ct != "" {
		p.ContentType = ct
	}
	return p
}
