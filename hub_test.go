package hub_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	wmiddleware "github.com/ThreeDotsLabs/watermill/message/router/middleware"
	"github.com/stretchr/testify/require"

	"github.com/harvesthub/hub"
	"github.com/harvesthub/hub/broker/memory"
	"github.com/harvesthub/hub/hubtest"
	"github.com/harvesthub/hub/idempotency"
	"github.com/harvesthub/hub/retry"
)

type Record struct {
	ID    string `json:"id"`
	Title string `json:"title"`
}

type IndexJob struct {
	RecordID string `json:"record_id"`
	Field    string `json:"field"`
}

// counter counts calls per key.
type counter struct {
	mu sync.Mutex
	m  map[string]int
}

func (c *counter) inc(k string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.m == nil {
		c.m = map[string]int{}
	}
	c.m[k]++
	return c.m[k]
}

func (c *counter) get(k string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.m[k]
}

func TestDuplicateKeysHandledOnceUnderConcurrency(t *testing.T) {
	th := hubtest.New(t)
	var calls counter
	require.NoError(t, hub.Handle(th.Hub, "records", func(ctx context.Context, m hub.Message[Record]) error {
		calls.inc(m.Key)
		return nil
	}, hub.Concurrency(8)))
	th.Start()
	const keys, copies = 25, 8
	var wg sync.WaitGroup
	for c := range copies {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for k := range keys {
				key := "key-" + strconv.Itoa(k)
				require.NoError(t, hub.Publish(context.Background(), th.Hub, "records", Record{ID: key, Title: strconv.Itoa(c)}, hub.WithKey(key)))
			}
		}()
	}
	wg.Wait()
	th.Settle(t)
	for k := range keys {
		require.Equal(t, 1, calls.get("key-"+strconv.Itoa(k)), "key-%d", k)
	}
	require.Empty(t, th.DeadLetters("records"))
}

func TestTransientFailuresRetriedThenSucceed(t *testing.T) {
	th := hubtest.New(t)
	var attempts []int
	require.NoError(t, hub.Handle(th.Hub, "records", func(ctx context.Context, m hub.Message[Record]) error {
		attempts = append(attempts, m.Attempt)
		if len(attempts) < 3 {
			return errors.New("upstream 503")
		}
		return nil
	}))
	th.Start()
	hubtest.Send(t, th, "records", Record{ID: "r1"})
	th.Settle(t)
	require.Equal(t, []int{1, 2, 3}, attempts)
	require.Empty(t, th.DeadLetters("records"))
}

func TestExhaustedRetriesDeadLetteredWithMetadata(t *testing.T) {
	th := hubtest.New(t)
	var attempts []int
	require.NoError(t, hub.Handle(th.Hub, "records", func(ctx context.Context, m hub.Message[Record]) error {
		attempts = append(attempts, m.Attempt)
		return fmt.Errorf("index down (attempt %d)", m.Attempt)
	}, hub.Name("normalise")))
	th.Start()
	before := time.Now().UTC()
	hubtest.Send(t, th, "records", Record{ID: "r1"}, hub.WithKey("k1"), hub.WithMetadata("tenant", "gchq"))
	th.Settle(t)

	// retry.Fast: 3 in-process attempts, then 1 delayed redelivery of 3 more.
	require.Equal(t, []int{1, 2, 3, 4, 5, 6}, attempts)
	dead := th.DeadLetters("records")
	require.Len(t, dead, 1)
	l := dead[0]
	require.Equal(t, hub.ReasonExhausted, l.Reason)
	require.Equal(t, "index down (attempt 6)", l.Error)
	require.Equal(t, "records", l.OriginalTopic)
	require.Equal(t, "normalise", l.Handler)
	require.Equal(t, 6, l.Attempts)
	require.Equal(t, "k1", l.Key)
	require.Equal(t, "gchq", l.Metadata["tenant"])
	require.Equal(t, "Record", l.Metadata[hub.KeySchema])
	require.False(t, l.FailedAt.Before(before))
	require.False(t, l.FirstFailedAt.After(l.FailedAt))
	require.True(t, l.FirstFailedAt.Before(l.FailedAt), "first failure is kept across the delayed retry")
	var rec Record
	require.NoError(t, json.Unmarshal(l.Payload, &rec))
	require.Equal(t, "r1", rec.ID)
}

