package outbox

import (
	"context"
	"encoding/json"
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
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/metric"

	"github.com/harvesthub/hub"
	"github.com/harvesthub/hub/broker"
)

// Defaults of [Config].
const (
	TableDefault           = "hub_outbox"
	BatchSizeDefault       = 100
	PollIntervalDefault    = time.Second
	PublishTimeoutDefault  = 30 * time.Second
	CleanupIntervalDefault = 10 * time.Second
	CleanupBatchDefault    = 1000
	MaxAgeDefault          = 5 * time.Minute
)

// KeyOrderingKey is the metadata key of a message's ordering key (see
// [OrderedBy]). It travels with the message, so consumers can see it.
const KeyOrderingKey = "hub-ordering-key"

// Sentinel errors.
var (
	// ErrClosed is returned by an Outbox used after Close.
	ErrClosed = errors.New("outbox: closed")
	// ErrRunning is returned by a second concurrent Run of one Outbox.
	ErrRunning = errors.New("outbox: relay already running")
	// ErrStale is wrapped by Health when the oldest pending row is older
	// than Config.MaxAge: the relay is down or cannot keep up.
	ErrStale = errors.New("outbox: pending rows are stale")
)

// maxTableLen keeps "<table>_pending_idx" and the other index names within
// PostgreSQL's 63-byte identifier limit.
const maxTableLen = 48

var tableNameRE = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

// Config configures an [Outbox]. The zero value is ready to use.
type Config struct {
	// Table holds the outbox rows, optionally schema-qualified
	// ("app.outbox"); each part is a plain identifier of at most 48 bytes.
	// Defaults to [TableDefault].
	Table string
	// BatchSize is the most rows one relay transaction publishes. Defaults
	// to [BatchSizeDefault]. Must not be negative.
	BatchSize int
	// PollInterval is how often the relay looks for rows when no
	// notification arrives (notifications are lost while the relay's
	// listening connection is down). Defaults to [PollIntervalDefault].
	PollInterval time.Duration
	// PublishTimeout bounds one batch's broker publish. Defaults to
	// [PublishTimeoutDefault].
	PublishTimeout time.Duration
	// CleanupInterval is how often the relay deletes sent rows older than
	// Retention. Defaults to [CleanupIntervalDefault]; negative turns
	// cleanup off (call [Outbox.Cleanup] yourself).
	CleanupInterval time.Duration
	// CleanupBatch is the most rows one cleanup DELETE removes. Defaults to
	// [CleanupBatchDefault].
	CleanupBatch int
	// Retention is how long sent rows are kept (for operators) before
	// cleanup deletes them. Zero, the default, deletes them at the next
	// cleanup. Must not be negative.
	Retention time.Duration
	// MaxAge makes Health fail with [ErrStale] when the oldest pending row
	// is older. Defaults to [MaxAgeDefault].
	MaxAge time.Duration
	// Logger receives the relay's errors. Defaults to h.Logger().
	Logger *slog.Logger
	// MeterProvider receives the metrics. Defaults to the global one.
	MeterProvider metric.MeterProvider
}

// Outbox writes messages into a PostgreSQL table inside the caller's
// transactions ([Publish]) and relays committed rows to the hub's broker
// ([Outbox.Run]). Its methods are safe for concurrent use; any number of
// processes may run relays on one table.
type Outbox struct {
	pool   *pgxpool.Pool
	h      *hub.Hub
	cfg    Config
	log    *slog.Logger
	table  string // quoted, possibly schema-qualified
	name   string // unquoted, for lock names, channels and logs
	notify string // the LISTEN/NOTIFY channel

	insertSQL, insertOrderedSQL, selectSQL, barrierSQL, markSQL, cleanupSQL, statsSQL string

	tel *telemetry

	running     atomic.Bool
	closed      atomic.Bool
	closedCtx   context.Context // done once Close was called
	closeCancel context.CancelFunc
	closeOnce   sync.Once
	lastErr     atomic.Pointer[error] // the last relay batch error, nil after a success
}

