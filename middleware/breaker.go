package middleware

import (
	"errors"
	"fmt"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/sony/gobreaker"

	"github.com/harvesthub/hub/retry"
)

// ErrCircuitOpen is the cause of the error CircuitBreaker returns instead
// of calling the handler while the breaker is open (or half-open and
// already probing).
var ErrCircuitOpen = errors.New("middleware: circuit breaker open")

// breakerTimeoutDefault is gobreaker's open period when Settings.Timeout is 0.
const breakerTimeoutDefault = 60 * time.Second

// CircuitBreaker stops calling the handler while a downstream keeps
// failing, on github.com/sony/gobreaker. One breaker is shared by every
// handler the returned middleware wraps: make one per downstream.
//
// Every non-permanent handler error counts as a failure (a permanent error
// is the message's fault, not the downstream's); settings.IsSuccessful
// overrides that. settings.ReadyToTrip decides when to open (gobreaker's
// default: more than 5 consecutive failures). While open, an attempt
// returns retry.AfterErr(settings.Timeout, ErrCircuitOpen) without calling
// the handler. The hub waits in process when that delay is within the
// policy's MaxInterval, else it schedules a delayed retry through the
// broker (outcome "delayed"), which holds no goroutine and no delivery; it
// does not dead-letter the message while delayed retries remain
// (retry.Policy.Redeliveries: set it to cover the outages you expect, as an
// open breaker uses one per Timeout). After Timeout the breaker lets
// settings.MaxRequests probe attempts through (half-open): successes close
// it, a failure opens it again.
func CircuitBreaker(settings gobreaker.Settings) message.HandlerMiddleware {
	if settings.IsSuccessful == nil {
		settings.IsSuccessful = func(err error) bool { return err == nil || retry.IsPermanent(err) }
	}
	wait := settings.Timeout
	if wait <= 0 {
		wait = breakerTimeoutDefault
	}
	cb := gobreaker.NewCircuitBreaker(settings)
	name := settings.Name
	return func(h message.HandlerFunc) message.HandlerFunc {
		return func(msg *message.Message) ([]*message.Message, error) {
			var out []*message.Message
			_, err := cb.Execute(func() (any, error) {
				var err error
				out, err = h(msg)
				return nil, err
			})
			if errors.Is(err, gobreaker.ErrOpenState) || errors.Is(err, gobreaker.ErrTooManyRequests) {
				return nil, retry.AfterErr(wait, fmt.Errorf("%w: %q: %w", ErrCircuitOpen, name, err))
			}
			return out, err
		}
	}
}