func TestPermanentErrorsAndPanicsDeadLetteredAtOnce(t *testing.T) {
	for _, tc := range []struct {
		name   string
		fn     func() error
		reason string
		errTxt string
	}{
		{"permanent", func() error { return retry.Permanent(errors.New("record has no id")) }, hub.ReasonPermanent, "permanent: record has no id"},
		{"panic", func() error { panic("nil map") }, hub.ReasonPanic, "hub: handler panicked: nil map"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			th := hubtest.New(t)
			var calls, good atomic.Int32
			require.NoError(t, hub.Handle(th.Hub, "records", func(ctx context.Context, m hub.Message[Record]) error {
				if m.Payload.ID == "good" {
					good.Add(1)
					return nil
				}
				calls.Add(1)
				return tc.fn()
			}))
			th.Start()
			hubtest.Send(t, th, "records", Record{ID: "bad"})
			hubtest.Send(t, th, "records", Record{ID: "good"})
			th.Settle(t)
			require.EqualValues(t, 1, calls.Load(), "no retries for a permanent failure")
			require.EqualValues(t, 1, good.Load(), "the hub keeps handling after the failure")
			dead := th.DeadLetters("records")
			require.Len(t, dead, 1)
			require.Equal(t, tc.reason, dead[0].Reason)
			require.Equal(t, tc.errTxt, dead[0].Error)
			require.Equal(t, 1, dead[0].Attempts)
		})
	}
}

func TestUndecodablePayloadDeadLetteredWhileNextIsHandled(t *testing.T) {
	tests := []struct {
		name    string
		payload string
		md      map[string]string
		errPart string
	}{
		{"not json", "{not json", nil, "cannot decode payload"},
		{"wrong type", `{"id": 42}`, nil, "cannot decode payload"},
		{"newer version", `{"id":"x"}`, map[string]string{hub.KeySchema: "Record", hub.KeySchemaVersion: "7"}, "newer than 1"},
		{"bad version", `{"id":"x"}`, map[string]string{hub.KeySchemaVersion: "v2"}, "not a positive integer"},
		{"other schema", `{"id":"x"}`, map[string]string{hub.KeySchema: "Invoice"}, "schema mismatch"},
		{"other codec", `<id/>`, map[string]string{hub.KeyContentType: "application/xml"}, "content type"},
		{"encrypted without keyring", `xx`, map[string]string{hub.KeyEncKeyID: "k1"}, "cannot decrypt"},
	}
	th := hubtest.New(t)
	var handled []string
	require.NoError(t, hub.Handle(th.Hub, "records", func(ctx context.Context, m hub.Message[Record]) error {
		handled = append(handled, m.Payload.ID)
		return nil
	}))
	th.Start()
	for i, tc := range tests {
		raw := message.NewMessage("poison-"+strconv.Itoa(i), []byte(tc.payload))
		for k, v := range tc.md {
			raw.Metadata.Set(k, v)
		}
		require.NoError(t, th.Broker.Publish("records", raw))
		hubtest.Send(t, th, "records", Record{ID: "ok-" + strconv.Itoa(i)})
	}
	th.Settle(t)
	require.Len(t, handled, len(tests), "every good message behind a poison one is handled")
	dead := th.DeadLetters("records")
	require.Len(t, dead, len(tests))
	byID := map[string]string{}
	for _, l := range dead {
		require.Equal(t, hub.ReasonDecode, l.Reason)
		byID[l.ID] = l.Error
	}
	for i, tc := range tests {
		require.Contains(t, byID["poison-"+strconv.Itoa(i)], tc.errPart, tc.name)
	}
}

