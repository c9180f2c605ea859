package dispatcher

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/harvesthub/hub"
	"github.com/harvesthub/hub/examples/internal/records"
	"github.com/harvesthub/hub/examples/internal/tenant"
	"github.com/harvesthub/hub/hubtest"
)

var t0 = time.Date(2026, 11, 22, 6, 0, 0, 0, time.UTC)

func TestNormalise(t *testing.T) {
	tests := []struct {
		name string
		in   records.RecordIngested
		want records.IndexJob
		err  string
	}{
		{
			name: "trims, collapses, lowercases source, dedupes tags",
			in: records.RecordIngested{
				ID: "  ds-1 ", Source: " Gov-Datasets ", Title: "  Flood   risk\tareas\n in Wales ",
				Body: "The  flood risk\n\nzones for the rivers and the sea.", Tags: []string{"Environment", " environment ", "", "Flooding", "open   data", "Open Data"},
				URL: " https://data.example.gov.uk/ds-1 ", Tenant: " acme ", IngestedAt: t0,
			},
			want: records.IndexJob{
				DocID: "acme/gov-datasets:ds-1", Source: "gov-datasets", Title: "Flood risk areas in Wales",
				Body: "The flood risk zones for the rivers and the sea.", Tags: []string{"environment", "flooding", "open data"},
				URL: "https://data.example.gov.uk/ds-1", Tenant: "acme", Language: "en", IngestedAt: t0,
			},
		},
		{
			name: "no tags stay nil, short text is undetermined",
			in:   records.RecordIngested{ID: "1", Source: "careers", Title: "Linguist", Tenant: "key:dev"},
			want: records.IndexJob{DocID: "key:dev/careers:1", Source: "careers", Title: "Linguist", Tenant: "key:dev", Language: Undetermined},
		},
		{
			name: "the tenant is escaped in the DocID",
			in:   records.RecordIngested{ID: "1", Source: "careers", Title: "Linguist", Tenant: "a/b"},
			want: records.IndexJob{DocID: "a%2Fb/careers:1", Source: "careers", Title: "Linguist", Tenant: "a/b", Language: Undetermined},
		},
		{name: "no tenant", in: records.RecordIngested{ID: "1", Source: "s", Title: "t", Tenant: " "}, err: "empty tenant"},
		{name: "blank id", in: records.RecordIngested{ID: " ", Source: "s", Title: "t"}, err: "empty id"},
		{name: "everything missing", in: records.RecordIngested{}, err: "empty id, source, title, tenant"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Normalise(tt.in)
			if tt.err != "" {
				require.ErrorIs(t, err, ErrInvalidRecord)
				require.ErrorContains(t, err, tt.err)
				return
			}
			require.NoError(t, err)
			require.Equal(t, tt.want, got)
		})
	}
}

func TestDetectLanguage(t *testing.T) {
	tests := []struct{ text, want string }{
		{"The agency publishes the data for the public and for researchers", "en"},
		{"Les données sont publiées par le ministère pour les chercheurs et le public", "fr"},
		{"Die Daten werden von der Behörde für die Öffentlichkeit und nicht für den Handel veröffentlicht", "de"},
		{"Los datos son publicados por el ministerio para los investigadores y el público", "es"},
		{"De gegevens worden door het ministerie voor het publiek gepubliceerd en zijn niet", "nl"},
		{"Kubernetes", Undetermined},
		{"", Undetermined},
	}
	for _, tt := range tests {
		t.Run(tt.want+"/"+tt.text, func(t *testing.T) {
			require.Equal(t, tt.want, DetectLanguage(tt.text))
		})
	}
}

func TestJobsBoundEvictsLeastRecentlyUpdated(t *testing.T) {
	j := NewJobs(3)
	for i := range 3 {
		j.Dispatched(fmt.Sprintf("s:%d", i), "s", "", "", t0, t0)
	}
	j.Indexed("s:0", "bleve", t0.Add(time.Second)) // s:0 becomes the most recent
	j.Dispatched("s:3", "s", "", "", t0, t0)       // evicts s:1, the least recent
	require.Equal(t, 3, j.Len())
	_, ok := j.Get("s:1")
	require.False(t, ok)
	job, ok := j.Get("s:0")
	require.True(t, ok)
	require.Equal(t, StatusIndexed, job.Status)
	require.Equal(t, "bleve", job.Index)
}

func TestJobsLifecycle(t *testing.T) {
	j := NewJobs(0)
	j.Dispatched("s:1", "s", "acme", "cid", t0, t0.Add(time.Second))
	job, _ := j.Get("s:1")
	require.Equal(t, Job{DocID: "s:1", Status: StatusDispatched, Source: "s", Tenant: "acme", CorrelationID: "cid", IngestedAt: t0, DispatchedAt: t0.Add(time.Second), Dispatches: 1}, job)

	j.Indexed("s:1", "bleve", t0.Add(2*time.Second))
	job, _ = j.Get("s:1")
	require.Equal(t, StatusIndexed, job.Status)

	// Re-ingested: dispatched again; a stale indexed report of the old
	// version does not mark the new one indexed.
	j.Dispatched("s:1", "s", "acme", "cid2", t0, t0.Add(3*time.Second))
	j.Indexed("s:1", "bleve", t0.Add(2500*time.Millisecond))
	job, _ = j.Get("s:1")
	require.Equal(t, StatusDispatched, job.Status)
	require.Equal(t, 2, job.Dispatches)

	// An indexed report for a job this replica never saw is kept.
	j.Indexed("s:2", "bleve", t0)
	job, ok := j.Get("s:2")
	require.True(t, ok)
	require.Equal(t, StatusIndexed, job.Status)
}

