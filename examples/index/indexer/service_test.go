package indexer

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/harvesthub/hub"
	"github.com/harvesthub/hub/examples/internal/records"
	"github.com/harvesthub/hub/examples/internal/tenant"
	"github.com/harvesthub/hub/hubtest"
	"github.com/harvesthub/hub/retry"
)

func newService(t *testing.T, idx Indexer, cfg ServiceConfig) *Service {
	t.Helper()
	s, err := NewService(idx, cfg)
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, s.Close()) })
	return s
}

func TestServiceIndexesJobsAndNotifies(t *testing.T) {
	b := openBleve(t, t.TempDir())
	th := hubtest.New(t)
	s := newService(t, b, ServiceConfig{NotifyIndexed: true})
	require.NoError(t, s.Register(th.Hub))
	th.Start()
	for _, j := range sampleJobs() {
		hubtest.Send(t, th, records.TopicIndexJob, j)
	}
	hubtest.Send(t, th, records.TopicIndexJob, sampleJobs()[0]) // a duplicate job: harmless
	th.Settle(t)

	n, err := b.Count(context.Background())
	require.NoError(t, err)
	require.EqualValues(t, 3, n)
	indexed := hubtest.Published[records.DocIndexed](t, th, records.TopicIndexed)
	require.Len(t, indexed, 4)
	for _, ev := range indexed {
		require.Equal(t, "bleve", ev.Index)
		require.False(t, ev.IndexedAt.IsZero())
	}
}

// flakyIndexer fails the documents named in fail, once each, or for good.
type flakyIndexer struct {
	Indexer
	mu        sync.Mutex
	fail      map[string]error
	batchSize []int
}

func (f *flakyIndexer) Index(ctx context.Context, docs []records.IndexJob) []error {
	f.mu.Lock()
	f.batchSize = append(f.batchSize, len(docs))
	errs := make([]error, len(docs))
	var ok []records.IndexJob
	var okAt []int
	for i, d := range docs {
		if err, bad := f.fail[d.DocID]; bad {
			errs[i] = err
			if !retry.IsPermanent(err) {
				delete(f.fail, d.DocID)
			}
			continue
		}
		ok, okAt = append(ok, d), append(okAt, i)
	}
	f.mu.Unlock()
	for n, err := range f.Indexer.Index(ctx, ok) {
		errs[okAt[n]] = err
	}
	return errs
}

func TestServiceRetriesAndDeadLetters(t *testing.T) {
	b := openBleve(t, t.TempDir())
	jobs := sampleJobs()
	fi := &flakyIndexer{Indexer: b, fail: map[string]error{
		jobs[0].DocID: errors.New("es_rejected_execution_exception"),           // transient: retried
		jobs[1].DocID: retry.Permanent(errors.New("mapper_parsing_exception")), // permanent: dead-lettered
	}}
	th := hubtest.New(t)
	s := newService(t, fi, ServiceConfig{})
	require.NoError(t, s.Register(th.Hub))
	th.Start()
	for _, j := range jobs {
		hubtest.Send(t, th, records.TopicIndexJob, j)
	}
	th.Settle(t)

	res, err := b.Search(context.Background(), Query{Tenant: testTenant})
	require.NoError(t, err)
	var ids []string
	for _, h := range res.Hits {
		ids = append(ids, h.DocID)
	}
	require.ElementsMatch(t, []string{localID(testTenant, jobs[0].DocID), localID(testTenant, jobs[2].DocID)}, ids)
	dead := th.DeadLetters(records.TopicIndexJob)
	require.Len(t, dead, 1)
	require.Equal(t, hub.ReasonPermanent, dead[0].Reason)
	require.Contains(t, dead[0].Error, "mapper_parsing_exception")
}

// gateIndexer blocks its first Index call until release is closed, so the
// test can queue documents behind it.
type gateIndexer struct {
	Indexer
	entered chan struct{}
	release chan struct{}
	once    sync.Once
	mu      sync.Mutex
	sizes   []int
}

func (g *gateIndexer) Index(ctx context.Context, docs []records.IndexJob) []error {
	g.mu.Lock()
	g.sizes = append(g.sizes, len(docs))
	g.mu.Unlock()
	first := false
	g.once.Do(func() { first = true })
	if first {
		close(g.entered)
		<-g.release
	}
	return g.Indexer.Index(ctx, docs)
}

func TestServiceBatchesWhileIndexing(t *testing.T) {
	b := openBleve(t, t.TempDir())
	g := &gateIndexer{Indexer: b, entered: make(chan struct{}), release: make(chan struct{})}
	s := newService(t, g, ServiceConfig{MaxBatch: 50})
	var queued sync.WaitGroup
	s.queued = queued.Done
	var wg sync.WaitGroup
	errs := make(chan error, 11)
	submit := func(i int) {
		defer wg.Done()
		errs <- s.Index(context.Background(), records.IndexJob{DocID: fmt.Sprintf("s:%d", i), Source: "s", Title: "t"})
	}
	queued.Add(1)
	wg.Add(1)
	go submit(0)
	<-g.entered // the first batch (one doc) is being indexed
	queued.Add(10)
	wg.Add(10)
	for i := 1; i <= 10; i++ {
		go submit(i)
	}
	queued.Wait() // all ten wait in the queue behind the running batch
	close(g.release)
	wg.Wait()
	close(errs)
	for err := range errs {
		require.NoError(t, err)
	}
	require.Equal(t, []int{1, 10}, g.sizes, "documents that arrive during a flush go in the next batch together")
}

