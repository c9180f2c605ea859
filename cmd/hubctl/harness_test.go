package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	amqp091 "github.com/rabbitmq/amqp091-go"
	"github.com/stretchr/testify/require"

	"github.com/harvesthub/hub"
	"github.com/harvesthub/hub/broker"
	"github.com/harvesthub/hub/broker/amqp"
	"github.com/harvesthub/hub/broker/memory"
	natsbroker "github.com/harvesthub/hub/broker/nats"
	"github.com/harvesthub/hub/broker/sqs"
	"github.com/harvesthub/hub/idempotency"
	"github.com/harvesthub/hub/internal/testenv"
	"github.com/harvesthub/hub/retry"
)

// waitFor bounds every wait of these tests.
const waitFor = 30 * time.Second

func randomHex() string {
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// brokerCase opens a broker for a hub and returns the URL hubctl reaches
// it by. Each call gives a test its own names.
type brokerCase struct {
	name string
	open func(t *testing.T, topic string) (broker.Broker, string)
}

var brokerCases = []brokerCase{
	{"memory", func(t *testing.T, _ string) (broker.Broker, string) {
		b, err := memory.New(memory.Config{})
		require.NoError(t, err)
		name := "hubctl-" + randomHex()
		unregister := registerMemory(name, b)
		t.Cleanup(func() { unregister(); require.NoError(t, b.Close()) })
		return b, "memory://" + name
	}},
	{"rabbitmq", func(t *testing.T, topic string) (broker.Broker, string) {
		testenv.Require(t, "RabbitMQ", testenv.AMQPURL())
		b, err := amqp.New(amqp.Config{URL: testenv.AMQPURL(), Logger: quiet()})
		require.NoError(t, err)
		t.Cleanup(func() {
			require.NoError(t, b.Close())
			deleteAMQP(testenv.AMQPURL(), topic, topic+".dlq", topic+".normalise", topic+".audit")
		})
		return b, testenv.AMQPURL()
	}},
	{"sqs", func(t *testing.T, _ string) (broker.Broker, string) {
		testenv.Require(t, "SQS emulator", testenv.SQSEndpoint())
		prefix := "t" + randomHex() + "-"
		b, err := sqs.New(context.Background(), sqs.Config{
			Endpoint:    testenv.SQSEndpoint(),
			Credentials: &sqs.Credentials{AccessKeyID: "test", SecretAccessKey: "test"},
			QueuePrefix: prefix,
			WaitTime:    time.Second,
			Logger:      quiet(),
		})
		require.NoError(t, err)
		t.Cleanup(func() { require.NoError(t, b.Close()) })
		return b, "sqs://test:test@us-east-1?endpoint=" + url.QueryEscape(testenv.SQSEndpoint()) + "&prefix=" + prefix
	}},
	{"nats", func(t *testing.T, _ string) (broker.Broker, string) {
		testenv.Require(t, "NATS", testenv.NATSURL())
		prefix := "t" + randomHex() + "_"
		b, err := natsbroker.New(context.Background(), natsbroker.Config{
			URL:          testenv.NATSURL(),
			StreamPrefix: prefix,
			PollWait:     time.Second,
			Logger:       quiet(),
		})
		require.NoError(t, err)
		t.Cleanup(func() {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			qs, _ := b.Queues(ctx, "")
			require.NoError(t, b.Close())
			deleteNATSStreams(t, qs)
		})
		return b, testenv.NATSURL() + "?prefix=" + prefix
	}},
}

func quiet() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// deleteAMQP removes a test's exchanges and queues from RabbitMQ.
func deleteAMQP(rawURL string, names ...string) {
	c, err := amqp091.Dial(rawURL)
	if err != nil {
		return
	}
	defer c.Close()
	for _, n := range names {
		ch, err := c.Channel()
		if err != nil {
			return
		}
		_ = ch.ExchangeDelete(n, false, false)
		_, _ = ch.QueueDelete(n, false, false, false)
		_ = ch.Close()
	}
}

// Record is what the test hub handles.
type Record struct {
	ID    string `json:"id"`
	Kind  string `json:"kind"`
	Title string `json:"title"`
}

// worker runs a hub with two handlers on topic: "normalise" fails
// permanently for kind "perm" and with a retryable error for kind "flaky";
// "audit" fails permanently for kind "audit". Fixed, both succeed and count
// every key they handle.
type worker struct {
	hub   *hub.Hub
	topic string

	mu      sync.Mutex
	broken  bool
	handled map[string]int // "<handler>/<key>" -> calls that succeeded
	changed chan struct{}
}

func startWorker(t *testing.T, b broker.Broker, topic string) *worker {
	t.Helper()
	store, err := idempotency.NewMemoryStore(idempotency.MemoryConfig{})
	require.NoError(t, err)
	h, err := hub.New(b, hub.Config{
		Logger:      quiet(),
		Idempotency: store, // one store across every replay
		Retry:       retry.Policy{Attempts: 1, Redeliveries: retry.None},
	})
	require.NoError(t, err)
	w := &worker{hub: h, topic: topic, broken: true, handled: map[string]int{}, changed: make(chan struct{}, 1)}
	require.NoError(t, hub.Handle(h, topic, w.handler("normalise", func(r Record) error {
		switch r.Kind {
		case "perm":
			return retry.Permanent(errors.New("invalid record: missing title"))
		case "flaky":
			return errors.New("index unavailable: connection refused")
		}
		return nil
	}), hub.Name("normalise"), hub.Concurrency(4)))
	require.NoError(t, hub.Handle(h, topic, w.handler("audit", func(r Record) error {
		if r.Kind == "audit" {
			return retry.Permanent(errors.New("audit log rejected the record"))
		}
		return nil
	}), hub.Name("audit"), hub.Concurrency(4)))

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
		require.NoError(t, <-done)
		require.NoError(t, store.Close())
	})
	return w
}

