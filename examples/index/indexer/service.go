package indexer

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/harvesthub/hub"
	"github.com/harvesthub/hub/examples/internal/records"
	"github.com/harvesthub/hub/examples/internal/tenant"
)

// ServiceConfig configures a Service.
type ServiceConfig struct {
	// Concurrency is how many jobs are handled at once; their documents are
	// indexed together in batches. Defaults to 32.
	Concurrency int
	// MaxBatch bounds the documents of one Index call. Defaults to 500.
	MaxBatch int
	// NotifyIndexed publishes records.DocIndexed after each document is
	// indexed (dispatch reports it on GET /v1/jobs/{id}). Defaults to
	// false.
	NotifyIndexed bool
	// Logger defaults to slog.Default().
	Logger *slog.Logger
	// Now is the clock. Defaults to time.Now.
	Now func() time.Time
}

// Service consumes records.IndexJob into an Indexer and serves search.
//
// Jobs are batched by group commit: a handler hands its document to one
// batching goroutine and waits for its result; while a batch is being
// indexed the next documents queue up and go in the following batch. A
// handler returns (and its message is acked) only after its own document is
// indexed, so nothing acked is lost.
type Service struct {
	cfg ServiceConfig
	idx Indexer
	h   *hub.Hub

	submit    chan submission // buffered: MaxBatch
	stop      chan struct{}
	done      chan struct{}
	closeOnce sync.Once
	// mu guards closed: sends hold it shared, Close exclusive, so nothing
	// is sent once the batcher may have stopped.
	mu     sync.RWMutex
	closed bool
	// queued, when set (tests), is called after a submission is queued.
	queued func()
}

type submission struct {
	ctx   context.Context
	job   records.IndexJob
	reply chan error // buffered 1
}