func TestServiceClose(t *testing.T) {
	b := openBleve(t, t.TempDir())
	s, err := NewService(b, ServiceConfig{})
	require.NoError(t, err)
	require.NoError(t, s.Close())
	require.NoError(t, s.Close())
	require.ErrorIs(t, s.Index(context.Background(), sampleJobs()[0]), ErrClosed)

	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	s2 := newService(t, b, ServiceConfig{})
	require.ErrorIs(t, s2.Index(ctx, sampleJobs()[0]), context.Canceled)

	_, err = NewService(nil, ServiceConfig{})
	require.Error(t, err)
	_, err = NewService(b, ServiceConfig{MaxBatch: -1})
	require.ErrorContains(t, err, "must not be negative")
}

func TestSearchHandler(t *testing.T) {
	b := openBleve(t, t.TempDir())
	indexAll(t, b, sampleJobs())
	s := newService(t, b, ServiceConfig{})
	mux := http.NewServeMux()
	s.Routes(mux, headerGuard)

	tests := []struct {
		name   string
		path   string
		status int
		ids    []string
	}{
		{"regexp", "/v1/search?q=%2F.%2A%2F", 400, nil},
		{"leading wildcard", "/v1/search?q=%2Aware", 400, nil},
		{"huge from", "/v1/search?q=x&from=9223372036854775802", 400, nil},
		{"from overflowing int", "/v1/search?q=x&from=92233720368547758020", 400, nil},
		{"size too large", "/v1/search?q=x&size=1000", 400, nil},
		{"word", "/v1/search?q=ransomware", 200, []string{"cyber-advisories:ADV-1"}},
		{"field", "/v1/search?q=tags%3Aflooding", 200, []string{"gov-datasets:ds-1"}},
		{"all with size", "/v1/search?size=1", 200, nil},
		{"no match", "/v1/search?q=kubernetes", 200, []string{}},
		{"bad size", "/v1/search?q=x&size=ten", 400, nil},
		{"negative from", "/v1/search?q=x&from=-1", 400, nil},
		{"bad query", "/v1/search?q=title%3A%2F%5B%2F", 400, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rec := httptest.NewRecorder()
			req := httptest.NewRequest(http.MethodGet, tt.path, nil)
			req.Header.Set("X-Test-Tenant", testTenant)
			mux.ServeHTTP(rec, req)
			require.Equal(t, tt.status, rec.Code, rec.Body.String())
			if tt.status != 200 {
				require.Equal(t, "application/problem+json", rec.Header().Get("Content-Type"))
				return
			}
			require.Equal(t, "application/json", rec.Header().Get("Content-Type"))
			var res struct {
				Total uint64 `json:"total"`
				Hits  []struct {
					DocID string  `json:"doc_id"`
					Title string  `json:"title"`
					Score float64 `json:"score"`
				} `json:"hits"`
			}
			require.NoError(t, json.Unmarshal(rec.Body.Bytes(), &res))
			if tt.ids == nil {
				require.Len(t, res.Hits, 1)
				require.EqualValues(t, 3, res.Total)
				return
			}
			ids := []string{}
			for _, h := range res.Hits {
				ids = append(ids, h.DocID)
				require.NotEmpty(t, h.Title)
				require.Positive(t, h.Score)
			}
			require.Equal(t, tt.ids, ids)
		})
	}

	rec := httptest.NewRecorder()
	req := httptest.NewRequest(http.MethodGet, "/v1/stats", nil)
	req.Header.Set("X-Test-Tenant", testTenant)
	mux.ServeHTTP(rec, req)
	require.Equal(t, 200, rec.Code)
	require.JSONEq(t, `{"index":"bleve","documents":3}`, rec.Body.String())

	// Without a tenant (a guard that let the request through
	// unauthenticated), nothing is served.
	for _, path := range []string{"/v1/search?q=ransomware", "/v1/stats"} {
		rec = httptest.NewRecorder()
		mux.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, path, nil))
		require.Equal(t, http.StatusUnauthorized, rec.Code, path)
	}
}

// headerGuard is a test Guard: the tenant is the X-Test-Tenant header. The
// real one (the ingest API's Require) is tested through HTTP in
// examples/harvest.
func headerGuard(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if t := r.Header.Get("X-Test-Tenant"); t != "" {
			r = r.WithContext(tenant.With(r.Context(), t))
		}
		h.ServeHTTP(w, r)
	})
}

func TestSearchHandlerUnavailable(t *testing.T) {
	b, err := OpenBleve(t.TempDir())
	require.NoError(t, err)
	require.NoError(t, b.Close())
	rec := httptest.NewRecorder()
	req := httptest.NewRequest(http.MethodGet, "/v1/search?q=x", nil)
	req.Header.Set("X-Test-Tenant", testTenant)
	SearchHandler(b, headerGuard).ServeHTTP(rec, req)
	require.Equal(t, http.StatusServiceUnavailable, rec.Code)
}
