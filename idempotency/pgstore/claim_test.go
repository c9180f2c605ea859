package pgstore_test

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/harvesthub/hub"
	"github.com/harvesthub/hub/broker/memory"
	"github.com/harvesthub/hub/idempotency"
	"github.com/harvesthub/hub/idempotency/pgstore"
)

// TestCompleteTxActsOnlyForTheHolder: CompleteTx completes a key for the
// claim that holds it (again and again, and the hub's Complete after it),
// and refuses, so the caller rolls back, when another claim took the key
// over or completed it.
func TestCompleteTxActsOnlyForTheHolder(t *testing.T) {
	ctx := context.Background()
	pool := newPool(t)
	s := newStore(t, pool, pgstore.Config{CleanupInterval: -1})
	inTx := func(key, token string) error {
		return pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error { return s.CompleteTx(ctx, tx, key, token, time.Hour) })
	}
	expire := func(key string) {
		require.Eventually(t, func() bool {
			var expired bool
			err := pool.QueryRow(ctx, "SELECT expires_at <= now() FROM "+s.TableForTest()+" WHERE key = $1", []byte(key)).Scan(&expired)
			return err == nil && expired
		}, 10*time.Second, 5*time.Millisecond)
	}

	t.Run("holder, twice, then the hub's Complete", func(t *testing.T) {
		c, err := s.Claim(ctx, "held", time.Minute)
		require.NoError(t, err)
		require.NoError(t, inTx("held", c.Token))
		require.NoError(t, inTx("held", c.Token), "again with the same token")
		require.NoError(t, s.Complete(ctx, "held", c.Token, time.Hour), "the hub's Complete afterwards")
		again, err := s.Claim(ctx, "held", time.Minute)
		require.NoError(t, err)
		require.Equal(t, idempotency.Completed, again.Status)
	})
	t.Run("lease expired, nobody took it", func(t *testing.T) {
		c, err := s.Claim(ctx, "late", 50*time.Millisecond)
		require.NoError(t, err)
		expire("late")
		require.NoError(t, inTx("late", c.Token), "the work is done and nobody else runs it")
	})
	t.Run("row cleaned up, nobody took it", func(t *testing.T) {
		c, err := s.Claim(ctx, "gone", 50*time.Millisecond)
		require.NoError(t, err)
		expire("gone")
		_, err = s.Cleanup(ctx)
		require.NoError(t, err)
		require.NoError(t, inTx("gone", c.Token))
		again, err := s.Claim(ctx, "gone", time.Minute)
		require.NoError(t, err)
		require.Equal(t, idempotency.Completed, again.Status)
	})
	t.Run("taken over by another claim", func(t *testing.T) {
		c, err := s.Claim(ctx, "taken", 50*time.Millisecond)
		require.NoError(t, err)
		expire("taken")
		other, err := s.Claim(ctx, "taken", time.Minute)
		require.NoError(t, err)
		require.Equal(t, idempotency.Acquired, other.Status)
		err = inTx("taken", c.Token)
		require.ErrorIs(t, err, idempotency.ErrLeaseLost)
		require.NotErrorIs(t, err, pgstore.ErrCompletedElsewhere)
		require.NoError(t, s.Extend(ctx, "taken", other.Token, time.Minute), "the other claim still holds the key")
	})
	t.Run("completed by another claim", func(t *testing.T) {
		c, err := s.Claim(ctx, "done", 50*time.Millisecond)
		require.NoError(t, err)
		expire("done")
		other, err := s.Claim(ctx, "done", time.Minute)
		require.NoError(t, err)
		require.NoError(t, s.Complete(ctx, "done", other.Token, time.Hour))
		err = inTx("done", c.Token)
		require.ErrorIs(t, err, idempotency.ErrLeaseLost)
		require.ErrorIs(t, err, pgstore.ErrCompletedElsewhere)
	})
	t.Run("no token", func(t *testing.T) {
		require.ErrorContains(t, inTx("k", ""), "token")
	})
}

// TestCompleteClaimTxInAHubHandler: a hub handler records its work and
// completes its own claim in one transaction; the hub's Complete afterwards
// succeeds (nothing logged at error), a duplicate is never handled, and a
// failed transaction leaves the key to the retry.
func TestCompleteClaimTxInAHubHandler(t *testing.T) {
	ctx := context.Background()
	pool := newPool(t)
	s := newStore(t, pool, pgstore.Config{CleanupInterval: -1})
	orders := tableName(t, pool)
	_, err := pool.Exec(ctx, "CREATE TABLE "+orders+" (id text PRIMARY KEY)")
	require.NoError(t, err)

	require.ErrorIs(t, pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error { return s.CompleteClaimTx(ctx, tx) }), pgstore.ErrNoClaim)

	b, err := memory.New(memory.Config{})
	require.NoError(t, err)
	defer b.Close()
	var logs syncBuffer
	h, err := hub.New(b, hub.Config{Idempotency: s, Logger: slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelError}))})
	require.NoError(t, err)
	defer h.Close()

	type Order struct{ ID string }
	var (
		mu    sync.Mutex
		calls int
		fail  = true // the first attempt's transaction fails after completing
	)
	handled := make(chan string, 10)
	require.NoError(t, hub.Handle(h, "orders", func(ctx context.Context, m hub.Message[Order]) error {
		mu.Lock()
		calls++
		failNow := fail
		fail = false
		mu.Unlock()
		err := pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
			if _, err := tx.Exec(ctx, "INSERT INTO "+orders+" (id) VALUES ($1)", m.Payload.ID); err != nil {
				return err
			}
			if err := s.CompleteClaimTx(ctx, tx); err != nil {
				return err
			}
			if failNow {
				return errors.New("indexing failed")
			}
			return nil
		})
		if err == nil {
			handled <- m.Payload.ID
		}
		return err
	}))
	runCtx, stop := context.WithCancel(ctx)
	runDone := make(chan error, 1)
	go func() { runDone <- h.Run(runCtx) }()
	defer func() { stop(); require.NoError(t, <-runDone) }()

	require.NoError(t, hub.Publish(ctx, h, "orders", Order{ID: "o-1"}, hub.WithKey("order-1")))
	require.Equal(t, "o-1", <-handled)
	// The same key again: a duplicate, acked without a call.
	require.NoError(t, hub.Publish(ctx, h, "orders", Order{ID: "o-1"}, hub.WithKey("order-1")))
	require.NoError(t, hub.Publish(ctx, h, "orders", Order{ID: "o-2"}, hub.WithKey("order-2")))
	require.Equal(t, "o-2", <-handled)

	mu.Lock()
	require.Equal(t, 3, calls, "o-1 twice (the first transaction rolled back), o-2 once, the duplicate never")
	mu.Unlock()
	var n int
	require.NoError(t, pool.QueryRow(ctx, "SELECT count(*) FROM "+orders).Scan(&n))
	require.Equal(t, 2, n)
	require.Empty(t, logs.String(), "the hub's Complete after CompleteClaimTx succeeds")
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}