func (w *worker) handler(name string, fail func(Record) error) hub.HandlerFunc[Record] {
	return func(ctx context.Context, m hub.Message[Record]) error {
		w.mu.Lock()
		broken := w.broken
		w.mu.Unlock()
		if broken {
			if err := fail(m.Payload); err != nil {
				return err
			}
		}
		w.mu.Lock()
		w.handled[name+"/"+m.Key]++
		w.mu.Unlock()
		select {
		case w.changed <- struct{}{}:
		default:
		}
		return nil
	}
}

// setBroken breaks or fixes the handlers; fixing them also resets the
// counts, so that only the calls after the fix are counted.
func (w *worker) setBroken(b bool) {
	w.mu.Lock()
	w.broken = b
	if !b {
		w.handled = map[string]int{}
	}
	w.mu.Unlock()
}

// waitHandled waits until cond holds for the handled counts.
func (w *worker) waitHandled(t *testing.T, cond func(map[string]int) bool) {
	t.Helper()
	deadline := time.After(waitFor)
	for {
		w.mu.Lock()
		ok := cond(w.handled)
		snapshot := fmt.Sprint(w.handled)
		w.mu.Unlock()
		if ok {
			return
		}
		select {
		case <-w.changed:
		case <-deadline:
			t.Fatalf("handled counts never met the condition: %s", snapshot)
		}
	}
}

func (w *worker) count(key string) int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.handled[key]
}

func (w *worker) publish(t *testing.T, rs ...Record) {
	t.Helper()
	for _, r := range rs {
		require.NoError(t, hub.Publish(context.Background(), w.hub, w.topic, r, hub.WithKey("key-"+r.ID)))
	}
}

// waitDepth polls the broker's Inspector until queue depth of topic's
// default group is n, within waitFor.
func waitDepth(t *testing.T, b broker.Broker, topic string, n int64) {
	t.Helper()
	in := b.(broker.Inspector)
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	deadline := time.After(waitFor)
	var last []broker.QueueStats
	for {
		qs, err := in.Queues(context.Background(), topic)
		if err == nil {
			last = qs
			for _, q := range qs {
				if q.Group == topic || q.Group == "" {
					if q.Depth == n {
						return
					}
				}
			}
		} else if !errors.Is(err, broker.ErrUnknownTopic) {
			require.NoError(t, err)
		}
		select {
		case <-tick.C:
		case <-deadline:
			t.Fatalf("%s never held %d messages; last stats %+v", topic, n, last)
		}
	}
}

// hubctl runs the command with env, returning its exit code and output.
type result struct {
	code           int
	stdout, stderr string
}

func runHubctl(t *testing.T, env map[string]string, stdin string, args ...string) result {
	t.Helper()
	var out, errb bytes.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	code := run(ctx, args, strings.NewReader(stdin), &out, &errb, func(k string) string { return env[k] })
	t.Logf("hubctl %s -> %d\n%s%s", strings.Join(args, " "), code, out.String(), errb.String())
	return result{code, out.String(), errb.String()}
}

// rows returns the data rows of a table (the header dropped).
func rows(s string) []string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) <= 1 {
		return nil
	}
	return lines[1:]
}