// New returns an Outbox on pool whose messages are encoded by h (codec,
// schemas, encryption) and relayed to h's broker. It does no I/O: run
// [Outbox.Migrate] before first use. The pool and the hub stay the
// caller's.
func New(pool *pgxpool.Pool, h *hub.Hub, cfg Config) (*Outbox, error) {
	if pool == nil {
		return nil, errors.New("outbox: New needs a pool, such as pgxpool.New(ctx, dsn)")
	}
	if h == nil {
		return nil, errors.New("outbox: New needs a hub, to encode messages and reach its broker")
	}
	cfg.Table = cmpOr(cfg.Table, TableDefault)
	switch {
	case cfg.BatchSize < 0:
		return nil, fmt.Errorf("outbox: Config.BatchSize is %d; use a positive size, or 0 for %d", cfg.BatchSize, BatchSizeDefault)
	case cfg.CleanupBatch < 0:
		return nil, fmt.Errorf("outbox: Config.CleanupBatch is %d; use a positive size, or 0 for %d", cfg.CleanupBatch, CleanupBatchDefault)
	case cfg.PollInterval < 0, cfg.PublishTimeout < 0, cfg.MaxAge < 0:
		return nil, errors.New("outbox: Config.PollInterval, PublishTimeout and MaxAge must not be negative; 0 means the default")
	case cfg.Retention < 0:
		return nil, fmt.Errorf("outbox: Config.Retention is %v; use 0 to delete sent rows at the next cleanup", cfg.Retention)
	}
	cfg.BatchSize = cmpOr(cfg.BatchSize, BatchSizeDefault)
	cfg.CleanupBatch = cmpOr(cfg.CleanupBatch, CleanupBatchDefault)
	cfg.PollInterval = cmpOr(cfg.PollInterval, PollIntervalDefault)
	cfg.PublishTimeout = cmpOr(cfg.PublishTimeout, PublishTimeoutDefault)
	cfg.CleanupInterval = cmpOr(cfg.CleanupInterval, CleanupIntervalDefault)
	cfg.MaxAge = cmpOr(cfg.MaxAge, MaxAgeDefault)
	if cfg.Logger == nil {
		cfg.Logger = h.Logger()
	}
	if cfg.MeterProvider == nil {
		cfg.MeterProvider = otel.GetMeterProvider()
	}
	parts := strings.Split(cfg.Table, ".")
	if len(parts) > 2 {
		return nil, fmt.Errorf("outbox: Config.Table %q: use table or schema.table", cfg.Table)
	}
	for _, p := range parts {
		if !tableNameRE.MatchString(p) || len(p) > maxTableLen {
			return nil, fmt.Errorf("outbox: Config.Table %q: each part must be letters, digits and underscores, not start with a digit, and be at most %d bytes", cfg.Table, maxTableLen)
		}
	}
	t := pgx.Identifier(parts).Sanitize()
	o := &Outbox{
		pool:   pool,
		h:      h,
		cfg:    cfg,
		log:    cfg.Logger,
		table:  t,
		name:   cfg.Table,
		notify: channelName(cfg.Table),
	}
	cols := `(id, topic, okey, payload, metadata, delay_us)`
	o.insertSQL = `WITH ins AS (INSERT INTO ` + t + ` ` + cols + ` VALUES ($1, $2, $3, $4, $5, $6) RETURNING 1)
SELECT pg_notify($7, '') FROM ins`
	// The ordering lock serialises the transactions that write one key, from
	// their first row of it to their commit, so the key's sequence numbers
	// are in commit order: a relay never sees a later row before an earlier
	// one commits. The INSERT reads the lock's row, so it runs after it.
	o.insertOrderedSQL = `WITH l AS (SELECT pg_advisory_xact_lock(hashtext('hub outbox ' || $8::text), hashtext($3::text)) AS locked),
ins AS (INSERT INTO ` + t + ` ` + cols + ` SELECT $1, $2, $3, $4, $5, $6 FROM l RETURNING 1)
SELECT pg_notify($7, '') FROM ins`
	o.selectSQL = `SELECT seq, id, topic, okey, payload, metadata, delay_us, created_at FROM ` + t + `
WHERE sent_at IS NULL ORDER BY seq LIMIT $1 FOR UPDATE SKIP LOCKED`
	// The first pending row of each key that is not in the caller's batch:
	// the caller may publish its rows of that key only below it.
	o.barrierSQL = `SELECT okey, min(seq) FROM ` + t + `
WHERE sent_at IS NULL AND okey = ANY($1::text[]) AND NOT (seq = ANY($2::bigint[])) GROUP BY okey`
	o.markSQL = `UPDATE ` + t + ` SET sent_at = clock_timestamp() WHERE seq = ANY($1::bigint[])
RETURNING EXTRACT(EPOCH FROM sent_at - created_at)::float8`
	o.cleanupSQL = `DELETE FROM ` + t + ` WHERE seq IN (
	SELECT seq FROM ` + t + ` WHERE sent_at IS NOT NULL AND sent_at <= now() - $1::interval LIMIT $2 FOR UPDATE SKIP LOCKED)`
	o.statsSQL = `SELECT count(*), COALESCE(EXTRACT(EPOCH FROM clock_timestamp() - min(created_at)), 0)::float8 FROM ` + t + ` WHERE sent_at IS NULL`
	tel, err := newTelemetry(o)
	if err != nil {
		return nil, err
	}
	o.tel = tel
	o.closedCtx, o.closeCancel = context.WithCancel(context.Background())
	return o, nil
}

