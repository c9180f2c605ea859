package middleware_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/sony/gobreaker"
	"github.com/stretchr/testify/require"
	"golang.org/x/time/rate"

	"github.com/harvesthub/hub"
	"github.com/harvesthub/hub/hubtest"
	"github.com/harvesthub/hub/middleware"
	"github.com/harvesthub/hub/retry"
)

func newRaw(id string, payload []byte) *message.Message {
	m := message.NewMessage(id, payload)
	m.SetContext(context.Background())
	return m
}

func TestRecoverTurnsPanicIntoPermanentError(t *testing.T) {
	var logs bytes.Buffer
	h := middleware.RecoverWithLogger(newJSONLogger(&logs))(func(msg *message.Message) ([]*message.Message, error) {
		panic("boom")
	})
	out, err := h(newRaw("m1", []byte("payload-text")))
	require.Nil(t, out)
	require.True(t, retry.IsPermanent(err))
	var pe *hub.PanicError
	require.ErrorAs(t, err, &pe)
	require.Equal(t, "boom", pe.Value)
	require.Contains(t, string(pe.Stack), "middleware_test.go")
	require.Contains(t, logs.String(), `"panic":"boom"`)
	require.Contains(t, logs.String(), `"stack":"goroutine`)
	require.NotContains(t, logs.String(), "payload-text")

	ok := middleware.Recover()(func(msg *message.Message) ([]*message.Message, error) { return nil, nil })
	_, err = ok(newRaw("m2", nil))
	require.NoError(t, err)
}

func TestRecoverInHubDeadLettersAsPanic(t *testing.T) {
	th := hubtest.New(t, hubtest.WithConfig(func(c *hub.Config) {
		c.Middleware = append(c.Middleware, middleware.RecoverWithLogger(newJSONLogger(&bytes.Buffer{})))
	}))
	require.NoError(t, hub.Handle(th.Hub, "records", func(ctx context.Context, m hub.Message[Record]) error { panic("boom") }))
	th.Start()
	hubtest.Send(t, th, "records", Record{ID: "r1"})
	th.Settle(t)
	dead := th.DeadLetters("records")
	require.Len(t, dead, 1)
	require.Equal(t, hub.ReasonPanic, dead[0].Reason)
	require.Equal(t, 1, dead[0].Attempts, "a panic is not retried")
}

func TestTimeoutSetsAPerAttemptDeadline(t *testing.T) {
	th := hubtest.New(t, hubtest.WithConfig(func(c *hub.Config) {
		c.Middleware = append(c.Middleware, middleware.Timeout(5*time.Millisecond))
		c.Retry = retry.Policy{Attempts: 2, InitialInterval: time.Millisecond, Redeliveries: retry.None}
	}))
	var mu sync.Mutex
	var deadlines []time.Time
	require.NoError(t, hub.Handle(th.Hub, "records", func(ctx context.Context, m hub.Message[Record]) error {
		dl, ok := ctx.Deadline()
		require.True(t, ok)
		mu.Lock()
		deadlines = append(deadlines, dl)
		mu.Unlock()
		<-ctx.Done() // a slow downstream that honours its context
		return ctx.Err()
	}))
	th.Start()
	hubtest.Send(t, th, "records", Record{ID: "r1"})
	th.Settle(t)
	require.Len(t, deadlines, 2)
	require.True(t, deadlines[1].After(deadlines[0]), "each attempt gets its own deadline")
	dead := th.DeadLetters("records")
	require.Len(t, dead, 1)
	require.Contains(t, dead[0].Error, "context deadline exceeded")

	// d <= 0 adds no deadline.
	h := middleware.Timeout(0)(func(msg *message.Message) ([]*message.Message, error) {
		_, ok := msg.Context().Deadline()
		require.False(t, ok)
		return nil, nil
	})
	_, err := h(newRaw("m", nil))
	require.NoError(t, err)
}

