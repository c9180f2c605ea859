package outbox_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"

	"github.com/harvesthub/hub"
	"github.com/harvesthub/hub/broker"
	"github.com/harvesthub/hub/outbox"
)

const waitLimit = 30 * time.Second

// waitFor waits, on c's signals, until cond holds.
func waitFor(t testing.TB, c *collector, cond func() bool, what string) {
	t.Helper()
	deadline := time.NewTimer(waitLimit)
	defer deadline.Stop()
	for !cond() {
		select {
		case <-c.got:
		case <-deadline.C:
			t.Fatalf("timed out waiting for %s", what)
		}
	}
}

// stage commits one transaction staging vs (with options per value).
func stage(t testing.TB, pool *pgxpool.Pool, o *outbox.Outbox, topic string, commit bool, items ...Item) []string {
	t.Helper()
	ctx := context.Background()
	tx, err := pool.Begin(ctx)
	require.NoError(t, err)
	defer tx.Rollback(ctx) //nolint:errcheck // no-op after Commit
	ids := make([]string, len(items))
	for i, it := range items {
		ids[i] = fmt.Sprintf("%s-%d-%s", it.Key, it.N, randName(""))
		opts := []hub.PublishOption{hub.WithID(ids[i])}
		if it.Key != "" {
			opts = append(opts, outbox.OrderedBy(it.Key))
		}
		require.NoError(t, outbox.Publish(ctx, o, tx, topic, it, opts...))
	}
	if commit {
		require.NoError(t, tx.Commit(ctx))
	}
	return ids
}

func TestPublishAndRelay(t *testing.T) {
	pool := newPool(t)
	schema := newSchema(t, pool)
	h, b := newMemoryHub(t)
	// A relay that only polls once an hour: a prompt delivery proves the
	// notification woke it.
	o := newOutbox(t, pool, h, schema, outbox.Config{PollInterval: time.Hour})
	got := collect(t, b, "items")
	runRelay(t, o)

	ctx := hub.WithCorrelationID(context.Background(), "corr-1")
	tx, err := pool.Begin(ctx)
	require.NoError(t, err)
	require.NoError(t, outbox.Publish(ctx, o, tx, "items", Item{Key: "a", N: 1},
		hub.WithID("id-1"), hub.WithKey("key-1"), hub.WithMetadata("tenant", "t1")))
	require.NoError(t, tx.Commit(ctx))

	waitFor(t, got, func() bool { return len(got.snapshot()) == 1 }, "the relayed message")
	m := got.snapshot()[0]
	require.Equal(t, "id-1", m.UUID, "the message ID is fixed at Publish")
	require.Equal(t, "key-1", m.Metadata.Get(hub.KeyKey))
	require.Equal(t, "t1", m.Metadata.Get("tenant"))
	require.Equal(t, "corr-1", m.Metadata.Get(hub.KeyCorrelationID))
	require.Equal(t, "Item", m.Metadata.Get(hub.KeySchema))
	var it Item
	require.NoError(t, hub.Decode(h, m, &it))
	require.Equal(t, Item{Key: "a", N: 1}, it)

	require.Eventually(t, func() bool {
		st, err := o.Stats(ctx)
		return err == nil && st.Pending == 0
	}, waitLimit, 5*time.Millisecond, "the relay marks the row sent after the broker took it")
	require.NoError(t, o.Health(ctx))
}

func TestRolledBackRowsAreNeverPublished(t *testing.T) {
	pool := newPool(t)
	schema := newSchema(t, pool)
	h, b := newMemoryHub(t)
	o := newOutbox(t, pool, h, schema, outbox.Config{})
	got := collect(t, b, "items")
	runRelay(t, o)

	rolledBack := stage(t, pool, o, "items", false, Item{Key: "k", N: 1}, Item{N: 2})
	committed := stage(t, pool, o, "items", true, Item{Key: "k", N: 3})
	// A transaction that fails after staging, as a handler's would.
	err := pgx.BeginFunc(context.Background(), pool, func(tx pgx.Tx) error {
		if err := outbox.Publish(context.Background(), o, tx, "items", Item{N: 4}, hub.WithID("failed-tx")); err != nil {
			return err
		}
		return errors.New("business rule failed")
	})
	require.ErrorContains(t, err, "business rule failed")
	// A marker committed last: once it is through, everything before it
	// that was committed is too.
	marker := stage(t, pool, o, "items", true, Item{Key: "k", N: 5})

	waitFor(t, got, func() bool { return got.distinct() == 2 }, "the committed rows")
	var ids []string
	for _, m := range got.snapshot() {
		ids = append(ids, m.UUID)
	}
	require.Equal(t, append(committed, marker...), ids)
	require.NotContains(t, ids, rolledBack[0])
	require.NotContains(t, ids, "failed-tx")
	var n int
	require.NoError(t, pool.QueryRow(context.Background(), "SELECT count(*) FROM "+schema+".outbox").Scan(&n))
	require.LessOrEqual(t, n, 2, "rolled-back rows leave nothing behind")
}

