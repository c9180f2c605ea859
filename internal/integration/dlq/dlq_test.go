package dlq_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	amqp091 "github.com/rabbitmq/amqp091-go"
	"github.com/stretchr/testify/require"

	"github.com/harvesthub/hub"
	"github.com/harvesthub/hub/broker"
	"github.com/harvesthub/hub/broker/amqp"
	"github.com/harvesthub/hub/broker/memory"
	"github.com/harvesthub/hub/broker/sqs"
	"github.com/harvesthub/hub/dlq"
	"github.com/harvesthub/hub/hubtest"
	"github.com/harvesthub/hub/idempotency"
	"github.com/harvesthub/hub/internal/testenv"
	"github.com/harvesthub/hub/retry"
)

const waitFor = 30 * time.Second

func TestFilter(t *testing.T) {
	at := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	l := dlq.Letter{ID: "m1", Handler: "normalise", Reason: hub.ReasonPermanent, Error: "invalid record: missing title", FailedAt: at}
	for _, tc := range []struct {
		name string
		f    dlq.Filter
		want bool
	}{
		{"zero", dlq.Filter{}, true},
		{"handler", dlq.Filter{Handler: "normalise"}, true},
		{"other handler", dlq.Filter{Handler: "audit"}, false},
		{"reason", dlq.Filter{Reason: hub.ReasonExhausted}, false},
		{"error substring", dlq.Filter{ErrorContains: "missing title"}, true},
		{"error absent", dlq.Filter{ErrorContains: "timeout"}, false},
		{"since inclusive", dlq.Filter{Since: at}, true},
		{"since after", dlq.Filter{Since: at.Add(time.Nanosecond)}, false},
		{"until exclusive", dlq.Filter{Until: at}, false},
		{"until after", dlq.Filter{Until: at.Add(time.Nanosecond)}, true},
		{"ids", dlq.Filter{IDs: []string{"x", "m1"}}, true},
		{"other ids", dlq.Filter{IDs: []string{"x"}}, false},
		{"all", dlq.Filter{Handler: "normalise", Reason: hub.ReasonPermanent, ErrorContains: "invalid", Since: at.Add(-time.Hour), Until: at.Add(time.Hour), IDs: []string{"m1"}}, true},
	} {
		require.Equal(t, tc.want, tc.f.Match(l), tc.name)
	}
	require.NoError(t, dlq.Filter{Since: at, Until: at.Add(time.Second)}.Validate())
	require.Error(t, dlq.Filter{Since: at, Until: at}.Validate())
}

func TestFromMessageAndReplayMessage(t *testing.T) {
	_, err := dlq.FromMessage(message.NewMessage("x", nil))
	require.ErrorIs(t, err, dlq.ErrNotLetter)

	m := message.NewMessage("m1", []byte(`{"id":"r1"}`))
	m.Metadata = message.Metadata{
		hub.KeyOriginalTopic: "records", hub.KeyHandler: "normalise", hub.KeyDLQReason: hub.ReasonExhausted,
		hub.KeyDLQError: "boom", hub.KeyAttempts: "7", hub.KeyFailedAt: "2026-01-02T03:04:05.5Z",
		hub.KeyFirstFailedAt: "2026-01-02T03:00:00Z", hub.KeyAttempt: "7", hub.KeyRedeliveries: "3",
		hub.KeyCorrelationID: "c1", hub.KeyEncKeyID: "k1", hub.KeyDeliveryCount: "3",
	}
	l, err := dlq.FromMessage(m)
	require.NoError(t, err)
	require.NotContains(t, l.Metadata, hub.KeyDeliveryCount, "the dead letter's own deliveries")
	require.Equal(t, "m1", l.Key, "the key defaults to the ID")
	require.Equal(t, 7, l.Attempts)
	require.Equal(t, time.Date(2026, 1, 2, 3, 4, 5, 5e8, time.UTC), l.FailedAt)

	r := l.ReplayMessage()
	require.Equal(t, "m1", r.UUID)
	require.Equal(t, `{"id":"r1"}`, string(r.Payload))
	require.Equal(t, message.Metadata{
		hub.KeyKey: "m1", hub.KeyTargetGroup: "normalise", hub.KeyCorrelationID: "c1", hub.KeyEncKeyID: "k1",
	}, r.Metadata, "dead-letter and attempt keys dropped, addressed to the failed handler, ciphertext key kept")
}