func newDispatcher(t *testing.T) (*Dispatcher, *hubtest.Harness) {
	t.Helper()
	d, err := New(Config{Now: func() time.Time { return t0 }})
	require.NoError(t, err)
	th := hubtest.New(t)
	require.NoError(t, d.Register(th.Hub))
	th.Start()
	return d, th
}

func TestDispatchPublishesIndexJobs(t *testing.T) {
	d, th := newDispatcher(t)
	hubtest.Send(t, th, records.TopicIngested, records.RecordIngested{ID: "ADV-1", Source: "Cyber-Advisories", Title: " Ransomware  targeting email servers", Tags: []string{"Ransomware", "ransomware"}, IngestedAt: t0, Tenant: "acme"},
		hub.WithMetadata(hub.KeyCorrelationID, "req-42"))
	th.Settle(t)

	jobs := hubtest.Published[records.IndexJob](t, th, records.TopicIndexJob)
	require.Len(t, jobs, 1)
	require.Equal(t, "acme/cyber-advisories:ADV-1", jobs[0].DocID)
	require.Equal(t, "Ransomware targeting email servers", jobs[0].Title)
	require.Equal(t, []string{"ransomware"}, jobs[0].Tags)
	msgs := th.Messages(records.TopicIndexJob)
	require.Equal(t, "req-42", msgs[0].Metadata.Get(hub.KeyCorrelationID), "the correlation ID follows the record")

	job, ok := d.Jobs().Get("acme/cyber-advisories:ADV-1")
	require.True(t, ok)
	require.Equal(t, StatusDispatched, job.Status)
	require.Equal(t, "req-42", job.CorrelationID)

	hubtest.Send(t, th, records.TopicIndexed, records.DocIndexed{DocID: "acme/cyber-advisories:ADV-1", IndexedAt: t0.Add(time.Second), Index: "bleve"})
	th.Settle(t)
	job, _ = d.Jobs().Get("acme/cyber-advisories:ADV-1")
	require.Equal(t, StatusIndexed, job.Status)
}

func TestDispatchDeadLettersInvalidRecords(t *testing.T) {
	_, th := newDispatcher(t)
	hubtest.Send(t, th, records.TopicIngested, records.RecordIngested{ID: "1", Source: "s", Tenant: "acme"})
	th.Settle(t)
	require.Empty(t, th.Messages(records.TopicIndexJob))
	dead := th.DeadLetters(records.TopicIngested)
	require.Len(t, dead, 1)
	require.Equal(t, hub.ReasonPermanent, dead[0].Reason)
}

func TestGetJob(t *testing.T) {
	d, err := New(Config{})
	require.NoError(t, err)
	d.Jobs().Dispatched("acme/careers:job-1", "careers", "acme", "", t0, t0)
	d.Jobs().Dispatched("acme/careers:a/b", "careers", "acme", "", t0, t0)
	mux := http.NewServeMux()
	d.Routes(mux, headerGuard)

	tests := []struct {
		tenant string
		path   string
		status int
		ctype  string
		id     string
	}{
		{"acme", "/v1/jobs/careers:job-1", http.StatusOK, "application/json", "careers:job-1"},
		{"acme", "/v1/jobs/careers%3Ajob-1", http.StatusOK, "application/json", "careers:job-1"},
		{"acme", "/v1/jobs/careers:a/b", http.StatusOK, "application/json", "careers:a/b"},
		{"acme", "/v1/jobs/careers:nope", http.StatusNotFound, "application/problem+json", ""},
		{"other", "/v1/jobs/careers:job-1", http.StatusNotFound, "application/problem+json", ""},
		{"", "/v1/jobs/careers:job-1", http.StatusUnauthorized, "application/problem+json", ""},
	}
	for _, tt := range tests {
		t.Run(tt.tenant+tt.path, func(t *testing.T) {
			rec := httptest.NewRecorder()
			req := httptest.NewRequest(http.MethodGet, tt.path, nil)
			req.Header.Set("X-Test-Tenant", tt.tenant)
			mux.ServeHTTP(rec, req)
			require.Equal(t, tt.status, rec.Code)
			require.Equal(t, tt.ctype, rec.Header().Get("Content-Type"))
			if tt.status == http.StatusOK {
				var job Job
				require.NoError(t, json.Unmarshal(rec.Body.Bytes(), &job))
				require.Equal(t, tt.id, job.DocID)
				require.Equal(t, StatusDispatched, job.Status)
			}
		})
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

func TestNewRejectsNegative(t *testing.T) {
	_, err := New(Config{Concurrency: -1})
	require.ErrorContains(t, err, "must not be negative")
}
