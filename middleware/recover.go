package middleware

import (
	"context"
	"fmt"
	"log/slog"
	"runtime/debug"

	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/harvesthub/hub"
	"github.com/harvesthub/hub/retry"
)

// Recover turns a panic in the handler into a permanent error (a
// retry.Permanent wrapping a *hub.PanicError with the stack), so the
// message is dead-lettered instead of crashing the process or being
// retried. The panic and its stack are logged at error on slog.Default();
// use RecoverWithLogger to pick the logger.
//
// The hub already contains panics outside all middleware; Recover is for
// plain Watermill routers, and in a hub it lets middleware outside it (a
// circuit breaker, logging) see the panic as an error.
func Recover() message.HandlerMiddleware { return RecoverWithLogger(nil) }

// RecoverWithLogger is Recover logging to l (slog.Default() when nil).
func RecoverWithLogger(l *slog.Logger) message.HandlerMiddleware {
	return func(h message.HandlerFunc) message.HandlerFunc {
		return func(msg *message.Message) (out []*message.Message, err error) {
			defer func() {
				r := recover()
				if r == nil {
					return
				}
				stack := debug.Stack()
				log := l
				if log == nil {
					log = slog.Default()
				}
				ctx := msg.Context()
				if ctx == nil {
					ctx = context.Background()
				}
				log.ErrorContext(ctx, "middleware: handler panicked", "message_id", msg.UUID,
					"panic", fmt.Sprint(r), "stack", string(stack))
				out, err = nil, retry.Permanent(&hub.PanicError{Value: r, Stack: stack})
			}()
			return h(msg)
		}
	}
}