func TestOptionsRejected(t *testing.T) {
	th := hubtest.New(t)
	ctx := context.Background()
	_, err := dlq.List(ctx, th.Broker, "records.dlq", dlq.Options{Limit: -1})
	require.Error(t, err)
	_, err = dlq.List(ctx, th.Broker, "records.dlq", dlq.Options{Filter: dlq.Filter{Since: time.Now(), Until: time.Now().Add(-time.Hour)}})
	require.ErrorContains(t, err, "is not after Since")
	_, err = dlq.List(ctx, th.Broker, "", dlq.Options{})
	require.ErrorContains(t, err, "empty topic")
}

// Record is what the test handlers receive.
type Record struct {
	ID   string `json:"id"`
	Kind string `json:"kind"`
}

// counter records the keys a fixed handler handled.
type counter struct {
	mu      sync.Mutex
	broken  bool
	handled map[string]int
	changed chan struct{}
}

func newCounter() *counter {
	return &counter{broken: true, handled: map[string]int{}, changed: make(chan struct{}, 1)}
}

// handler fails permanently for kind "perm", with a retryable error for
// kind "flaky", while broken.
func (c *counter) handler(ctx context.Context, m hub.Message[Record]) error {
	c.mu.Lock()
	broken := c.broken
	c.mu.Unlock()
	if broken {
		switch m.Payload.Kind {
		case "perm":
			return retry.Permanent(errors.New("invalid record"))
		case "flaky":
			return errors.New("upstream timeout")
		}
	}
	c.mu.Lock()
	c.handled[m.Key]++
	c.mu.Unlock()
	select {
	case c.changed <- struct{}{}:
	default:
	}
	return nil
}

func (c *counter) fix() {
	c.mu.Lock()
	c.broken = false
	c.handled = map[string]int{}
	c.mu.Unlock()
}

func (c *counter) wait(t *testing.T, n int) map[string]int {
	t.Helper()
	deadline := time.After(waitFor)
	for {
		c.mu.Lock()
		got := len(c.handled)
		snap := make(map[string]int, got)
		for k, v := range c.handled {
			snap[k] = v
		}
		c.mu.Unlock()
		if got >= n {
			return snap
		}
		select {
		case <-c.changed:
		case <-deadline:
			t.Fatalf("handled %d keys of %d: %v", got, n, snap)
		}
	}
}

// setup runs a hub with c's handler as "normalise" on topic and returns
// the broker the dead letters are on.
type setup func(t *testing.T, topic string, c *counter) (broker.Broker, *hub.Hub)

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

var policy = retry.Policy{Attempts: 1, Redeliveries: retry.None}

func runHub(t *testing.T, b broker.Broker, topic string, c *counter) *hub.Hub {
	t.Helper()
	store, err := idempotency.NewMemoryStore(idempotency.MemoryConfig{})
	require.NoError(t, err)
	h, err := hub.New(b, hub.Config{Logger: quiet, Retry: policy, Idempotency: store})
	require.NoError(t, err)
	require.NoError(t, hub.Handle(h, topic, c.handler, hub.Name("normalise"), hub.Concurrency(4)))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- h.Run(ctx) }()
	<-h.Running()
	t.Cleanup(func() {
		cancel()
		require.NoError(t, <-done)
		require.NoError(t, store.Close())
	})
	return h
}

