package middleware

import (
	"context"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
)

// Timeout gives every handler attempt a context deadline d from its start:
// the handler sees it as msg.Context() (and, in a hub, as the ctx argument).
// A handler that honours its context then fails with
// context.DeadlineExceeded, which the hub retries like any error. Each
// attempt gets a fresh d. d <= 0 disables the deadline.
func Timeout(d time.Duration) message.HandlerMiddleware {
	return func(h message.HandlerFunc) message.HandlerFunc {
		if d <= 0 {
			return h
		}
		return func(msg *message.Message) ([]*message.Message, error) {
			orig := msg.Context()
			ctx, cancel := context.WithTimeout(orig, d)
			defer cancel()
			msg.SetContext(ctx)
			defer msg.SetContext(orig)
			return h(msg)
		}
	}
}