func TestCorrelationIDIsSetAndCopiedToOutputs(t *testing.T) {
	mw := middleware.CorrelationID()
	var seen string
	h := mw(func(msg *message.Message) ([]*message.Message, error) {
		seen = hub.CorrelationID(msg.Context())
		withOwn := message.NewMessage("o2", nil)
		withOwn.Metadata.Set(hub.KeyCorrelationID, "own")
		return []*message.Message{message.NewMessage("o1", nil), withOwn}, nil
	})
	in := newRaw("m1", nil)
	out, err := h(in)
	require.NoError(t, err)
	id := in.Metadata.Get(hub.KeyCorrelationID)
	require.NotEmpty(t, id, "a message without one gets one")
	require.Equal(t, id, seen, "the handler's context carries it")
	require.Equal(t, id, out[0].Metadata.Get(hub.KeyCorrelationID))
	require.Equal(t, "own", out[1].Metadata.Get(hub.KeyCorrelationID), "an output's own ID is kept")

	in2 := newRaw("m2", nil)
	in2.Metadata.Set(hub.KeyCorrelationID, "req-7")
	_, err = h(in2)
	require.NoError(t, err)
	require.Equal(t, "req-7", seen)
}

func TestCorrelationIDInHubReachesPublishesFromTheHandler(t *testing.T) {
	th := hubtest.New(t, hubtest.WithConfig(func(c *hub.Config) {
		c.Middleware = append(c.Middleware, middleware.CorrelationID())
	}))
	require.NoError(t, hub.Handle(th.Hub, "records", func(ctx context.Context, m hub.Message[Record]) error {
		return hub.Publish(ctx, th.Hub, "jobs", Record{ID: m.Payload.ID})
	}))
	th.Start()
	raw := newRaw("m1", []byte(`{"id":"r1"}`))
	require.NoError(t, th.Broker.Publish("records", raw))
	th.Settle(t)
	jobs := th.Messages("jobs")
	require.Len(t, jobs, 1)
	require.NotEmpty(t, jobs[0].Metadata.Get(hub.KeyCorrelationID))
}

func TestLoggingLogsAttemptsWithoutPayload(t *testing.T) {
	var buf bytes.Buffer
	th := hubtest.New(t, hubtest.WithConfig(func(c *hub.Config) {
		c.Middleware = append(c.Middleware, middleware.Logging(newJSONLogger(&buf)))
	}))
	var calls atomic.Int32
	require.NoError(t, hub.Handle(th.Hub, "records", func(ctx context.Context, m hub.Message[Record]) error {
		if calls.Add(1) == 1 {
			return errors.New("upstream 503")
		}
		return nil
	}))
	th.Start()
	hubtest.Send(t, th, "records", Record{ID: "r1", Secret: "payload-secret"}, hub.WithID("msg-1"), hub.WithMetadata(hub.KeyCorrelationID, "req-1"))
	th.Settle(t)
	require.NotContains(t, buf.String(), "payload-secret")
	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	require.Len(t, lines, 2)
	var failed, done map[string]any
	require.NoError(t, json.Unmarshal([]byte(lines[0]), &failed))
	require.NoError(t, json.Unmarshal([]byte(lines[1]), &done))
	require.Equal(t, "WARN", failed["level"])
	require.Equal(t, "upstream 503", failed["error"])
	require.Equal(t, "DEBUG", done["level"])
	for _, l := range []map[string]any{failed, done} {
		require.Equal(t, "msg-1", l["message_id"])
		require.Equal(t, "req-1", l["correlation_id"])
		require.Contains(t, l, "duration")
	}
}

func TestRateLimitInHubPassesThenWaits(t *testing.T) {
	th := hubtest.New(t, hubtest.WithConfig(func(c *hub.Config) {
		c.Middleware = append(c.Middleware, middleware.RateLimit(rate.Inf, 0))
	}))
	var calls atomic.Int32
	require.NoError(t, hub.Handle(th.Hub, "records", func(ctx context.Context, m hub.Message[Record]) error {
		calls.Add(1)
		return nil
	}, hub.Concurrency(4)))
	th.Start()
	for range 20 {
		hubtest.Send(t, th, "records", Record{ID: "r"})
	}
	th.Settle(t)
	require.EqualValues(t, 20, calls.Load())
}

// An attempt waiting for a token when the hub closes returns the context
// error: the hub nacks it, never acks, and the handler is not called.
func TestRateLimitWaitEndsWithContext(t *testing.T) {
	h := middleware.RateLimit(rate.Every(time.Hour), 1)(func(msg *message.Message) ([]*message.Message, error) {
		return nil, nil
	})
	_, err := h(newRaw("m1", nil))
	require.NoError(t, err, "the burst admits the first")
	ctx, cancel := context.WithCancel(context.Background())
	m := newRaw("m2", nil)
	m.SetContext(ctx)
	done := make(chan error, 1)
	go func() {
		_, err := h(m)
		done <- err
	}()
	cancel()
	require.ErrorIs(t, <-done, context.Canceled)
}

