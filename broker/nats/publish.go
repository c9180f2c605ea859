package nats

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	natsgo "github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/harvesthub/hub/broker"
)

// publishWindow is how many asynchronous publishes wait for their acks at
// once.
const publishWindow = 256

// Publish sends msgs to every consumer group of topic, within
// Config.PublishTimeout. See PublishContext.
func (b *Broker) Publish(topic string, msgs ...*message.Message) error {
	ctx, cancel := context.WithTimeout(b.ctx, b.cfg.PublishTimeout)
	defer cancel()
	err := b.PublishContext(ctx, topic, msgs...)
	if err != nil && b.isClosed() && errors.Is(err, context.Canceled) {
		return broker.ErrClosed
	}
	return err
}

// PublishContext sends msgs to every consumer group of topic and returns
// once JetStream has stored them all (or dropped one as a duplicate of a
// message with the same Nats-Msg-Id), or with ctx's error. The first
// publish to a topic creates its stream and the default group's consumer,
// so nothing published before the first subscriber is lost. Every message
// is checked against the server's max_payload before any is sent: one
// oversize message fails the call with broker.ErrMessageTooLarge and
// nothing is published.
func (b *Broker) PublishContext(ctx context.Context, topic string, msgs ...*message.Message) error {
	return b.publish(ctx, topic, "", time.Time{}, msgs)
}

// PublishDelayed sends msgs to topic, to be delivered once delay has
// passed: to group's consumer only when group is set, otherwise to every
// group. JetStream on servers before 2.12 cannot schedule a message, so
// the message is stored at once with a not-before time; a subscription
// that receives it early does not deliver it but nacks it with the
// remaining delay (NakWithDelay), and JetStream delivers it again then.
func (b *Broker) PublishDelayed(ctx context.Context, topic, group string, delay time.Duration, msgs ...*message.Message) error {
	var notBefore time.Time
	if delay > 0 {
		notBefore = time.Now().Add(delay)
	}
	return b.publish(ctx, topic, group, notBefore, msgs)
}

// Declare creates topic's stream and the consumers of groups, so that
// messages published from now on are kept for them. An empty group name or
// the topic's own name is the default group, which is always declared.
func (b *Broker) Declare(ctx context.Context, topic string, groups ...string) error {
	if b.isClosed() {
		return broker.ErrClosed
	}
	if err := b.ensureGroup(ctx, topic, ""); err != nil {
		return err
	}
	for _, g := range groups {
		if err := b.ensureGroup(ctx, topic, g); err != nil {
			return err
		}
	}
	return nil
}

func (b *Broker) publish(ctx context.Context, topic, group string, notBefore time.Time, msgs []*message.Message) error {
	if b.isClosed() {
		return broker.ErrClosed
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("nats: publish to topic %s: %w", topic, err)
	}
	n := b.names(topic)
	subject := n.subject
	if group != "" {
		subject = n.groupSubject(token(broker.GroupName(topic, group)))
	}
	wire := make([]*natsgo.Msg, len(msgs))
	limit := int(b.nc.MaxPayload())
	for i, m := range msgs {
		w := &natsgo.Msg{Subject: subject, Data: m.Payload, Header: encodeHeaders(m, notBefore)}
		if id := msgID(m); id != "" {
			w.Header[jetstream.MsgIDHeader] = []string{id}
		}
		if size := broker.MessageSize(m); size > b.MaxMessageSize() {
			return fmt.Errorf("nats: publish to topic %s: message %s is %d bytes of payload and metadata, over the limit of %d (max_payload less room for the adapter's headers): %w",
				topic, m.UUID, size, b.MaxMessageSize(), broker.ErrMessageTooLarge)
		}
		if size := wireSize(w); size > limit {
			return fmt.Errorf("nats: publish to topic %s: message %s is %d bytes with its headers, over the server's max_payload of %d: %w",
				topic, m.UUID, size, limit, broker.ErrMessageTooLarge)
		}
		wire[i] = w
	}
	if err := b.ensureGroup(ctx, topic, ""); err != nil {
		return err
	}
	if group != "" {
		if err := b.ensureGroup(ctx, topic, group); err != nil {
			return err
		}
	}
	for len(wire) > 0 {
		chunk := wire[:min(len(wire), publishWindow)]
		wire = wire[len(chunk):]
		if err := b.send(ctx, topic, chunk); err != nil {
			return err
		}
	}
	return nil
}

// send publishes chunk asynchronously and waits for every ack. A stream
// deleted behind the adapter's back is created again, once.
func (b *Broker) send(ctx context.Context, topic string, chunk []*natsgo.Msg) error {
	futures := make([]jetstream.PubAckFuture, 0, len(chunk))
	for _, w := range chunk {
		f, err := b.js.PublishMsgAsync(w, jetstream.WithExpectStream(b.names(topic).stream))
		if err != nil {
			return b.opError("publish to", topic, err)
		}
		futures = append(futures, f)
	}
	var retry []*natsgo.Msg
	for i, f := range futures {
		select {
		case <-f.Ok():
		case err := <-f.Err():
			if errors.Is(err, jetstream.ErrNoStreamResponse) || errors.Is(err, natsgo.ErrNoResponders) {
				retry = append(retry, chunk[i])
				continue
			}
			return b.opError("publish to", topic, err)
		case <-ctx.Done():
			return b.opError("publish to", topic, ctx.Err())
		}
	}
	if len(retry) == 0 {
		return nil
	}
	b.forget(topic)
	if err := b.ensureGroup(ctx, topic, ""); err != nil {
		return err
	}
	for _, w := range retry {
		if _, err := b.js.PublishMsg(ctx, w); err != nil {
			return b.opError("publish to", topic, err)
		}
	}
	return nil
}

