package hub

import (
	"errors"
	"time"

	"github.com/harvesthub/hub/broker"
	"github.com/harvesthub/hub/retry"
)

// Outcomes of a delivery, the values of the hub.outcome attribute.
const (
	OutcomeAck       = "ack"
	OutcomeRetry     = "retry"     // nacked for the broker to deliver again
	OutcomeDelayed   = "delayed"   // published again with a delay (tier 2)
	OutcomeDLQ       = "dlq"       // dead-lettered
	OutcomeDuplicate = "duplicate" // key already completed; handler not called
	OutcomeSkipped   = "skipped"   // addressed to another handler's group
)

// act is what a delivery does after an attempt.
type act int

const (
	actAck        act = iota // complete the key, ack
	actRetry                 // call the handler again in-process after delay
	actDelay                 // release, publish a delayed retry after delay, ack
	actDeadLetter            // dead-letter with reason, release, ack
	actNack                  // release, nack: shutting down
)

type decision struct {
	act    act
	delay  time.Duration
	reason string
}

// decide turns an attempt's result into the next step. It is pure: the
// policy, the in-process try (1-based), the delayed retries the message has
// had, the attempt's error, whether shutdown began, and the backoff's next
// wait decide it. apply carries it out.
func decide(p retry.Policy, try, delayed int, err error, stopping bool, next func() time.Duration) decision {
	if err == nil {
		return decision{act: actAck}
	}
	if stopping {
		return decision{act: actNack}
	}
	if errors.Is(err, broker.ErrMessageTooLarge) {
		return decision{act: actDeadLetter, reason: ReasonTooLarge}
	}
	var perm *retry.PermanentError
	if errors.As(err, &perm) {
		var pe *PanicError
		if errors.As(err, &pe) {
			return decision{act: actDeadLetter, reason: ReasonPanic}
		}
		return decision{act: actDeadLetter, reason: ReasonPermanent}
	}
	delay, asked := retry.DelayOf(err)
	if try >= p.Attempts || (asked && delay > p.MaxInterval) {
		if p.Redeliveries == retry.None || delayed >= p.Redeliveries {
			return decision{act: actDeadLetter, reason: ReasonExhausted}
		}
		if !asked {
			delay = p.RedeliveryDelayFor(delayed)
		}
		return decision{act: actDelay, delay: delay}
	}
	if !asked {
		delay = next()
	}
	return decision{act: actRetry, delay: delay}
}
