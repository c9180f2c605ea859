// Package hubtest runs a real hub.Hub on the in-memory broker for unit
// tests of handlers, the way net/http/httptest runs a real server.
//
//	th := hubtest.New(t)
//	hub.Handle(th.Hub, "records", handler)
//	th.Start()
//	hubtest.Send(t, th, "records", Record{ID: "r1"})
//	th.Settle(t)
//	jobs := hubtest.Published[IndexJob](t, th, "jobs")
//
// The harness uses retry.Fast (millisecond waits), records every message
// the hub publishes, and can inject faults: duplicate deliveries, a
// redelivery after ack, and failing publishes. Settle waits on broker
// events, never on sleeps.
package hubtest

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/harvesthub/hub"
	"github.com/harvesthub/hub/broker"
	"github.com/harvesthub/hub/broker/memory"
	"github.com/harvesthub/hub/dlq"
	"github.com/harvesthub/hub/retry"
)

// SettleTimeoutDefault bounds Settle.
const SettleTimeoutDefault = 10 * time.Second

// Harness is a hub on an in-memory broker, closed when the test ends.
type Harness struct {
	// Hub is the hub under test: register handlers on it.
	Hub *hub.Hub
	// Broker is the memory broker, a Watermill Publisher and Subscriber for
	// raw messages (what the hub publishes goes through Recorder first).
	Broker *memory.Broker
	// SettleTimeout bounds Settle. Defaults to 10s.
	SettleTimeout time.Duration

	t       testing.TB
	rec     *recorder
	runErr  chan error
	started bool
	startMu sync.Mutex
	cancel  context.CancelFunc
}

// Option adjusts the harness's hub.Config before the hub is made.
type Option func(*hub.Config)

// WithConfig lets a test change the hub configuration (retry policy,
// codec, encryption, middleware, an idempotency store, ...).
func WithConfig(f func(*hub.Config)) Option { return Option(f) }

// New returns a harness. Its hub uses retry.Fast and a logger that writes
// to the test log only at warn and above.
func New(t testing.TB, opts ...Option) *Harness {
	t.Helper()
	b, err := memory.New(memory.Config{})
	if err != nil {
		t.Fatalf("hubtest: memory broker: %v", err)
	}
	rec := &recorder{Broker: b, published: make(map[string][]*message.Message), failures: make(map[string]*failure), duplicates: make(map[string]int)}
	cfg := hub.Config{
		Retry:  retry.Fast,
		Logger: slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelWarn})),
	}
	for _, o := range opts {
		o(&cfg)
	}
	h, err := hub.New(rec, cfg)
	if err != nil {
		_ = b.Close()
		t.Fatalf("hubtest: hub.New: %v", err)
	}
	th := &Harness{Hub: h, Broker: b, SettleTimeout: SettleTimeoutDefault, t: t, rec: rec}
	t.Cleanup(th.close)
	return th
}

// Start runs the hub in the background and returns once its handlers run.
func (th *Harness) Start() {
	th.t.Helper()
	th.startMu.Lock()
	defer th.startMu.Unlock()
	if th.started {
		th.t.Fatal("hubtest: Start called twice")
	}
	th.started = true
	ctx, cancel := context.WithCancel(context.Background())
	th.cancel = cancel
	th.runErr = make(chan error, 1)
	go func() { th.runErr <- th.Hub.Run(ctx) }()
	select {
	case <-th.Hub.Running():
	case err := <-th.runErr:
		th.runErr <- err
		th.t.Fatalf("hubtest: hub did not start: %v", err)
	}
}

func (th *Harness) close() {
	if th.cancel != nil {
		th.cancel()
	}
	if err := th.Hub.Close(); err != nil {
		th.t.Errorf("hubtest: closing hub: %v", err)
	}
	if th.runErr != nil {
		if err := <-th.runErr; err != nil {
			th.t.Errorf("hubtest: hub.Run: %v", err)
		}
	}
	if err := th.Broker.Close(); err != nil {
		th.t.Errorf("hubtest: closing broker: %v", err)
	}
}

// Send publishes v to topic through the hub, failing t on error.
func Send[T any](t testing.TB, th *Harness, topic string, v T, opts ...hub.PublishOption) {
	t.Helper()
	if err := hub.Publish(context.Background(), th.Hub, topic, v, opts...); err != nil {
		t.Fatalf("hubtest: Send to %q: %v", topic, err)
	}
}

