package outbox

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/jackc/pgx/v5"

	"github.com/harvesthub/hub/broker"
)

// heldBackPause is how soon the relay looks again after holding rows back
// behind another relay's rows of the same ordering key.
const heldBackPause = 10 * time.Millisecond

// channelName returns the LISTEN/NOTIFY channel of table: readable when it
// fits PostgreSQL's 63-byte identifiers, hashed when it does not.
func channelName(table string) string {
	c := "hub_outbox_" + table
	if len(c) <= 63 {
		return c
	}
	sum := sha256.Sum256([]byte(table))
	return "hub_outbox_" + hex.EncodeToString(sum[:16])
}

// Run relays committed rows to the hub's broker until ctx ends or Close is
// called, then returns nil. Any number of relays, in any number of
// processes, may run on one table: each batch is a transaction that locks
// its rows (FOR UPDATE SKIP LOCKED), publishes them in sequence order and
// marks them sent. Rows of one ordering key are published only after every
// earlier row of that key was marked sent, so their order holds across
// relays. A relay that dies between publishing and committing leaves its
// rows pending: the next relay publishes them again, with the same message
// IDs, for consumers to deduplicate.
//
// The relay wakes on a notification from each committed [Publish]
// (LISTEN/NOTIFY, on a connection of its own taken from the pool) and
// polls every Config.PollInterval in case notifications were lost. It
// deletes sent rows every Config.CleanupInterval. Errors are logged,
// reported by Health, and retried with a backoff. A second Run of one
// Outbox at once returns [ErrRunning]; Run after Close returns [ErrClosed].
func (o *Outbox) Run(ctx context.Context) error {
	if o.closed.Load() {
		return ErrClosed
	}
	if !o.running.CompareAndSwap(false, true) {
		return ErrRunning
	}
	defer o.running.Store(false)
	o.lastErr.Store(nil)

	ctx, cancel := context.WithCancel(ctx)
	stopClose := context.AfterFunc(o.closedCtx, cancel)
	defer stopClose()
	wake := make(chan struct{}, 1)
	var wg sync.WaitGroup
	wg.Go(func() { o.listen(ctx, wake) })
	defer wg.Wait()
	defer cancel()

	poll := time.NewTimer(0)
	defer poll.Stop()
	nextCleanup := time.Now()
	failures := 0
	for {
		res, err := o.relayBatch(ctx)
		if ctx.Err() != nil {
			return nil
		}
		wait := o.cfg.PollInterval
		switch {
		case err != nil:
			o.lastErr.Store(&err)
			failures++
			wait = min(o.cfg.PollInterval, time.Duration(1<<min(failures, 8))*10*time.Millisecond)
			o.log.LogAttrs(ctx, slog.LevelWarn, "outbox: relaying a batch failed; retrying",
				slog.String("table", o.name), slog.Int("published", res.published), slog.Any("error", err))
		case res.published == o.cfg.BatchSize:
			wait = 0 // more rows may be waiting
		case res.heldBack > 0:
			wait = heldBackPause
		}
		if err == nil {
			failures = 0
			o.lastErr.Store(nil)
		}
		if o.cfg.CleanupInterval > 0 && !time.Now().Before(nextCleanup) {
			nextCleanup = time.Now().Add(o.cfg.CleanupInterval)
			if _, err := o.Cleanup(ctx); err != nil && ctx.Err() == nil {
				o.log.LogAttrs(ctx, slog.LevelWarn, "outbox: deleting sent rows failed; retrying next interval",
					slog.String("table", o.name), slog.Any("error", err))
			}
		}
		if wait == 0 {
			continue
		}
		if o.cfg.CleanupInterval > 0 {
			wait = max(min(wait, time.Until(nextCleanup)), time.Millisecond)
		}
		poll.Reset(wait)
		select {
		case <-ctx.Done():
			return nil
		case <-wake:
		case <-poll.C:
		}
		if !poll.Stop() {
			select {
			case <-poll.C:
			default:
			}
		}
	}
}

type row struct {
	seq       int64
	id, topic string
	okey      string
	payload   []byte
	metadata  []byte
	delayUS   int64
	created   time.Time
}

type batchResult struct {
	selected, published, heldBack int
}

// relayBatch publishes one batch in one transaction.
func (o *Outbox) relayBatch(ctx context.Context) (batchResult, error) {
	var res batchResult
	tx, err := o.pool.Begin(ctx)
	if err != nil {
		return res, fmt.Errorf("outbox: begin: %w", err)
	}
	defer func() {
		// Rollback is a no-op after Commit; it gets its own context so a
		// cancelled ctx still ends the transaction cleanly.
		rctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		_ = tx.Rollback(rctx)
		cancel()
	}()
	rows, err := tx.Query(ctx, o.selectSQL, o.cfg.BatchSize)
	if err != nil {
		return res, fmt.Errorf("outbox: selecting pending rows: %w", err)
	}
	batch, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (row, error) {
		var x row
		err := r.Scan(&x.seq, &x.id, &x.topic, &x.okey, &x.payload, &x.metadata, &x.delayUS, &x.created)
		return x, err
	})
	if err != nil {
		return res, fmt.Errorf("outbox: reading pending rows: %w", err)
	}
	res.selected = len(batch)
	if len(batch) == 0 {
		return res, nil
	}
	batch, err = o.holdBack(ctx, tx, batch)
	res.heldBack = res.selected - len(batch)
	if err != nil {
		return res, err
	}

	sent, perr := o.publish(ctx, batch)
	res.published = sent
	if sent > 0 {
		seqs := make([]int64, sent)
		for i := range sent {
			seqs[i] = batch[i].seq
		}
		rows, err := tx.Query(ctx, o.markSQL, seqs)
		var lags []float64
		if err == nil {
			lags, err = pgx.CollectRows(rows, pgx.RowTo[float64])
		}
		if err != nil {
			return batchResult{selected: res.selected}, errors.Join(perr, fmt.Errorf("outbox: marking %d rows sent: %w", sent, err))
		}
		if err := tx.Commit(ctx); err != nil {
			return batchResult{selected: res.selected}, errors.Join(perr, fmt.Errorf("outbox: committing %d sent rows: %w", sent, err))
		}
		o.tel.relayed(ctx, lags)
	}
	return res, perr
}

