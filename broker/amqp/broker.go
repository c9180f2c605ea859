package amqp

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"

	"github.com/ThreeDotsLabs/watermill/message"
	amqp091 "github.com/rabbitmq/amqp091-go"

	"github.com/harvesthub/hub/broker"
)

// Broker is a RabbitMQ [broker.Broker], [broker.Delayer] and
// [broker.Declarer]. It is safe for concurrent use.
type Broker struct {
	cfg  Config
	conn *conn
	pub  *publisher

	closing   chan struct{}
	closeOnce sync.Once
	wg        sync.WaitGroup // conn.run and every subscription
	calls     calls          // AMQP calls awaited with a context

	mu       sync.Mutex
	declared map[string]uint64 // topology key -> connection generation
}

var (
	_ broker.Broker   = (*Broker)(nil)
	_ broker.Delayer  = (*Broker)(nil)
	_ broker.Declarer = (*Broker)(nil)
)

// New connects to RabbitMQ. It returns an error when cfg is invalid or the
// server cannot be reached; once connected, a lost connection is restored in
// the background until Close.
func New(cfg Config) (*Broker, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	b := &Broker{cfg: cfg, closing: make(chan struct{}), declared: map[string]uint64{}}
	b.conn, err = newConn(cfg, b.closing)
	if err != nil {
		return nil, err
	}
	b.pub = newPublisher(b)
	b.wg.Add(1)
	go func() {
		defer b.wg.Done()
		b.conn.run()
	}()
	return b, nil
}

// Name returns "rabbitmq", the OpenTelemetry messaging.system.
func (b *Broker) Name() string { return "rabbitmq" }