func TestRedeliveryAfterAckIsADuplicateNotASecondCall(t *testing.T) {
	// A crash between Complete and ack looks, to the broker, like an ack that
	// never arrived: the message comes again. It must be acked unhandled.
	th := hubtest.New(t)
	var calls atomic.Int32
	require.NoError(t, hub.Handle(th.Hub, "records", func(ctx context.Context, m hub.Message[Record]) error {
		calls.Add(1)
		return nil
	}))
	th.RedeliverAfterAck("records", 1)
	th.Start()
	hubtest.Send(t, th, "records", Record{ID: "r1"})
	th.Settle(t)
	require.EqualValues(t, 1, calls.Load())
	th.DuplicateNext("records", 1)
	hubtest.Send(t, th, "records", Record{ID: "r2"}, hub.WithKey("dup"))
	th.Settle(t)
	require.EqualValues(t, 2, calls.Load(), "a duplicate publish is handled once")
}

func TestCompletedKeyInStoreSkipsHandler(t *testing.T) {
	store, err := idempotency.NewMemoryStore(idempotency.MemoryConfig{})
	require.NoError(t, err)
	t.Cleanup(func() { _ = store.Close() })
	ctx := context.Background()
	c, err := store.Claim(ctx, hub.StoreKey("records", "k1"), time.Minute)
	require.NoError(t, err)
	require.NoError(t, store.Complete(ctx, hub.StoreKey("records", "k1"), c.Token, time.Hour))

	th := hubtest.New(t, hubtest.WithConfig(func(c *hub.Config) { c.Idempotency = store }))
	var calls atomic.Int32
	require.NoError(t, hub.Handle(th.Hub, "records", func(ctx context.Context, m hub.Message[Record]) error {
		calls.Add(1)
		return nil
	}))
	th.Start()
	hubtest.Send(t, th, "records", Record{ID: "r1"}, hub.WithKey("k1"))
	hubtest.Send(t, th, "records", Record{ID: "r2"}, hub.WithKey("k2"))
	th.Settle(t)
	require.EqualValues(t, 1, calls.Load())
}

func TestShutdownMidHandlerNeverAcks(t *testing.T) {
	for _, tc := range []struct {
		name string
		stop func(h *hub.Hub) error
	}{
		{"close", func(h *hub.Hub) error { return h.Close() }},
		{"shutdown deadline", func(h *hub.Hub) error {
			ctx, cancel := context.WithCancel(context.Background())
			cancel() // the deadline has passed: in-flight work is cancelled
			return h.Shutdown(ctx)
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			th := hubtest.New(t)
			started := make(chan struct{})
			require.NoError(t, hub.Handle(th.Hub, "records", func(ctx context.Context, m hub.Message[Record]) error {
				close(started)
				<-ctx.Done() // a slow handler that honours its context
				return ctx.Err()
			}))
			th.Start()
			hubtest.Send(t, th, "records", Record{ID: "r1"})
			<-started
			err := tc.stop(th.Hub)
			if tc.name == "shutdown deadline" {
				require.ErrorIs(t, err, context.Canceled)
			} else {
				require.NoError(t, err)
			}
			g := th.Broker.Stats().Group("records", "records")
			require.Equal(t, 1, g.Queued, "the unfinished message is back in its queue")
			require.Equal(t, 0, g.Unacked)
			require.Empty(t, th.DeadLetters("records"))
		})
	}
}

func TestShutdownInterruptsRetryWaitAndNacks(t *testing.T) {
	th := hubtest.New(t, hubtest.WithConfig(func(c *hub.Config) {
		c.Retry = retry.Policy{Attempts: 5, InitialInterval: time.Hour, MaxInterval: time.Hour}
	}))
	failed := make(chan struct{}, 1)
	require.NoError(t, hub.Handle(th.Hub, "records", func(ctx context.Context, m hub.Message[Record]) error {
		failed <- struct{}{}
		return errors.New("transient")
	}))
	th.Start()
	hubtest.Send(t, th, "records", Record{ID: "r1"})
	<-failed
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	require.NoError(t, th.Hub.Shutdown(ctx), "the hour-long wait is cut short")
	g := th.Broker.Stats().Group("records", "records")
	require.Equal(t, 1, g.Queued)
	require.Empty(t, th.DeadLetters("records"))
}