func cmpOr[T comparable](v, def T) T {
	var zero T
	if v == zero {
		return def
	}
	return v
}

// Migrate creates the table and its indexes unless they exist. It is
// idempotent; concurrent calls (many processes starting at once) are
// serialised by a transaction-scoped advisory lock.
func (o *Outbox) Migrate(ctx context.Context) error {
	if o.closed.Load() {
		return ErrClosed
	}
	last := o.name[strings.LastIndexByte(o.name, '.')+1:]
	idx := func(suffix string) string { return pgx.Identifier{last + suffix}.Sanitize() }
	err := pgx.BeginFunc(ctx, o.pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock(hashtext('hub outbox migrate ' || $1::text))`, o.name); err != nil {
			return err
		}
		for _, stmt := range []string{
			`CREATE TABLE IF NOT EXISTS ` + o.table + ` (
	seq        bigserial PRIMARY KEY,
	id         text NOT NULL,
	topic      text NOT NULL,
	okey       text NOT NULL DEFAULT '',
	payload    bytea NOT NULL,
	metadata   jsonb NOT NULL,
	delay_us   bigint NOT NULL DEFAULT 0,
	created_at timestamptz NOT NULL DEFAULT clock_timestamp(),
	sent_at    timestamptz
)`,
			`CREATE INDEX IF NOT EXISTS ` + idx("_pending_idx") + ` ON ` + o.table + ` (seq) WHERE sent_at IS NULL`,
			`CREATE INDEX IF NOT EXISTS ` + idx("_okey_idx") + ` ON ` + o.table + ` (okey, seq) WHERE sent_at IS NULL AND okey <> ''`,
			`CREATE INDEX IF NOT EXISTS ` + idx("_sent_idx") + ` ON ` + o.table + ` (sent_at) WHERE sent_at IS NOT NULL`,
		} {
			if _, err := tx.Exec(ctx, stmt); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("outbox: migrate %s: %w", o.name, err)
	}
	return nil
}

// OrderedBy gives a message an ordering key: the relay publishes the
// messages of one key in the order their transactions committed, whatever
// their topics and however many relays run. Transactions that stage a
// message of one key are serialised from that Publish to their commit
// (a transaction-scoped advisory lock), so keep them short. Messages
// without a key are published in no particular order relative to others.
// The key travels as metadata [KeyOrderingKey].
func OrderedBy(key string) hub.PublishOption { return hub.WithMetadata(KeyOrderingKey, key) }

// Publish encodes v as hub.Publish would (codec, schema, encryption,
// metadata, the trace context of ctx) and stages it in tx. The message
// reaches the broker only if tx commits, once a relay ([Outbox.Run])
// publishes it; its ID (hub.WithID, or a new UUID) is fixed now, so a
// relay that crashes after publishing and publishes again sends the same
// ID, which consumers deduplicate (the hub's idempotency key defaults to
// it). WithDelay is honoured by the relay, counting from the relay's
// publish. A message larger than the broker takes (broker.SizeLimiter) is
// refused with an error wrapping broker.ErrMessageTooLarge.
func Publish[T any](ctx context.Context, o *Outbox, tx pgx.Tx, topic string, v T, opts ...hub.PublishOption) error {
	if o.closed.Load() {
		return ErrClosed
	}
	if tx == nil {
		return errors.New("outbox: Publish needs a transaction")
	}
	if topic == "" {
		return fmt.Errorf("%w: empty topic", hub.ErrInvalidConfig)
	}
	enc, err := hub.Encode(ctx, o.h, v, opts...)
	if err != nil {
		return err
	}
	m := enc.Message
	// A message the broker would refuse would block its key (and, at the
	// head of the table, the relay) forever: refuse it now, while the
	// caller can still roll back.
	if sl, ok := o.h.Broker().(broker.SizeLimiter); ok {
		if limit, size := sl.MaxMessageSize(), broker.MessageSize(m); limit > 0 && size > limit {
			return fmt.Errorf("outbox: message to %q: %w: %d bytes, the broker takes at most %d", topic, broker.ErrMessageTooLarge, size, limit)
		}
	}
	md, err := json.Marshal(map[string]string(m.Metadata))
	if err != nil {
		return fmt.Errorf("outbox: encoding metadata: %w", err)
	}
	okey := m.Metadata.Get(KeyOrderingKey)
	args := []any{m.UUID, topic, okey, []byte(m.Payload), md, enc.Delay.Microseconds(), o.notify}
	q := o.insertSQL
	if okey != "" {
		q = o.insertOrderedSQL
		args = append(args, o.name)
	}
	if _, err := tx.Exec(ctx, q, args...); err != nil {
		return fmt.Errorf("outbox: staging a message to %q: %w", topic, err)
	}
	return nil
}

// Cleanup deletes sent rows older than Config.Retention, in batches, and
// returns how many it deleted. The relay calls it every
// Config.CleanupInterval.
func (o *Outbox) Cleanup(ctx context.Context) (int64, error) {
	if o.closed.Load() {
		return 0, ErrClosed
	}
	var total int64
	for {
		tag, err := o.pool.Exec(ctx, o.cleanupSQL, o.cfg.Retention, o.cfg.CleanupBatch)
		if err != nil {
			return total, fmt.Errorf("outbox: cleanup: %w", err)
		}
		total += tag.RowsAffected()
		if tag.RowsAffected() < int64(o.cfg.CleanupBatch) {
			return total, nil
		}
	}
}

// Stats describes the rows waiting for a relay.
type Stats struct {
	// Pending counts committed rows not yet published.
	Pending int64
	// OldestAge is the age of the oldest pending row (zero when none).
	OldestAge time.Duration
}

// Stats counts the pending rows, in one query.
func (o *Outbox) Stats(ctx context.Context) (Stats, error) {
	if o.closed.Load() {
		return Stats{}, ErrClosed
	}
	var (
		s   Stats
		age float64
	)
	if err := o.pool.QueryRow(ctx, o.statsSQL).Scan(&s.Pending, &age); err != nil {
		return Stats{}, fmt.Errorf("outbox: stats: %w", err)
	}
	s.OldestAge = time.Duration(age * float64(time.Second))
	return s, nil
}

// Health returns nil when the table is reachable, the oldest pending row is
// younger than Config.MaxAge (else an error wrapping [ErrStale]) and this
// Outbox's relay, if running, published its last batch.
func (o *Outbox) Health(ctx context.Context) error {
	s, err := o.Stats(ctx)
	if err != nil {
		return err
	}
	if s.OldestAge > o.cfg.MaxAge {
		return fmt.Errorf("%w: %d pending, the oldest %v old (Config.MaxAge %v)", ErrStale, s.Pending, s.OldestAge.Round(time.Millisecond), o.cfg.MaxAge)
	}
	if o.running.Load() {
		if p := o.lastErr.Load(); p != nil {
			return fmt.Errorf("outbox: relay: %w", *p)
		}
	}
	return nil
}

// Close unregisters the metrics; later calls return [ErrClosed] and a
// running relay stops at its next batch. The pool and hub stay open. Close
// is safe to call more than once.
func (o *Outbox) Close() error {
	var err error
	o.closeOnce.Do(func() {
		o.closed.Store(true)
		o.closeCancel()
		err = o.tel.close()
	})
	return err
}
