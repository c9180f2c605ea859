package middleware

import (
	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/harvesthub/hub"
)

// CorrelationID makes sure every message carries a correlation ID: it sets
// hub.KeyCorrelationID (correlation_id) on a consumed message that has none
// (a new UUID), puts it into the message context (hub.CorrelationID(ctx)
// returns it, and hub.Publish from that context carries it on), and copies
// it onto every message the handler produces that has none.
func CorrelationID() message.HandlerMiddleware {
	return func(h message.HandlerFunc) message.HandlerFunc {
		return func(msg *message.Message) ([]*message.Message, error) {
			id := msg.Metadata.Get(hub.KeyCorrelationID)
			if id == "" {
				id = watermill.NewUUID()
				msg.Metadata.Set(hub.KeyCorrelationID, id)
			}
			if hub.CorrelationID(msg.Context()) != id {
				orig := msg.Context()
				msg.SetContext(hub.WithCorrelationID(orig, id))
				defer msg.SetContext(orig)
			}
			out, err := h(msg)
			for _, m := range out {
				if m.Metadata.Get(hub.KeyCorrelationID) == "" {
					m.Metadata.Set(hub.KeyCorrelationID, id)
				}
			}
			return out, err
		}
	}
}
