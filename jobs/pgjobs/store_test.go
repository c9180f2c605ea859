package pgjobs_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/harvesthub/hub/internal/testenv"
	"github.com/harvesthub/hub/jobs"
	"github.com/harvesthub/hub/jobs/jobstest"
	"github.com/harvesthub/hub/jobs/pgjobs"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m,
		// pgxpool's health check goroutine outlives Pool.Close by up to 500ms.
		goleak.IgnoreAnyFunction("github.com/jackc/pgx/v5/pgxpool.(*Pool).triggerHealthCheck.func1"))
}

func newPool(t *testing.T) *pgxpool.Pool {
	t.Helper()
	testenv.Require(t, "PostgreSQL", testenv.PostgresDSN())
	pool, err := pgxpool.New(context.Background(), testenv.PostgresDSN())
	require.NoError(t, err)
	t.Cleanup(pool.Close)
	return pool
}

// newSchema creates a schema unique to t, dropped when t ends.
func newSchema(t *testing.T, pool *pgxpool.Pool) string {
	t.Helper()
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	s := "pgjobs_test_" + hex.EncodeToString(b)
	_, err := pool.Exec(context.Background(), "CREATE SCHEMA "+s)
	require.NoError(t, err)
	t.Cleanup(func() {
		_, err := pool.Exec(context.Background(), "DROP SCHEMA "+s+" CASCADE")
		require.NoError(t, err)
	})
	return s
}

func newStore(t *testing.T, pool *pgxpool.Pool, table string) *pgjobs.Store {
	t.Helper()
	s, err := pgjobs.New(pool, pgjobs.Config{Table: table})
	require.NoError(t, err)
	t.Cleanup(func() { _ = s.Close() })
	require.NoError(t, s.Migrate(context.Background()))
	return s
}

func TestConformance(t *testing.T) {
	pool := newPool(t)
	table := newSchema(t, pool) + ".jobs"
	jobstest.Run(t, func(t *testing.T) jobs.Store { return newStore(t, pool, table) })
}

// TestRecordTx: a step recorded in a transaction exists only if the
// transaction commits, and every store on the table (every replica) reads it.
func TestRecordTx(t *testing.T) {
	ctx := context.Background()
	pool := newPool(t)
	table := newSchema(t, pool) + ".jobs"
	a, b := newStore(t, pool, table), newStore(t, pool, table)

	tx, err := pool.Begin(ctx)
	require.NoError(t, err)
	require.NoError(t, a.RecordTx(ctx, tx, "j1", jobs.Event{State: jobs.Dispatched}))
	require.NoError(t, tx.Rollback(ctx))
	_, err = b.Get(ctx, "j1")
	require.ErrorIs(t, err, jobs.ErrNotFound, "rolled back")

	require.NoError(t, pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
		return a.RecordTx(ctx, tx, "j1", jobs.Event{State: jobs.Dispatched, Key: "m1"})
	}))
	j, err := b.Get(ctx, "j1")
	require.NoError(t, err)
	require.Equal(t, jobs.Dispatched, j.State)

	tx, err = pool.Begin(ctx)
	require.NoError(t, err)
	defer tx.Rollback(ctx) //nolint:errcheck // test cleanup
	require.ErrorIs(t, a.RecordTx(ctx, tx, "", jobs.Event{State: jobs.Dispatched}), jobs.ErrInvalid)
	require.ErrorContains(t, a.RecordTx(ctx, nil, "j1", jobs.Event{State: jobs.Dispatched}), "needs a transaction")
}

func TestNewAndMigrate(t *testing.T) {
	pool := newPool(t)
	for _, tc := range []struct{ table, want string }{
		{`x"; DROP TABLE y; --`, "Config.Table"},
		{"a.b.c", "schema.table"},
		{strings.Repeat("t", 41), "at most 40"},
	} {
		s, err := pgjobs.New(pool, pgjobs.Config{Table: tc.table})
		require.ErrorContains(t, err, tc.want)
		require.Nil(t, s)
	}
	_, err := pgjobs.New(nil, pgjobs.Config{})
	require.ErrorContains(t, err, "needs a pool")

	table := newSchema(t, pool) + ".jobs"
	s, err := pgjobs.New(pool, pgjobs.Config{Table: table})
	require.NoError(t, err)
	require.ErrorContains(t, s.Ping(context.Background()), "does not exist", "Ping fails until Migrate")
	errs := make(chan error, 3)
	for range 3 {
		go func() { errs <- s.Migrate(context.Background()) }()
	}
	for range 3 {
		require.NoError(t, <-errs)
	}
	require.NoError(t, s.Ping(context.Background()))
}
