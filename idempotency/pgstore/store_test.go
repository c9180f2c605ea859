package pgstore_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/harvesthub/hub/idempotency"
	"github.com/harvesthub/hub/idempotency/idempotencytest"
	"github.com/harvesthub/hub/idempotency/pgstore"
	"github.com/harvesthub/hub/internal/testenv"
)

// newPool returns a pool on the test database, closed when t ends.
func newPool(t *testing.T) *pgxpool.Pool {
	t.Helper()
	testenv.Require(t, "PostgreSQL", testenv.PostgresDSN())
	pool, err := pgxpool.New(context.Background(), testenv.PostgresDSN())
	require.NoError(t, err)
	t.Cleanup(pool.Close)
	return pool
}

// tableName returns a table name unique to this test run, dropped when t
// ends.
func tableName(t *testing.T, pool *pgxpool.Pool) string {
	t.Helper()
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	name := "hub_idem_test_" + hex.EncodeToString(b)
	t.Cleanup(func() {
		_, err := pool.Exec(context.Background(), "DROP TABLE IF EXISTS "+name)
		require.NoError(t, err)
	})
	return name
}

// newStore returns a migrated store on a table of its own, closed when t
// ends.
func newStore(t *testing.T, pool *pgxpool.Pool, cfg pgstore.Config) *pgstore.Store {
	t.Helper()
	if cfg.Table == "" {
		cfg.Table = tableName(t, pool)
	}
	s, err := pgstore.New(pool, cfg)
	require.NoError(t, err)
	t.Cleanup(func() { _ = s.Close() })
	require.NoError(t, s.Migrate(context.Background()))
	return s
}

func TestConformance(t *testing.T) {
	pool := newPool(t)
	table := tableName(t, pool)
	idempotencytest.Run(t, func(t *testing.T) idempotency.Store {
		// A short cleanup interval runs cleanup alongside the suite: it must
		// never change an answer.
		return newStore(t, pool, pgstore.Config{Table: table, CleanupInterval: 20 * time.Millisecond})
	})
}

func TestNewValidatesConfig(t *testing.T) {
	// New does no I/O, so any pool value will do for validation.
	pool, err := pgxpool.New(context.Background(), "postgres://nobody@127.0.0.1:1/none")
	require.NoError(t, err)
	defer pool.Close()

	for _, tc := range []struct {
		name string
		cfg  pgstore.Config
		want string
	}{
		{"quote in table", pgstore.Config{Table: `x"; DROP TABLE y; --`}, "Config.Table"},
		{"digit first", pgstore.Config{Table: "1table"}, "Config.Table"},
		{"three parts", pgstore.Config{Table: "a.b.c"}, "schema.table"},
		{"too long", pgstore.Config{Table: strings.Repeat("t", 49)}, "at most 48"},
		{"empty schema", pgstore.Config{Table: ".t"}, "Config.Table"},
		{"negative batch", pgstore.Config{CleanupBatch: -1}, "CleanupBatch"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, err := pgstore.New(pool, tc.cfg)
			require.ErrorContains(t, err, tc.want)
			require.Nil(t, s)
		})
	}

	s, err := pgstore.New(nil, pgstore.Config{})
	require.ErrorContains(t, err, "needs a pool")
	require.Nil(t, s)

	for _, table := range []string{"", "hub_idempotency", "idem.inbox", "T_1", strings.Repeat("t", 48)} {
		s, err := pgstore.New(pool, pgstore.Config{Table: table})
		require.NoError(t, err, table)
		require.NoError(t, s.Close())
	}
}

func TestMigrateIsIdempotentAndConcurrent(t *testing.T) {
	ctx := context.Background()
	pool := newPool(t)
	table := tableName(t, pool)
	s, err := pgstore.New(pool, pgstore.Config{Table: table})
	require.NoError(t, err)
	defer s.Close()

	// Many workers starting at once.
	var wg sync.WaitGroup
	errs := make(chan error, 4)
	for range 4 {
		wg.Go(func() { errs <- s.Migrate(ctx) })
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		require.NoError(t, err)
	}
	require.NoError(t, s.Migrate(ctx), "Migrate twice")

	var indexes []string
	rows, err := pool.Query(ctx, `SELECT indexname FROM pg_indexes WHERE tablename = $1 ORDER BY indexname`, table)
	require.NoError(t, err)
	indexes, err = pgx.CollectRows(rows, pgx.RowTo[string])
	require.NoError(t, err)
	require.Equal(t, []string{table + "_expires_at_idx", table + "_pkey"}, indexes)

	c, err := s.Claim(ctx, "k", time.Minute)
	require.NoError(t, err)
	require.Equal(t, idempotency.Acquired, c.Status)
	require.NoError(t, s.Migrate(ctx), "Migrate keeps existing rows")
	again, err := s.Claim(ctx, "k", time.Minute)
	require.NoError(t, err)
	require.Equal(t, idempotency.Busy, again.Status)
}