// holdBack drops from batch (ordered by seq) the rows of an ordering key
// that have an earlier pending row outside the batch (another relay holds
// it, or it was skipped), so a key's rows are never published out of order.
func (o *Outbox) holdBack(ctx context.Context, tx pgx.Tx, batch []row) ([]row, error) {
	var keys []string
	seen := map[string]bool{}
	seqs := make([]int64, len(batch))
	for i, r := range batch {
		seqs[i] = r.seq
		if r.okey != "" && !seen[r.okey] {
			seen[r.okey] = true
			keys = append(keys, r.okey)
		}
	}
	if len(keys) == 0 {
		return batch, nil
	}
	rows, err := tx.Query(ctx, o.barrierSQL, keys, seqs)
	if err != nil {
		return nil, fmt.Errorf("outbox: reading ordering barriers: %w", err)
	}
	barrier := map[string]int64{}
	var (
		k   string
		seq int64
	)
	if _, err := pgx.ForEachRow(rows, []any{&k, &seq}, func() error {
		barrier[k] = seq
		return nil
	}); err != nil {
		return nil, fmt.Errorf("outbox: reading ordering barriers: %w", err)
	}
	if len(barrier) == 0 {
		return batch, nil
	}
	kept := batch[:0]
	for _, r := range batch {
		if b, ok := barrier[r.okey]; ok && r.okey != "" && r.seq > b {
			continue
		}
		kept = append(kept, r)
	}
	return kept, nil
}

// publish sends batch in order, one broker call per run of rows with the
// same topic and delay, and returns how many rows (a prefix of batch) the
// broker accepted.
func (o *Outbox) publish(ctx context.Context, batch []row) (int, error) {
	b := o.h.Broker()
	sent := 0
	for sent < len(batch) {
		end := sent + 1
		for end < len(batch) && batch[end].topic == batch[sent].topic && batch[end].delayUS == batch[sent].delayUS {
			end++
		}
		msgs := make([]*message.Message, 0, end-sent)
		for _, r := range batch[sent:end] {
			m := message.NewMessage(r.id, r.payload)
			if err := json.Unmarshal(r.metadata, &m.Metadata); err != nil {
				return sent, fmt.Errorf("outbox: row %d: metadata: %w", r.seq, err)
			}
			msgs = append(msgs, m)
		}
		topic, delay := batch[sent].topic, time.Duration(batch[sent].delayUS)*time.Microsecond
		pctx, cancel := context.WithTimeout(ctx, o.cfg.PublishTimeout)
		var err error
		if delay > 0 {
			dl, ok := b.(broker.Delayer)
			if !ok {
				err = fmt.Errorf("broker %s cannot delay messages", b.Name())
			} else {
				err = dl.PublishDelayed(pctx, topic, "", delay, msgs...)
			}
		} else {
			err = broker.PublishContext(pctx, b, topic, msgs...)
		}
		cancel()
		o.tel.sent(ctx, topic, len(msgs), err)
		if err != nil {
			return sent, fmt.Errorf("outbox: publishing %d message(s) to %q: %w", len(msgs), topic, err)
		}
		sent = end
	}
	return sent, nil
}

// listen wakes the relay on every notification, reconnecting with a backoff
// while ctx lasts.
func (o *Outbox) listen(ctx context.Context, wake chan<- struct{}) {
	backoff := 100 * time.Millisecond
	for {
		err := o.listenOnce(ctx, wake)
		if ctx.Err() != nil {
			return
		}
		o.log.LogAttrs(ctx, slog.LevelWarn, "outbox: listening for notifications failed; polling until it is back",
			slog.String("table", o.name), slog.Any("error", err))
		t := time.NewTimer(backoff)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
		backoff = min(2*backoff, 5*time.Second)
	}
}

func (o *Outbox) listenOnce(ctx context.Context, wake chan<- struct{}) error {
	pc, err := o.pool.Acquire(ctx)
	if err != nil {
		return err
	}
	// The connection leaves the pool: it listens until it is closed.
	conn := pc.Hijack()
	defer func() {
		cctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		_ = conn.Close(cctx)
		cancel()
	}()
	if _, err := conn.Exec(ctx, "LISTEN "+pgx.Identifier{o.notify}.Sanitize()); err != nil {
		return err
	}
	signal := func() {
		select {
		case wake <- struct{}{}:
		default:
		}
	}
	signal() // rows committed while nobody listened
	for {
		if _, err := conn.WaitForNotification(ctx); err != nil {
			return err
		}
		signal()
	}
}
