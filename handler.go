package hub

import (
	"context"
	"crypto/sha256"
	"fmt"
	"strconv"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/harvesthub/hub/retry"
)

// Message is a consumed message with its decoded payload.
type Message[T any] struct {
	// ID is the broker message ID (Watermill UUID).
	ID string
	// Key is the idempotency key: hub-key, or ID when the publisher set none.
	Key string
	// Topic the message was consumed from.
	Topic string
	// Payload is the decoded (and upcast) payload.
	Payload T
	// Metadata is the message metadata. It is shared with the hub: read it,
	// do not modify it.
	Metadata message.Metadata
	// Attempt is the 1-based number of this handler call for the message. It
	// counts in-process retries, delayed retries and broker redeliveries.
	Attempt int
	// PublishedAt is when the message was first published (zero if unknown).
	PublishedAt time.Time
}

// HandlerFunc handles one message. Returning nil acks it; an error retries
// it by the handler's policy; retry.Permanent(err) dead-letters it at once;
// retry.After(d) retries after d. A panic is a permanent error.
type HandlerFunc[T any] func(ctx context.Context, m Message[T]) error

// PipeFunc handles one message and returns messages to publish to the
// pipe's output topic. They are published before the input is acked.
type PipeFunc[In, Out any] func(ctx context.Context, m Message[In]) ([]Out, error)

// HandlerOption configures one handler.
type HandlerOption func(*handlerConfig)

type handlerConfig struct {
	name        string
	concurrency int
	policy      *retry.Policy
	middleware  []message.HandlerMiddleware
}

// Name names the handler. The name is its consumer group (its own queue on
// the broker), the scope of its idempotency keys, and the hub-handler of its
// dead letters. Defaults to the topic; two handlers of one topic need names.
// Renaming a handler gives it a new queue and a new idempotency scope: move
// the old group's backlog and letters first (dlq.Replay with ToGroup), or
// messages still queued for the old name are not handled.
func Name(name string) HandlerOption { return func(c *handlerConfig) { c.name = name } }

// Concurrency sets how many messages the handler processes at once, which is
// also the broker prefetch of its subscription. Defaults to 1.
func Concurrency(n int) HandlerOption { return func(c *handlerConfig) { c.concurrency = n } }

// WithHandlerRetry overrides Config.Retry for this handler.
func WithHandlerRetry(p retry.Policy) HandlerOption {
	return func(c *handlerConfig) { c.policy = &p }
}

// WithMiddleware adds Watermill middleware around every attempt of this
// handler, inside Config.Middleware.
func WithMiddleware(m ...message.HandlerMiddleware) HandlerOption {
	return func(c *handlerConfig) { c.middleware = append(c.middleware, m...) }
}

// Handle registers fn for messages of topic. Registered after Run started,
// the handler starts at once.
func Handle[T any](h *Hub, topic string, fn HandlerFunc[T], opts ...HandlerOption) error {
	if fn == nil {
		return fmt.Errorf("%w: Handle(%q) with a nil HandlerFunc", ErrInvalidConfig, topic)
	}
	info := schemaOf[T](&h.schemas)
	return h.register(topic, "", opts, func(hd *handler) {
		hd.decode = decoder[T](h, info)
		hd.call = func(ctx context.Context, msg *message.Message, v any, d *delivery) ([]*message.Message, error) {
			return nil, fn(ctx, typedMessage[T](msg, v, hd, d))
		}
	})
}

