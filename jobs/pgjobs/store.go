// Package pgjobs is a jobs.Store on PostgreSQL: every replica reads the
// same jobs, and [Store.RecordTx] records a job step inside the caller's
// transaction, so a service records the job and stages its next message
// (with the outbox module) in one commit.
//
// Two tables: <table> (one row per job: id, state, reason, created_at,
// updated_at) and <table>_events (the history: job_id, seq, key, state,
// reason, at; unique on (job_id, key)). [Store.Migrate] creates them,
// idempotently, under an advisory lock. It is its own Go module
// (github.com/harvesthub/hub/jobs/pgjobs), so pgx stays out of the core.
package pgjobs

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"sync/atomic"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/harvesthub/hub/jobs"
)

// TableDefault is the default [Config.Table].
const TableDefault = "hub_jobs"

// maxTableLen keeps "<table>_events_job_key_idx" within 63 bytes.
const maxTableLen = 40

var tableNameRE = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

// Config configures a [Store]. The zero value is ready to use.
type Config struct {
	// Table is the jobs table, optionally schema-qualified; the history is
	// in Table + "_events". Each part is a plain identifier of at most 40
	// bytes. Defaults to [TableDefault].
	Table string
}

// Store is a [jobs.Store] on PostgreSQL, safe for concurrent use by many
// goroutines and processes.
type Store struct {
	pool                      *pgxpool.Pool
	name                      string
	jobs, events, eventsIndex string
	recordSQL, jobSQL, evSQL  string
	closed                    atomic.Bool
}

// New returns a Store on pool. It does no I/O: run [Store.Migrate] first.
// The pool stays the caller's.
func New(pool *pgxpool.Pool, cfg Config) (*Store, error) {
	if pool == nil {
		return nil, errors.New("pgjobs: New needs a pool, such as pgxpool.New(ctx, dsn)")
	}
	if cfg.Table == "" {
		cfg.Table = TableDefault
	}
	parts := strings.Split(cfg.Table, ".")
	if len(parts) > 2 {
		return nil, fmt.Errorf("pgjobs: Config.Table %q: use table or schema.table", cfg.Table)
	}
	for _, p := range parts {
		if !tableNameRE.MatchString(p) || len(p) > maxTableLen {
			return nil, fmt.Errorf("pgjobs: Config.Table %q: each part must be letters, digits and underscores, not start with a digit, and be at most %d bytes", cfg.Table, maxTableLen)
		}
	}
	ev := append([]string(nil), parts...)
	ev[len(ev)-1] += "_events"
	s := &Store{
		pool:        pool,
		name:        cfg.Table,
		jobs:        pgx.Identifier(parts).Sanitize(),
		events:      pgx.Identifier(ev).Sanitize(),
		eventsIndex: pgx.Identifier{parts[len(parts)-1] + "_events_job_key_idx"}.Sanitize(),
	}
	// One statement: the event unless its key is recorded, then the job row
	// from it. A duplicate inserts nothing and changes nothing.
	s.recordSQL = `WITH ev AS (
	INSERT INTO ` + s.events + ` (job_id, key, state, reason, at) VALUES ($1, $2, $3, $4, $5)
	ON CONFLICT (job_id, key) DO NOTHING RETURNING at
)
INSERT INTO ` + s.jobs + ` AS j (id, state, reason, created_at, updated_at)
SELECT $1, $3, $4, at, at FROM ev
ON CONFLICT (id) DO UPDATE SET state = excluded.state, reason = excluded.reason, updated_at = excluded.updated_at`
	s.jobSQL = `SELECT state, reason, created_at, updated_at FROM ` + s.jobs + ` WHERE id = $1`
	s.evSQL = `SELECT state, reason, at, COALESCE(key, '') FROM ` + s.events + ` WHERE job_id = $1 ORDER BY seq`
	return s, nil
}

