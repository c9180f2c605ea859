package fleet

import (
	"context"
	"io"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/harvesthub/hub"
	"github.com/harvesthub/hub/broker/memory"
	"github.com/harvesthub/hub/idempotency"
	"github.com/harvesthub/hub/idempotency/pgstore"
	"github.com/harvesthub/hub/idempotency/redisstore"
	"github.com/harvesthub/hub/internal/testenv"
	"github.com/harvesthub/hub/retry"
)

// The store's server drops every connection of the hub mid-stream (what a
// restart looks like to a client; the shared servers themselves are not
// restarted, other packages' tests use them): the hub keeps going after
// reconnecting, no message is lost, and no completed key is handled twice.
func TestStoreConnectionsKilledMidStream(t *testing.T) {
	for _, tc := range []struct {
		name string
		open func(t *testing.T, id string) (idempotency.Store, func())
	}{
		{"redis", openKillableRedis},
		{"postgres", openKillablePostgres},
	} {
		t.Run(tc.name, func(t *testing.T) {
			id := unique()
			store, kill := tc.open(t, id)
			b, err := memory.New(memory.Config{})
			require.NoError(t, err)
			t.Cleanup(func() { _ = b.Close() })
			h, err := hub.New(b, hub.Config{Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), Idempotency: store,
				Retry: retry.Policy{Attempts: 3, InitialInterval: 5 * time.Millisecond, MaxInterval: 50 * time.Millisecond, RedeliveryDelay: 10 * time.Millisecond}})
			require.NoError(t, err)
			const keys, total = 1000, 1200 // a sixth are duplicates
			var mu sync.Mutex
			handled := map[string]int{}
			killed := make(chan struct{})
			var once sync.Once
			require.NoError(t, hub.Handle(h, "jobs", func(ctx context.Context, m hub.Message[Job]) error {
				mu.Lock()
				handled[m.Key]++
				n := len(handled)
				mu.Unlock()
				if n == keys/3 {
					once.Do(func() { kill(); close(killed) })
				}
				return nil
			}, hub.Concurrency(8)))
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan error, 1)
			go func() { done <- h.Run(ctx) }()
			<-h.Running()
			for i := range total {
				k := i % keys
				require.NoError(t, hub.Publish(ctx, h, "jobs", Job{Key: strconv.Itoa(k), N: i}, hub.WithKey(strconv.Itoa(k))))
			}
			<-killed
			require.NoError(t, b.WaitIdle(context.Background()), "the hub drains the stream after the kill")
			cancel()
			require.NoError(t, <-done)
			mu.Lock()
			defer mu.Unlock()
			require.Len(t, handled, keys, "no message lost")
			for k, n := range handled {
				require.Equal(t, 1, n, "key %s handled %d times", k, n)
			}
		})
	}
}

func openKillableRedis(t *testing.T, id string) (idempotency.Store, func()) {
	testenv.Require(t, "Redis", testenv.RedisAddr())
	name := "fleet-" + id
	c := redis.NewClient(&redis.Options{Addr: testenv.RedisAddr(), ClientName: name})
	t.Cleanup(func() { _ = c.Close() })
	s, err := redisstore.New(c, redisstore.Config{Prefix: "fleet:" + id + ":"})
	require.NoError(t, err)
	t.Cleanup(func() { _ = s.Close() })
	admin := redis.NewClient(&redis.Options{Addr: testenv.RedisAddr()})
	t.Cleanup(func() { _ = admin.Close() })
	return s, func() {
		// CLIENT KILL by the hub's client name: only this test's connections.
		list, err := admin.ClientList(context.Background()).Result()
		require.NoError(t, err)
		killedAny := false
		for _, line := range strings.Split(list, "\n") {
			fields := strings.Fields(line)
			if !slices.Contains(fields, "name="+name) {
				continue
			}
			for _, f := range fields {
				if cid, ok := strings.CutPrefix(f, "id="); ok {
					require.NoError(t, admin.Do(context.Background(), "CLIENT", "KILL", "ID", cid).Err())
					killedAny = true
				}
			}
		}
		require.True(t, killedAny, "the hub had Redis connections to kill")
	}
}

func openKillablePostgres(t *testing.T, id string) (idempotency.Store, func()) {
	testenv.Require(t, "PostgreSQL", testenv.PostgresDSN())
	app := "fleet_" + id
	cfg, err := pgxpool.ParseConfig(testenv.PostgresDSN())
	require.NoError(t, err)
	cfg.ConnConfig.RuntimeParams["application_name"] = app
	pool, err := pgxpool.NewWithConfig(context.Background(), cfg)
	require.NoError(t, err)
	t.Cleanup(pool.Close)
	s, err := pgstore.New(pool, pgstore.Config{Table: "fleet_restart_" + id})
	require.NoError(t, err)
	require.NoError(t, s.Migrate(context.Background()))
	t.Cleanup(func() {
		_ = s.Close()
		_, _ = pool.Exec(context.Background(), "DROP TABLE IF EXISTS fleet_restart_"+id)
	})
	admin, err := pgxpool.New(context.Background(), testenv.PostgresDSN())
	require.NoError(t, err)
	t.Cleanup(admin.Close)
	return s, func() {
		var n int
		require.NoError(t, admin.QueryRow(context.Background(),
			"SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE application_name = $1", app).Scan(&n))
		require.Positive(t, n, "the hub had PostgreSQL connections to kill")
	}
}
