package hub_test

// The fault matrix: for every step of a delivery, each fault that step can
// meet, injected on the memory broker through a wrapper, with the contract
// asserted: no loss, no second successful handler call for a key, no hang
// past Shutdown's deadline (plus the bookkeeping grace), poison in the DLQ.
// docs/RELIABILITY.md lists the rows.

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/stretchr/testify/require"

	"github.com/harvesthub/hub"
	"github.com/harvesthub/hub/broker"
	"github.com/harvesthub/hub/broker/memory"
	"github.com/harvesthub/hub/idempotency"
	"github.com/harvesthub/hub/retry"
)

type faultKind int

const (
	fNone        faultKind = iota
	fError                 // the call fails
	fHang                  // the call blocks until its context ends
	fTooLarge              // the broker refuses the message for its size
	fLostConfirm           // the message is published, the caller gets an error
)

var errInjected = errors.New("injected fault")

// faults holds what to inject per operation ("claim", "complete",
// "release", "extend", "publish:<topic>", "delay:<topic>",
// "subscribe:<topic>", "declare").
type faults struct {
	mu    sync.Mutex
	m     map[string]*fault
	hits  map[string]int
	onHit func() // wakes waiters on a call count
}

type fault struct {
	kind  faultKind
	times int // how many calls it hits; -1 every call
}

func newFaults() *faults {
	return &faults{m: make(map[string]*fault), hits: make(map[string]int)}
}

func (f *faults) set(op string, kind faultKind, times int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.m[op] = &fault{kind: kind, times: times}
}

func (f *faults) clear(op string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.m, op)
}

func (f *faults) take(op string) faultKind {
	if f.onHit != nil {
		defer f.onHit()
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.hits[op]++
	ft := f.m[op]
	if ft == nil || ft.times == 0 {
		return fNone
	}
	if ft.times > 0 {
		ft.times--
	}
	return ft.kind
}

func (f *faults) calls(op string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.hits[op]
}

// faultBroker is the memory broker with faults, a size limit and a
// longest delay.
type faultBroker struct {
	*memory.Broker
	f        *faults
	maxSize  int
	maxDelay time.Duration

	mu     sync.Mutex
	delays []time.Duration
}

func (b *faultBroker) inject(ctx context.Context, op string) (faultKind, error) {
	switch k := b.f.take(op); k {
	case fError:
		return k, fmt.Errorf("%s: %w", op, errInjected)
	case fHang:
		<-ctx.Done()
		return k, fmt.Errorf("%s: hung: %w", op, ctx.Err())
	case fTooLarge:
		return k, fmt.Errorf("%s: injected: %w", op, broker.ErrMessageTooLarge)
	default:
		return k, nil
	}
}

func (b *faultBroker) sizeOK(msgs []*message.Message) error {
	for _, m := range msgs {
		if b.maxSize > 0 && broker.MessageSize(m) > b.maxSize {
			return fmt.Errorf("%d bytes over %d: %w", broker.MessageSize(m), b.maxSize, broker.ErrMessageTooLarge)
		}
	}
	return nil
}

func (b *faultBroker) Publish(topic string, msgs ...*message.Message) error {
	return b.PublishContext(context.Background(), topic, msgs...)
}

func (b *faultBroker) PublishContext(ctx context.Context, topic string, msgs ...*message.Message) error {
	k, err := b.inject(ctx, "publish:"+topic)
	if k == fLostConfirm {
		if err := broker.PublishContext(ctx, b.Broker, topic, msgs...); err != nil {
			return err
		}
		return fmt.Errorf("publish:%s: confirm lost: %w", topic, errInjected)
	}
	if err != nil {
		return err
	}
	if err := b.sizeOK(msgs); err != nil {
		return err
	}
	return broker.PublishContext(ctx, b.Broker, topic, msgs...)
}

func (b *faultBroker) PublishDelayed(ctx context.Context, topic, group string, delay time.Duration, msgs ...*message.Message) error {
	if _, err := b.inject(ctx, "delay:"+topic); err != nil {
		return err
	}
	if err := b.sizeOK(msgs); err != nil {
		return err
	}
	if b.maxDelay > 0 && delay > b.maxDelay {
		return fmt.Errorf("delay %v over the longest %v", delay, b.maxDelay)
	}
	b.mu.Lock()
	b.delays = append(b.delays, delay)
	b.mu.Unlock()
	return b.Broker.PublishDelayed(ctx, topic, group, delay, msgs...)
}

func (b *faultBroker) SubscribeGroup(ctx context.Context, topic string, g broker.Group) (<-chan *message.Message, error) {
	if _, err := b.inject(ctx, "subscribe:"+topic); err != nil {
		return nil, err
	}
	return b.Broker.SubscribeGroup(ctx, topic, g)
}

func (b *faultBroker) Declare(ctx context.Context, topic string, groups ...string) error {
	if _, err := b.inject(ctx, "declare"); err != nil {
		return err
	}
	return b.Broker.Declare(ctx, topic, groups...)
}

func (b *faultBroker) MaxMessageSize() int     { return b.maxSize }
func (b *faultBroker) MaxDelay() time.Duration { return b.maxDelay }

// faultStore is an idempotency store with faults.
type faultStore struct {
	idempotency.Store
	f *faults
}

func (s *faultStore) inject(ctx context.Context, op string) error {
	// Like every networked store, a call on a done context fails.
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("%s: %w", op, err)
	}
	switch s.f.take(op) {
	case fError:
		return fmt.Errorf("%s: %w", op, errInjected)
	case fHang:
		<-ctx.Done()
		return fmt.Errorf("%s: hung: %w", op, ctx.Err())
	}
	return nil
}

