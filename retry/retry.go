// Package retry holds the hub's retry policy and the errors handlers return
// to steer it.
//
// Retries run in two tiers. Tier 1 retries in-process, with exponential
// backoff and jitter, up to [Policy.Attempts] times per delivery; the wait is
// interrupted by shutdown, which nacks the message. When tier 1 is exhausted,
// tier 2 publishes the message again through the broker with a delay
// ([Policy.Redeliveries] times), so a long wait holds no goroutine and
// survives a restart. After that the message is dead-lettered.
//
// A handler returns [Permanent] to skip every retry, and [After] when it
// knows how long to wait (a rate-limited upstream that answered Retry-After).
package retry

import (
	"errors"
	"fmt"
	"math"
	"time"

	"github.com/cenkalti/backoff/v4"
)

// Defaults of Policy fields left zero.
const (
	AttemptsDefault           = 3
	InitialIntervalDefault    = 100 * time.Millisecond
	MaxIntervalDefault        = 5 * time.Second
	MultiplierDefault         = 2.0
	JitterDefault             = 0.2
	RedeliveriesDefault       = 3
	RedeliveryDelayDefault    = 10 * time.Second
	MaxRedeliveryDelayDefault = 15 * time.Minute
)

// None disables a tier when set as Policy.Redeliveries.
const None = -1

// Policy says how often and how long to retry a failing handler. The zero
// Policy is valid: every zero field takes its default.
type Policy struct {
	// Attempts is the number of in-process attempts per delivery, the first
	// one included. Defaults to 3; 1 means no in-process retry.
	Attempts int
	// InitialInterval is the wait before the second in-process attempt.
	// Defaults to 100ms.
	InitialInterval time.Duration
	// MaxInterval caps the in-process wait. Defaults to 5s.
	MaxInterval time.Duration
	// Multiplier grows each wait (in-process and delayed). Defaults to 2.
	Multiplier float64
	// Jitter is the randomisation factor in [0, 1]: a wait d becomes a random
	// value in [d*(1-Jitter), d*(1+Jitter)]. Defaults to 0.2; set a tiny
	// value such as 1e-9 to turn it off.
	Jitter float64
	// Redeliveries is the number of delayed retries through the broker once
	// the in-process attempts are spent. Defaults to 3; None disables them.
	Redeliveries int
	// RedeliveryDelay is the delay before the first delayed retry; later ones
	// grow by Multiplier. Defaults to 10s.
	RedeliveryDelay time.Duration
	// MaxRedeliveryDelay caps the delayed retry delay. Defaults to 15m.
	MaxRedeliveryDelay time.Duration
}

// WithDefaults returns p with every zero field set to its default.
func (p Policy) WithDefaults() Policy {
	if p.Attempts == 0 {
		p.Attempts = AttemptsDefault
	}
	if p.InitialInterval == 0 {
		p.InitialInterval = InitialIntervalDefault
	}
	if p.MaxInterval == 0 {
		p.MaxInterval = max(MaxIntervalDefault, p.InitialInterval)
	}
	if p.Multiplier == 0 {
		p.Multiplier = MultiplierDefault
	}
	if p.Jitter == 0 {
		p.Jitter = JitterDefault
	}
	if p.Redeliveries == 0 {
		p.Redeliveries = RedeliveriesDefault
	}
	if p.RedeliveryDelay == 0 {
		p.RedeliveryDelay = RedeliveryDelayDefault
	}
	if p.MaxRedeliveryDelay == 0 {
		p.MaxRedeliveryDelay = max(MaxRedeliveryDelayDefault, p.RedeliveryDelay)
	}
	return p
}