func TestDeadLetterPublishFailureNacks(t *testing.T) {
	th := hubtest.New(t)
	var calls atomic.Int32
	require.NoError(t, hub.Handle(th.Hub, "records", func(ctx context.Context, m hub.Message[Record]) error {
		calls.Add(1)
		return retry.Permanent(errors.New("bad record"))
	}))
	th.FailPublishes("records.dlq", 2, nil)
	th.Start()
	hubtest.Send(t, th, "records", Record{ID: "r1"})
	th.Settle(t)
	require.EqualValues(t, 3, calls.Load(), "nacked twice, redelivered, dead-lettered on the third delivery")
	dead := th.DeadLetters("records")
	require.Len(t, dead, 1)
	require.Equal(t, 3, dead[0].Attempts, "broker redeliveries count as attempts")
}

func TestRetryAfterDelay(t *testing.T) {
	th := hubtest.New(t)
	var attempts []int
	require.NoError(t, hub.Handle(th.Hub, "records", func(ctx context.Context, m hub.Message[Record]) error {
		attempts = append(attempts, m.Attempt)
		switch m.Attempt {
		case 1:
			return retry.After(time.Millisecond) // short: in-process
		case 2:
			// Longer than MaxInterval: taken by a delayed retry through the
			// broker, not by a sleeping goroutine.
			return retry.AfterErr(30*time.Millisecond, errors.New("429"))
		}
		return nil
	}, hub.WithHandlerRetry(retry.Policy{Attempts: 5, InitialInterval: time.Millisecond, MaxInterval: 10 * time.Millisecond, Redeliveries: 1})))
	th.Start()
	hubtest.Send(t, th, "records", Record{ID: "r1"})
	th.Settle(t)
	require.Equal(t, []int{1, 2, 3}, attempts)
	msgs := th.Messages("records")
	require.Len(t, msgs, 2, "the original and its delayed retry")
	require.Equal(t, "3", msgs[1].Metadata.Get(hub.KeyAttempt))
	require.Equal(t, "1", msgs[1].Metadata.Get(hub.KeyRedeliveries))
}

func TestDelayedRetryReachesOnlyTheFailingHandler(t *testing.T) {
	th := hubtest.New(t)
	var a, b counter
	require.NoError(t, hub.Handle(th.Hub, "records", func(ctx context.Context, m hub.Message[Record]) error {
		if a.inc(m.Key) <= 3 { // fail every in-process attempt of the first delivery
			return errors.New("flaky")
		}
		return nil
	}, hub.Name("a")))
	require.NoError(t, hub.Handle(th.Hub, "records", func(ctx context.Context, m hub.Message[Record]) error {
		b.inc(m.Key)
		return nil
	}, hub.Name("b")))
	th.Start()
	hubtest.Send(t, th, "records", Record{ID: "r1"}, hub.WithKey("k"))
	th.Settle(t)
	require.Equal(t, 4, a.get("k"))
	require.Equal(t, 1, b.get("k"), "handler b never sees a's retry")
	require.Empty(t, th.DeadLetters("records"))
}

func TestPipePublishesOutputsWithCorrelation(t *testing.T) {
	th := hubtest.New(t)
	require.NoError(t, hub.Pipe(th.Hub, "records", "jobs", func(ctx context.Context, m hub.Message[Record]) ([]IndexJob, error) {
		return []IndexJob{{RecordID: m.Payload.ID, Field: "title"}, {RecordID: m.Payload.ID, Field: "body"}}, nil
	}))
	th.Start()
	require.NoError(t, hub.Publish(hub.WithCorrelationID(context.Background(), "req-42"), th.Hub, "records", Record{ID: "r1"}))
	th.Settle(t)
	jobs := hubtest.Published[IndexJob](t, th, "jobs")
	require.Equal(t, []IndexJob{{"r1", "title"}, {"r1", "body"}}, jobs)
	for _, m := range th.Messages("jobs") {
		require.Equal(t, "req-42", m.Metadata.Get(hub.KeyCorrelationID))
		require.Equal(t, "IndexJob", m.Metadata.Get(hub.KeySchema))
	}
}