func (s *faultStore) Claim(ctx context.Context, key string, lease time.Duration) (idempotency.Claim, error) {
	if err := s.inject(ctx, "claim"); err != nil {
		return idempotency.Claim{}, err
	}
	return s.Store.Claim(ctx, key, lease)
}

func (s *faultStore) Complete(ctx context.Context, key, token string, retention time.Duration) error {
	if err := s.inject(ctx, "complete"); err != nil {
		return err
	}
	return s.Store.Complete(ctx, key, token, retention)
}

func (s *faultStore) Release(ctx context.Context, key, token string) error {
	if err := s.inject(ctx, "release"); err != nil {
		return err
	}
	return s.Store.Release(ctx, key, token)
}

func (s *faultStore) Extend(ctx context.Context, key, token string, lease time.Duration) error {
	if err := s.inject(ctx, "extend"); err != nil {
		return err
	}
	return s.Store.Extend(ctx, key, token, lease)
}

// tracker records handler calls, successes and dead letters, and wakes
// waiters on every change.
type tracker struct {
	mu      sync.Mutex
	calls   map[string]int
	done    map[string]int
	letters map[string][]string // key -> reasons
	msgs    map[string]*message.Message
	changed chan struct{}
}

func newTracker() *tracker {
	return &tracker{calls: map[string]int{}, done: map[string]int{}, letters: map[string][]string{},
		msgs: map[string]*message.Message{}, changed: make(chan struct{}, 1)}
}

func (tr *tracker) update(f func()) {
	tr.mu.Lock()
	f()
	tr.mu.Unlock()
	select {
	case tr.changed <- struct{}{}:
	default:
	}
}

func (tr *tracker) read(f func()) {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	f()
}

// wait blocks until cond holds, re-checking on every change.
func (tr *tracker) wait(t *testing.T, what string, timeout time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	for {
		var ok bool
		tr.read(func() { ok = cond() })
		if ok {
			return
		}
		select {
		case <-tr.changed:
		case <-deadline.C:
			tr.read(func() {
				t.Fatalf("timed out after %v waiting for %s; calls %v, done %v, letters %v", timeout, what, tr.calls, tr.done, tr.letters)
			})
		}
	}
}

type Rec struct{ ID string }

// env is one matrix row's world: a memory broker (kept across hub
// restarts), its fault wrapper, a faulty memory store, and a tracker.
type env struct {
	t     *testing.T
	topic string
	mem   *memory.Broker
	b     *faultBroker
	store *faultStore
	f     *faults
	tr    *tracker
	hubs  []*hub.Hub
}

const (
	opTimeout = 150 * time.Millisecond
	// bound is how long any Shutdown or Close may take in these tests: its
	// deadline plus the bookkeeping grace (2 x OpTimeout) and slack for a
	// loaded machine.
	bound = 2*opTimeout + 3*time.Second
)

func newEnv(t *testing.T) *env {
	t.Helper()
	mem, err := memory.New(memory.Config{})
	require.NoError(t, err)
	ms, err := idempotency.NewMemoryStore(idempotency.MemoryConfig{})
	require.NoError(t, err)
	f := newFaults()
	e := &env{t: t, topic: "records", mem: mem, b: &faultBroker{Broker: mem, f: f}, store: &faultStore{Store: ms, f: f}, f: f, tr: newTracker()}
	f.onHit = func() { e.tr.update(func() {}) }
	// Observe the dead letters as a group of their own.
	ctx, cancel := context.WithCancel(context.Background())
	letters, err := mem.SubscribeGroup(ctx, e.topic+".dlq", broker.Group{Name: "observer", Prefetch: 16})
	require.NoError(t, err)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for m := range letters {
			key := m.Metadata.Get(hub.KeyKey)
			e.tr.update(func() {
				e.tr.letters[key] = append(e.tr.letters[key], m.Metadata.Get(hub.KeyDLQReason))
				e.tr.msgs[key] = m
			})
			m.Ack()
		}
	}()
	t.Cleanup(func() {
		for _, h := range e.hubs {
			require.NoError(t, closeWithin(h, bound))
		}
		cancel()
		<-done
		require.NoError(t, mem.Close())
		require.NoError(t, ms.Close())
	})
	return e
}

