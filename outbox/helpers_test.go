package outbox_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"sync"
	"testing"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/harvesthub/hub"
	"github.com/harvesthub/hub/broker/memory"
	"github.com/harvesthub/hub/internal/testenv"
	"github.com/harvesthub/hub/outbox"
)

// Item is the payload of the tests' messages.
type Item struct {
	Key string `json:"key"`
	N   int    `json:"n"`
}

func randName(prefix string) string {
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	return prefix + hex.EncodeToString(b)
}

// newPool returns a pool on the test database, closed when t ends.
func newPool(t testing.TB) *pgxpool.Pool {
	t.Helper()
	testenv.Require(t, "PostgreSQL", testenv.PostgresDSN())
	cfg, err := pgxpool.ParseConfig(testenv.PostgresDSN())
	require.NoError(t, err)
	cfg.MaxConns = 16
	pool, err := pgxpool.NewWithConfig(context.Background(), cfg)
	require.NoError(t, err)
	t.Cleanup(pool.Close)
	return pool
}

// newSchema creates a schema unique to t, dropped with everything in it
// when t ends, and returns its name.
func newSchema(t testing.TB, pool *pgxpool.Pool) string {
	t.Helper()
	s := randName("outbox_test_")
	_, err := pool.Exec(context.Background(), "CREATE SCHEMA "+s)
	require.NoError(t, err)
	t.Cleanup(func() {
		_, err := pool.Exec(context.Background(), "DROP SCHEMA "+s+" CASCADE")
		require.NoError(t, err)
	})
	return s
}

// newMemoryHub returns a hub on a fresh memory broker, both closed when t
// ends.
func newMemoryHub(t testing.TB) (*hub.Hub, *memory.Broker) {
	t.Helper()
	b, err := memory.New(memory.Config{})
	require.NoError(t, err)
	t.Cleanup(func() { _ = b.Close() })
	h, err := hub.New(b, hub.Config{})
	require.NoError(t, err)
	t.Cleanup(func() { _ = h.Close() })
	return h, b
}

// newOutbox returns a migrated Outbox on table schema.outbox, closed when t
// ends.
func newOutbox(t testing.TB, pool *pgxpool.Pool, h *hub.Hub, schema string, cfg outbox.Config) *outbox.Outbox {
	t.Helper()
	cfg.Table = schema + ".outbox"
	o, err := outbox.New(pool, h, cfg)
	require.NoError(t, err)
	t.Cleanup(func() { _ = o.Close() })
	require.NoError(t, o.Migrate(context.Background()))
	return o
}

// runRelay runs o's relay until t ends (or the returned stop is called)
// and fails t if Run returns an error.
func runRelay(t testing.TB, o *outbox.Outbox) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- o.Run(ctx) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			require.NoError(t, <-done)
		})
	}
	t.Cleanup(stop)
	return stop
}

// collector records the messages delivered on a subscription, in order.
type collector struct {
	mu   sync.Mutex
	msgs []*message.Message
	got  chan struct{} // signalled on every message
}

// collect subscribes to topic's default group and acks everything, until t
// ends.
func collect(t testing.TB, sub interface {
	Subscribe(ctx context.Context, topic string) (<-chan *message.Message, error)
}, topic string) *collector {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	ch, err := sub.Subscribe(ctx, topic)
	require.NoError(t, err)
	c := &collector{got: make(chan struct{}, 1)}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for m := range ch {
			c.mu.Lock()
			c.msgs = append(c.msgs, m)
			c.mu.Unlock()
			m.Ack()
			select {
			case c.got <- struct{}{}:
			default:
			}
		}
	}()
	t.Cleanup(func() { cancel(); <-done })
	return c
}

func (c *collector) snapshot() []*message.Message {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]*message.Message(nil), c.msgs...)
}

// distinct counts the distinct message IDs received.
func (c *collector) distinct() int {
	seen := map[string]bool{}
	for _, m := range c.snapshot() {
		seen[m.UUID] = true
	}
	return len(seen)
}
