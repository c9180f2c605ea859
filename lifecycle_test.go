package hub_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/harvesthub/hub"
	"github.com/harvesthub/hub/broker/memory"
	"github.com/harvesthub/hub/idempotency"
)

// TestLifecycleStress runs Run, Handle, Publish, Health, Shutdown and Close
// concurrently, many times over; every call must return within bound
// (defect 7: Close racing Run deadlocked within ~50 start-then-close
// iterations).
func TestLifecycleStress(t *testing.T) {
	mem, err := memory.New(memory.Config{})
	require.NoError(t, err)
	t.Cleanup(func() { _ = mem.Close() })
	const iterations = 200
	for i := range iterations {
		h, err := hub.New(mem, hub.Config{OpTimeout: opTimeout, ShutdownTimeout: 200 * time.Millisecond, Logger: quietLogger})
		require.NoError(t, err)
		topic := fmt.Sprintf("stress-%d", i)
		require.NoError(t, hub.Handle(h, topic, func(ctx context.Context, m hub.Message[Rec]) error { return nil }))
		ctx, cancel := context.WithCancel(context.Background())
		var wg sync.WaitGroup
		calls := []func(){
			func() { _ = h.Run(ctx) },
			func() {
				_ = hub.Handle(h, topic, func(context.Context, hub.Message[Rec]) error { return nil }, hub.Name("late"))
			},
			func() { _ = hub.Publish(context.Background(), h, topic, Rec{ID: "x"}) },
			func() { _ = h.Health(context.Background()) },
			func() {
				sctx, c := context.WithTimeout(context.Background(), 50*time.Millisecond)
				defer c()
				_ = h.Shutdown(sctx)
			},
			func() { _ = h.Close() },
			cancel,
		}
		// Rotate the order so every call goes first sometimes.
		for j := range calls {
			f := calls[(i+j)%len(calls)]
			wg.Add(1)
			go func() { defer wg.Done(); f() }()
		}
		done := make(chan struct{})
		go func() { wg.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(bound):
			t.Fatalf("iteration %d: a lifecycle call did not return within %v", i, bound)
		}
		require.NoError(t, closeWithin(h, bound))
		cancel()
	}
}

// Defect 8: a subscription that fails to start is unwound: Run returns its
// error, Handle after Run returns its error, and Close returns.
func TestSubscriptionFailureIsReturned(t *testing.T) {
	e := newEnv(t)
	e.f.set("subscribe:records", fError, -1)
	h, err := hub.New(e.b, hub.Config{Idempotency: e.store, OpTimeout: opTimeout, Logger: quietLogger})
	require.NoError(t, err)
	require.NoError(t, hub.Handle(h, "other", func(context.Context, hub.Message[Rec]) error { return nil }))
	require.NoError(t, hub.Handle(h, "records", func(context.Context, hub.Message[Rec]) error { return nil }))
	err = h.Run(context.Background())
	require.ErrorIs(t, err, errInjected)
	require.ErrorContains(t, err, `starting handler "records"`)
	require.NoError(t, closeWithin(h, bound))

	// After Run has started: Handle returns the error and registers nothing.
	h2 := e.start(func(h *hub.Hub) {})
	err = hub.Handle(h2, "records", func(context.Context, hub.Message[Rec]) error { return nil })
	require.ErrorIs(t, err, errInjected)
	e.f.clear("subscribe:records")
	require.NoError(t, hub.Handle(h2, "records", e.handler(nil)), "the name is free again")
	e.publish(h2, "k1")
	e.handledOnce("k1")
	require.NoError(t, closeWithin(h2, bound))
}

