package pgstore

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/harvesthub/hub"
	"github.com/harvesthub/hub/idempotency"
)

// Defaults of [Config].
const (
	TableDefault           = "hub_idempotency"
	CleanupIntervalDefault = time.Minute
	CleanupBatchDefault    = 1000
)

// maxTableLen keeps "<table>_expires_at_idx" within PostgreSQL's 63-byte
// identifier limit, so index names are never silently truncated.
const maxTableLen = 48

var tableNameRE = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

// Config configures a [Store]. The zero value is ready to use.
type Config struct {
	// Table is the table the store keeps its rows in, optionally
	// schema-qualified ("idem.inbox"). Each part is a plain identifier
	// (letters, digits, underscores; not starting with a digit) of at most
	// 48 bytes. Defaults to [TableDefault] ("hub_idempotency").
	Table string
	// CleanupInterval is how often the cleanup goroutine deletes expired
	// rows. Defaults to [CleanupIntervalDefault] (one minute). A negative
	// interval starts no goroutine: call [Store.Cleanup] yourself, or let
	// Claim take over expired rows and accept that abandoned keys stay.
	CleanupInterval time.Duration
	// CleanupBatch is the most rows one DELETE removes; cleanup repeats
	// it until no expired row is left. Defaults to [CleanupBatchDefault]
	// (1000). Must not be negative.
	CleanupBatch int
	// Retention is how long CompleteClaimTx keeps a completed key. The hub
	// completes the key again after the handler returns, with its own
	// Config.Retention; this one counts only if the process dies in
	// between. Defaults to hub.RetentionDefault (24h). Must not be
	// negative.
	Retention time.Duration
	// Logger receives cleanup errors (the goroutine has no caller to return
	// them to). Defaults to slog.Default().
	Logger *slog.Logger
}

// Store is an [idempotency.Store] on PostgreSQL. Its methods are safe for
// concurrent use by many goroutines and processes.
type Store struct {
	pool  *pgxpool.Pool
	table string // quoted, possibly schema-qualified
	index string // quoted index name (unqualified)
	batch int
	ret   time.Duration
	log   *slog.Logger

	claimSQL, extendSQL, completeSQL, completeTxSQL, releaseSQL, cleanupSQL string

	closed    atomic.Bool
	closeOnce sync.Once
	cancel    context.CancelFunc
	done      chan struct{}
}

