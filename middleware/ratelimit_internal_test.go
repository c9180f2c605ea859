package middleware

import (
	"context"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/stretchr/testify/require"
	"golang.org/x/time/rate"
)

// fakeClock is a clock whose sleeps return at once and advance it.
type fakeClock struct {
	now    time.Time
	slept  []time.Duration
	cancel bool
}

func (c *fakeClock) Now() time.Time { return c.now }

func (c *fakeClock) Sleep(ctx context.Context, d time.Duration) error {
	c.slept = append(c.slept, d)
	if c.cancel {
		return context.Canceled
	}
	c.now = c.now.Add(d)
	return nil
}

func TestRateLimitWaitsForTokens(t *testing.T) {
	clock := &fakeClock{now: time.Unix(1_700_000_000, 0)}
	lim := rate.NewLimiter(2, 2) // 2 per second, bursts of 2
	calls := 0
	h := rateLimit(lim, clock.Now, clock.Sleep)(func(*message.Message) ([]*message.Message, error) {
		calls++
		return nil, nil
	})
	msg := message.NewMessage("m", nil)
	for range 4 {
		_, err := h(msg)
		require.NoError(t, err)
	}
	require.Equal(t, 4, calls)
	require.Equal(t, []time.Duration{500 * time.Millisecond, 500 * time.Millisecond}, clock.slept,
		"the burst passes at once, then one token every 500ms")

	// A cancelled wait gives the token back: the next attempt waits the same.
	clock.slept, clock.cancel = nil, true
	_, err := h(msg)
	require.ErrorIs(t, err, context.Canceled)
	require.Equal(t, 4, calls, "the handler is not called")
	clock.cancel = false
	_, err = h(msg)
	require.NoError(t, err)
	require.Equal(t, []time.Duration{500 * time.Millisecond, 500 * time.Millisecond}, clock.slept)
}

func TestRateLimitRejectsZeroBurst(t *testing.T) {
	h := RateLimit(1, 0)(func(*message.Message) ([]*message.Message, error) { return nil, nil })
	msg := message.NewMessage("m", nil)
	msg.SetContext(context.Background())
	_, err := h(msg)
	require.ErrorContains(t, err, "raise the burst")
}