func TestPipeOutputPublishFailureIsRetried(t *testing.T) {
	th := hubtest.New(t)
	var calls atomic.Int32
	require.NoError(t, hub.Pipe(th.Hub, "records", "jobs", func(ctx context.Context, m hub.Message[Record]) ([]IndexJob, error) {
		calls.Add(1)
		return []IndexJob{{RecordID: m.Payload.ID}}, nil
	}))
	th.FailPublishes("jobs", 1, nil)
	th.Start()
	hubtest.Send(t, th, "records", Record{ID: "r1"})
	th.Settle(t)
	require.EqualValues(t, 2, calls.Load())
	require.Len(t, hubtest.Published[IndexJob](t, th, "jobs"), 1)
}

func TestKeysAreScopedByHandler(t *testing.T) {
	th := hubtest.New(t)
	var a, b atomic.Int32
	require.NoError(t, hub.Handle(th.Hub, "records", func(ctx context.Context, m hub.Message[Record]) error { a.Add(1); return nil }, hub.Name("a")))
	require.NoError(t, hub.Handle(th.Hub, "records", func(ctx context.Context, m hub.Message[Record]) error { b.Add(1); return nil }, hub.Name("b")))
	th.Start()
	hubtest.Send(t, th, "records", Record{ID: "r1"}, hub.WithKey("same"))
	hubtest.Send(t, th, "records", Record{ID: "r1"}, hub.WithKey("same"))
	th.Settle(t)
	require.EqualValues(t, 1, a.Load())
	require.EqualValues(t, 1, b.Load())
}

type RecordV2 struct {
	ID    string   `json:"id"`
	Title string   `json:"title"`
	Tags  []string `json:"tags"`
}

func TestUpcastersReadOlderVersions(t *testing.T) {
	th := hubtest.New(t)
	require.NoError(t, hub.RegisterSchema[RecordV2](th.Hub, "Record", 2, hub.Upcaster{From: 1, Func: func(p []byte) ([]byte, error) {
		var v1 map[string]any
		if err := json.Unmarshal(p, &v1); err != nil {
			return nil, err
		}
		v1["tags"] = []string{"v1"}
		return json.Marshal(v1)
	}}))
	var got []RecordV2
	require.NoError(t, hub.Handle(th.Hub, "records", func(ctx context.Context, m hub.Message[RecordV2]) error {
		got = append(got, m.Payload)
		return nil
	}))
	th.Start()
	hubtest.Send(t, th, "records", Record{ID: "old"}) // published as Record v1
	hubtest.Send(t, th, "records", RecordV2{ID: "new", Tags: []string{"x"}})
	th.Settle(t)
	require.ElementsMatch(t, []RecordV2{{ID: "old", Tags: []string{"v1"}}, {ID: "new", Tags: []string{"x"}}}, got)
}