// New returns a Store on pool and starts its cleanup goroutine (see
// [Config.CleanupInterval]). It does no I/O: run [Store.Migrate] before
// first use. The pool stays the caller's: Close does not close it.
func New(pool *pgxpool.Pool, cfg Config) (*Store, error) {
	if pool == nil {
		return nil, errors.New("pgstore: New needs a pool, such as pgxpool.New(ctx, dsn)")
	}
	if cfg.Table == "" {
		cfg.Table = TableDefault
	}
	if cfg.CleanupInterval == 0 {
		cfg.CleanupInterval = CleanupIntervalDefault
	}
	if cfg.CleanupBatch < 0 {
		return nil, fmt.Errorf("pgstore: Config.CleanupBatch is %d; use a positive batch size, or 0 for the default %d", cfg.CleanupBatch, CleanupBatchDefault)
	}
	if cfg.CleanupBatch == 0 {
		cfg.CleanupBatch = CleanupBatchDefault
	}
	if cfg.Retention < 0 {
		return nil, fmt.Errorf("pgstore: Config.Retention is %v; use a positive duration, or 0 for the default %v", cfg.Retention, hub.RetentionDefault)
	}
	if cfg.Retention == 0 {
		cfg.Retention = hub.RetentionDefault
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	parts := strings.Split(cfg.Table, ".")
	if len(parts) > 2 {
		return nil, fmt.Errorf("pgstore: Config.Table %q: use table or schema.table", cfg.Table)
	}
	for _, p := range parts {
		if !tableNameRE.MatchString(p) || len(p) > maxTableLen {
			return nil, fmt.Errorf("pgstore: Config.Table %q: each part must be letters, digits and underscores, not start with a digit, and be at most %d bytes", cfg.Table, maxTableLen)
		}
	}
	table := pgx.Identifier(parts).Sanitize()
	s := &Store{
		pool:  pool,
		table: table,
		index: pgx.Identifier{parts[len(parts)-1] + "_expires_at_idx"}.Sanitize(),
		batch: cfg.CleanupBatch,
		ret:   cfg.Retention,
		log:   cfg.Logger,
		done:  make(chan struct{}),
	}
	// One statement: take the row when it is new or expired; otherwise read
	// its state. The second SELECT runs only when nothing was taken. It reads
	// the statement's snapshot, which can miss a row inserted by a claim
	// racing with this one: then no row comes back, and Claim answers Busy.
	s.claimSQL = `WITH taken AS (
	INSERT INTO ` + table + ` AS i (key, token, completed, expires_at)
	VALUES ($1, $2, false, now() + $3::interval)
	ON CONFLICT (key) DO UPDATE
		SET token = excluded.token, completed = false, expires_at = excluded.expires_at
		WHERE i.expires_at <= now()
	RETURNING 1
)
SELECT true, false, NULL::timestamptz FROM taken
UNION ALL
SELECT false, completed AND expires_at > now(), CASE WHEN expires_at > now() THEN expires_at END
FROM ` + table + ` WHERE key = $1 AND NOT EXISTS (SELECT FROM taken)`
	s.extendSQL = `UPDATE ` + table + ` SET expires_at = now() + $3::interval
WHERE key = $1 AND token = $2 AND NOT completed AND expires_at > now()`
	s.completeSQL = `INSERT INTO ` + table + ` (key, token, completed, expires_at)
VALUES ($1, $2, true, now() + $3::interval)
ON CONFLICT (key) DO UPDATE SET token = excluded.token, completed = true, expires_at = excluded.expires_at`
	// Complete for the holder of token only: it takes the row when it is
	// the token's (held, expired or already completed by it) or absent
	// (cleanup deleted an expired lease nobody took over).
	s.completeTxSQL = `WITH done AS (
	INSERT INTO ` + table + ` AS i (key, token, completed, expires_at)
	VALUES ($1, $2, true, now() + $3::interval)
	ON CONFLICT (key) DO UPDATE SET completed = true, expires_at = excluded.expires_at
		WHERE i.token = excluded.token
	RETURNING 1
)
SELECT EXISTS (SELECT FROM done), (SELECT completed FROM ` + table + ` WHERE key = $1)`
	s.releaseSQL = `DELETE FROM ` + table + ` WHERE key = $1 AND token = $2 AND NOT completed`
	s.cleanupSQL = `DELETE FROM ` + table + ` WHERE key IN (
	SELECT key FROM ` + table + ` WHERE expires_at <= now() LIMIT $1 FOR UPDATE SKIP LOCKED
) AND expires_at <= now()`

	ctx, cancel := context.WithCancel(context.Background())
	s.cancel = cancel
	if cfg.CleanupInterval > 0 {
		go s.cleanupLoop(ctx, cfg.CleanupInterval)
	} else {
		close(s.done)
	}
	return s, nil
}

// Migrate creates the table and its index unless they exist. It is
// idempotent, and concurrent calls (many workers starting at once) are
// serialised by a transaction-scoped advisory lock.
func (s *Store) Migrate(ctx context.Context) error {
	if s.closed.Load() {
		return idempotency.ErrClosed
	}
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock(hashtext('hub idempotency migrate ' || $1::text))`, s.table); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `CREATE TABLE IF NOT EXISTS `+s.table+` (
	key bytea PRIMARY KEY,
	token text NOT NULL,
	completed boolean NOT NULL DEFAULT false,
	expires_at timestamptz NOT NULL
)`); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, `CREATE INDEX IF NOT EXISTS `+s.index+` ON `+s.table+` (expires_at)`)
		return err
	})
	if err != nil {
		return fmt.Errorf("pgstore: migrate %s: %w", s.table, err)
	}
	return nil
}

// Claim implements [idempotency.Store.Claim] in one statement.
func (s *Store) Claim(ctx context.Context, key string, lease time.Duration) (idempotency.Claim, error) {
	k, err := s.check(key, "lease", lease)
	if err != nil {
		return idempotency.Claim{}, err
	}
	token := newToken()
	var (
		acquired, completed bool
		until               *time.Time
	)
	err = s.pool.QueryRow(ctx, s.claimSQL, k, token, lease).Scan(&acquired, &completed, &until)
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		// A racing claim inserted the row after this statement's snapshot.
		return idempotency.Claim{Status: idempotency.Busy}, nil
	case err != nil:
		return idempotency.Claim{}, fmt.Errorf("pgstore: claim: %w", err)
	case acquired:
		return idempotency.Claim{Status: idempotency.Acquired, Token: token}, nil
	case completed:
		return idempotency.Claim{Status: idempotency.Completed}, nil
	}
	c := idempotency.Claim{Status: idempotency.Busy}
	if until != nil {
		c.LeaseUntil = *until
	}
	return c, nil
}

// Extend implements [idempotency.Store.Extend] in one statement.
func (s *Store) Extend(ctx context.Context, key, token string, lease time.Duration) error {
	k, err := s.check(key, "lease", lease)
	if err != nil {
		return err
	}
	tag, err := s.pool.Exec(ctx, s.extendSQL, k, token, lease)
	if err != nil {
		return fmt.Errorf("pgstore: extend: %w", err)
	}
	if tag.RowsAffected() == 0 {
		return idempotency.ErrLeaseLost
	}
	return nil
}

// Complete implements [idempotency.Store.Complete] in one statement.
func (s *Store) Complete(ctx context.Context, key, token string, retention time.Duration) error {
	k, err := s.check(key, "retention", retention)
	if err != nil {
		return err
	}
	if _, err := s.pool.Exec(ctx, s.completeSQL, k, token, retention); err != nil {
		return fmt.Errorf("pgstore: complete: %w", err)
	}
	return nil
}

// Errors of CompleteTx and CompleteClaimTx.
var (
	// ErrCompletedElsewhere is returned (wrapped, with
	// idempotency.ErrLeaseLost) when another claim completed the key: the
	// message was handled by another delivery, so this transaction's writes
	// must not commit. A handler may roll back and return nil.
	ErrCompletedElsewhere = errors.New("pgstore: key completed by another claim")
	// ErrNoClaim is returned by CompleteClaimTx outside a hub handler.
	ErrNoClaim = errors.New("pgstore: no idempotency claim in the context; call CompleteClaimTx from a hub handler")
)

// CompleteTx completes key for the claim identified by token inside the
// caller's transaction tx, which must be on the database that holds the
// store's table. Use it to commit a handler's own writes and the done-mark
// together (a transactional inbox): if tx commits, the key is completed and
// the handler never runs for it again; if tx rolls back, the key is as it
// was (still claimed by token) and a redelivery runs the handler again.
// In a hub handler, [Store.CompleteClaimTx] finds the key and token itself.
//
// Unlike Complete, it acts only for the claim's holder: when another claim
// holds the key (this one's lease ran out and another worker took the
// key) it returns an error wrapping [idempotency.ErrLeaseLost], and when
// another claim completed it, one wrapping [ErrCompletedElsewhere] too:
// roll tx back, the other worker's writes stand. Calling it again with the
// same token, or the hub's Complete afterwards, succeeds.
//
// The row stays locked until tx ends, so a concurrent Claim of the same key
// waits for the transaction: keep it short. Retention counts from the start
// of tx (PostgreSQL's now()).
func (s *Store) CompleteTx(ctx context.Context, tx pgx.Tx, key, token string, retention time.Duration) error {
	k, err := s.check(key, "retention", retention)
	if err != nil {
		return err
	}
	if tx == nil {
		return errors.New("pgstore: CompleteTx needs a transaction")
	}
	if token == "" {
		return errors.New("pgstore: CompleteTx needs the claim's token")
	}
	var (
		done      bool
		completed *bool
	)
	if err := tx.QueryRow(ctx, s.completeTxSQL, k, token, retention).Scan(&done, &completed); err != nil {
		return fmt.Errorf("pgstore: complete in transaction: %w", err)
	}
	switch {
	case done:
		return nil
	case completed != nil && *completed:
		return fmt.Errorf("%w: %w: %q", idempotency.ErrLeaseLost, ErrCompletedElsewhere, key)
	default:
		return fmt.Errorf("%w: %q is held by another claim", idempotency.ErrLeaseLost, key)
	}
}

// CompleteClaimTx completes, inside tx, the idempotency key of the
// delivery the hub handler calling it is handling ([hub.ClaimFrom](ctx)),
// with Config.Retention: the handler's writes, its outbox messages and the
// done-mark commit together, which makes a PostgreSQL-backed handler
// exactly-once. The hub's own Complete after the handler returns then
// succeeds. The store must be the hub's Config.Idempotency. Errors are
// those of [Store.CompleteTx], and [ErrNoClaim] outside a handler.
func (s *Store) CompleteClaimTx(ctx context.Context, tx pgx.Tx) error {
	c, ok := hub.ClaimFrom(ctx)
	if !ok {
		return ErrNoClaim
	}
	return s.CompleteTx(ctx, tx, c.StoreKey, c.Token, s.ret)
}

// Release implements [idempotency.Store.Release] in one statement.
func (s *Store) Release(ctx context.Context, key, token string) error {
	k, err := s.check(key, "", 0)
	if err != nil {
		return err
	}
	if _, err := s.pool.Exec(ctx, s.releaseSQL, k, token); err != nil {
		return fmt.Errorf("pgstore: release: %w", err)
	}
	return nil
}

// Ping checks that the database is reachable and the store's table exists
// (so a readiness probe fails until Migrate has run), in one round trip.
func (s *Store) Ping(ctx context.Context) error {
	if s.closed.Load() {
		return idempotency.ErrClosed
	}
	if _, err := s.pool.Exec(ctx, `SELECT FROM `+s.table+` LIMIT 0`); err != nil {
		return fmt.Errorf("pgstore: ping: %w", err)
	}
	return nil
}

// Cleanup deletes every expired row, in batches of Config.CleanupBatch, and
// returns how many it deleted. Rows locked by other transactions are skipped
// (a concurrent cleanup or a CompleteTx in progress has them). The cleanup
// goroutine calls it every Config.CleanupInterval.
func (s *Store) Cleanup(ctx context.Context) (int64, error) {
	if s.closed.Load() {
		return 0, idempotency.ErrClosed
	}
	var total int64
	for {
		tag, err := s.pool.Exec(ctx, s.cleanupSQL, s.batch)
		if err != nil {
			return total, fmt.Errorf("pgstore: cleanup: %w", err)
		}
		total += tag.RowsAffected()
		if tag.RowsAffected() < int64(s.batch) {
			return total, nil
		}
	}
}

// Close stops the cleanup goroutine, interrupting a cleanup in progress,
// and waits for it to return. Later calls return [idempotency.ErrClosed].
// The pool stays open: it is the caller's. Close is safe to call more than
// once and always returns nil.
func (s *Store) Close() error {
	s.closeOnce.Do(func() {
		s.closed.Store(true)
		s.cancel()
		<-s.done
	})
	return nil
}

func (s *Store) cleanupLoop(ctx context.Context, interval time.Duration) {
	defer close(s.done)
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if _, err := s.Cleanup(ctx); err != nil && ctx.Err() == nil {
			s.log.LogAttrs(ctx, slog.LevelWarn, "pgstore: deleting expired idempotency rows failed; retrying next interval",
				slog.String("table", s.table), slog.Any("error", err))
		}
	}
}

// check validates a call and returns the key as stored. what names the
// duration d, which must be positive; an empty what skips that check.
func (s *Store) check(key, what string, d time.Duration) ([]byte, error) {
	if s.closed.Load() {
		return nil, idempotency.ErrClosed
	}
	if key == "" {
		return nil, idempotency.ErrEmptyKey
	}
	if what != "" && d <= 0 {
		return nil, fmt.Errorf("pgstore: %s must be positive, got %v", what, d)
	}
	return []byte(idempotency.NormalizeKey(key)), nil
}

var _ idempotency.Store = (*Store)(nil)
