package middleware

import (
	"log/slog"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/harvesthub/hub"
)

// Logging logs every handler attempt on l: at debug when it succeeds, at
// warn with the error text when it fails. It records the handler and topic
// (when the router put them in the context), message_id, attempt (hub-attempt: the attempt the delivery started at;
// in-process retries do not change it), correlation_id, produced (the number of messages returned)
// and duration. It never logs the payload. A nil l is slog.Default().
func Logging(l *slog.Logger) message.HandlerMiddleware {
	return func(h message.HandlerFunc) message.HandlerFunc {
		return func(msg *message.Message) ([]*message.Message, error) {
			log := l
			if log == nil {
				log = slog.Default()
			}
			start := time.Now()
			out, err := h(msg)
			ctx := msg.Context()
			level := slog.LevelDebug
			if err != nil {
				level = slog.LevelWarn
			}
			if !log.Enabled(ctx, level) {
				return out, err
			}
			attrs := make([]slog.Attr, 0, 9)
			if name := message.HandlerNameFromCtx(ctx); name != "" {
				attrs = append(attrs, slog.String("handler", name))
			}
			if topic := message.SubscribeTopicFromCtx(ctx); topic != "" {
				attrs = append(attrs, slog.String("topic", topic))
			}
			attrs = append(attrs, slog.String("message_id", msg.UUID))
			if a := msg.Metadata.Get(hub.KeyAttempt); a != "" {
				attrs = append(attrs, slog.String("attempt", a))
			}
			if cid := msg.Metadata.Get(hub.KeyCorrelationID); cid != "" {
				attrs = append(attrs, slog.String("correlation_id", cid))
			}
			attrs = append(attrs, slog.Int("produced", len(out)), slog.Duration("duration", time.Since(start)))
			if err != nil {
				attrs = append(attrs, slog.String("error", err.Error()))
				log.LogAttrs(ctx, level, "middleware: handler failed", attrs...)
			} else {
				log.LogAttrs(ctx, level, "middleware: handler done", attrs...)
			}
			return out, err
		}
	}
}