// Defect 5: registering a handler while the broker's Declare hangs blocks
// neither Publish, Health nor Shutdown.
func TestDeclareHangBlocksNothingElse(t *testing.T) {
	e := newEnv(t)
	h := e.start(func(h *hub.Hub) {}, func(c *hub.Config) { c.OpTimeout = time.Hour })
	e.f.set("declare", fHang, -1)
	handled := make(chan error, 1)
	go func() {
		handled <- hub.Handle(h, "records", func(context.Context, hub.Message[Rec]) error { return nil })
	}()
	e.tr.wait(t, "Declare to hang", 5*time.Second, func() bool { return e.f.calls("declare") > 0 })
	within := func(what string, f func()) {
		done := make(chan struct{})
		go func() { f(); close(done) }()
		select {
		case <-done:
		case <-time.After(2 * time.Second):
			t.Fatalf("%s blocked behind a hanging Declare", what)
		}
	}
	within("Publish", func() { require.NoError(t, hub.Publish(context.Background(), h, "elsewhere", Rec{ID: "x"})) })
	within("Health", func() { require.NoError(t, h.Health(context.Background())) })
	within("Shutdown", func() { shutdownWithin(t, h, 100*time.Millisecond) })
	require.ErrorIs(t, <-handled, hub.ErrClosed)
}

// Defect 2: handler "a" with key "b/1" and handler "a/b" with key "1" do
// not share a store key.
func TestKeysScopedUnambiguously(t *testing.T) {
	require.NotEqual(t, hub.StoreKey("a", "b/1"), hub.StoreKey("a/b", "1"))
	e := newEnv(t)
	var mu sync.Mutex
	got := map[string]int{}
	count := func(name string) hub.HandlerFunc[Rec] {
		return func(_ context.Context, m hub.Message[Rec]) error {
			mu.Lock()
			got[name]++
			mu.Unlock()
			e.tr.update(func() { e.tr.done[name+"|"+m.Key]++ })
			return nil
		}
	}
	h := e.start(func(h *hub.Hub) {
		require.NoError(t, hub.Handle(h, "t1", count("a"), hub.Name("a")))
		require.NoError(t, hub.Handle(h, "t2", count("a/b"), hub.Name("a/b")))
	})
	require.NoError(t, hub.Publish(context.Background(), h, "t1", Rec{}, hub.WithKey("b/1")))
	require.NoError(t, hub.Publish(context.Background(), h, "t2", Rec{}, hub.WithKey("1")))
	e.handledOnce("a|b/1", "a/b|1")
}

// Defect 9: Publish honours its context when a bounded queue is full, and a
// dead letter to a full DLQ neither blocks the hub nor its Shutdown.
func TestPublishHonoursContextOnAFullQueue(t *testing.T) {
	mem, err := memory.New(memory.Config{QueueSize: 1, BacklogSize: 1}) // a topic without a group is unbounded unless BacklogSize is set
	require.NoError(t, err)
	t.Cleanup(func() { _ = mem.Close() })
	store, err := idempotency.NewMemoryStore(idempotency.MemoryConfig{})
	require.NoError(t, err)
	t.Cleanup(func() { _ = store.Close() })
	h, err := hub.New(mem, hub.Config{Idempotency: store, OpTimeout: opTimeout, Logger: quietLogger, ShutdownTimeout: 100 * time.Millisecond})
	require.NoError(t, err)
	require.NoError(t, hub.Publish(context.Background(), h, "nobody", Rec{ID: "1"}))
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	err = hub.Publish(ctx, h, "nobody", Rec{ID: "2"})
	require.ErrorIs(t, err, context.DeadlineExceeded)

	// A poison message whose DLQ is full: nacked after a pause, never a
	// blocked worker; Shutdown keeps its deadline.
	calls := make(chan struct{}, 100)
	require.NoError(t, hub.Handle(h, "records", func(context.Context, hub.Message[Rec]) error {
		calls <- struct{}{}
		return errors.New("always")
	}, hub.WithHandlerRetry(policy)))
	require.NoError(t, hub.Publish(context.Background(), h, "records.dlq", Rec{ID: "fills the dlq"}))
	runErr := make(chan error, 1)
	go func() { runErr <- h.Run(context.Background()) }()
	<-h.Running()
	require.NoError(t, hub.Publish(context.Background(), h, "records", Rec{ID: "poison"}))
	for range 6 { // the in-process attempts of both deliveries
		<-calls
	}
	shutdownWithin(t, h, 100*time.Millisecond)
	require.NoError(t, <-runErr)
}
