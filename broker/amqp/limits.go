package amqp

import (
	"fmt"

	"github.com/ThreeDotsLabs/watermill/message"
	amqp091 "github.com/rabbitmq/amqp091-go"

	"github.com/harvesthub/hub/broker"
)

// Size limits RabbitMQ puts on a message, checked before anything is sent:
//
//   - The content header frame (the properties, metadata included as
//     headers) must fit in one frame of the connection's negotiated
//     frame_max (131072 bytes by default). A larger one is a connection
//     error: RabbitMQ closes the connection, and with it every consumer on
//     it, and a publisher that resends after reconnecting closes it again.
//   - A header name, the message ID and the content type are AMQP short
//     strings, at most 255 bytes.
//   - The body must not exceed the server's max_message_size, which AMQP
//     does not tell clients: [Config.MaxMessageSize] says what it is.
//     RabbitMQ closes the publishing channel on a larger body.
const (
	// frameOverhead is a frame's type, channel, size and end octet.
	frameOverhead = 8
	// headerFixed is the content header's class, weight, body size and
	// property flags.
	headerFixed = 2 + 2 + 8 + 2
	maxShortstr = 255
)

// headerFrameSize returns the payload size of the content header frame
// amqp091 writes for p, for the properties marshal sets (content type,
// string headers, delivery mode, message ID).
func headerFrameSize(p *amqp091.Publishing) int {
	n := headerFixed
	if p.ContentType != "" {
		n += 1 + len(p.ContentType)
	}
	if len(p.Headers) > 0 {
		n += 4 // table length
		for k, v := range p.Headers {
			n += 1 + len(k) + 1 // name, field type
			s, _ := v.(string)
			n += 4 + len(s) // long string
		}
	}
	if p.DeliveryMode != 0 {
		n++
	}
	if p.MessageId != "" {
		n += 1 + len(p.MessageId)
	}
	return n
}

// checkSize returns an error wrapping broker.ErrMessageTooLarge when
// RabbitMQ would refuse p (the publishing of m) for its size: a header
// frame over frameMax, a short string over 255 bytes or a body over
// maxBody. frameMax or maxBody 0 means no limit.
func checkSize(m *message.Message, p *amqp091.Publishing, frameMax, maxBody int) error {
	for k := range p.Headers {
		if len(k) > maxShortstr {
			return fmt.Errorf("amqp: message %s: metadata key %.32q... is %d bytes, AMQP header names are at most %d: %w",
				m.UUID, k, len(k), maxShortstr, broker.ErrMessageTooLarge)
		}
	}
	if len(p.MessageId) > maxShortstr || len(p.ContentType) > maxShortstr {
		return fmt.Errorf("amqp: message %.32q...: the UUID and content type are AMQP short strings, at most %d bytes: %w",
			m.UUID, maxShortstr, broker.ErrMessageTooLarge)
	}
	if frameMax > 0 {
		if n := headerFrameSize(p); n > frameMax-frameOverhead {
			return fmt.Errorf("amqp: message %s: metadata takes %d bytes in the AMQP header frame, the connection's frame_max allows %d: %w",
				m.UUID, n, frameMax-frameOverhead, broker.ErrMessageTooLarge)
		}
	}
	if maxBody > 0 && len(p.Body) > maxBody {
		return fmt.Errorf("amqp: message %s: payload is %d bytes, Config.MaxMessageSize (the server's max_message_size) is %d: %w",
			m.UUID, len(p.Body), maxBody, broker.ErrMessageTooLarge)
	}
	return nil
}

// MaxMessageSize returns Config.MaxMessageSize, the largest payload
// RabbitMQ accepts. Metadata has its own, tighter bound: as headers it
// must fit in one frame of the negotiated frame_max (131072 bytes by
// default), which Publish checks too.
func (b *Broker) MaxMessageSize() int { return b.cfg.MaxMessageSize }
