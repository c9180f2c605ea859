// Package brokertest is the hub-level conformance suite for broker
// adapters: the delivery rules of the hub (duplicates handled once,
// in-process and delayed retries, dead letters with their metadata, poison
// messages, shutdown that never acks unfinished work) proven on a real
// broker. Watermill's pubsub/tests suite checks the adapter as a Watermill
// Pub/Sub; this one checks it under the hub.
//
// An adapter's test calls Run with a constructor; every subtest uses its own
// topics, so the suite may share one server with other tests.
package brokertest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/stretchr/testify/require"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"

	"github.com/harvesthub/hub"
	"github.com/harvesthub/hub/broker"
	"github.com/harvesthub/hub/dlq"
	"github.com/harvesthub/hub/idempotency"
	"github.com/harvesthub/hub/retry"
)

// Config tunes the suite to a broker.
type Config struct {
	// NewBroker returns a broker connected to the server under test. The
	// suite closes it. Two calls must reach the same server (shutdown tests
	// hand a message from one broker to the next).
	NewBroker func(t *testing.T) broker.Broker
	// Timeout bounds each wait for an event. Defaults to 30s.
	Timeout time.Duration
	// RedeliveryDelay is the delayed-retry delay the suite asks for; brokers
	// round it up to what they can (SQS: whole seconds). Defaults to 50ms.
	RedeliveryDelay time.Duration
}

// Record is the suite's payload.
type Record struct {
	ID string `json:"id"`
	N  int    `json:"n"`
}

// Run runs every scenario as a subtest.
func Run(t *testing.T, cfg Config) {
	if cfg.Timeout == 0 {
		cfg.Timeout = 30 * time.Second
	}
	if cfg.RedeliveryDelay == 0 {
		cfg.RedeliveryDelay = 50 * time.Millisecond
	}
	s := suite{cfg: cfg}
	for _, tc := range []struct {
		name string
		fn   func(t *testing.T)
	}{
		{"DuplicatesHandledOnce", s.duplicatesOnce},
		{"InProcessRetries", s.inProcessRetries},
		{"DelayedRetries", s.delayedRetries},
		{"DeadLetterWithMetadata", s.deadLetter},
		{"PoisonDoesNotBlock", s.poison},
		{"ShutdownNeverAcksUnfinished", s.shutdown},
		{"ForeignMessagesWithoutID", s.foreignWithoutID},
		{"NearLimitMessageEndsInALetter", s.nearLimitEndsInLetter},
		{"PublishContextEnds", s.publishContextEnds},
		{"OversizeRefused", s.oversizeRefused},
	} {
		t.Run(tc.name, tc.fn)
	}
}

type suite struct{ cfg Config }

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

func unique(prefix string) string {
	var b [4]byte
	_, _ = rand.Read(b[:])
	return prefix + "_" + hex.EncodeToString(b[:])
}

// start makes a hub on a new broker, runs it, and stops both at cleanup.
func (s suite) start(t *testing.T, policy retry.Policy, store idempotency.Store, register func(h *hub.Hub)) (*hub.Hub, broker.Broker) {
	t.Helper()
	return s.startWith(t, hub.Config{Logger: quiet, Retry: policy, Idempotency: store}, register)
}

func (s suite) startWith(t *testing.T, cfg hub.Config, register func(h *hub.Hub)) (*hub.Hub, broker.Broker) {
	t.Helper()
	b := s.cfg.NewBroker(t)
	h, err := hub.New(b, cfg)
	require.NoError(t, err)
	register(h)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- h.Run(ctx) }()
	select {
	case <-h.Running():
	case err := <-done:
		t.Fatalf("hub did not start: %v", err)
	}
	t.Cleanup(func() {
		cancel()
		require.NoError(t, h.Close())
		require.NoError(t, <-done)
		require.NoError(t, b.Close())
	})
	return h, b
}

func fast(attempts, redeliveries int, delay time.Duration) retry.Policy {
	return retry.Policy{Attempts: attempts, InitialInterval: time.Millisecond, MaxInterval: 5 * time.Millisecond,
		Jitter: 1e-9, Multiplier: 1, Redeliveries: redeliveries, RedeliveryDelay: delay, MaxRedeliveryDelay: delay}
}

func (s suite) wait(t *testing.T, ch <-chan struct{}, what string) {
	t.Helper()
	select {
	case <-ch:
	case <-time.After(s.cfg.Timeout):
		t.Fatalf("timed out after %v waiting for %s", s.cfg.Timeout, what)
	}
}