func TestMigrateSchemaQualifiedTable(t *testing.T) {
	ctx := context.Background()
	pool := newPool(t)
	schema := tableName(t, pool) // a unique name; the schema is dropped below
	_, err := pool.Exec(ctx, "CREATE SCHEMA "+schema)
	require.NoError(t, err)
	t.Cleanup(func() {
		_, err := pool.Exec(context.Background(), "DROP SCHEMA "+schema+" CASCADE")
		require.NoError(t, err)
	})

	s := newStore(t, pool, pgstore.Config{Table: schema + ".inbox"})
	require.NoError(t, s.Migrate(ctx))
	c, err := s.Claim(ctx, "k", time.Minute)
	require.NoError(t, err)
	require.Equal(t, idempotency.Acquired, c.Status)
	var n int
	require.NoError(t, pool.QueryRow(ctx, "SELECT count(*) FROM "+schema+".inbox").Scan(&n))
	require.Equal(t, 1, n)
}

func TestUseBeforeMigrateIsAnError(t *testing.T) {
	pool := newPool(t)
	s, err := pgstore.New(pool, pgstore.Config{Table: tableName(t, pool), CleanupInterval: -1})
	require.NoError(t, err)
	defer s.Close()
	ctx := context.Background()
	require.ErrorContains(t, s.Ping(ctx), "does not exist", "Ping reports the missing table")
	c, err := s.Claim(ctx, "k", time.Minute)
	require.ErrorContains(t, err, "pgstore: claim")
	require.NotEqual(t, idempotency.Acquired, c.Status)
	require.NoError(t, s.Migrate(ctx))
	require.NoError(t, s.Ping(ctx))
}

func TestUnreachableServerIsAnError(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := l.Addr().String()
	require.NoError(t, l.Close())

	pool, err := pgxpool.New(context.Background(), "postgres://postgres@"+addr+"/test?sslmode=disable&connect_timeout=2")
	require.NoError(t, err)
	defer pool.Close()
	s, err := pgstore.New(pool, pgstore.Config{CleanupInterval: -1})
	require.NoError(t, err)
	defer s.Close()

	ctx := context.Background()
	start := time.Now()
	c, err := s.Claim(ctx, "k", time.Minute)
	require.ErrorContains(t, err, "pgstore: claim")
	require.NotEqual(t, idempotency.Acquired, c.Status, "an unreachable store never hands out a key")
	require.Less(t, time.Since(start), 3*time.Second)
	require.Error(t, s.Ping(ctx))
	require.Error(t, s.Migrate(ctx))
	extendErr := s.Extend(ctx, "k", "t", time.Minute)
	require.Error(t, extendErr)
	require.NotErrorIs(t, extendErr, idempotency.ErrLeaseLost, "an outage is not a lost lease")
	require.Error(t, s.Complete(ctx, "k", "t", time.Minute))
	require.Error(t, s.Release(ctx, "k", "t"))
}

// TestCompleteTx: a handler writes its own row and marks the key done in one
// transaction. A commit makes both stick; a rollback leaves neither, so the
// key can be handled again. A Claim that arrives while the transaction is
// open, after the lease ran out, waits for it and must not take the key if
// the transaction commits.
func TestCompleteTx(t *testing.T) {
	for _, tc := range []struct {
		name      string
		commit    bool
		wantClaim idempotency.Status // of the claim racing the transaction
		wantRows  int                // handler rows after the transaction
		wantAfter idempotency.Status // of a later claim
	}{
		{"commit", true, idempotency.Busy, 1, idempotency.Completed},
		{"rollback", false, idempotency.Acquired, 0, idempotency.Busy},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			pool := newPool(t)
			s := newStore(t, pool, pgstore.Config{CleanupInterval: -1})
			orders := tableName(t, pool)
			_, err := pool.Exec(ctx, "CREATE TABLE "+orders+" (id text PRIMARY KEY)")
			require.NoError(t, err)

			c, err := s.Claim(ctx, "order-1", 100*time.Millisecond)
			require.NoError(t, err)
			require.Equal(t, idempotency.Acquired, c.Status)

			tx, err := pool.Begin(ctx)
			require.NoError(t, err)
			defer tx.Rollback(ctx) //nolint:errcheck // no-op after Commit
			_, err = tx.Exec(ctx, "INSERT INTO "+orders+" (id) VALUES ('order-1')")
			require.NoError(t, err)
			require.NoError(t, s.CompleteTx(ctx, tx, "order-1", c.Token, time.Hour))

			// Let the lease run out (on the database clock) while the
			// transaction is open; the committed row still shows the lease.
			require.Eventually(t, func() bool {
				var expired bool
				err := pool.QueryRow(ctx, "SELECT expires_at <= now() FROM "+s.TableForTest()+" WHERE key = $1", []byte("order-1")).Scan(&expired)
				return err == nil && expired
			}, 10*time.Second, 10*time.Millisecond)

			type result struct {
				c   idempotency.Claim
				err error
			}
			racing := make(chan result, 1)
			go func() {
				c, err := s.Claim(ctx, "order-1", time.Minute)
				racing <- result{c, err}
			}()
			// Wait until the racing claim blocks on the transaction's row lock.
			require.Eventually(t, func() bool {
				var n int
				err := pool.QueryRow(ctx, `SELECT count(*) FROM pg_stat_activity
WHERE wait_event_type = 'Lock' AND query LIKE '%' || $1 || '%'`, s.TableForTest()).Scan(&n)
				return err == nil && n == 1
			}, 10*time.Second, 5*time.Millisecond)

			if tc.commit {
				require.NoError(t, tx.Commit(ctx))
			} else {
				require.NoError(t, tx.Rollback(ctx))
			}
			r := <-racing
			require.NoError(t, r.err)
			require.Equal(t, tc.wantClaim, r.c.Status)

			var n int
			require.NoError(t, pool.QueryRow(ctx, "SELECT count(*) FROM "+orders).Scan(&n))
			require.Equal(t, tc.wantRows, n)
			after, err := s.Claim(ctx, "order-1", time.Minute)
			require.NoError(t, err)
			require.Equal(t, tc.wantAfter, after.Status)
		})
	}
}

