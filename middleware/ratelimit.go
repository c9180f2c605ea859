package middleware

import (
	"context"
	"fmt"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"golang.org/x/time/rate"
)

// RateLimit lets at most r handler attempts per second start, with bursts of
// up to burst, shared by every handler the returned middleware wraps (use
// one RateLimit per downstream you protect). Each attempt waits for a token
// with the message context: when the context ends first, the attempt
// returns the context's error without calling the handler and gives its
// reservation back. In a hub that context ends on Close or when the
// Shutdown deadline passes (a graceful Shutdown waits for the wait as for a
// running handler); the hub then nacks the message, never acks it. An outer
// Timeout bounds the wait too, and its error is retried like any other.
//
// The wait runs inside the hub's per-message goroutine, so the deliveries
// held while waiting are bounded by the handler's Concurrency, which is
// also its broker prefetch: nothing piles up in memory, the rest stays in
// the broker. Keep the wait below the idempotency lease (Config.Lease).
//
// r = rate.Inf disables the limit; burst must be at least 1 otherwise
// (every attempt would fail).
func RateLimit(r rate.Limit, burst int) message.HandlerMiddleware {
	return rateLimit(rate.NewLimiter(r, burst), time.Now, sleepCtx)
}

// sleepCtx waits d or until ctx ends.
func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// rateLimit is RateLimit with the clock and the wait injected for tests.
func rateLimit(lim *rate.Limiter, now func() time.Time, sleep func(context.Context, time.Duration) error) message.HandlerMiddleware {
	return func(h message.HandlerFunc) message.HandlerFunc {
		return func(msg *message.Message) ([]*message.Message, error) {
			ctx := msg.Context()
			if err := ctx.Err(); err != nil {
				return nil, err
			}
			t := now()
			res := lim.ReserveN(t, 1)
			if !res.OK() {
				return nil, fmt.Errorf("middleware: rate limit %v/s with burst %d can never admit an attempt; raise the burst to 1 or more", lim.Limit(), lim.Burst())
			}
			if d := res.DelayFrom(t); d > 0 {
				if err := sleep(ctx, d); err != nil {
					res.CancelAt(now())
					return nil, err
				}
			}
			return h(msg)
		}
	}
}