func closeWithin(h *hub.Hub, d time.Duration) error {
	errc := make(chan error, 1)
	go func() { errc <- h.Close() }()
	select {
	case err := <-errc:
		return err
	case <-time.After(d):
		return fmt.Errorf("Close did not return within %v", d)
	}
}

// policy: 3 in-process attempts, 1 delayed retry, millisecond waits.
var policy = retry.Policy{Attempts: 3, InitialInterval: time.Millisecond, MaxInterval: 5 * time.Millisecond, Redeliveries: 1, RedeliveryDelay: 5 * time.Millisecond}

// start makes and runs a hub; register adds its handlers.
func (e *env) start(register func(h *hub.Hub), cfgs ...func(*hub.Config)) *hub.Hub {
	e.t.Helper()
	cfg := hub.Config{
		Idempotency: e.store, Retry: policy, OpTimeout: opTimeout, Lease: 300 * time.Millisecond,
		ShutdownTimeout: time.Second,
		Logger:          slog.New(slog.NewTextHandler(testWriter{e.t}, &slog.HandlerOptions{Level: slog.LevelError + 4})),
	}
	for _, c := range cfgs {
		c(&cfg)
	}
	h, err := hub.New(e.b, cfg)
	require.NoError(e.t, err)
	register(h)
	errc := make(chan error, 1)
	go func() { errc <- h.Run(context.Background()) }()
	select {
	case <-h.Running():
	case err := <-errc:
		e.t.Fatalf("Run: %v", err)
	}
	e.hubs = append(e.hubs, h)
	e.t.Cleanup(func() {
		require.NoError(e.t, closeWithin(h, bound))
		select {
		case err := <-errc:
			require.NoError(e.t, err)
		case <-time.After(bound):
			e.t.Errorf("Run did not return within %v of Close", bound)
		}
	})
	return h
}

// handler counts calls and successes per key; fail decides each call's
// error (nil: success).
func (e *env) handler(fail func(ctx context.Context, key string, call int) error) hub.HandlerFunc[Rec] {
	return func(ctx context.Context, m hub.Message[Rec]) error {
		var n int
		e.tr.update(func() { e.tr.calls[m.Key]++; n = e.tr.calls[m.Key] })
		if fail != nil {
			if err := fail(ctx, m.Key, n); err != nil {
				return err
			}
		}
		e.tr.update(func() { e.tr.done[m.Key]++ })
		return nil
	}
}

func (e *env) publish(h *hub.Hub, keys ...string) {
	e.t.Helper()
	for _, k := range keys {
		require.NoError(e.t, hub.Publish(context.Background(), h, e.topic, Rec{ID: k}, hub.WithKey(k)))
	}
}

// handledOnce waits until every key succeeded, then asserts once each.
func (e *env) handledOnce(keys ...string) {
	e.t.Helper()
	e.tr.wait(e.t, "every key handled", 10*time.Second, func() bool {
		for _, k := range keys {
			if e.tr.done[k] == 0 {
				return false
			}
		}
		return true
	})
	e.tr.read(func() {
		for _, k := range keys {
			require.Equal(e.t, 1, e.tr.done[k], "key %s handled successfully more than once", k)
		}
	})
}

// deadLettered waits for key's letter and asserts its reason.
func (e *env) deadLettered(key, reason string) *message.Message {
	e.t.Helper()
	e.tr.wait(e.t, "a letter for "+key, 10*time.Second, func() bool { return len(e.tr.letters[key]) > 0 })
	var m *message.Message
	e.tr.read(func() {
		require.Equal(e.t, reason, e.tr.letters[key][0], "reason of %s's letter", key)
		m = e.tr.msgs[key]
	})
	return m
}

// shutdownWithin calls Shutdown with deadline d and asserts it returned
// within d plus the grace.
func shutdownWithin(t *testing.T, h *hub.Hub, d time.Duration) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	errc := make(chan error, 1)
	go func() { errc <- h.Shutdown(ctx) }()
	select {
	case <-errc:
	case <-time.After(d + bound):
		t.Fatalf("Shutdown(%v) did not return within %v", d, d+bound)
	}
}

