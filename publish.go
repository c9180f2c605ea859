package hub

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/harvesthub/hub/broker"
)

// PublishOption configures one Publish.
type PublishOption func(*publishConfig)

type publishConfig struct {
	keyFunc  func(i int) string
	key      string
	id       string
	delay    time.Duration
	metadata []string // key, value pairs
}

// WithKey sets the idempotency key (hub-key). Messages with one key are
// handled once per handler, however often they are published or delivered.
// Defaults to the message ID, which is new on every Publish.
func WithKey(key string) PublishOption { return func(c *publishConfig) { c.key = key } }

// WithID sets the message ID. Defaults to a new UUID.
func WithID(id string) PublishOption { return func(c *publishConfig) { c.id = id } }

// WithMetadata adds a metadata entry. Keys the hub owns (see metadata.go)
// are overwritten by the hub.
func WithMetadata(key, value string) PublishOption {
	return func(c *publishConfig) { c.metadata = append(c.metadata, key, value) }
}

// WithDelay delivers the message after d. The broker must implement
// broker.Delayer (memory, amqp and sqs do).
func WithDelay(d time.Duration) PublishOption { return func(c *publishConfig) { c.delay = d } }

// ErrNoDelay is returned by Publish WithDelay on a broker that cannot delay.
var ErrNoDelay = errors.New("hub: broker cannot delay messages")

// Publish encodes v and publishes it to topic. It returns once the broker
// has accepted the message (for RabbitMQ, once confirmed), or with ctx's
// error once ctx ends (on brokers that implement broker.ContextPublisher, as
// every adapter here does). A message too large for the broker, with room
// left for its dead letter's metadata, is refused with an error wrapping
// broker.ErrMessageTooLarge. It is safe for concurrent use and works
// whether or not Run was called.
func Publish[T any](ctx context.Context, h *Hub, topic string, v T, opts ...PublishOption) error {
	var one [1]T
	one[0] = v
	return publish(ctx, h, topic, one[:], opts)
}

// PublishBatch publishes vs to topic in one broker call, so a broker with
// publisher confirms awaits them together (on RabbitMQ, many times the
// throughput of one Publish per value). It returns once every message is
// accepted, or with the first error; on an error some of vs may have been
// published, and publishing them all again is safe when they carry
// idempotency keys. Options apply to every message; WithKey and WithID are
// refused (they would give every message the same key or ID): use
// WithKeyFunc.
func PublishBatch[T any](ctx context.Context, h *Hub, topic string, vs []T, opts ...PublishOption) error {
	return publish(ctx, h, topic, vs, opts)
}

// WithKeyFunc sets the idempotency key of the i-th message of a
// PublishBatch (or of the one message of Publish, i = 0).
func WithKeyFunc(key func(i int) string) PublishOption {
	return func(c *publishConfig) { c.keyFunc = key }
}

func publish[T any](ctx context.Context, h *Hub, topic string, vs []T, opts []PublishOption) error {
	if err := validTopic(topic); err != nil {
		return err
	}
	var pc publishConfig
	for _, o := range opts {
		o(&pc)
	}
	if pc.delay < 0 {
		return fmt.Errorf("%w: WithDelay(%v); a delay must not be negative", ErrInvalidConfig, pc.delay)
	}
	if len(vs) > 1 && (pc.key != "" || pc.id != "") {
		return fmt.Errorf("%w: WithKey and WithID would give all %d messages of a batch one key or ID; use WithKeyFunc", ErrInvalidConfig, len(vs))
	}
	if len(vs) == 0 {
		return nil
	}
	if h.closed() {
		return ErrClosed
	}
	info := schemaOf[T](&h.schemas)
	msgs := make([]*message.Message, len(vs))
	for i := range vs {
		mc := pc
		if pc.keyFunc != nil {
			mc.key = pc.keyFunc(i)
		}
		m, err := h.newMessage(ctx, info, vs[i], mc)
		if err != nil {
			if len(vs) > 1 {
				return fmt.Errorf("message %d: %w", i, err)
			}
			return err
		}
		msgs[i] = m
	}
	if pc.delay > 0 {
		dl, ok := h.b.(broker.Delayer)
		if !ok {
			return fmt.Errorf("%w: %s", ErrNoDelay, h.b.Name())
		}
		if err := h.checkSize(topic, msgs); err != nil {
			return err
		}
		ctx, obs := h.tel.startPublish(ctx, topic, msgs...)
		err := dl.PublishDelayed(ctx, topic, "", pc.delay, msgs...)
		obs.end(ctx, len(msgs), err)
		if err != nil {
			return fmt.Errorf("hub: publishing to %q with delay %v: %w", topic, pc.delay, err)
		}
		return nil
	}
	return h.publishMessages(ctx, topic, msgs)
}