// NewService starts the batching goroutine; Close stops it. The Indexer
// remains the caller's to close, after the Service.
func NewService(idx Indexer, cfg ServiceConfig) (*Service, error) {
	if idx == nil {
		return nil, errors.New("indexer: nil Indexer; pass OpenBleve or NewElastic")
	}
	if cfg.Concurrency < 0 || cfg.MaxBatch < 0 {
		return nil, fmt.Errorf("indexer: Concurrency %d and MaxBatch %d must not be negative; use 0 for the defaults", cfg.Concurrency, cfg.MaxBatch)
	}
	if cfg.Concurrency == 0 {
		cfg.Concurrency = 32
	}
	if cfg.MaxBatch == 0 {
		cfg.MaxBatch = 500
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	s := &Service{
		cfg: cfg, idx: idx,
		submit: make(chan submission, cfg.MaxBatch),
		stop:   make(chan struct{}),
		done:   make(chan struct{}),
	}
	go s.batch()
	return s, nil
}

// Indexer returns the service's index.
func (s *Service) Indexer() Indexer { return s.idx }

// Register consumes records.TopicIndexJob on h (its default consumer group:
// index replicas compete for jobs).
func (s *Service) Register(h *hub.Hub) error {
	s.h = h
	if err := hub.Handle(h, records.TopicIndexJob, s.handle, hub.Concurrency(s.cfg.Concurrency)); err != nil {
		return fmt.Errorf("indexer: %w", err)
	}
	return nil
}

func (s *Service) handle(ctx context.Context, m hub.Message[records.IndexJob]) error {
	if err := s.Index(ctx, m.Payload); err != nil {
		return err
	}
	if s.cfg.NotifyIndexed && s.h != nil {
		ev := records.DocIndexed{DocID: m.Payload.DocID, IndexedAt: s.cfg.Now().UTC(), Index: s.idx.Name()}
		if err := hub.Publish(ctx, s.h, records.TopicIndexed, ev); err != nil {
			// Indexing again on the retry is harmless (idempotent by DocID).
			return fmt.Errorf("indexer: reporting %s indexed: %w", ev.DocID, err)
		}
	}
	return nil
}

// Index indexes one job through the batcher and returns once it is indexed.
func (s *Service) Index(ctx context.Context, job records.IndexJob) error {
	sub := submission{ctx: ctx, job: job, reply: make(chan error, 1)}
	s.mu.RLock()
	if s.closed {
		s.mu.RUnlock()
		return ErrClosed
	}
	select {
	case s.submit <- sub:
		s.mu.RUnlock()
	case <-ctx.Done():
		s.mu.RUnlock()
		return ctx.Err()
	}
	if s.queued != nil {
		s.queued()
	}
	select {
	case err := <-sub.reply:
		return err
	case <-ctx.Done():
		// The batch may still index it; that is harmless.
		return ctx.Err()
	}
}

// batch owns the batching: it takes one submission, then every other one
// already waiting (up to MaxBatch), indexes them together and replies.
func (s *Service) batch() {
	defer close(s.done)
	for {
		var first submission
		select {
		case first = <-s.submit:
		case <-s.stop:
			// Close waited for every send: what is queued is all there is.
			for len(s.submit) > 0 {
				(<-s.submit).reply <- ErrClosed
			}
			return
		}
		subs := []submission{first}
	more:
		for len(subs) < s.cfg.MaxBatch {
			select {
			case sub := <-s.submit:
				subs = append(subs, sub)
			default:
				break more
			}
		}
		s.flush(subs)
	}
}

func (s *Service) flush(subs []submission) {
	live := subs[:0]
	for _, sub := range subs {
		if err := sub.ctx.Err(); err != nil {
			sub.reply <- err
			continue
		}
		live = append(live, sub)
	}
	if len(live) == 0 {
		return
	}
	docs := make([]records.IndexJob, len(live))
	for i, sub := range live {
		docs[i] = sub.job
	}
	// Handlers' contexts differ; the batch runs on its own bounded context
	// so one cancelled handler cannot fail the others.
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	start := time.Now()
	errs := s.idx.Index(ctx, docs)
	cancel()
	failed := 0
	for i, sub := range live {
		if errs[i] != nil {
			failed++
		}
		sub.reply <- errs[i]
	}
	s.cfg.Logger.Debug("indexed batch", "docs", len(docs), "failed", failed, "index", s.idx.Name(), "took", time.Since(start))
}

// Close stops the batching goroutine. Call it after the hub has drained.
// It is safe to call more than once.
func (s *Service) Close() error {
	s.closeOnce.Do(func() {
		s.mu.Lock()
		s.closed = true
		s.mu.Unlock()
		close(s.stop)
	})
	<-s.done
	return nil
}

// Guard wraps a handler with authentication: it serves only callers with
// a valid credential and puts their tenant in the request context
// (tenant.With). The ingest API's Server.Require is one.
type Guard func(http.Handler) http.Handler

// SearchTimeoutDefault bounds one search, whatever the client does.
const SearchTimeoutDefault = 10 * time.Second

// Routes adds GET /v1/search and GET /v1/stats to mux, behind guard.
//
// GET /v1/search?q=<query>&size=<n>&from=<n> answers
// {"query","total","took_ms","hits":[{"doc_id","title","score",...}]} with
// the caller's tenant's documents only; q is in the language ParseQuery
// documents. GET /v1/stats gives the tenant's document count.
func (s *Service) Routes(mux *http.ServeMux, guard Guard) {
	mux.Handle("GET /v1/search", guard(http.HandlerFunc(s.search)))
	mux.Handle("GET /v1/stats", guard(http.HandlerFunc(s.stats)))
}

// SearchHandler returns the GET /v1/search handler alone, behind guard.
func SearchHandler(idx Indexer, guard Guard) http.Handler {
	return guard(http.HandlerFunc((&Service{idx: idx}).search))
}

func (s *Service) search(w http.ResponseWriter, r *http.Request) {
	t, ok := tenant.From(r.Context())
	if !ok {
		// Fail closed: a route registered without a guard serves nothing.
		problem(w, http.StatusUnauthorized, "Unauthorized", "credentials are required")
		return
	}
	v := r.URL.Query()
	q := Query{Tenant: t, Text: v.Get("q")}
	for name, dst := range map[string]*int{"size": &q.Size, "from": &q.From} {
		if raw := v.Get(name); raw != "" {
			n, err := strconv.Atoi(raw)
			if err != nil || n < 0 {
				problem(w, http.StatusBadRequest, "Invalid parameter", fmt.Sprintf("%s=%q; use a non-negative integer", name, truncate(raw, 32)))
				return
			}
			*dst = n
		}
	}
	ctx, cancel := context.WithTimeout(r.Context(), SearchTimeoutDefault)
	defer cancel()
	res, err := s.idx.Search(ctx, q)
	switch {
	case errors.Is(err, ErrBadQuery):
		problem(w, http.StatusBadRequest, "Invalid query", err.Error())
		return
	case errors.Is(err, context.DeadlineExceeded):
		problem(w, http.StatusServiceUnavailable, "Search timed out", fmt.Sprintf("the search took longer than %v; narrow the query", SearchTimeoutDefault))
		return
	case err != nil:
		s.log().ErrorContext(r.Context(), "indexer: search failed", "error", err)
		problem(w, http.StatusServiceUnavailable, "Search unavailable", "the index cannot search now; retry later")
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(res)
}

func (s *Service) log() *slog.Logger {
	if s.cfg.Logger != nil {
		return s.cfg.Logger
	}
	return slog.Default()
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}

func (s *Service) stats(w http.ResponseWriter, r *http.Request) {
	t, ok := tenant.From(r.Context())
	if !ok {
		problem(w, http.StatusUnauthorized, "Unauthorized", "credentials are required")
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), SearchTimeoutDefault)
	defer cancel()
	res, err := s.idx.Search(ctx, Query{Tenant: t, Size: 1})
	if err != nil {
		s.log().ErrorContext(r.Context(), "indexer: counting failed", "error", err)
		problem(w, http.StatusServiceUnavailable, "Index unavailable", "the index cannot count now; retry later")
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(map[string]any{"index": s.idx.Name(), "documents": res.Total})
}

// problem writes an RFC 9457 problem+json response.
func problem(w http.ResponseWriter, status int, title, detail string) {
	w.Header().Set("Content-Type", "application/problem+json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(map[string]any{"type": "about:blank", "title": title, "status": status, "detail": detail})
}