func (s suite) duplicatesOnce(t *testing.T) {
	topic := unique("dup")
	const keys, copies = 10, 3
	var mu sync.Mutex
	calls := map[string]int{}
	reader := sdkmetric.NewManualReader()
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
	t.Cleanup(func() { _ = mp.Shutdown(context.Background()) })
	h, _ := s.startWith(t, hub.Config{Logger: quiet, Retry: fast(3, retry.None, 0), MeterProvider: mp}, func(h *hub.Hub) {
		require.NoError(t, hub.Handle(h, topic, func(ctx context.Context, m hub.Message[Record]) error {
			mu.Lock()
			defer mu.Unlock()
			calls[m.Key]++
			return nil
		}, hub.Concurrency(4)))
	})
	for c := range copies {
		for k := range keys {
			require.NoError(t, hub.Publish(context.Background(), h, topic, Record{ID: strconv.Itoa(k), N: c}, hub.WithKey("k"+strconv.Itoa(k))))
		}
	}
	// Wait until the hub has finished processing every copy: the count of
	// messaging.process.duration, recorded when a delivery is done.
	var outcomes map[string]int64
	require.Eventually(t, func() bool {
		outcomes = processed(t, reader, topic)
		return outcomes["ack"]+outcomes["duplicate"] >= keys*copies
	}, s.cfg.Timeout, 5*time.Millisecond, "every copy processed")
	require.EqualValues(t, keys, outcomes["ack"])
	require.EqualValues(t, keys*(copies-1), outcomes["duplicate"])
	mu.Lock()
	defer mu.Unlock()
	for k := range keys {
		require.Equal(t, 1, calls["k"+strconv.Itoa(k)], "key k%d", k)
	}
}

// processed returns the count of finished deliveries of topic by outcome.
func processed(t *testing.T, reader *sdkmetric.ManualReader, topic string) map[string]int64 {
	t.Helper()
	var rm metricdata.ResourceMetrics
	require.NoError(t, reader.Collect(context.Background(), &rm))
	out := map[string]int64{}
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			if m.Name != "messaging.process.duration" {
				continue
			}
			hist, ok := m.Data.(metricdata.Histogram[float64])
			if !ok {
				continue
			}
			for _, dp := range hist.DataPoints {
				if d, _ := dp.Attributes.Value("messaging.destination.name"); d.AsString() != topic {
					continue
				}
				o, _ := dp.Attributes.Value("hub.outcome")
				out[o.AsString()] += int64(dp.Count)
			}
		}
	}
	return out
}

func (s suite) inProcessRetries(t *testing.T) {
	topic := unique("retry")
	var mu sync.Mutex
	var attempts []int
	done := make(chan struct{})
	h, _ := s.start(t, fast(5, retry.None, 0), nil, func(h *hub.Hub) {
		require.NoError(t, hub.Handle(h, topic, func(ctx context.Context, m hub.Message[Record]) error {
			mu.Lock()
			defer mu.Unlock()
			attempts = append(attempts, m.Attempt)
			if len(attempts) < 3 {
				return errors.New("transient")
			}
			close(done)
			return nil
		}))
	})
	require.NoError(t, hub.Publish(context.Background(), h, topic, Record{ID: "r"}))
	s.wait(t, done, "third attempt")
	mu.Lock()
	defer mu.Unlock()
	require.Equal(t, []int{1, 2, 3}, attempts)
}

func (s suite) delayedRetries(t *testing.T) {
	topic := unique("delay")
	var mu sync.Mutex
	var attempts []int
	var other int
	done := make(chan struct{})
	h, _ := s.start(t, fast(1, 2, s.cfg.RedeliveryDelay), nil, func(h *hub.Hub) {
		require.NoError(t, hub.Handle(h, topic, func(ctx context.Context, m hub.Message[Record]) error {
			mu.Lock()
			defer mu.Unlock()
			attempts = append(attempts, m.Attempt)
			if len(attempts) < 3 {
				return errors.New("downstream unavailable")
			}
			close(done)
			return nil
		}, hub.Name("flaky")))
		require.NoError(t, hub.Handle(h, topic, func(ctx context.Context, m hub.Message[Record]) error {
			mu.Lock()
			defer mu.Unlock()
			other++
			return nil
		}, hub.Name("steady")))
	})
	require.NoError(t, hub.Publish(context.Background(), h, topic, Record{ID: "r"}))
	s.wait(t, done, "the second delayed retry")
	mu.Lock()
	defer mu.Unlock()
	require.Equal(t, []int{1, 2, 3}, attempts, "one in-process attempt per delivery, two delayed retries")
	require.Equal(t, 1, other, "delayed retries reach only the failing handler's group")
}