// TestThreeRelaysExactlyOnceInOrder runs three relays on one table while
// writers commit rows of 20 ordering keys from 8 goroutines. Each
// transaction stages its row first, then takes the key's turn in an
// application counter: so the order the transactions commit in, which the
// counter records, is not the order they staged in unless the outbox's
// ordering lock serialises them. Every row must arrive exactly once and
// each key's rows in commit order.
func TestThreeRelaysExactlyOnceInOrder(t *testing.T) {
	ctx := context.Background()
	pool := newPool(t)
	schema := newSchema(t, pool)
	h, b := newMemoryHub(t)
	cfg := outbox.Config{BatchSize: 16, PollInterval: 50 * time.Millisecond}
	relays := []*outbox.Outbox{newOutbox(t, pool, h, schema, cfg), newOutbox(t, pool, h, schema, cfg), newOutbox(t, pool, h, schema, cfg)}
	_, err := pool.Exec(ctx, "CREATE TABLE "+schema+".turns (key text, n int, id text)")
	require.NoError(t, err)
	got := collect(t, b, "items")
	for _, r := range relays {
		runRelay(t, r)
	}

	const keys, writers, perWriter = 20, 8, 60
	var wg sync.WaitGroup
	errs := make(chan error, writers)
	for w := range writers {
		wg.Go(func() {
			for i := range perWriter {
				key := fmt.Sprintf("key-%d", (w*perWriter+i)%keys)
				id := fmt.Sprintf("w%d-%d", w, i)
				err := pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
					o := relays[i%len(relays)]
					if err := outbox.Publish(ctx, o, tx, "items", Item{Key: key}, hub.WithID(id), outbox.OrderedBy(key)); err != nil {
						return err
					}
					_, err := tx.Exec(ctx, "INSERT INTO "+schema+".turns SELECT $1, COALESCE(max(n), 0) + 1, $2 FROM "+schema+".turns WHERE key = $1", key, id)
					return err
				})
				if err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		require.NoError(t, err)
	}
	const total = writers * perWriter
	waitFor(t, got, func() bool { return len(got.snapshot()) >= total }, "every row")

	msgs := got.snapshot()
	require.Len(t, msgs, total, "no row is published twice")
	byKey := map[string][]string{}
	for _, m := range msgs {
		k := m.Metadata.Get(outbox.KeyOrderingKey)
		byKey[k] = append(byKey[k], m.UUID)
	}
	rows, err := pool.Query(ctx, "SELECT key, id FROM "+schema+".turns ORDER BY key, n")
	require.NoError(t, err)
	want := map[string][]string{}
	var k, id string
	_, err = pgx.ForEachRow(rows, []any{&k, &id}, func() error {
		want[k] = append(want[k], id)
		return nil
	})
	require.NoError(t, err)
	require.Len(t, want, keys)
	for k := range want {
		require.Equal(t, want[k], byKey[k], "key %s arrives in commit order", k)
	}
}

func TestCleanupKeepsTheTableBounded(t *testing.T) {
	ctx := context.Background()
	pool := newPool(t)
	schema := newSchema(t, pool)
	h, b := newMemoryHub(t)
	o := newOutbox(t, pool, h, schema, outbox.Config{CleanupInterval: 10 * time.Millisecond, CleanupBatch: 7})
	got := collect(t, b, "items")
	runRelay(t, o)

	count := func() int {
		var n int
		require.NoError(t, pool.QueryRow(ctx, "SELECT count(*) FROM "+schema+".outbox").Scan(&n))
		return n
	}
	const rounds, perRound = 10, 50
	for r := range rounds {
		items := make([]Item, perRound)
		for i := range items {
			items[i] = Item{N: r*perRound + i}
		}
		stage(t, pool, o, "items", true, items...)
		waitFor(t, got, func() bool { return len(got.snapshot()) >= (r+1)*perRound }, "a round")
		require.LessOrEqual(t, count(), 2*perRound, "round %d: sent rows are deleted, not kept", r)
	}
	require.Eventually(t, func() bool { return count() == 0 }, waitLimit, 5*time.Millisecond, "the last round's cleanup")

	// Retention keeps sent rows for operators, then deletes them.
	o2, err := outbox.New(pool, h, outbox.Config{Table: schema + ".outbox", Retention: time.Hour, CleanupInterval: -1})
	require.NoError(t, err)
	defer o2.Close()
	stage(t, pool, o, "items", true, Item{N: -1})
	waitFor(t, got, func() bool { return len(got.snapshot()) == rounds*perRound+1 }, "one more row")
	n, err := o2.Cleanup(ctx)
	require.NoError(t, err)
	require.Zero(t, n, "a row sent within Retention stays")
}

// flakyBroker fails the first n publishes, then passes them on.
type flakyBroker struct {
	broker.Broker
	mu   sync.Mutex
	fail int
}

func (f *flakyBroker) Publish(topic string, msgs ...*message.Message) error {
	f.mu.Lock()
	if f.fail > 0 {
		f.fail--
		f.mu.Unlock()
		return errors.New("broker unavailable")
	}
	f.mu.Unlock()
	return f.Broker.Publish(topic, msgs...)
}

func TestBrokerFailureKeepsRowsPending(t *testing.T) {
	ctx := context.Background()
	pool := newPool(t)
	schema := newSchema(t, pool)
	_, mb := newMemoryHub(t)
	fb := &flakyBroker{Broker: mb, fail: 3}
	h, err := hub.New(fb, hub.Config{})
	require.NoError(t, err)
	defer h.Close()
	o := newOutbox(t, pool, h, schema, outbox.Config{})

	ids := stage(t, pool, o, "items", true, Item{Key: "k", N: 1}, Item{Key: "k", N: 2})
	st, err := o.Stats(ctx)
	require.NoError(t, err)
	require.EqualValues(t, 2, st.Pending)

	got := collect(t, mb, "items")
	runRelay(t, o)
	waitFor(t, got, func() bool { return got.distinct() == 2 }, "the rows after the broker recovered")
	require.Equal(t, ids, []string{got.snapshot()[0].UUID, got.snapshot()[1].UUID})
	fb.mu.Lock()
	require.Zero(t, fb.fail, "the relay retried through the failures")
	fb.mu.Unlock()
}

func TestHealth(t *testing.T) {
	ctx := context.Background()
	pool := newPool(t)
	schema := newSchema(t, pool)
	h, b := newMemoryHub(t)
	o := newOutbox(t, pool, h, schema, outbox.Config{MaxAge: time.Millisecond})
	require.NoError(t, o.Health(ctx), "nothing pending")

	stage(t, pool, o, "items", true, Item{N: 1})
	got := collect(t, b, "items")
	var herr error
	require.Eventually(t, func() bool { herr = o.Health(ctx); return herr != nil }, waitLimit, 5*time.Millisecond)
	require.ErrorIs(t, herr, outbox.ErrStale, "no relay runs: the row grows old")

	runRelay(t, o)
	waitFor(t, got, func() bool { return len(got.snapshot()) == 1 }, "the row")
	require.Eventually(t, func() bool { return o.Health(ctx) == nil }, waitLimit, 5*time.Millisecond,
		"healthy once the row is marked sent")

	missing, err := outbox.New(pool, h, outbox.Config{Table: schema + ".nothing"})
	require.NoError(t, err)
	defer missing.Close()
	require.ErrorContains(t, missing.Health(ctx), "does not exist", "Health fails until Migrate ran")
}

func TestMetrics(t *testing.T) {
	ctx := context.Background()
	pool := newPool(t)
	schema := newSchema(t, pool)
	h, b := newMemoryHub(t)
	reader := sdkmetric.NewManualReader()
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
	defer mp.Shutdown(ctx) //nolint:errcheck // test cleanup
	o := newOutbox(t, pool, h, schema, outbox.Config{MeterProvider: mp})

	stage(t, pool, o, "items", true, Item{N: 1}, Item{N: 2}, Item{N: 3})
	metrics := func() map[string]metricdata.Metrics {
		var rm metricdata.ResourceMetrics
		require.NoError(t, reader.Collect(ctx, &rm))
		out := map[string]metricdata.Metrics{}
		for _, sm := range rm.ScopeMetrics {
			for _, m := range sm.Metrics {
				out[m.Name] = m
			}
		}
		return out
	}
	m := metrics()
	require.EqualValues(t, 3, m["hub.outbox.pending"].Data.(metricdata.Gauge[int64]).DataPoints[0].Value)
	require.Greater(t, m["hub.outbox.oldest_age"].Data.(metricdata.Gauge[float64]).DataPoints[0].Value, 0.0)

	got := collect(t, b, "items")
	runRelay(t, o)
	waitFor(t, got, func() bool { return len(got.snapshot()) == 3 }, "the rows")
	// The rows arrive as soon as they are published; the relay marks them
	// sent in its transaction just after. Wait for that commit.
	require.Eventually(t, func() bool {
		m = metrics()
		return m["hub.outbox.pending"].Data.(metricdata.Gauge[int64]).DataPoints[0].Value == 0 &&
			m["hub.outbox.relay.lag"].Data != nil
	}, waitLimit, 10*time.Millisecond, "the batch marked sent")
	require.EqualValues(t, 3, m["hub.outbox.relay.lag"].Data.(metricdata.Histogram[float64]).DataPoints[0].Count)
	require.EqualValues(t, 3, m["messaging.client.sent.messages"].Data.(metricdata.Sum[int64]).DataPoints[0].Value)
}

func TestPublishRefusesBadInput(t *testing.T) {
	ctx := context.Background()
	pool := newPool(t)
	schema := newSchema(t, pool)
	h, _ := newMemoryHub(t)
	o := newOutbox(t, pool, h, schema, outbox.Config{})
	tx, err := pool.Begin(ctx)
	require.NoError(t, err)
	defer tx.Rollback(ctx) //nolint:errcheck // test cleanup

	require.ErrorContains(t, outbox.Publish(ctx, o, nil, "items", Item{}), "needs a transaction")
	require.ErrorIs(t, outbox.Publish(ctx, o, tx, "", Item{}), hub.ErrInvalidConfig)
	require.ErrorIs(t, outbox.Publish(ctx, o, tx, "items", Item{}, hub.WithDelay(-time.Second)), hub.ErrInvalidConfig)
	require.ErrorContains(t, outbox.Publish(ctx, o, tx, "items", make(chan int)), "encoding")
	require.NoError(t, tx.Commit(ctx), "refused messages do not break the transaction")
	st, err := o.Stats(ctx)
	require.NoError(t, err)
	require.Zero(t, st.Pending, "nothing was staged")

	require.NoError(t, o.Close())
	require.NoError(t, o.Close(), "Close twice")
	tx2, err := pool.Begin(ctx)
	require.NoError(t, err)
	defer tx2.Rollback(ctx) //nolint:errcheck // test cleanup
	require.ErrorIs(t, outbox.Publish(ctx, o, tx2, "items", Item{}), outbox.ErrClosed)
	require.ErrorIs(t, o.Run(ctx), outbox.ErrClosed)
	require.ErrorIs(t, o.Migrate(ctx), outbox.ErrClosed)
}

func TestRunLifecycle(t *testing.T) {
	pool := newPool(t)
	schema := newSchema(t, pool)
	h, b := newMemoryHub(t)
	o := newOutbox(t, pool, h, schema, outbox.Config{})
	got := collect(t, b, "items")
	done := make(chan error, 1)
	go func() { done <- o.Run(context.Background()) }()
	stage(t, pool, o, "items", true, Item{N: 1})
	waitFor(t, got, func() bool { return len(got.snapshot()) == 1 }, "the relay to run")
	require.ErrorIs(t, o.Run(context.Background()), outbox.ErrRunning, "a second Run at once is refused")
	require.NoError(t, o.Close(), "Close stops a running relay")
	select {
	case err := <-done:
		require.NoError(t, err)
	case <-time.After(waitLimit):
		t.Fatal("Run did not return after Close")
	}
}

func TestNewValidatesConfig(t *testing.T) {
	pool, err := pgxpool.New(context.Background(), "postgres://nobody@127.0.0.1:1/none")
	require.NoError(t, err)
	defer pool.Close()
	h, _ := newMemoryHub(t)
	for _, tc := range []struct {
		name string
		cfg  outbox.Config
		want string
	}{
		{"quote in table", outbox.Config{Table: `x"; DROP TABLE y; --`}, "Config.Table"},
		{"three parts", outbox.Config{Table: "a.b.c"}, "schema.table"},
		{"too long", outbox.Config{Table: strings.Repeat("t", 49)}, "at most 48"},
		{"negative batch", outbox.Config{BatchSize: -1}, "BatchSize"},
		{"negative cleanup batch", outbox.Config{CleanupBatch: -1}, "CleanupBatch"},
		{"negative poll", outbox.Config{PollInterval: -1}, "PollInterval"},
		{"negative retention", outbox.Config{Retention: -1}, "Retention"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o, err := outbox.New(pool, h, tc.cfg)
			require.ErrorContains(t, err, tc.want)
			require.Nil(t, o)
		})
	}
	_, err = outbox.New(nil, h, outbox.Config{})
	require.ErrorContains(t, err, "needs a pool")
	_, err = outbox.New(pool, nil, outbox.Config{})
	require.ErrorContains(t, err, "needs a hub")
	o, err := outbox.New(pool, h, outbox.Config{Table: "s." + strings.Repeat("t", 48)})
	require.NoError(t, err, "the longest table name")
	require.NoError(t, o.Close())
}