func (h *Hub) closed() bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.st == stateClosed
}

// newMessage encodes v as a message with the hub's metadata.
func (h *Hub) newMessage(ctx context.Context, info *schemaInfo, v any, pc publishConfig) (*message.Message, error) {
	payload, err := h.cfg.Codec.Marshal(v)
	if err != nil {
		return nil, fmt.Errorf("hub: encoding %s as %s: %w", info.Name, h.cfg.Codec.ContentType(), err)
	}
	id := pc.id
	if id == "" {
		id = watermill.NewUUID()
	}
	m := message.NewMessage(id, payload)
	md := make(message.Metadata, 8+len(pc.metadata)/2)
	for i := 0; i+1 < len(pc.metadata); i += 2 {
		md[pc.metadata[i]] = pc.metadata[i+1]
	}
	md[KeySchema] = info.Name
	md[KeySchemaVersion] = info.version
	md[KeyContentType] = h.cfg.Codec.ContentType()
	md[KeyPublishedAt] = time.Now().UTC().Format(time.RFC3339Nano)
	if pc.key != "" {
		md[KeyKey] = pc.key
	}
	if cid := CorrelationID(ctx); cid != "" {
		md[KeyCorrelationID] = cid
	}
	m.Metadata = md
	if h.cfg.Encryption != nil {
		keyID, sealed, err := h.cfg.Encryption.Encrypt(payload)
		if err != nil {
			return nil, fmt.Errorf("hub: encrypting %s: %w", info.Name, err)
		}
		m.Payload = sealed
		md[KeyEncKeyID] = keyID
	}
	return m, nil
}

// letterReserve is the room a message must leave under the broker's size
// limit for the metadata its dead letter adds (reason, error text, handler,
// times), so every message the hub publishes can be dead-lettered whole.
const letterReserve = deadLetterErrorMax + 2048

// checkSize refuses, with an error wrapping broker.ErrMessageTooLarge, a
// message that would leave no room for its dead letter's metadata.
func (h *Hub) checkSize(topic string, msgs []*message.Message) error {
	lim, ok := h.b.(broker.SizeLimiter)
	if !ok {
		return nil
	}
	most := lim.MaxMessageSize()
	if most <= 0 {
		return nil
	}
	room := most - min(letterReserve, most/4)
	for i, m := range msgs {
		if n := broker.MessageSize(m); n > room {
			return fmt.Errorf("hub: publishing to %q: message %d is %d bytes with its metadata; %s accepts %d, and the hub keeps %d of them for a dead letter's metadata: %w",
				topic, i, n, h.b.Name(), most, most-room, broker.ErrMessageTooLarge)
		}
	}
	return nil
}

// publishMessages publishes encoded messages with telemetry. It honours
// ctx on brokers that implement broker.ContextPublisher.
func (h *Hub) publishMessages(ctx context.Context, topic string, msgs []*message.Message) error {
	if err := h.checkSize(topic, msgs); err != nil {
		return err
	}
	ctx, obs := h.tel.startPublish(ctx, topic, msgs...)
	err := broker.PublishContext(ctx, h.b, topic, msgs...)
	obs.end(ctx, len(msgs), err)
	if err != nil {
		return fmt.Errorf("hub: publishing to %q: %w", topic, err)
	}
	return nil
}

type correlationKey struct{}

// WithCorrelationID returns ctx carrying id; messages published with it
// carry it as correlation_id, and Pipe outputs inherit their input's.
func WithCorrelationID(ctx context.Context, id string) context.Context {
	return context.WithValue(ctx, correlationKey{}, id)
}

// CorrelationID returns the correlation ID in ctx, or "".
func CorrelationID(ctx context.Context) string {
	id, _ := ctx.Value(correlationKey{}).(string)
	return id
}