// Pipe registers fn for messages of from and publishes what it returns to
// to, with the input's correlation ID. Outputs are published before the
// input is acked; a failed publish is retried like a handler error.
func Pipe[In, Out any](h *Hub, from, to string, fn PipeFunc[In, Out], opts ...HandlerOption) error {
	if fn == nil {
		return fmt.Errorf("%w: Pipe(%q -> %q) with a nil PipeFunc", ErrInvalidConfig, from, to)
	}
	if err := validTopic(to); err != nil {
		return err
	}
	in := schemaOf[In](&h.schemas)
	out := schemaOf[Out](&h.schemas)
	return h.register(from, to, opts, func(hd *handler) {
		hd.decode = decoder[In](h, in)
		hd.call = func(ctx context.Context, msg *message.Message, v any, d *delivery) ([]*message.Message, error) {
			outs, err := fn(ctx, typedMessage[In](msg, v, hd, d))
			if err != nil || len(outs) == 0 {
				return nil, err
			}
			msgs := make([]*message.Message, len(outs))
			for i := range outs {
				// Output IDs and keys derive from the input's key, the
				// handler and the output's index, so a retry that publishes
				// them again (a lost confirm, a crash before Complete) is
				// deduplicated downstream: Pipe is effectively-once end to
				// end as long as fn returns the same outputs for the same
				// input.
				id := outputID(hd.name, d.key, i)
				m, err := h.newMessage(ctx, out, outs[i], publishConfig{id: id, key: id})
				if err != nil {
					return nil, retry.Permanent(fmt.Errorf("hub: pipe output %d: %w", i, err))
				}
				if cid := msg.Metadata.Get(KeyCorrelationID); cid != "" {
					m.Metadata.Set(KeyCorrelationID, cid)
				}
				msgs[i] = m
			}
			return msgs, nil
		}
	})
}

// decoder decrypts, checks the schema, upcasts and decodes a payload of T.
func decoder[T any](h *Hub, info *schemaInfo) func(*message.Message) (any, error) {
	return func(msg *message.Message) (any, error) {
		var v T
		payload, err := h.plaintext(msg)
		if err != nil {
			return nil, err
		}
		if err := decodePayload(h.cfg.Codec, info, msg.Metadata, payload, &v); err != nil {
			return nil, err
		}
		return v, nil
	}
}

func typedMessage[T any](msg *message.Message, v any, hd *handler, d *delivery) Message[T] {
	return Message[T]{
		ID:          msg.UUID,
		Key:         d.key,
		Topic:       hd.topic,
		Payload:     v.(T),
		Metadata:    msg.Metadata,
		Attempt:     d.attempt,
		PublishedAt: parseTime(msg.Metadata.Get(KeyPublishedAt)),
	}
}

func parseTime(s string) time.Time {
	if s == "" {
		return time.Time{}
	}
	t, _ := time.Parse(time.RFC3339Nano, s)
	return t
}

func validTopic(topic string) error {
	if topic == "" {
		return fmt.Errorf("%w: empty topic; name the topic to consume or publish", ErrInvalidConfig)
	}
	return nil
}

// Claim identifies the idempotency claim a handler attempt runs under. A
// handler that records its work in the same database as its idempotency
// store completes the key inside its own transaction with it (pgstore's
// CompleteTx), so state and key commit together: the hub's own Complete
// afterwards finds the key completed with its token and succeeds.
type Claim struct {
	// Handler is the handler name, the scope of the key.
	Handler string
	// Key is the message's idempotency key, unscoped.
	Key string
	// StoreKey is the key as the idempotency store holds it (scoped by
	// handler).
	StoreKey string
	// Token proves the claim; Complete and Release need it.
	Token string
}

type claimCtxKey struct{}

// ClaimFrom returns the claim of the delivery a handler's ctx belongs to.
func ClaimFrom(ctx context.Context) (Claim, bool) {
	c, ok := ctx.Value(claimCtxKey{}).(*Claim)
	if !ok {
		return Claim{}, false
	}
	return *c, true
}

// outputID is the deterministic ID (and idempotency key) of the i-th output
// of a Pipe handler for the input with key: a UUID-shaped hex digest of the
// three, so every attempt publishes the same IDs.
func outputID(handler, key string, i int) string {
	sum := sha256.New()
	sum.Write([]byte(handler))
	sum.Write([]byte{0})
	sum.Write([]byte(key))
	sum.Write([]byte{0})
	sum.Write([]byte(strconv.Itoa(i)))
	var b [sha256.Size]byte
	x := sum.Sum(b[:0])
	x[6] = x[6]&0x0f | 0x80 // UUID version 8: custom
	x[8] = x[8]&0x3f | 0x80 // RFC 9562 variant
	return fmt.Sprintf("%x-%x-%x-%x-%x", x[0:4], x[4:6], x[6:8], x[8:10], x[10:16])
}