func TestMigrateIsIdempotentAndConcurrent(t *testing.T) {
	ctx := context.Background()
	pool := newPool(t)
	schema := newSchema(t, pool)
	h, _ := newMemoryHub(t)
	o, err := outbox.New(pool, h, outbox.Config{Table: schema + ".outbox"})
	require.NoError(t, err)
	defer o.Close()
	var wg sync.WaitGroup
	errs := make(chan error, 4)
	for range 4 {
		wg.Go(func() { errs <- o.Migrate(ctx) })
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		require.NoError(t, err)
	}
	stage(t, pool, o, "items", true, Item{N: 1})
	require.NoError(t, o.Migrate(ctx), "Migrate keeps existing rows")
	st, err := o.Stats(ctx)
	require.NoError(t, err)
	require.EqualValues(t, 1, st.Pending)
}

// TestKeyWaitsBehindAnotherRelaysRow: while another relay holds the first
// row of key "k" (locked mid-batch, here by a bare transaction), a relay
// publishes every other row but no later row of "k"; once the lock ends
// unsent (that relay died), "k" goes out in order.
func TestKeyWaitsBehindAnotherRelaysRow(t *testing.T) {
	ctx := context.Background()
	pool := newPool(t)
	schema := newSchema(t, pool)
	h, b := newMemoryHub(t)
	o := newOutbox(t, pool, h, schema, outbox.Config{PollInterval: 20 * time.Millisecond})
	first := stage(t, pool, o, "items", true, Item{Key: "k", N: 0})
	later := stage(t, pool, o, "items", true, Item{Key: "k", N: 1}, Item{Key: "other", N: 0}, Item{Key: "k", N: 2}, Item{N: 3})

	other, err := pool.Begin(ctx)
	require.NoError(t, err)
	defer other.Rollback(ctx) //nolint:errcheck // test cleanup
	var locked string
	require.NoError(t, other.QueryRow(ctx, "SELECT id FROM "+schema+".outbox WHERE okey = 'k' ORDER BY seq LIMIT 1 FOR UPDATE").Scan(&locked))
	require.Equal(t, first[0], locked)

	got := collect(t, b, "items")
	runRelay(t, o)
	waitFor(t, got, func() bool { return got.distinct() == 2 }, "the rows of other keys")
	ids := func() []string {
		var out []string
		for _, m := range got.snapshot() {
			out = append(out, m.UUID)
		}
		return out
	}
	require.Equal(t, []string{later[1], later[3]}, ids(), "no row of k overtakes the locked one")

	require.NoError(t, other.Rollback(ctx)) // the other relay died before marking it sent
	waitFor(t, got, func() bool { return got.distinct() == 5 }, "the rows of k")
	require.Equal(t, []string{later[1], later[3], first[0], later[0], later[2]}, ids())
}

// limitedBroker is the memory broker with a message size limit.
type limitedBroker struct {
	broker.Broker
	limit int
}

func (l limitedBroker) MaxMessageSize() int { return l.limit }

func TestPublishRefusesWhatTheBrokerWouldRefuse(t *testing.T) {
	ctx := context.Background()
	pool := newPool(t)
	schema := newSchema(t, pool)
	_, mb := newMemoryHub(t)
	h, err := hub.New(limitedBroker{Broker: mb, limit: 1024}, hub.Config{})
	require.NoError(t, err)
	defer h.Close()
	o := newOutbox(t, pool, h, schema, outbox.Config{})
	tx, err := pool.Begin(ctx)
	require.NoError(t, err)
	defer tx.Rollback(ctx) //nolint:errcheck // test cleanup
	require.ErrorIs(t, outbox.Publish(ctx, o, tx, "items", Item{Key: strings.Repeat("x", 2000)}), broker.ErrMessageTooLarge)
	require.NoError(t, outbox.Publish(ctx, o, tx, "items", Item{Key: "small"}))
	require.NoError(t, tx.Commit(ctx))
	st, err := o.Stats(ctx)
	require.NoError(t, err)
	require.EqualValues(t, 1, st.Pending, "only the message that fits is staged")
}
