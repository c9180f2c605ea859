package dispatcher

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"time"

	"github.com/harvesthub/hub"
	"github.com/harvesthub/hub/examples/internal/records"
	"github.com/harvesthub/hub/examples/internal/tenant"
	"github.com/harvesthub/hub/retry"
)

// Config configures a Dispatcher.
type Config struct {
	// Concurrency is how many records are normalised at once. Defaults to 8.
	Concurrency int
	// MaxJobs bounds the job status table. Defaults to JobsDefault (10000).
	MaxJobs int
	// Now is the clock. Defaults to time.Now.
	Now func() time.Time
	// Durable, when set, keeps job status in PostgreSQL for every replica
	// and dispatches through the outbox (see Durable). Defaults to nil:
	// status in this replica's memory.
	Durable *Durable
}

// Dispatcher normalises ingested records into index jobs and tracks them.
type Dispatcher struct {
	cfg  Config
	jobs *Jobs
}

// New returns a Dispatcher; call Register to attach it to a hub.
func New(cfg Config) (*Dispatcher, error) {
	if cfg.Concurrency < 0 || cfg.MaxJobs < 0 {
		return nil, fmt.Errorf("dispatcher: Concurrency %d and MaxJobs %d must not be negative; use 0 for the defaults", cfg.Concurrency, cfg.MaxJobs)
	}
	if cfg.Concurrency == 0 {
		cfg.Concurrency = 8
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &Dispatcher{cfg: cfg, jobs: NewJobs(cfg.MaxJobs)}, nil
}

// Jobs returns the job status table.
func (d *Dispatcher) Jobs() *Jobs { return d.jobs }

// Register pipes records.TopicIngested to records.TopicIndexJob through
// Normalise, and consumes records.TopicIndexed to mark jobs indexed. Both
// handlers use their topic's default consumer group, so records published
// before the dispatcher first starts wait for it.
func (d *Dispatcher) Register(h *hub.Hub) error {
	if d.cfg.Durable != nil {
		return d.registerDurable(h)
	}
	if err := hub.Pipe(h, records.TopicIngested, records.TopicIndexJob, d.dispatch, hub.Concurrency(d.cfg.Concurrency)); err != nil {
		return fmt.Errorf("dispatcher: %w", err)
	}
	if err := hub.Handle(h, records.TopicIndexed, d.indexed, hub.Concurrency(d.cfg.Concurrency)); err != nil {
		return fmt.Errorf("dispatcher: %w", err)
	}
	return nil
}

func (d *Dispatcher) dispatch(ctx context.Context, m hub.Message[records.RecordIngested]) ([]records.IndexJob, error) {
	job, err := Normalise(m.Payload)
	if err != nil {
		return nil, retry.Permanent(err) // a bad record never gets better: dead-letter it
	}
	d.jobs.Dispatched(job.DocID, job.Source, job.Tenant, m.Metadata.Get(hub.KeyCorrelationID), job.IngestedAt, d.cfg.Now())
	return []records.IndexJob{job}, nil
}

func (d *Dispatcher) indexed(ctx context.Context, m hub.Message[records.DocIndexed]) error {
	if m.Payload.DocID == "" {
		return retry.Permanent(fmt.Errorf("%w: DocIndexed without doc_id", ErrInvalidRecord))
	}
	d.jobs.Indexed(m.Payload.DocID, m.Payload.Index, m.Payload.IndexedAt)
	return nil
}

// Guard wraps a handler with authentication: it serves only callers with
// a valid credential and puts their tenant in the request context
// (tenant.With). The ingest API's Server.Require is one.
type Guard func(http.Handler) http.Handler

// Routes adds GET /v1/jobs/{id} to mux, behind guard. id is the record's
// "<source>:<id>"; a caller sees only its own tenant's jobs.
func (d *Dispatcher) Routes(mux *http.ServeMux, guard Guard) {
	if d.cfg.Durable != nil {
		mux.Handle("GET /v1/jobs/{id...}", guard(http.HandlerFunc(d.getDurableJob)))
		return
	}
	mux.Handle("GET /v1/jobs/{id...}", guard(http.HandlerFunc(d.getJob)))
}

func (d *Dispatcher) getJob(w http.ResponseWriter, r *http.Request) {
	t, ok := tenant.From(r.Context())
	if !ok {
		// Fail closed: a route registered without a guard serves nothing.
		writeProblem(w, http.StatusUnauthorized, "credentials are required")
		return
	}
	id := r.PathValue("id")
	job, ok := d.jobs.Get(tenant.Prefix(t) + id)
	if !ok {
		if len(id) > 300 {
			id = id[:300] + "..."
		}
		writeProblem(w, http.StatusNotFound, fmt.Sprintf("no recent job for document %q (IDs are <source>:<id>; the table keeps the latest %d)", id, d.jobs.max))
		return
	}
	job.DocID = id
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(job)
}

func writeProblem(w http.ResponseWriter, status int, detail string) {
	w.Header().Set("Content-Type", "application/problem+json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(map[string]any{
		"type":   "about:blank",
		"title":  http.StatusText(status),
		"status": status,
		"detail": detail,
	})
}