// wireSize is the size of w on the wire, as the server compares it with
// max_payload: the header block and the payload.
func wireSize(w *natsgo.Msg) int {
	n := len("NATS/1.0\r\n\r\n") + len(w.Data)
	for k, vs := range w.Header {
		for _, v := range vs {
			n += len(k) + len(v) + 4
		}
	}
	return n
}

// ensureGroup creates topic's stream and the consumer of group (the
// default group when empty), unless this Broker already did.
func (b *Broker) ensureGroup(ctx context.Context, topic, group string) error {
	n := b.names(topic)
	consumer := token(broker.GroupName(topic, group))
	b.mu.Lock()
	known, streamKnown := b.declared[n.stream]
	done := streamKnown && known[consumer]
	b.mu.Unlock()
	if done {
		return nil
	}
	if !streamKnown {
		if err := b.createStream(ctx, topic, n); err != nil {
			return err
		}
	}
	if err := b.createConsumer(ctx, topic, n, broker.GroupName(topic, group)); err != nil {
		return err
	}
	b.mu.Lock()
	if b.declared[n.stream] == nil {
		b.declared[n.stream] = map[string]bool{}
	}
	b.declared[n.stream][consumer] = true
	b.mu.Unlock()
	return nil
}

// forget drops what this Broker knows of topic's stream.
func (b *Broker) forget(topic string) {
	b.mu.Lock()
	delete(b.declared, b.names(topic).stream)
	b.mu.Unlock()
}

// Descriptions mark the streams and consumers the adapter creates, and
// keep the hub's names (which the JetStream names may have hashed).
const (
	streamMarker   = "harvest hub topic: "
	consumerMarker = "harvest hub group: "
)

func (b *Broker) streamConfig(topic string, n names) jetstream.StreamConfig {
	storage := jetstream.FileStorage
	if b.cfg.MemoryStorage {
		storage = jetstream.MemoryStorage
	}
	return jetstream.StreamConfig{
		Name:        n.stream,
		Description: streamMarker + topic,
		Subjects:    []string{n.subject, n.subject + ".>"},
		Retention:   jetstream.InterestPolicy,
		Storage:     storage,
		Replicas:    b.cfg.Replicas,
		Duplicates:  b.cfg.DuplicateWindow,
		MaxAge:      b.cfg.MaxAge,
		MaxMsgs:     -1,
		MaxBytes:    -1,
		Discard:     jetstream.DiscardOld,
	}
}

func (b *Broker) createStream(ctx context.Context, topic string, n names) error {
	_, err := b.js.CreateStream(ctx, b.streamConfig(topic, n))
	if errors.Is(err, jetstream.ErrStreamNameAlreadyInUse) {
		// Created by another process, maybe with other settings: use it.
		_, err = b.js.Stream(ctx, n.stream)
	}
	if err != nil {
		return b.opError("create the stream "+n.stream+" of", topic, err)
	}
	return nil
}

func (b *Broker) consumerConfig(group string) jetstream.ConsumerConfig {
	return jetstream.ConsumerConfig{
		Durable:       token(group),
		Description:   consumerMarker + group,
		DeliverPolicy: jetstream.DeliverNewPolicy,
		AckPolicy:     jetstream.AckExplicitPolicy,
		AckWait:       b.cfg.AckWait,
		MaxDeliver:    b.cfg.MaxDeliver,
		MaxAckPending: b.cfg.MaxAckPending,
		ReplayPolicy:  jetstream.ReplayInstantPolicy,
	}
}

func (b *Broker) createConsumer(ctx context.Context, topic string, n names, group string) error {
	cfg := b.consumerConfig(group)
	_, err := b.js.Consumer(ctx, n.stream, cfg.Durable)
	if errors.Is(err, jetstream.ErrConsumerNotFound) {
		_, err = b.js.CreateConsumer(ctx, n.stream, cfg)
		if errors.Is(err, jetstream.ErrConsumerExists) {
			_, err = b.js.Consumer(ctx, n.stream, cfg.Durable)
		}
	}
	if err != nil {
		return b.opError("create the consumer "+cfg.Durable+" of", topic, err)
	}
	return nil
}

func (b *Broker) opError(op, topic string, err error) error {
	if b.isClosed() && (errors.Is(err, context.Canceled) || errors.Is(err, natsgo.ErrConnectionClosed)) {
		return broker.ErrClosed
	}
	return fmt.Errorf("nats: %s topic %s at %s: %w", op, topic, redact(b.cfg.URL), err)
}

// redact hides passwords and tokens in a server URL list.
func redact(raw string) string {
	parts := strings.Split(raw, ",")
	for i, p := range parts {
		u, err := url.Parse(strings.TrimSpace(p))
		if err != nil || u.User == nil {
			continue
		}
		if _, ok := u.User.Password(); ok {
			u.User = url.UserPassword(u.User.Username(), "xxxxx")
		} else {
			u.User = url.User("xxxxx") // a token
		}
		parts[i] = u.String()
	}
	return strings.Join(parts, ",")
}
