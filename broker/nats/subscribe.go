package nats

import (
	"context"
	"errors"
	"strconv"
	"sync"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	natsgo "github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/harvesthub/hub/broker"
)

// keyDeliveryCount is hub.KeyDeliveryCount (the adapter does not import
// package hub).
const keyDeliveryCount = "hub-delivery-count"

// Subscribe joins topic's default group. See SubscribeGroup.
func (b *Broker) Subscribe(ctx context.Context, topic string) (<-chan *message.Message, error) {
	return b.SubscribeGroup(ctx, topic, broker.Group{})
}

// SubscribeGroup joins consumer group g of topic: a durable pull consumer
// of the topic's stream, shared by every subscription of the group (they
// compete for its messages). It creates the stream and the consumer when
// they do not exist; a new group receives the messages published from
// then on. Up to g.Prefetch messages are delivered and not yet acked at
// once. Ack acks the message; Nack makes JetStream deliver it again
// (after Config.NackDelay). While a delivered message is neither, the
// subscription tells JetStream it is in progress every AckWait/3.
//
// The channel is closed when ctx is done, once every delivered message is
// acked or nacked, or when the broker is closed (unacked messages are then
// nacked).
func (b *Broker) SubscribeGroup(ctx context.Context, topic string, g broker.Group) (<-chan *message.Message, error) {
	if b.isClosed() {
		return nil, broker.ErrClosed
	}
	group := broker.GroupName(topic, g.Name)
	if err := b.ensureGroup(ctx, topic, ""); err != nil {
		return nil, err
	}
	if err := b.ensureGroup(ctx, topic, group); err != nil {
		return nil, err
	}
	n := b.names(topic)
	cons, err := b.js.Consumer(ctx, n.stream, token(group))
	if err != nil {
		return nil, b.opError("subscribe to", topic, err)
	}
	s := &subscription{
		b:        b,
		topic:    topic,
		names:    n,
		consumer: token(group),
		cons:     cons,
		out:      make(chan *message.Message),
		slots:    make(chan struct{}, max(g.Prefetch, 1)),
	}
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return nil, broker.ErrClosed
	}
	b.subs.Add(1)
	b.mu.Unlock()
	go s.run(ctx)
	return s.out, nil
}

// subscription is one SubscribeGroup call: a loop that pulls as many
// messages as it has free slots, and one goroutine per delivered message
// that waits for its ack.
type subscription struct {
	b        *Broker
	topic    string
	names    names
	consumer string
	cons     jetstream.Consumer
	out      chan *message.Message
	slots    chan struct{} // one token per message delivered and not settled
	pending  sync.WaitGroup
}

func (s *subscription) run(ctx context.Context) {
	defer s.b.subs.Done()
	defer close(s.out)
	defer s.pending.Wait()
	// stop ends pulling: the subscription's or the broker's end.
	stop, cancel := context.WithCancel(ctx)
	defer cancel()
	defer context.AfterFunc(s.b.ctx, cancel)()
	log := s.b.cfg.Logger.With("topic", s.topic, "consumer", s.consumer)
	backoff := 100 * time.Millisecond
	for {
		// One slot at least, then every free one.
		select {
		case s.slots <- struct{}{}:
		case <-stop.Done():
			return
		}
		free := 1
	more:
		for free < cap(s.slots) {
			select {
			case s.slots <- struct{}{}:
				free++
			default:
				break more
			}
		}
		err := s.pull(stop, ctx, free)
		if stop.Err() != nil {
			return
		}
		if err != nil {
			log.Warn("nats: pulling messages failed; retrying", "error", err, "wait", backoff)
			select {
			case <-time.After(backoff):
			case <-stop.Done():
				return
			}
			backoff = min(2*backoff, 5*time.Second)
			continue
		}
		backoff = 100 * time.Millisecond
	}
}