func unique() string {
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

var setups = []struct {
	name  string
	setup setup
}{
	{"memory", func(t *testing.T, topic string, c *counter) (broker.Broker, *hub.Hub) {
		th := hubtest.New(t, hubtest.WithConfig(func(cfg *hub.Config) { cfg.Retry = policy }))
		require.NoError(t, hub.Handle(th.Hub, topic, c.handler, hub.Name("normalise")))
		th.Start()
		return th.Broker, th.Hub
	}},
	{"rabbitmq", func(t *testing.T, topic string, c *counter) (broker.Broker, *hub.Hub) {
		testenv.Require(t, "RabbitMQ", testenv.AMQPURL())
		b, err := amqp.New(amqp.Config{URL: testenv.AMQPURL(), Logger: quiet})
		require.NoError(t, err)
		t.Cleanup(func() {
			require.NoError(t, b.Close())
			conn, err := amqp091.Dial(testenv.AMQPURL())
			if err != nil {
				return
			}
			defer conn.Close()
			for _, n := range []string{topic, topic + ".dlq", topic + ".normalise"} {
				if ch, err := conn.Channel(); err == nil {
					_ = ch.ExchangeDelete(n, false, false)
					_, _ = ch.QueueDelete(n, false, false, false)
					_ = ch.Close()
				}
			}
		})
		return b, runHub(t, b, topic, c)
	}},
	{"sqs", func(t *testing.T, topic string, c *counter) (broker.Broker, *hub.Hub) {
		testenv.Require(t, "SQS emulator", testenv.SQSEndpoint())
		b, err := sqs.New(context.Background(), sqs.Config{
			Endpoint:    testenv.SQSEndpoint(),
			Credentials: &sqs.Credentials{AccessKeyID: "test", SecretAccessKey: "test"},
			QueuePrefix: "t" + unique() + "-",
			// Short polls: see the package doc on SQS.
			WaitTime: time.Nanosecond,
			Logger:   quiet,
		})
		require.NoError(t, err)
		t.Cleanup(func() { require.NoError(t, b.Close()) })
		return b, runHub(t, b, topic, c)
	}},
}

// waitLetters lists until n letters are in dlqTopic.
func waitLetters(t *testing.T, b broker.Broker, dlqTopic string, n int) []dlq.Letter {
	t.Helper()
	deadline := time.Now().Add(waitFor)
	for {
		ls, err := dlq.List(context.Background(), b, dlqTopic, dlq.Options{Idle: 200 * time.Millisecond})
		require.NoError(t, err)
		if len(ls) == n || time.Now().After(deadline) {
			require.Len(t, ls, n)
			return ls
		}
	}
}

func keys(ls []dlq.Letter) []string {
	out := make([]string, len(ls))
	for i, l := range ls {
		out[i] = l.Key
	}
	slices.Sort(out)
	return out
}

func TestOnBrokers(t *testing.T) {
	for _, s := range setups {
		t.Run(s.name, func(t *testing.T) {
			ctx := context.Background()
			topic := "records-" + unique()
			dlqTopic := topic + ".dlq"
			c := newCounter()
			b, h := s.setup(t, topic, c)
			before := time.Now()
			for i := range 6 {
				kind := "perm"
				if i%2 == 1 {
					kind = "flaky"
				}
				require.NoError(t, hub.Publish(ctx, h, topic, Record{ID: fmt.Sprint(i), Kind: kind}, hub.WithKey(fmt.Sprintf("k%d", i))))
			}
			all := waitLetters(t, b, dlqTopic, 6)
			after := time.Now()
			require.Equal(t, []string{"k0", "k1", "k2", "k3", "k4", "k5"}, keys(all))
			o := dlq.Options{Idle: 300 * time.Millisecond}

			list := func(f dlq.Filter, limit int) []dlq.Letter {
				t.Helper()
				o := o
				o.Filter, o.Limit = f, limit
				ls, err := dlq.List(ctx, b, dlqTopic, o)
				require.NoError(t, err)
				return ls
			}
			require.Equal(t, []string{"k0", "k2", "k4"}, keys(list(dlq.Filter{Reason: hub.ReasonPermanent}, 0)))
			require.Equal(t, []string{"k1", "k3", "k5"}, keys(list(dlq.Filter{ErrorContains: "upstream"}, 0)))
			require.Len(t, list(dlq.Filter{Handler: "normalise"}, 0), 6)
			require.Empty(t, list(dlq.Filter{Handler: "audit"}, 0))
			require.Len(t, list(dlq.Filter{Since: before.Add(-time.Second), Until: after.Add(time.Second)}, 0), 6)
			require.Empty(t, list(dlq.Filter{Since: after.Add(time.Second)}, 0))
			require.Len(t, list(dlq.Filter{}, 4), 4)
			for _, l := range all {
				require.Equal(t, topic, l.OriginalTopic)
				require.Equal(t, "normalise", l.Handler)
				require.Equal(t, 1, l.Attempts)
				require.WithinRange(t, l.FailedAt, before.Add(-time.Second), after)
				require.Contains(t, string(l.Payload), `"id":`)
			}

			got, err := dlq.Get(ctx, b, dlqTopic, all[2].ID, o)
			require.NoError(t, err)
			require.Equal(t, all[2].Key, got.Key)
			_, err = dlq.Get(ctx, b, dlqTopic, "no-such-id", o)
			require.ErrorIs(t, err, dlq.ErrNotFound)

			// Dry run changes nothing.
			res, err := dlq.Replay(ctx, b, dlqTopic, dlq.ReplayOptions{Options: o, DryRun: true})
			require.NoError(t, err)
			require.Len(t, res.Letters, 6)
			require.Zero(t, res.Replayed)

			// Interrupted after the first confirmed publish, then resumed.
			c.fix()
			rctx, cancel := context.WithCancel(ctx)
			res, err = dlq.Replay(rctx, b, dlqTopic, dlq.ReplayOptions{Options: o, Progress: func(done int) {
				if done == 1 {
					cancel()
				}
			}})
			cancel()
			require.ErrorIs(t, err, context.Canceled)
			require.Equal(t, 1, res.Replayed)
			c.wait(t, 1)
			require.Len(t, waitLetters(t, b, dlqTopic, 5), 5, "the replayed letter left the DLQ, the rest stayed")

			res, err = dlq.Replay(ctx, b, dlqTopic, dlq.ReplayOptions{Options: o})
			require.NoError(t, err)
			require.Equal(t, 5, res.Replayed)
			handled := c.wait(t, 6)
			require.Equal(t, map[string]int{"k0": 1, "k1": 1, "k2": 1, "k3": 1, "k4": 1, "k5": 1}, handled, "nothing lost, nothing doubled")
			require.Empty(t, list(dlq.Filter{}, 0))

			// Purge with a filter, then the rest.
			c.mu.Lock()
			c.broken = true
			c.mu.Unlock()
			for i := 10; i < 14; i++ {
				kind := "perm"
				if i%2 == 1 {
					kind = "flaky"
				}
				require.NoError(t, hub.Publish(ctx, h, topic, Record{ID: fmt.Sprint(i), Kind: kind}, hub.WithKey(fmt.Sprintf("k%d", i))))
			}
			waitLetters(t, b, dlqTopic, 4)
			n, err := dlq.Purge(ctx, b, dlqTopic, dlq.Options{Idle: o.Idle, Filter: dlq.Filter{Reason: hub.ReasonExhausted}})
			require.NoError(t, err)
			require.Equal(t, 2, n)
			require.Equal(t, []string{"k10", "k12"}, keys(waitLetters(t, b, dlqTopic, 2)))
			n, err = dlq.Purge(ctx, b, dlqTopic, o)
			require.NoError(t, err)
			require.Equal(t, 2, n)
			require.Empty(t, list(dlq.Filter{}, 0))
		})
	}
}

// lostConfirm passes publishes to topic through but reports the first one
// failed, as a publish whose confirm was lost: the letter stays in the DLQ
// although its copy reached the topic.
type lostConfirm struct {
	broker.Broker
	topic string
	once  sync.Once
}

func (l *lostConfirm) Publish(topic string, msgs ...*message.Message) error {
	if err := l.Broker.Publish(topic, msgs...); err != nil {
		return err
	}
	var lost error
	if topic == l.topic {
		l.once.Do(func() { lost = errors.New("confirm lost") })
	}
	return lost
}

// TestReplayAfterLostConfirm: a replay that published a letter but could
// not tell is run again; the letter is published twice and the handler sees
// it once, thanks to the idempotency key the replay keeps.
func TestReplayAfterLostConfirm(t *testing.T) {
	ctx := context.Background()
	c := newCounter()
	th := hubtest.New(t, hubtest.WithConfig(func(cfg *hub.Config) { cfg.Retry = policy }))
	require.NoError(t, hub.Handle(th.Hub, "records", c.handler, hub.Name("normalise")))
	th.Start()
	hubtest.Send(t, th, "records", Record{ID: "1", Kind: "perm"}, hub.WithKey("k1"))
	hubtest.Send(t, th, "records", Record{ID: "2", Kind: "perm"}, hub.WithKey("k2"))
	th.Settle(t)
	waitLetters(t, th.Broker, "records.dlq", 2)

	c.fix()
	b := &lostConfirm{Broker: th.Broker, topic: "records"}
	o := dlq.Options{Idle: 100 * time.Millisecond}
	res, err := dlq.Replay(ctx, b, "records.dlq", dlq.ReplayOptions{Options: o})
	require.ErrorContains(t, err, "confirm lost")
	require.Zero(t, res.Replayed)
	c.wait(t, 1)
	require.Len(t, waitLetters(t, th.Broker, "records.dlq", 2), 2, "an unconfirmed replay keeps its letter")

	res, err = dlq.Replay(ctx, b, "records.dlq", dlq.ReplayOptions{Options: o})
	require.NoError(t, err)
	require.Equal(t, 2, res.Replayed)
	c.wait(t, 2)
	// Settle would wait for the DLQ too: wait for the handler's group only.
	wctx, cancel := context.WithTimeout(ctx, waitFor)
	defer cancel()
	require.NoError(t, th.Broker.WaitStats(wctx, func(s memory.Stats) bool {
		g := s.Group("records", "normalise")
		return g.Queued == 0 && g.Unacked == 0
	}))
	c.mu.Lock()
	defer c.mu.Unlock()
	require.Equal(t, map[string]int{"k1": 1, "k2": 1}, c.handled, "the letter published twice was handled once")
	require.Len(t, th.Messages("records"), 2, "the two originals")
	waitLetters(t, th.Broker, "records.dlq", 0)
}

// TestReplayTo: replayed to another topic, letters reach its handlers,
// whatever their names.
func TestReplayTo(t *testing.T) {
	ctx := context.Background()
	c, q := newCounter(), newCounter()
	q.fix()
	th := hubtest.New(t, hubtest.WithConfig(func(cfg *hub.Config) { cfg.Retry = policy }))
	require.NoError(t, hub.Handle(th.Hub, "records", c.handler, hub.Name("normalise")))
	require.NoError(t, hub.Handle(th.Hub, "quarantine", q.handler, hub.Name("inspect")))
	th.Start()
	hubtest.Send(t, th, "records", Record{ID: "1", Kind: "perm"}, hub.WithKey("k1"))
	waitLetters(t, th.Broker, "records.dlq", 1)

	res, err := dlq.Replay(ctx, th.Broker, "records.dlq", dlq.ReplayOptions{Options: dlq.Options{Idle: 100 * time.Millisecond}, To: "quarantine"})
	require.NoError(t, err)
	require.Equal(t, 1, res.Replayed)
	require.Equal(t, map[string]int{"k1": 1}, q.wait(t, 1))
	waitLetters(t, th.Broker, "records.dlq", 0)
}

// Defect 3 (issue 10): replaying the letters of a renamed handler refuses
// instead of stranding them in a queue nobody reads; ToGroup moves them to
// the new name, which handles each once.
func TestReplayToARenamedHandler(t *testing.T) {
	ctx := context.Background()
	mem, err := memory.New(memory.Config{})
	require.NoError(t, err)
	t.Cleanup(func() { _ = mem.Close() })
	store, err := idempotency.NewMemoryStore(idempotency.MemoryConfig{})
	require.NoError(t, err)
	t.Cleanup(func() { _ = store.Close() })

	// Version 1 of the worker: handler "normalise" dead-letters a record.
	old := newCounter()
	hv1, err := hub.New(mem, hub.Config{Retry: policy, Idempotency: store})
	require.NoError(t, err)
	require.NoError(t, hub.Handle(hv1, "records", old.handler, hub.Name("normalise")))
	run1 := make(chan error, 1)
	go func() { run1 <- hv1.Run(ctx) }()
	<-hv1.Running()
	require.NoError(t, hub.Publish(ctx, hv1, "records", Record{ID: "1", Kind: "perm"}, hub.WithKey("k1")))
	waitLetters(t, mem, "records.dlq", 1)
	require.NoError(t, hv1.Close())
	require.NoError(t, <-run1)

	// Version 2 renamed it "clean".
	renamed := newCounter()
	renamed.fix()
	hv2, err := hub.New(mem, hub.Config{Retry: policy, Idempotency: store})
	require.NoError(t, err)
	require.NoError(t, hub.Handle(hv2, "records", renamed.handler, hub.Name("clean")))
	run2 := make(chan error, 1)
	go func() { run2 <- hv2.Run(ctx) }()
	<-hv2.Running()
	t.Cleanup(func() { require.NoError(t, hv2.Close()); require.NoError(t, <-run2) })

	o := dlq.Options{Idle: 100 * time.Millisecond}
	_, err = dlq.Replay(ctx, mem, "records.dlq", dlq.ReplayOptions{Options: o})
	require.ErrorIs(t, err, dlq.ErrNoConsumer)
	require.ErrorContains(t, err, `group "normalise"`)
	waitLetters(t, mem, "records.dlq", 1) // still there

	res, err := dlq.Replay(ctx, mem, "records.dlq", dlq.ReplayOptions{Options: o, ToGroup: "clean"})
	require.NoError(t, err)
	require.Equal(t, 1, res.Replayed)
	require.Equal(t, map[string]int{"k1": 1}, renamed.wait(t, 1))
	waitLetters(t, mem, "records.dlq", 0)
}