// letter reads one message from the DLQ topic's default group and acks it.
func (s suite) letter(t *testing.T, b broker.Broker, dlqTopic string) dlq.Letter {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), s.cfg.Timeout)
	defer cancel()
	ch, err := b.Subscribe(ctx, dlqTopic)
	require.NoError(t, err)
	select {
	case m := <-ch:
		l, err := dlq.FromMessage(m)
		require.NoError(t, err)
		m.Ack()
		return l
	case <-ctx.Done():
		t.Fatalf("no dead letter on %s within %v", dlqTopic, s.cfg.Timeout)
	}
	return dlq.Letter{}
}

func (s suite) deadLetter(t *testing.T) {
	topic := unique("dlq")
	var mu sync.Mutex
	calls := 0
	h, b := s.start(t, fast(2, 1, s.cfg.RedeliveryDelay), nil, func(h *hub.Hub) {
		require.NoError(t, hub.Handle(h, topic, func(ctx context.Context, m hub.Message[Record]) error {
			mu.Lock()
			calls++
			mu.Unlock()
			return fmt.Errorf("index rejected document (attempt %d)", m.Attempt)
		}, hub.Name("indexer")))
	})
	require.NoError(t, hub.Publish(context.Background(), h, topic, Record{ID: "r", N: 7}, hub.WithKey("key-7"), hub.WithMetadata("tenant", "t1")))
	l := s.letter(t, b, h.DeadLetterTopic(topic))
	require.Equal(t, hub.ReasonExhausted, l.Reason)
	require.Equal(t, topic, l.OriginalTopic)
	require.Equal(t, "indexer", l.Handler)
	require.Equal(t, 4, l.Attempts, "2 in-process attempts, twice")
	require.Equal(t, "index rejected document (attempt 4)", l.Error)
	require.Equal(t, "key-7", l.Key)
	require.Equal(t, "t1", l.Metadata["tenant"])
	require.False(t, l.FailedAt.IsZero())
	require.False(t, l.FirstFailedAt.IsZero())
	require.JSONEq(t, `{"id":"r","n":7}`, string(l.Payload))
	mu.Lock()
	defer mu.Unlock()
	require.Equal(t, 4, calls)
}

func (s suite) poison(t *testing.T) {
	topic := unique("poison")
	good := make(chan struct{})
	h, b := s.start(t, fast(3, 1, s.cfg.RedeliveryDelay), nil, func(h *hub.Hub) {
		require.NoError(t, hub.Handle(h, topic, func(ctx context.Context, m hub.Message[Record]) error {
			close(good)
			return nil
		}))
	})
	raw := message.NewMessage("poison-1", []byte("{definitely not json"))
	require.NoError(t, b.Publish(topic, raw))
	require.NoError(t, hub.Publish(context.Background(), h, topic, Record{ID: "good"}))
	s.wait(t, good, "the good message behind the poison one")
	l := s.letter(t, b, h.DeadLetterTopic(topic))
	require.Equal(t, "poison-1", l.ID)
	require.Equal(t, hub.ReasonDecode, l.Reason)
	require.Contains(t, l.Error, "cannot decode payload")
	require.Equal(t, "{definitely not json", string(l.Payload))
}

func (s suite) shutdown(t *testing.T) {
	topic := unique("shutdown")
	store, err := idempotency.NewMemoryStore(idempotency.MemoryConfig{})
	require.NoError(t, err)
	t.Cleanup(func() { _ = store.Close() })

	// First hub: the handler starts, then the hub is closed under it.
	b1 := s.cfg.NewBroker(t)
	h1, err := hub.New(b1, hub.Config{Logger: quiet, Retry: fast(1, retry.None, 0), Idempotency: store})
	require.NoError(t, err)
	started := make(chan struct{})
	require.NoError(t, hub.Handle(h1, topic, func(ctx context.Context, m hub.Message[Record]) error {
		close(started)
		<-ctx.Done()
		return ctx.Err()
	}))
	done1 := make(chan error, 1)
	go func() { done1 <- h1.Run(context.Background()) }()
	<-h1.Running()
	require.NoError(t, hub.Publish(context.Background(), h1, topic, Record{ID: "unfinished"}))
	s.wait(t, started, "the first handler to start")
	require.NoError(t, h1.Close())
	require.NoError(t, <-done1)
	require.NoError(t, b1.Close())

	// Second hub, same store: the message comes back and is handled.
	got := make(chan struct{})
	s.start(t, fast(1, retry.None, 0), store, func(h *hub.Hub) {
		require.NoError(t, hub.Handle(h, topic, func(ctx context.Context, m hub.Message[Record]) error {
			require.Equal(t, "unfinished", m.Payload.ID)
			close(got)
			return nil
		}))
	})
	s.wait(t, got, "the unfinished message to be delivered again")
}