// pull fetches up to free messages (free slots are held) and hands them
// out; slots not used are given back. A pull request is never abandoned:
// JetStream would go on sending messages to it until it expires, and each
// would wait AckWait before being delivered again. So when stop ends the
// subscription meanwhile, pull waits for the request to expire (at most
// Config.PollWait) and nacks what it receives.
func (s *subscription) pull(stop, subCtx context.Context, free int) error {
	// The server ends the request after PollWait; the client waits a second
	// longer for that answer, so a request is never given up while the
	// server may still send to it.
	batch, err := s.cons.Fetch(free, jetstream.FetchMaxWait(s.b.cfg.PollWait))
	if err != nil {
		s.release(free)
		return err
	}
	used := 0
	for m := range batch.Messages() {
		used++
		s.handle(stop, subCtx, m)
	}
	s.release(free - used)
	err = batch.Error()
	if err == nil || errors.Is(err, jetstream.ErrNoMessages) || errors.Is(err, natsgo.ErrTimeout) {
		return nil
	}
	return err
}

func (s *subscription) release(n int) {
	for range n {
		<-s.slots
	}
}

// handle delivers m, or settles it at once: a message addressed to another
// group is acked, one that arrived before its not-before time is nacked
// with the remaining delay. The slot m holds is released when m is
// settled.
func (s *subscription) handle(stop, subCtx context.Context, m jetstream.Msg) {
	if stop.Err() != nil {
		s.settle(m.Nak(), "nack on shutdown")
		s.release(1)
		return
	}
	if t := s.names.target(m.Subject()); t != "" && t != s.consumer {
		s.settle(m.Ack(), "ack a message for another group")
		s.release(1)
		return
	}
	meta, err := m.Metadata()
	if err != nil {
		s.b.cfg.Logger.Warn("nats: a delivery without JetStream metadata; nacking", "topic", s.topic, "error", err)
		s.settle(m.Nak(), "nack")
		s.release(1)
		return
	}
	uuid, md, notBefore, err := decodeHeaders(m.Headers())
	if err != nil {
		// Not written by this adapter: deliver the raw headers, for the hub
		// to dead-letter what it cannot read.
		s.b.cfg.Logger.Warn("nats: malformed hub headers; delivering them raw", "topic", s.topic, "error", err)
		uuid, md = "", message.Metadata{}
		for k, vs := range m.Headers() {
			if len(vs) > 0 {
				md[k] = vs[0]
			}
		}
	}
	if wait := time.Until(notBefore); wait > 0 {
		s.settle(m.NakWithDelay(wait), "nack an early delayed message")
		s.release(1)
		return
	}
	// A delayed message was most likely delivered once early, and nacked
	// with its delay: that delivery is not a redelivery.
	deliveries := int(meta.NumDelivered)
	if !notBefore.IsZero() && deliveries > 1 {
		deliveries--
	}
	if deliveries > 1 {
		md[keyDeliveryCount] = strconv.Itoa(deliveries)
	}
	msg := message.NewMessage(uuid, m.Data())
	msg.Metadata = md
	mctx, cancel := context.WithCancel(subCtx)
	msg.SetContext(mctx)
	select {
	case s.out <- msg:
	case <-stop.Done():
		cancel()
		s.settle(m.Nak(), "nack on shutdown")
		s.release(1)
		return
	}
	s.pending.Add(1)
	go s.await(m, msg, cancel)
}

// await settles m as msg is acked or nacked, and keeps it in progress
// meanwhile. When the broker closes first, m is nacked.
func (s *subscription) await(m jetstream.Msg, msg *message.Message, cancel context.CancelFunc) {
	defer s.pending.Done()
	defer s.release(1)
	defer cancel()
	tick := time.NewTicker(s.b.cfg.AckWait / 3)
	defer tick.Stop()
	for {
		select {
		case <-msg.Acked():
			s.settle(m.Ack(), "ack")
			return
		case <-msg.Nacked():
			if d := s.b.cfg.NackDelay; d > 0 {
				s.settle(m.NakWithDelay(d), "nack")
			} else {
				s.settle(m.Nak(), "nack")
			}
			return
		case <-s.b.ctx.Done():
			s.settle(m.Nak(), "nack on close")
			return
		case <-tick.C:
			s.settle(m.InProgress(), "extend the ack wait")
		}
	}
}

func (s *subscription) settle(err error, what string) {
	if err != nil && !errors.Is(err, jetstream.ErrMsgAlreadyAckd) {
		s.b.cfg.Logger.Warn("nats: could not "+what, "topic", s.topic, "consumer", s.consumer, "error", err)
	}
}