func TestCompleteTxValidates(t *testing.T) {
	ctx := context.Background()
	pool := newPool(t)
	s := newStore(t, pool, pgstore.Config{CleanupInterval: -1})
	tx, err := pool.Begin(ctx)
	require.NoError(t, err)
	defer tx.Rollback(ctx) //nolint:errcheck // test cleanup
	require.ErrorIs(t, s.CompleteTx(ctx, tx, "", "t", time.Minute), idempotency.ErrEmptyKey)
	require.Error(t, s.CompleteTx(ctx, tx, "k", "t", 0))
	require.ErrorContains(t, s.CompleteTx(ctx, nil, "k", "t", time.Minute), "needs a transaction")
	require.NoError(t, s.Close())
	require.ErrorIs(t, s.CompleteTx(ctx, tx, "k", "t", time.Minute), idempotency.ErrClosed)
}

func TestCleanupGoroutineDeletesExpiredRows(t *testing.T) {
	ctx := context.Background()
	pool := newPool(t)
	s := newStore(t, pool, pgstore.Config{CleanupInterval: 20 * time.Millisecond, CleanupBatch: 2})

	for _, k := range []string{"a", "b", "c", "d", "e"} {
		c, err := s.Claim(ctx, k, time.Millisecond)
		require.NoError(t, err)
		require.Equal(t, idempotency.Acquired, c.Status)
	}
	done, err := s.Claim(ctx, "done-short", time.Minute)
	require.NoError(t, err)
	require.NoError(t, s.Complete(ctx, "done-short", done.Token, time.Millisecond))
	held, err := s.Claim(ctx, "held", time.Hour)
	require.NoError(t, err)
	require.Equal(t, idempotency.Acquired, held.Status)
	kept, err := s.Claim(ctx, "done-long", time.Minute)
	require.NoError(t, err)
	require.NoError(t, s.Complete(ctx, "done-long", kept.Token, time.Hour))

	require.Eventually(t, func() bool {
		return keysOf(t, pool, s.TableForTest()) == "done-long,held"
	}, 10*time.Second, 10*time.Millisecond, "expired leases and completions are deleted, live ones stay")
}

func TestCleanupDeletesInBatches(t *testing.T) {
	ctx := context.Background()
	pool := newPool(t)
	s := newStore(t, pool, pgstore.Config{CleanupInterval: -1, CleanupBatch: 2})
	for _, k := range []string{"a", "b", "c", "d", "e"} {
		_, err := s.Claim(ctx, k, time.Microsecond)
		require.NoError(t, err)
	}
	_, err := s.Claim(ctx, "held", time.Hour)
	require.NoError(t, err)
	require.Eventually(t, func() bool {
		var n int
		err := pool.QueryRow(ctx, "SELECT count(*) FROM "+s.TableForTest()+" WHERE expires_at <= now()").Scan(&n)
		return err == nil && n == 5
	}, 10*time.Second, 5*time.Millisecond)

	n, err := s.Cleanup(ctx)
	require.NoError(t, err)
	require.EqualValues(t, 5, n, "three batches of at most 2")
	require.Equal(t, "held", keysOf(t, pool, s.TableForTest()))
	n, err = s.Cleanup(ctx)
	require.NoError(t, err)
	require.Zero(t, n)

	require.NoError(t, s.Close())
	require.NoError(t, s.Close())
	_, err = s.Cleanup(ctx)
	require.ErrorIs(t, err, idempotency.ErrClosed)
}

// keysOf lists the keys in table, sorted and comma-separated.
func keysOf(t *testing.T, pool *pgxpool.Pool, table string) string {
	t.Helper()
	rows, err := pool.Query(context.Background(), "SELECT convert_from(key, 'UTF8') FROM "+table+" ORDER BY key")
	require.NoError(t, err)
	keys, err := pgx.CollectRows(rows, pgx.RowTo[string])
	require.NoError(t, err)
	return strings.Join(keys, ",")
}