// Settle waits until no message is queued, in flight or waiting for a
// delayed retry, and fails t after SettleTimeout, saying what is left.
func (th *Harness) Settle(t testing.TB) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), th.SettleTimeout)
	defer cancel()
	if err := th.Broker.WaitIdle(ctx); err != nil {
		t.Fatalf("hubtest: Settle: not idle after %v (did you call Start?): %v; broker stats: %+v", th.SettleTimeout, err, th.Broker.Stats())
	}
}

// Published decodes every message the hub published to topic so far, in
// publish order. It fails t if one cannot be decoded into T.
func Published[T any](t testing.TB, th *Harness, topic string) []T {
	t.Helper()
	msgs := th.rec.messages(topic)
	out := make([]T, 0, len(msgs))
	for _, m := range msgs {
		var v T
		if err := hub.Decode(th.Hub, m, &v); err != nil {
			t.Fatalf("hubtest: Published[%T] on %q: message %s: %v", v, topic, m.UUID, err)
		}
		out = append(out, v)
	}
	return out
}

// Messages returns copies of the raw messages the hub published to topic.
func (th *Harness) Messages(topic string) []*message.Message { return th.rec.messages(topic) }

// DeadLetters returns the letters dead-lettered from topic so far.
func (th *Harness) DeadLetters(topic string) []dlq.Letter {
	msgs := th.rec.messages(th.Hub.DeadLetterTopic(topic))
	out := make([]dlq.Letter, 0, len(msgs))
	for _, m := range msgs {
		l, err := dlq.FromMessage(m)
		if err != nil {
			th.t.Errorf("hubtest: DeadLetters(%q): %v", topic, err)
			continue
		}
		out = append(out, l)
	}
	return out
}

// FailPublishes makes the next n publishes to topic fail with err (a
// generic error when err is nil) before they reach the broker.
func (th *Harness) FailPublishes(topic string, n int, err error) {
	if err == nil {
		err = errors.New("hubtest: injected publish failure")
	}
	th.rec.mu.Lock()
	th.rec.failures[topic] = &failure{n: n, err: err}
	th.rec.mu.Unlock()
}

// DuplicateNext makes the broker receive each of the next n messages
// published to topic twice, as a publisher retry after a lost confirm would.
func (th *Harness) DuplicateNext(topic string, n int) {
	th.rec.mu.Lock()
	th.rec.duplicates[topic] += n
	th.rec.mu.Unlock()
}

// RedeliverAfterAck makes the broker deliver the next n messages acked on
// topic once more, as a broker does when an ack is lost.
func (th *Harness) RedeliverAfterAck(topic string, n int) { th.Broker.RedeliverAfterAck(topic, n) }

type failure struct {
	n   int
	err error
}

// recorder is the broker the harness's hub talks to: it records, injects
// publish faults, and passes everything else to the memory broker.
type recorder struct {
	*memory.Broker
	mu         sync.Mutex
	published  map[string][]*message.Message
	failures   map[string]*failure
	duplicates map[string]int
}

var (
	_ broker.Broker   = (*recorder)(nil)
	_ broker.Delayer  = (*recorder)(nil)
	_ broker.Declarer = (*recorder)(nil)
)

func (r *recorder) intercept(topic string, msgs []*message.Message) ([]*message.Message, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if f := r.failures[topic]; f != nil && f.n > 0 {
		f.n--
		return nil, fmt.Errorf("publish to %q: %w", topic, f.err)
	}
	for _, m := range msgs {
		r.published[topic] = append(r.published[topic], m.Copy())
	}
	if n := r.duplicates[topic]; n > 0 {
		out := make([]*message.Message, 0, 2*len(msgs))
		for _, m := range msgs {
			out = append(out, m)
			if n > 0 {
				out = append(out, m.Copy())
				n--
			}
		}
		r.duplicates[topic] = n
		return out, nil
	}
	return msgs, nil
}

func (r *recorder) Publish(topic string, msgs ...*message.Message) error {
	msgs, err := r.intercept(topic, msgs)
	if err != nil {
		return err
	}
	return r.Broker.Publish(topic, msgs...)
}

func (r *recorder) PublishDelayed(ctx context.Context, topic, group string, d time.Duration, msgs ...*message.Message) error {
	msgs, err := r.intercept(topic, msgs)
	if err != nil {
		return err
	}
	return r.Broker.PublishDelayed(ctx, topic, group, d, msgs...)
}

func (r *recorder) messages(topic string) []*message.Message {
	r.mu.Lock()
	defer r.mu.Unlock()
	src := r.published[topic]
	out := make([]*message.Message, len(src))
	for i, m := range src {
		out[i] = m.Copy()
	}
	return out
}

type testWriter struct{ t testing.TB }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Helper()
	w.t.Log(string(p))
	return len(p), nil
}

var _ io.Writer = testWriter{}