func TestBadInputGetsClearErrors(t *testing.T) {
	b, err := memory.New(memory.Config{})
	require.NoError(t, err)
	t.Cleanup(func() { _ = b.Close() })

	_, err = hub.New(nil, hub.Config{})
	require.ErrorIs(t, err, hub.ErrInvalidConfig)
	require.ErrorContains(t, err, "broker is nil")

	for _, cfg := range []hub.Config{
		{Lease: -1}, {Lease: time.Millisecond}, {Retention: -time.Second}, {ShutdownTimeout: -1},
		{Retry: retry.Policy{Attempts: -1}}, {Retry: retry.Policy{Jitter: 2}}, {Retry: retry.Policy{Multiplier: 0.5}},
		{Retry: retry.Policy{InitialInterval: time.Hour, MaxInterval: time.Second}},
	} {
		_, err := hub.New(b, cfg)
		require.ErrorIs(t, err, hub.ErrInvalidConfig, "%+v", cfg)
	}

	h, err := hub.New(b, hub.Config{})
	require.NoError(t, err)
	noop := func(ctx context.Context, m hub.Message[Record]) error { return nil }
	require.ErrorContains(t, hub.Handle(h, "", noop), "empty topic")
	require.ErrorContains(t, hub.Handle[Record](h, "records", nil), "nil HandlerFunc")
	require.ErrorContains(t, hub.Handle(h, "records", noop, hub.Concurrency(0)), "Concurrency(0)")
	require.ErrorContains(t, hub.Handle(h, "records", noop, hub.Concurrency(-3)), "use 1 or more")
	require.NoError(t, hub.Handle(h, "records", noop))
	err = hub.Handle(h, "records", noop)
	require.ErrorIs(t, err, hub.ErrDuplicateHandler)
	require.ErrorContains(t, err, "hub.Name")

	err = hub.Publish(context.Background(), h, "records", map[string]any{"f": func() {}})
	require.ErrorContains(t, err, "encoding")
	require.ErrorContains(t, hub.Publish(context.Background(), h, "", Record{}), "empty topic")
	require.ErrorContains(t, hub.Publish(context.Background(), h, "records", Record{}, hub.WithDelay(-time.Second)), "negative")

	require.NoError(t, h.Close())
	require.NoError(t, h.Close(), "Close twice")
	require.NoError(t, h.Shutdown(context.Background()), "Shutdown after Close")
	require.ErrorIs(t, hub.Publish(context.Background(), h, "records", Record{}), hub.ErrClosed)
	require.ErrorIs(t, hub.Handle(h, "other", noop), hub.ErrClosed)
	require.ErrorIs(t, h.Run(context.Background()), hub.ErrClosed)
}

func TestHandleAfterRunStartsTheHandler(t *testing.T) {
	th := hubtest.New(t)
	th.Start()
	require.ErrorIs(t, th.Hub.Run(context.Background()), hub.ErrRunning)
	got := make(chan string, 1)
	require.NoError(t, hub.Handle(th.Hub, "late", func(ctx context.Context, m hub.Message[Record]) error {
		got <- m.Payload.ID
		return nil
	}))
	hubtest.Send(t, th, "late", Record{ID: "r1"})
	require.Equal(t, "r1", <-got)
	th.Settle(t)
}

func TestRunReturnsWhenContextEnds(t *testing.T) {
	b, err := memory.New(memory.Config{})
	require.NoError(t, err)
	defer b.Close()
	h, err := hub.New(b, hub.Config{})
	require.NoError(t, err)
	handled := make(chan struct{})
	require.NoError(t, hub.Handle(h, "records", func(ctx context.Context, m hub.Message[Record]) error {
		close(handled)
		return nil
	}))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- h.Run(ctx) }()
	require.NoError(t, hub.Publish(ctx, h, "records", Record{ID: "r1"}))
	<-handled
	cancel()
	require.NoError(t, <-done)
	require.NoError(t, h.Close())
}

func TestHealth(t *testing.T) {
	th := hubtest.New(t, hubtest.WithConfig(func(c *hub.Config) { c.StuckAfter = time.Nanosecond }))
	require.NoError(t, th.Hub.Health(context.Background()))
	release := make(chan struct{})
	started := make(chan struct{})
	require.NoError(t, hub.Handle(th.Hub, "records", func(ctx context.Context, m hub.Message[Record]) error {
		close(started)
		<-release
		return nil
	}))
	th.Start()
	hubtest.Send(t, th, "records", Record{ID: "r1"})
	<-started
	err := th.Hub.Health(context.Background())
	require.ErrorContains(t, err, "longer than StuckAfter")
	close(release)
	th.Settle(t)
	require.NoError(t, th.Hub.Health(context.Background()))
	require.NoError(t, th.Broker.Close())
	require.ErrorContains(t, th.Hub.Health(context.Background()), "broker memory unreachable")
}