// Migrate creates the tables unless they exist; idempotent, and safe from
// many processes at once.
func (s *Store) Migrate(ctx context.Context) error {
	if s.closed.Load() {
		return jobs.ErrClosed
	}
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock(hashtext('hub jobs migrate ' || $1::text))`, s.name); err != nil {
			return err
		}
		for _, stmt := range []string{
			`CREATE TABLE IF NOT EXISTS ` + s.jobs + ` (
	id         text PRIMARY KEY,
	state      text NOT NULL,
	reason     text NOT NULL DEFAULT '',
	created_at timestamptz NOT NULL,
	updated_at timestamptz NOT NULL
)`,
			`CREATE TABLE IF NOT EXISTS ` + s.events + ` (
	seq    bigserial PRIMARY KEY,
	job_id text NOT NULL,
	key    text,
	state  text NOT NULL,
	reason text NOT NULL DEFAULT '',
	at     timestamptz NOT NULL
)`,
			`CREATE UNIQUE INDEX IF NOT EXISTS ` + s.eventsIndex + ` ON ` + s.events + ` (job_id, key)`,
		} {
			if _, err := tx.Exec(ctx, stmt); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("pgjobs: migrate %s: %w", s.name, err)
	}
	return nil
}

// Record implements [jobs.Store.Record] in one statement.
func (s *Store) Record(ctx context.Context, id string, ev jobs.Event) error {
	return s.record(ctx, s.pool, id, ev)
}

// RecordTx is Record inside the caller's transaction tx: the step is
// recorded if and only if tx commits.
func (s *Store) RecordTx(ctx context.Context, tx pgx.Tx, id string, ev jobs.Event) error {
	if tx == nil {
		return errors.New("pgjobs: RecordTx needs a transaction")
	}
	return s.record(ctx, tx, id, ev)
}

// execer is a pool or a transaction.
type execer interface {
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
}

func (s *Store) record(ctx context.Context, db execer, id string, ev jobs.Event) error {
	ev, err := jobs.Check(id, ev)
	if err != nil {
		return err
	}
	if s.closed.Load() {
		return jobs.ErrClosed
	}
	var key *string
	if ev.Key != "" {
		key = &ev.Key
	}
	if _, err := db.Exec(ctx, s.recordSQL, id, key, string(ev.State), ev.Reason, ev.At); err != nil {
		return fmt.Errorf("pgjobs: record %q: %w", id, err)
	}
	return nil
}

// Get implements [jobs.Store.Get], reading the job and its history in one
// repeatable-read transaction.
func (s *Store) Get(ctx context.Context, id string) (jobs.Job, error) {
	if s.closed.Load() {
		return jobs.Job{}, jobs.ErrClosed
	}
	j := jobs.Job{ID: id}
	err := pgx.BeginTxFunc(ctx, s.pool, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly}, func(tx pgx.Tx) error {
		var state string
		if err := tx.QueryRow(ctx, s.jobSQL, id).Scan(&state, &j.Reason, &j.CreatedAt, &j.UpdatedAt); err != nil {
			return err
		}
		j.State = jobs.State(state)
		rows, err := tx.Query(ctx, s.evSQL, id)
		if err != nil {
			return err
		}
		j.History, err = pgx.CollectRows(rows, func(r pgx.CollectableRow) (jobs.Event, error) {
			var (
				ev    jobs.Event
				state string
			)
			err := r.Scan(&state, &ev.Reason, &ev.At, &ev.Key)
			ev.State, ev.At = jobs.State(state), ev.At.UTC()
			return ev, err
		})
		return err
	})
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		return jobs.Job{}, fmt.Errorf("%w: %q", jobs.ErrNotFound, id)
	case err != nil:
		return jobs.Job{}, fmt.Errorf("pgjobs: get %q: %w", id, err)
	}
	j.CreatedAt, j.UpdatedAt = j.CreatedAt.UTC(), j.UpdatedAt.UTC()
	return j, nil
}

// Ping checks that the database is reachable and the tables exist.
func (s *Store) Ping(ctx context.Context) error {
	if s.closed.Load() {
		return jobs.ErrClosed
	}
	if _, err := s.pool.Exec(ctx, `SELECT FROM `+s.jobs+` LIMIT 0`); err != nil {
		return fmt.Errorf("pgjobs: ping: %w", err)
	}
	return nil
}

// Close makes later calls return jobs.ErrClosed; the pool stays open. Safe
// to call twice.
func (s *Store) Close() error {
	s.closed.Store(true)
	return nil
}

var _ jobs.Store = (*Store)(nil)