// Ping opens and closes a channel on the current connection. It returns an
// error while the broker is reconnecting or after Close.
func (b *Broker) Ping(ctx context.Context) error {
	if b.isClosed() {
		return broker.ErrClosed
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	b.conn.mu.Lock()
	c := b.conn.c
	up := isClosed(b.conn.ready)
	b.conn.mu.Unlock()
	if !up || c.IsClosed() {
		return errNotConnected
	}
	done := make(chan error, 1)
	go func() {
		ch, err := c.Channel()
		if err == nil {
			err = ch.Close()
		}
		done <- err
	}()
	select {
	case err := <-done:
		if err != nil {
			return fmt.Errorf("amqp: ping: %w", err)
		}
		return nil
	case <-ctx.Done():
		return fmt.Errorf("amqp: ping: %w", ctx.Err())
	}
}

// Close stops every subscription and closes the connection. Messages
// delivered and not yet acked return to their queue (RabbitMQ requeues the
// unacked deliveries of a closed channel); Close nacks nothing itself.
// Publishes in progress return an error. Close is safe to call more than
// once; later calls return nil.
func (b *Broker) Close() error {
	b.closeOnce.Do(func() {
		close(b.closing)
		b.wg.Wait()
		b.calls.close()
	})
	return nil
}

func (b *Broker) isClosed() bool {
	select {
	case <-b.closing:
		return true
	default:
		return false
	}
}

// exchangeName, queueName and delayQueueName give the RabbitMQ names of a
// topic's exchange, a group's queue and a delay tier's queue.
func (b *Broker) exchangeName(topic string) string { return b.cfg.ExchangePrefix + topic }

func (b *Broker) queueName(topic, group string) string {
	g := broker.GroupName(topic, group)
	if g == topic {
		return b.cfg.QueuePrefix + topic
	}
	return b.cfg.QueuePrefix + topic + "." + g
}

func validTopic(topic string) error {
	if topic == "" {
		return errors.New("amqp: empty topic")
	}
	if len(topic) > 200 {
		return fmt.Errorf("amqp: topic %.20q...: longer than 200 bytes", topic)
	}
	return nil
}

// Declare creates the topic's exchange and the queues of groups (the
// topic's default group when groups is empty), bound to it, so that
// messages published from now on are kept for them.
func (b *Broker) Declare(ctx context.Context, topic string, groups ...string) error {
	if err := validTopic(topic); err != nil {
		return err
	}
	if b.isClosed() {
		return broker.ErrClosed
	}
	if len(groups) == 0 {
		groups = []string{""}
	}
	return b.declare(ctx, topic, groups, false)
}

// declare declares the exchange of topic and the queues of groups, skipping
// what this connection already declared unless force is set.
func (b *Broker) declare(ctx context.Context, topic string, groups []string, force bool) error {
	c, gen, err := b.conn.get(ctx)
	if err != nil {
		return err
	}
	var todo []string
	b.mu.Lock()
	for _, g := range groups {
		if force || b.declared[b.queueName(topic, g)] != gen {
			todo = append(todo, g)
		}
	}
	b.mu.Unlock()
	if len(todo) == 0 {
		return nil
	}
	if b.limited(topic) {
		// Messages over the delivery limit are dead-lettered to the
		// dead-letter topic: its exchange and queue must exist first.
		if err := b.declare(ctx, topic+b.cfg.DeadLetterSuffix, []string{""}, force); err != nil {
			return err
		}
	}
	_, err = b.calls.await(ctx, "declare "+topic, func() (*amqp091.Channel, error) {
		return nil, b.declareOn(c, gen, topic, todo)
	})
	return err
}

// declareOn declares the exchange of topic and the queues of groups on a
// channel of c, a connection of generation gen.
func (b *Broker) declareOn(c *amqp091.Connection, gen uint64, topic string, todo []string) error {
	ch, err := c.Channel()
	if err != nil {
		return fmt.Errorf("amqp: declare %s: %w", topic, err)
	}
	defer ch.Close()
	durable := !b.cfg.Transient
	if err := ch.ExchangeDeclare(b.exchangeName(topic), "fanout", durable, false, false, false, nil); err != nil {
		return fmt.Errorf("amqp: declare exchange %s: %w", b.exchangeName(topic), err)
	}
	args := b.groupQueueArgs(topic)
	for _, g := range todo {
		q := b.queueName(topic, g)
		if _, err := ch.QueueDeclare(q, durable, false, false, false, args); err != nil {
			return b.declareError("queue", q, err)
		}
		if err := ch.QueueBind(q, "", b.exchangeName(topic), false, nil); err != nil {
			return fmt.Errorf("amqp: bind queue %s: %w", q, err)
		}
		b.mu.Lock()
		b.declared[q] = gen
		b.mu.Unlock()
	}
	return nil
}

// Publish publishes msgs to every group of topic. The topic's exchange and
// default group queue are declared on first use, so messages published
// before any subscriber exists are kept. Publish returns once RabbitMQ has
// confirmed every message (or with an error naming the first that failed),
// waiting at most Config.PublishTimeout, also across a reconnection.
func (b *Broker) Publish(topic string, msgs ...*message.Message) error {
	ctx, cancel := context.WithTimeout(context.Background(), b.cfg.PublishTimeout)
	defer cancel()
	return b.PublishContext(ctx, topic, msgs...)
}

// PublishContext is Publish bounded by ctx instead of Config.PublishTimeout.
func (b *Broker) PublishContext(ctx context.Context, topic string, msgs ...*message.Message) error {
	if err := validTopic(topic); err != nil {
		return err
	}
	if b.isClosed() {
		return broker.ErrClosed
	}
	if err := b.declare(ctx, topic, []string{""}, false); err != nil {
		return err
	}
	err := b.pub.publish(ctx, b.exchangeName(topic), "", msgs)
	if errors.Is(err, ErrChannelClosed) {
		b.forgetTopic(topic)
	}
	return err
}

// forgetTopic drops what is known to be declared for topic, so that the
// next publish or subscribe declares it again.
func (b *Broker) forgetTopic(topic string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	for q := range b.declared {
		if q == b.queueName(topic, "") || strings.HasPrefix(q, b.queueName(topic, "")+".") {
			delete(b.declared, q)
		}
	}
}
