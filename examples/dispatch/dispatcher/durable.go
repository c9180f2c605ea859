package dispatcher

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/harvesthub/hub"
	"github.com/harvesthub/hub/examples/internal/records"
	"github.com/harvesthub/hub/examples/internal/tenant"
	"github.com/harvesthub/hub/idempotency/pgstore"
	"github.com/harvesthub/hub/jobs"
	"github.com/harvesthub/hub/jobs/pgjobs"
	"github.com/harvesthub/hub/outbox"
	"github.com/harvesthub/hub/retry"
)

// Durable keeps job status in PostgreSQL, shared by every replica, and
// dispatches exactly once: for each ingested record one transaction
// records the job (ingested, dispatched), stages its IndexJob in the
// outbox and completes the message's idempotency key (the inbox).
type Durable struct {
	Pool *pgxpool.Pool
	// Inbox is a pgstore.Store on the hub's idempotency table.
	Inbox  *pgstore.Store
	Outbox *outbox.Outbox
	Jobs   *pgjobs.Store
}

func (d *Dispatcher) registerDurable(h *hub.Hub) error {
	if err := hub.Handle(h, records.TopicIngested, d.dispatchDurable, hub.Concurrency(d.cfg.Concurrency)); err != nil {
		return fmt.Errorf("dispatcher: %w", err)
	}
	if err := hub.Handle(h, records.TopicIndexed, d.indexedDurable, hub.Concurrency(d.cfg.Concurrency)); err != nil {
		return fmt.Errorf("dispatcher: %w", err)
	}
	return nil
}

func (d *Dispatcher) dispatchDurable(ctx context.Context, m hub.Message[records.RecordIngested]) error {
	job, err := Normalise(m.Payload)
	if err != nil {
		return retry.Permanent(err)
	}
	db := d.cfg.Durable
	return pgx.BeginFunc(ctx, db.Pool, func(tx pgx.Tx) error {
		if err := db.Jobs.RecordTx(ctx, tx, job.DocID, jobs.Event{State: jobs.Ingested, At: job.IngestedAt, Key: "ingested:" + m.ID}); err != nil {
			return err
		}
		if err := db.Jobs.RecordTx(ctx, tx, job.DocID, jobs.Event{State: jobs.Dispatched, At: d.cfg.Now(), Key: "dispatched:" + m.ID}); err != nil {
			return err
		}
		if err := outbox.Publish(ctx, db.Outbox, tx, records.TopicIndexJob, job, outbox.OrderedBy(job.DocID)); err != nil {
			return err
		}
		return db.Inbox.CompleteClaimTx(ctx, tx)
	})
}

func (d *Dispatcher) indexedDurable(ctx context.Context, m hub.Message[records.DocIndexed]) error {
	if m.Payload.DocID == "" {
		return retry.Permanent(fmt.Errorf("%w: DocIndexed without doc_id", ErrInvalidRecord))
	}
	return d.cfg.Durable.Jobs.Record(ctx, m.Payload.DocID, jobs.Event{
		State: jobs.Indexed, At: m.Payload.IndexedAt, Key: "indexed:" + m.ID, Reason: "index " + m.Payload.Index,
	})
}

func (d *Dispatcher) getDurableJob(w http.ResponseWriter, r *http.Request) {
	t, ok := tenant.From(r.Context())
	if !ok {
		// Fail closed: a route registered without a guard serves nothing.
		writeProblem(w, http.StatusUnauthorized, "credentials are required")
		return
	}
	id := r.PathValue("id")
	if len(id) > 600 {
		writeProblem(w, http.StatusNotFound, "no job for so long an ID")
		return
	}
	job, err := d.cfg.Durable.Jobs.Get(r.Context(), tenant.Prefix(t)+id)
	if err != nil {
		status, title, detail := http.StatusInternalServerError, "Internal Server Error", "the job store is unavailable"
		if errors.Is(err, jobs.ErrNotFound) {
			status, title, detail = http.StatusNotFound, "Not Found", fmt.Sprintf("no job for document %q (IDs are <source>:<id>)", id)
		}
		w.Header().Set("Content-Type", "application/problem+json")
		w.WriteHeader(status)
		_ = json.NewEncoder(w).Encode(map[string]any{"type": "about:blank", "title": title, "status": status, "detail": detail})
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(job)
}