func TestCircuitBreakerOpensDelaysAndRecovers(t *testing.T) {
	states := make(chan gobreaker.State, 8)
	th := hubtest.New(t, hubtest.WithConfig(func(c *hub.Config) {
		c.Middleware = append(c.Middleware, middleware.CircuitBreaker(gobreaker.Settings{
			Name:          "search",
			Timeout:       30 * time.Millisecond, // above retry.Fast's MaxInterval: a delayed retry
			ReadyToTrip:   func(c gobreaker.Counts) bool { return c.ConsecutiveFailures >= 2 },
			OnStateChange: func(_ string, _, to gobreaker.State) { states <- to },
		}))
	}))
	var calls atomic.Int32
	require.NoError(t, hub.Handle(th.Hub, "records", func(ctx context.Context, m hub.Message[Record]) error {
		if calls.Add(1) <= 2 {
			return errors.New("search is down")
		}
		return nil
	}))
	th.Start()
	hubtest.Send(t, th, "records", Record{ID: "r1"})
	require.Equal(t, gobreaker.StateOpen, <-states)
	th.Settle(t)
	require.Equal(t, gobreaker.StateHalfOpen, <-states)
	require.Equal(t, gobreaker.StateClosed, <-states)

	require.EqualValues(t, 3, calls.Load(), "the third attempt met the open breaker and did not call the handler")
	require.Empty(t, th.DeadLetters("records"), "an open breaker delays, it does not dead-letter")
	msgs := th.Messages("records")
	require.Len(t, msgs, 2, "the original and one delayed retry")
	require.Equal(t, "1", msgs[1].Metadata.Get(hub.KeyRedeliveries))
}

func TestCircuitBreakerIgnoresPermanentErrors(t *testing.T) {
	var changes atomic.Int32
	mw := middleware.CircuitBreaker(gobreaker.Settings{
		ReadyToTrip:   func(c gobreaker.Counts) bool { return c.ConsecutiveFailures >= 1 },
		OnStateChange: func(string, gobreaker.State, gobreaker.State) { changes.Add(1) },
	})
	perm := mw(func(msg *message.Message) ([]*message.Message, error) {
		return nil, retry.Permanent(errors.New("bad record"))
	})
	for range 3 {
		_, err := perm(newRaw("m", nil))
		require.True(t, retry.IsPermanent(err))
	}
	require.Zero(t, changes.Load(), "a permanent error is the message's fault: the breaker stays closed")

	transient := mw(func(msg *message.Message) ([]*message.Message, error) { return nil, errors.New("503") })
	_, err := transient(newRaw("m", nil))
	require.EqualError(t, err, "503")
	_, err = transient(newRaw("m", nil))
	require.ErrorIs(t, err, middleware.ErrCircuitOpen)
	d, ok := retry.DelayOf(err)
	require.True(t, ok)
	require.Equal(t, 60*time.Second, d, "gobreaker's default open period")
}

// Closing the hub while an attempt waits for a token nacks the message: it
// stays queued, the handler is not called, nothing is dead-lettered.
func TestRateLimitWaitInHubIsNackedOnClose(t *testing.T) {
	entered := make(chan struct{}, 4)
	signal := func(h message.HandlerFunc) message.HandlerFunc {
		return func(msg *message.Message) ([]*message.Message, error) {
			entered <- struct{}{}
			return h(msg)
		}
	}
	th := hubtest.New(t, hubtest.WithConfig(func(c *hub.Config) {
		c.Middleware = append(c.Middleware, signal, middleware.RateLimit(rate.Every(time.Hour), 1))
	}))
	var calls atomic.Int32
	require.NoError(t, hub.Handle(th.Hub, "records", func(ctx context.Context, m hub.Message[Record]) error {
		calls.Add(1)
		return nil
	}))
	th.Start()
	hubtest.Send(t, th, "records", Record{ID: "r1"})
	hubtest.Send(t, th, "records", Record{ID: "r2"})
	<-entered
	<-entered // r2 is at (or in) the limiter
	require.NoError(t, th.Hub.Close())
	require.EqualValues(t, 1, calls.Load())
	require.Equal(t, 1, th.Broker.Stats().Group("records", "records").Queued, "r2 is back in the queue")
	require.Empty(t, th.DeadLetters("records"))
}