type testWriter struct{ t testing.TB }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}

func TestFaultMatrix(t *testing.T) {
	rows := []struct {
		step, fault string
		run         func(t *testing.T, e *env)
	}{
		// Claim.
		{"claim", "store error", func(t *testing.T, e *env) {
			e.f.set("claim", fError, 3)
			h := e.start(func(h *hub.Hub) { require.NoError(t, hub.Handle(h, e.topic, e.handler(nil))) })
			e.publish(h, "k1", "k2")
			e.handledOnce("k1", "k2")
		}},
		{"claim", "store hang", func(t *testing.T, e *env) {
			e.f.set("claim", fHang, 1)
			h := e.start(func(h *hub.Hub) { require.NoError(t, hub.Handle(h, e.topic, e.handler(nil))) })
			e.publish(h, "k1")
			e.handledOnce("k1")
		}},
		{"claim", "shutdown while the store hangs", func(t *testing.T, e *env) {
			e.f.set("claim", fHang, -1)
			h := e.start(func(h *hub.Hub) { require.NoError(t, hub.Handle(h, e.topic, e.handler(nil))) }, func(c *hub.Config) { c.OpTimeout = time.Hour })
			e.publish(h, "k1")
			e.tr.wait(t, "the claim to hang", 5*time.Second, func() bool { return e.f.calls("claim") > 0 })
			require.NoError(t, closeWithin(h, bound))
			e.f.clear("claim")
			h2 := e.start(func(h *hub.Hub) { require.NoError(t, hub.Handle(h, e.topic, e.handler(nil))) })
			_ = h2
			e.handledOnce("k1")
		}},
		{"claim", "store error every time: a pause before each nack", func(t *testing.T, e *env) {
			e.f.set("claim", fError, -1)
			slow := policy
			slow.InitialInterval, slow.MaxInterval = 40*time.Millisecond, 40*time.Millisecond
			h := e.start(func(h *hub.Hub) { require.NoError(t, hub.Handle(h, e.topic, e.handler(nil))) }, func(c *hub.Config) { c.Retry = slow })
			e.publish(h, "k1")
			began := time.Now()
			e.tr.wait(t, "six claims", 10*time.Second, func() bool { return e.f.calls("claim") >= 6 })
			require.GreaterOrEqual(t, time.Since(began), 5*40*time.Millisecond, "nacks without a pause: a hot loop")
			e.f.clear("claim")
			e.handledOnce("k1")
		}},
		// Decode.
		{"decode", "poison payload", func(t *testing.T, e *env) {
			h := e.start(func(h *hub.Hub) { require.NoError(t, hub.Handle(h, e.topic, e.handler(nil))) })
			poison := message.NewMessage("p1", []byte("{not json"))
			poison.Metadata.Set(hub.KeyKey, "poison")
			require.NoError(t, e.mem.Publish(e.topic, poison))
			e.publish(h, "k1")
			e.deadLettered("poison", hub.ReasonDecode)
			e.handledOnce("k1")
		}},
		{"decode", "panic in an upcaster (defect 12)", func(t *testing.T, e *env) {
			h := e.start(func(h *hub.Hub) {
				require.NoError(t, hub.RegisterSchema[Rec](h, "Rec", 2, hub.Upcaster{From: 1, Func: func([]byte) ([]byte, error) { panic("upcaster bug") }}))
				require.NoError(t, hub.Handle(h, e.topic, e.handler(nil)))
			})
			old := message.NewMessage("v1", []byte(`{"ID":"old"}`))
			old.Metadata.Set(hub.KeyKey, "old")
			old.Metadata.Set(hub.KeySchema, "Rec")
			old.Metadata.Set(hub.KeySchemaVersion, "1")
			require.NoError(t, e.mem.Publish(e.topic, old))
			e.publish(h, "k1")
			letter := e.deadLettered("old", hub.ReasonDecode)
			require.Contains(t, letter.Metadata.Get(hub.KeyDLQError), "decoding panicked: upcaster bug")
			e.handledOnce("k1")
			e.tr.read(func() { require.Zero(t, e.tr.calls["old"]) })
		}},
		{"decode", "messages without an ID or key (defect 1)", func(t *testing.T, e *env) {
			e.start(func(h *hub.Hub) { require.NoError(t, hub.Handle(h, e.topic, e.handler(nil))) })
			for _, body := range []string{`{"ID":"a"}`, `{"ID":"b"}`, `{bad`, `{worse`} {
				require.NoError(t, e.mem.Publish(e.topic, message.NewMessage("", []byte(body))))
			}
			e.tr.wait(t, "both good foreign messages handled and both bad ones dead-lettered", 10*time.Second, func() bool {
				return len(e.tr.done) == 2 && len(e.tr.letters) == 2
			})
			e.tr.read(func() {
				for k, n := range e.tr.done {
					require.True(t, strings.HasPrefix(k, "sha256:"), k)
					require.Equal(t, 1, n)
				}
			})
		}},
		// Handler attempts.
		{"attempt", "transient errors", func(t *testing.T, e *env) {
			h := e.start(func(h *hub.Hub) {
				require.NoError(t, hub.Handle(h, e.topic, e.handler(func(_ context.Context, _ string, call int) error {
					if call < 3 {
						return errInjected
					}
					return nil
				})))
			})
			e.publish(h, "k1")
			e.handledOnce("k1")
			e.tr.read(func() { require.Equal(t, 3, e.tr.calls["k1"]) })
		}},
		{"attempt", "panic", func(t *testing.T, e *env) {
			h := e.start(func(h *hub.Hub) {
				require.NoError(t, hub.Handle(h, e.topic, e.handler(func(_ context.Context, k string, _ int) error {
					if k == "bad" {
						panic("handler bug")
					}
					return nil
				})))
			})
			e.publish(h, "bad", "k1")
			e.deadLettered("bad", hub.ReasonPanic)
			e.handledOnce("k1")
		}},
		{"attempt", "shutdown deadline while the handler runs", func(t *testing.T, e *env) {
			started := make(chan struct{})
			h := e.start(func(h *hub.Hub) {
				require.NoError(t, hub.Handle(h, e.topic, e.handler(func(ctx context.Context, _ string, call int) error {
					if call == 1 {
						close(started)
						<-ctx.Done()
						return ctx.Err()
					}
					return nil
				})))
			})
			e.publish(h, "k1")
			<-started
			shutdownWithin(t, h, 100*time.Millisecond)
			e.tr.read(func() { require.Zero(t, e.tr.done["k1"]) })
			e.start(func(h *hub.Hub) { require.NoError(t, hub.Handle(h, e.topic, e.handler(nil))) })
			e.handledOnce("k1")
			e.tr.read(func() { require.Empty(t, e.tr.letters) })
		}},
		{"attempt", "shutdown during a retry wait", func(t *testing.T, e *env) {
			failed := make(chan struct{})
			h := e.start(func(h *hub.Hub) {
				require.NoError(t, hub.Handle(h, e.topic, e.handler(func(_ context.Context, _ string, call int) error {
					if call == 1 {
						close(failed)
						return retry.After(time.Hour / 2) // within MaxInterval below: an in-process wait
					}
					return nil
				}), hub.WithHandlerRetry(retry.Policy{Attempts: 2, InitialInterval: time.Millisecond, MaxInterval: time.Hour, Redeliveries: retry.None})))
			})
			e.publish(h, "k1")
			<-failed
			shutdownWithin(t, h, time.Minute) // the wait is cut short at once
			e.start(func(h *hub.Hub) { require.NoError(t, hub.Handle(h, e.topic, e.handler(nil))) })
			e.handledOnce("k1")
		}},
		// Pipe outputs.
		{"output publish", "broker error", func(t *testing.T, e *env) { pipeRow(t, e, fError) }},
		{"output publish", "lost confirm (defect 6)", func(t *testing.T, e *env) { pipeRow(t, e, fLostConfirm) }},
		{"output publish", "broker hang", func(t *testing.T, e *env) { pipeRow(t, e, fHang) }},
		{"output publish", "oversize", func(t *testing.T, e *env) {
			e.f.set("publish:jobs", fTooLarge, -1)
			h := e.start(func(h *hub.Hub) {
				require.NoError(t, hub.Pipe(h, e.topic, "jobs", func(_ context.Context, m hub.Message[Rec]) ([]Rec, error) {
					e.tr.update(func() { e.tr.calls[m.Key]++ })
					return []Rec{{ID: m.Payload.ID}}, nil
				}))
			})
			e.publish(h, "k1")
			letter := e.deadLettered("k1", hub.ReasonTooLarge)
			require.Contains(t, letter.Metadata.Get(hub.KeyDLQError), "message too large")
			e.tr.read(func() { require.Equal(t, 1, e.tr.calls["k1"], "an oversize output is not retried") })
		}},
		// Complete.
		{"complete", "store error", func(t *testing.T, e *env) {
			e.f.set("complete", fError, 2)
			h := e.start(func(h *hub.Hub) { require.NoError(t, hub.Handle(h, e.topic, e.handler(nil))) })
			e.publish(h, "k1")
			e.handledOnce("k1")
			e.tr.wait(t, "the key completed", 5*time.Second, func() bool { return e.f.calls("complete") >= 3 })
			e.publish(h, "k1") // a duplicate
			e.publish(h, "k2")
			e.handledOnce("k1", "k2")
		}},
		{"complete", "Close while the handler finishes (defect 4)", func(t *testing.T, e *env) {
			started, closing := make(chan struct{}), make(chan struct{})
			h := e.start(func(h *hub.Hub) {
				require.NoError(t, hub.Handle(h, e.topic, e.handler(func(ctx context.Context, _ string, call int) error {
					close(started)
					<-closing
					<-ctx.Done() // Close cancelled us; the work is done all the same
					return nil
				})))
			})
			e.publish(h, "k1")
			<-started
			closed := make(chan error, 1)
			go func() { closed <- h.Close() }()
			close(closing)
			select {
			case err := <-closed:
				require.NoError(t, err)
			case <-time.After(bound):
				t.Fatal("Close did not return")
			}
			e.tr.read(func() { require.Equal(t, 1, e.tr.done["k1"]) })
			c, err := e.store.Store.Claim(context.Background(), hub.StoreKey(e.topic, "k1"), time.Second)
			require.NoError(t, err)
			require.Equal(t, idempotency.Completed, c.Status, "the key is completed despite Close")
			// So a duplicate is not handled.
			h2 := e.start(func(h *hub.Hub) { require.NoError(t, hub.Handle(h, e.topic, e.handler(nil))) })
			e.publish(h2, "k1", "k2")
			e.handledOnce("k1", "k2")
		}},
		{"complete", "store hang, then Close", func(t *testing.T, e *env) {
			e.f.set("complete", fHang, -1)
			h := e.start(func(h *hub.Hub) { require.NoError(t, hub.Handle(h, e.topic, e.handler(nil))) })
			e.publish(h, "k1")
			e.tr.wait(t, "complete to hang", 5*time.Second, func() bool { return e.f.calls("complete") > 0 })
			require.NoError(t, closeWithin(h, bound))
			e.handledOnce("k1")
		}},
		// Delayed retries.
		{"delayed-retry publish", "broker error, pause not a hot loop (defect 13)", func(t *testing.T, e *env) {
			e.f.set("delay:records", fError, 2)
			h := e.start(func(h *hub.Hub) {
				require.NoError(t, hub.Handle(h, e.topic, e.handler(func(_ context.Context, _ string, call int) error {
					if call <= 3 {
						return errInjected
					}
					return nil
				})))
			})
			e.publish(h, "k1")
			e.handledOnce("k1")
			e.tr.read(func() { require.LessOrEqual(t, e.tr.calls["k1"], 3*3+1) })
		}},
		{"delayed-retry publish", "none: the delayed copy can claim its key at once", func(t *testing.T, e *env) {
			h := e.start(func(h *hub.Hub) {
				require.NoError(t, hub.Handle(h, e.topic, e.handler(func(_ context.Context, _ string, call int) error {
					if call <= 3 {
						return errInjected
					}
					return nil
				})))
			}, func(c *hub.Config) { c.Lease = time.Hour }) // a key left claimed would wait an hour
			e.publish(h, "k1")
			e.handledOnce("k1")
		}},
		{"delayed-retry publish", "broker refuses every time: dead-lettered, bounded", func(t *testing.T, e *env) {
			e.f.set("delay:records", fError, -1)
			h := e.start(func(h *hub.Hub) {
				require.NoError(t, hub.Handle(h, e.topic, e.handler(func(context.Context, string, int) error { return errInjected })))
			})
			e.publish(h, "k1")
			e.deadLettered("k1", hub.ReasonScheduleFailed)
			e.tr.read(func() { require.LessOrEqual(t, e.tr.calls["k1"], 3*5) })
		}},
		{"delayed-retry publish", "a delay past the broker's longest is chained (defect 13)", func(t *testing.T, e *env) {
			e.b.maxDelay = 20 * time.Millisecond
			h := e.start(func(h *hub.Hub) {
				require.NoError(t, hub.Handle(h, e.topic, e.handler(func(context.Context, string, int) error {
					return retry.After(48 * time.Hour)
				})))
			})
			e.publish(h, "k1")
			e.tr.wait(t, "three hops", 10*time.Second, func() bool { return e.f.calls("delay:records") >= 3 })
			e.tr.read(func() { require.Equal(t, 1, e.tr.calls["k1"], "an early hop must not call the handler") })
			e.b.mu.Lock()
			for _, d := range e.b.delays {
				require.LessOrEqual(t, d, e.b.maxDelay)
			}
			e.b.mu.Unlock()
		}},
		{"delayed-retry publish", "oversize", func(t *testing.T, e *env) {
			e.f.set("delay:records", fTooLarge, -1)
			h := e.start(func(h *hub.Hub) {
				require.NoError(t, hub.Handle(h, e.topic, e.handler(func(context.Context, string, int) error { return errInjected })))
			})
			e.publish(h, "k1")
			e.deadLettered("k1", hub.ReasonTooLarge)
		}},
		// Dead letters.
		{"dead-letter publish", "broker error", func(t *testing.T, e *env) {
			e.f.set("publish:records.dlq", fError, 2)
			h := e.start(func(h *hub.Hub) {
				require.NoError(t, hub.Handle(h, e.topic, e.handler(func(context.Context, string, int) error { return retry.Permanent(errInjected) })))
			})
			e.publish(h, "k1")
			e.deadLettered("k1", hub.ReasonPermanent)
			e.tr.read(func() { require.Len(t, e.tr.letters["k1"], 1) })
		}},
		{"dead-letter publish", "broker hang", func(t *testing.T, e *env) {
			e.f.set("publish:records.dlq", fHang, 1)
			h := e.start(func(h *hub.Hub) {
				require.NoError(t, hub.Handle(h, e.topic, e.handler(func(context.Context, string, int) error { return retry.Permanent(errInjected) })))
			})
			e.publish(h, "k1")
			e.deadLettered("k1", hub.ReasonPermanent)
		}},
		{"dead-letter publish", "a foreign message near the size limit (defect 11)", func(t *testing.T, e *env) {
			e.b.maxSize = 64 << 10
			h := e.start(func(h *hub.Hub) {
				require.NoError(t, hub.Handle(h, e.topic, e.handler(func(context.Context, string, int) error {
					return retry.Permanent(errors.New(strings.Repeat("e", 8<<10)))
				})))
			})
			big := message.NewMessage("big", []byte(`{"ID":"`+strings.Repeat("x", 64<<10-200)+`"}`))
			big.Metadata.Set(hub.KeyKey, "big")
			require.NoError(t, e.mem.Publish(e.topic, big)) // straight to the broker, as a foreign producer would
			letter := e.deadLettered("big", hub.ReasonPermanent)
			require.LessOrEqual(t, broker.MessageSize(letter), e.b.maxSize)
			e.tr.read(func() { require.Equal(t, 1, e.tr.calls["big"]) })
			// And the hub refuses to publish what it could not dead-letter.
			err := hub.Publish(context.Background(), h, e.topic, Rec{ID: strings.Repeat("x", 64<<10-3000)})
			require.ErrorIs(t, err, broker.ErrMessageTooLarge)
		}},
		{"dead-letter publish", "the payload alone is over the limit", func(t *testing.T, e *env) {
			e.b.maxSize = 16 << 10
			e.start(func(h *hub.Hub) {
				require.NoError(t, hub.Handle(h, e.topic, e.handler(func(context.Context, string, int) error { return retry.Permanent(errInjected) })))
			})
			big := message.NewMessage("big", []byte(`{"ID":"`+strings.Repeat("x", 16<<10-50)+`"}`))
			big.Metadata.Set(hub.KeyKey, "big")
			require.NoError(t, e.mem.Publish(e.topic, big))
			letter := e.deadLettered("big", hub.ReasonPermanent)
			require.Empty(t, letter.Payload)
			require.Contains(t, letter.Metadata.Get(hub.KeyDLQPayloadOmitted), "sha256:")
		}},
		// Ack and lease.
		{"ack", "the same message delivered twice", func(t *testing.T, e *env) {
			h := e.start(func(h *hub.Hub) { require.NoError(t, hub.Handle(h, e.topic, e.handler(nil))) })
			m := message.NewMessage("m1", []byte(`{"ID":"m1"}`))
			require.NoError(t, e.mem.Publish(e.topic, m, m.Copy()))
			e.publish(h, "k1")
			e.handledOnce("m1", "k1")
		}},
		{"lease renewal", "store hang while the handler outlives its lease", func(t *testing.T, e *env) {
			e.f.set("extend", fHang, 2)
			release := make(chan struct{})
			h := e.start(func(h *hub.Hub) {
				require.NoError(t, hub.Handle(h, e.topic, e.handler(func(context.Context, string, int) error {
					<-release
					return nil
				})))
			})
			e.publish(h, "k1")
			e.tr.wait(t, "two renewals to hang and one to pass", 10*time.Second, func() bool { return e.f.calls("extend") >= 3 })
			close(release)
			e.handledOnce("k1")
		}},
		{"lease renewal", "the lease is lost to another delivery during retries", func(t *testing.T, e *env) {
			// Delivery A claims k1 and its handler fails slowly; its lease
			// renewals fail, so the lease ends and delivery B of the same
			// key takes it and succeeds. A must then not retry in process:
			// that would handle k1 a second time.
			e.f.set("extend", fError, -1) // until B has the key
			bDone, aReturned := make(chan struct{}), make(chan int)
			var failedExtends int
			h := e.start(func(h *hub.Hub) {
				require.NoError(t, hub.Handle(h, e.topic, e.handler(func(_ context.Context, _ string, call int) error {
					if call != 1 {
						if call == 2 {
							failedExtends = e.f.calls("extend")
							e.f.clear("extend")
							close(bDone)
						}
						return nil
					}
					<-bDone
					// The next renewal after B took the key finds it lost.
					e.tr.wait(t, "A's renewal to find its lease lost", 10*time.Second, func() bool { return e.f.calls("extend") > failedExtends })
					defer func() { aReturned <- e.f.calls("claim") }()
					return errInjected
				}), hub.Concurrency(2),
					// A's retry wait outlasts the renewal that is finding the lease lost.
					hub.WithHandlerRetry(retry.Policy{Attempts: 3, InitialInterval: 300 * time.Millisecond, MaxInterval: 300 * time.Millisecond, Redeliveries: retry.None})))
			})
			e.publish(h, "k1", "k1")
			claims := <-aReturned
			e.tr.wait(t, "A's message to come back (a duplicate now)", 10*time.Second, func() bool { return e.f.calls("claim") > claims })
			e.handledOnce("k1")
			e.tr.read(func() { require.Equal(t, 2, e.tr.calls["k1"], "A retried after losing its lease") })
		}},
		{"attempt", "a handler that ignores its cancelled context", func(t *testing.T, e *env) {
			started, stuck := make(chan struct{}), make(chan struct{})
			h := e.start(func(h *hub.Hub) {
				require.NoError(t, hub.Handle(h, e.topic, e.handler(func(context.Context, string, int) error {
					close(started)
					<-stuck // ignores ctx
					return nil
				})))
			})
			e.publish(h, "k1")
			<-started
			require.NoError(t, closeWithin(h, bound), "Close waits for a stuck handler only the grace")
			close(stuck)
			e.handledOnce("k1")
		}},
		{"dead-letter publish", "none: the key is released, so a corrected resend is handled", func(t *testing.T, e *env) {
			h := e.start(func(h *hub.Hub) {
				require.NoError(t, hub.Handle(h, e.topic, e.handler(func(_ context.Context, _ string, call int) error {
					if call == 1 {
						return retry.Permanent(errInjected)
					}
					return nil
				})))
			}, func(c *hub.Config) { c.Lease = time.Hour }) // a key left claimed would wait an hour
			e.publish(h, "k1")
			e.deadLettered("k1", hub.ReasonPermanent)
			e.publish(h, "k1")
			e.handledOnce("k1")
		}},
	}
	for _, r := range rows {
		t.Run(r.step+"/"+r.fault, func(t *testing.T) {
			t.Parallel()
			r.run(t, newEnv(t))
		})
	}
}

// pipeRow: a Pipe whose output publish meets kind once; downstream handles
// each output exactly once because output IDs are deterministic.
func pipeRow(t *testing.T, e *env, kind faultKind) {
	e.f.set("publish:jobs", kind, 1)
	var mu sync.Mutex
	outs := map[string]int{}
	h := e.start(func(h *hub.Hub) {
		require.NoError(t, hub.Pipe(h, e.topic, "jobs", func(_ context.Context, m hub.Message[Rec]) ([]Rec, error) {
			return []Rec{{ID: m.Payload.ID + "-a"}, {ID: m.Payload.ID + "-b"}}, nil
		}))
		require.NoError(t, hub.Handle(h, "jobs", func(_ context.Context, m hub.Message[Rec]) error {
			mu.Lock()
			outs[m.Payload.ID]++
			mu.Unlock()
			e.tr.update(func() { e.tr.done[m.Payload.ID]++ })
			return nil
		}))
	})
	e.publish(h, "k1", "k2")
	e.handledOnce("k1-a", "k1-b", "k2-a", "k2-b")
	mu.Lock()
	defer mu.Unlock()
	require.Len(t, outs, 4)
}

var quietLogger = slog.New(slog.NewTextHandler(io.Discard, nil))
