package hub

import (
	"context"
	"fmt"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
)

// Encoded is a message encoded as Publish would send it, not yet sent.
type Encoded struct {
	// Message carries the payload (encrypted when Config.Encryption is
	// set) and the hub's metadata: schema, content type, publish time,
	// hub-key, correlation ID and the W3C trace context of ctx.
	Message *message.Message
	// Delay is what WithDelay asked for; zero when it was not given.
	Delay time.Duration
}

// Encode encodes v as Publish(ctx, h, topic, v, opts...) would, without
// publishing it: with h's codec, schema registry and encryption, and the
// options' ID, key and metadata. A transactional outbox stores the result
// and publishes it later, so the message that reaches the broker is the one
// Publish would have sent. It works whether or not h runs.
func Encode[T any](ctx context.Context, h *Hub, v T, opts ...PublishOption) (Encoded, error) {
	var pc publishConfig
	for _, o := range opts {
		o(&pc)
	}
	if pc.delay < 0 {
		return Encoded{}, fmt.Errorf("%w: WithDelay(%v); a delay must not be negative", ErrInvalidConfig, pc.delay)
	}
	if pc.keyFunc != nil {
		pc.key = pc.keyFunc(0)
	}
	m, err := h.newMessage(ctx, schemaOf[T](&h.schemas), v, pc)
	if err != nil {
		return Encoded{}, err
	}
	h.tel.prop.Inject(ctx, metadataCarrier(m.Metadata))
	return Encoded{Message: m, Delay: pc.delay}, nil
}