// Validate reports the first invalid field of p (after defaults), saying
// what to set instead.
func (p Policy) Validate() error {
	switch {
	case p.Attempts < 0:
		return fmt.Errorf("retry: Attempts is %d; set it to 1 or more (1 = no in-process retry), or 0 for %d", p.Attempts, AttemptsDefault)
	case p.InitialInterval < 0 || p.MaxInterval < 0 || p.RedeliveryDelay < 0 || p.MaxRedeliveryDelay < 0:
		return errors.New("retry: intervals and delays must not be negative; use 0 for the default")
	case p.MaxInterval > 0 && p.InitialInterval > p.MaxInterval:
		return fmt.Errorf("retry: InitialInterval %v is above MaxInterval %v; lower it or raise MaxInterval", p.InitialInterval, p.MaxInterval)
	case p.Multiplier != 0 && p.Multiplier < 1:
		return fmt.Errorf("retry: Multiplier is %v; set it to 1 or more (1 = constant waits)", p.Multiplier)
	case p.Jitter < 0 || p.Jitter > 1:
		return fmt.Errorf("retry: Jitter is %v; set it within [0, 1]", p.Jitter)
	case p.Redeliveries < None:
		return fmt.Errorf("retry: Redeliveries is %d; set it to retry.None, 0 for %d, or a positive count", p.Redeliveries, RedeliveriesDefault)
	}
	return nil
}

// Fast is a policy for tests: three in-process attempts a millisecond apart
// and one delayed retry after a millisecond.
var Fast = Policy{
	Attempts:           3,
	InitialInterval:    time.Millisecond,
	MaxInterval:        2 * time.Millisecond,
	Multiplier:         1.5,
	Jitter:             1e-9,
	Redeliveries:       1,
	RedeliveryDelay:    time.Millisecond,
	MaxRedeliveryDelay: 2 * time.Millisecond,
}

// NewBackOff returns a fresh in-process backoff for one delivery. p must
// have its defaults set.
func (p Policy) NewBackOff() backoff.BackOff {
	b := &backoff.ExponentialBackOff{
		InitialInterval:     p.InitialInterval,
		RandomizationFactor: p.Jitter,
		Multiplier:          p.Multiplier,
		MaxInterval:         p.MaxInterval,
		MaxElapsedTime:      0,
		Stop:                backoff.Stop,
		Clock:               backoff.SystemClock,
	}
	b.Reset()
	return b
}

// RedeliveryDelayFor returns the delay before delayed retry n (0-based),
// without jitter. p must have its defaults set.
func (p Policy) RedeliveryDelayFor(n int) time.Duration {
	d := float64(p.RedeliveryDelay) * math.Pow(p.Multiplier, float64(n))
	if d > float64(p.MaxRedeliveryDelay) || math.IsInf(d, 0) {
		return p.MaxRedeliveryDelay
	}
	return time.Duration(d)
}

// PermanentError marks an error that no retry can fix.
type PermanentError struct{ Err error }

func (e *PermanentError) Error() string { return "permanent: " + e.Err.Error() }
func (e *PermanentError) Unwrap() error { return e.Err }

// Permanent wraps err so the hub dead-letters the message at once, without
// retrying. Permanent(nil) is nil.
func Permanent(err error) error {
	if err == nil {
		return nil
	}
	return &PermanentError{Err: err}
}

// IsPermanent reports whether err or any error it wraps is permanent.
func IsPermanent(err error) bool {
	var p *PermanentError
	return errors.As(err, &p)
}

// AfterError asks for the next attempt after Delay.
type AfterError struct {
	Delay time.Duration
	Err   error
}

func (e *AfterError) Error() string {
	if e.Err == nil {
		return fmt.Sprintf("retry after %v", e.Delay)
	}
	return fmt.Sprintf("retry after %v: %v", e.Delay, e.Err)
}
func (e *AfterError) Unwrap() error { return e.Err }

// After returns an error asking the hub to retry after d instead of its
// backoff wait. A wait longer than the policy's MaxInterval is taken by a
// delayed retry through the broker, so no goroutine sleeps through it.
func After(d time.Duration) error { return &AfterError{Delay: d} }

// AfterErr is After with the cause of the failure attached.
func AfterErr(d time.Duration, err error) error { return &AfterError{Delay: d, Err: err} }

// DelayOf returns the delay requested by an [AfterError] in err's chain.
func DelayOf(err error) (time.Duration, bool) {
	var a *AfterError
	if errors.As(err, &a) {
		return a.Delay, true
	}
	return 0, false
}