func TestPublishBatch(t *testing.T) {
	th := hubtest.New(t)
	var calls counter
	require.NoError(t, hub.Handle(th.Hub, "records", func(ctx context.Context, m hub.Message[Record]) error {
		calls.inc(m.Key)
		return nil
	}))
	th.Start()
	recs := []Record{{ID: "a"}, {ID: "b"}, {ID: "a"}}
	require.NoError(t, hub.PublishBatch(context.Background(), th.Hub, "records", recs,
		hub.WithKeyFunc(func(i int) string { return "key-" + recs[i].ID }), hub.WithMetadata("batch", "1")))
	th.Settle(t)
	require.Equal(t, 1, calls.get("key-a"), "the repeated key is handled once")
	require.Equal(t, 1, calls.get("key-b"))
	msgs := th.Messages("records")
	require.Len(t, msgs, 3)
	for _, m := range msgs {
		require.Equal(t, "1", m.Metadata.Get("batch"))
	}

	require.NoError(t, hub.PublishBatch[Record](context.Background(), th.Hub, "records", nil), "an empty batch is nothing to do")
	err := hub.PublishBatch(context.Background(), th.Hub, "records", recs, hub.WithKey("one"))
	require.ErrorIs(t, err, hub.ErrInvalidConfig)
	require.ErrorContains(t, err, "WithKeyFunc")
	err = hub.PublishBatch(context.Background(), th.Hub, "records", []any{Record{}, func() {}})
	require.ErrorContains(t, err, "message 1")
	require.Len(t, th.Messages("records"), 3, "a batch that fails to encode publishes nothing")
}

func TestLeaseIsKeptWhileAHandlerRunsLongerThanIt(t *testing.T) {
	const lease = 60 * time.Millisecond
	th := hubtest.New(t, hubtest.WithConfig(func(c *hub.Config) { c.Lease = lease }))
	var calls atomic.Int32
	require.NoError(t, hub.Handle(th.Hub, "records", func(ctx context.Context, m hub.Message[Record]) error {
		calls.Add(1)
		<-time.After(4 * lease) // a slow handler: four leases long
		return nil
	}, hub.Concurrency(2)))
	th.Start()
	th.DuplicateNext("records", 1) // the copy is delivered while the first runs
	hubtest.Send(t, th, "records", Record{ID: "r1"}, hub.WithKey("k"))
	th.Settle(t)
	require.EqualValues(t, 1, calls.Load(), "the lease was renewed, so the copy never ran alongside")
}

// User middleware, even Watermill's own Retry, wraps each hub attempt: the
// hub's retries, delayed retries and dead-lettering always come after it,
// whatever the user adds (no retry-vs-poison ordering trap).
func TestUserMiddlewareWrapsEachAttempt(t *testing.T) {
	var wrapped atomic.Int32
	counting := func(h message.HandlerFunc) message.HandlerFunc {
		return func(msg *message.Message) ([]*message.Message, error) {
			wrapped.Add(1)
			return h(msg)
		}
	}
	userRetry := wmiddleware.Retry{MaxRetries: 1}.Middleware // one extra try inside each attempt
	th := hubtest.New(t, hubtest.WithConfig(func(c *hub.Config) { c.Middleware = []message.HandlerMiddleware{counting, userRetry} }))
	var calls atomic.Int32
	require.NoError(t, hub.Handle(th.Hub, "records", func(ctx context.Context, m hub.Message[Record]) error {
		calls.Add(1)
		return errors.New("always fails")
	}))
	th.Start()
	hubtest.Send(t, th, "records", Record{ID: "r1"})
	th.Settle(t)
	// retry.Fast: 3 in-process attempts x 2 deliveries = 6 hub attempts.
	require.EqualValues(t, 6, wrapped.Load(), "the middleware runs once per hub attempt")
	require.EqualValues(t, 12, calls.Load(), "the user's Retry runs inside each attempt")
	dead := th.DeadLetters("records")
	require.Len(t, dead, 1, "dead-lettered once, after every retry")
	require.Equal(t, 6, dead[0].Attempts)
}
