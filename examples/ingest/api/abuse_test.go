package api_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/harvesthub/hub"
	"github.com/harvesthub/hub/examples/ingest/api"
	"github.com/harvesthub/hub/examples/internal/records"
	"github.com/harvesthub/hub/examples/internal/tenant"
)

// countHandled registers a handler on records.TopicIngested that counts
// what it handles, by title.
func countHandled(t *testing.T, e *env) *atomic.Int32 {
	t.Helper()
	var n atomic.Int32
	require.NoError(t, hub.Handle(e.th.Hub, records.TopicIngested, func(ctx context.Context, m hub.Message[records.RecordIngested]) error {
		n.Add(1)
		return nil
	}))
	e.th.Start()
	return &n
}

// A re-harvest posts the same records again: exact repeats are duplicates,
// changed records are handled again (and so re-indexed).
func TestReharvestUpdatesFlowRepeatsDedupe(t *testing.T) {
	e := newEnv(t)
	handled := countHandled(t, e)
	v1 := `{"id":"r1","source":"web","title":"Annual report"}`
	v2 := `{"id":"r1","source":"web","title":"Annual report, corrected"}`
	for _, body := range []string{v1, v1, v2, v2, v1} {
		e.post(t, ctJSON, body, "X-API-Key: "+e.devKey).accepted(t)
	}
	e.th.Settle(t)
	require.Equal(t, int32(2), handled.Load(), "v1 and v2 once each: the repeats are duplicates")
	titles := []string{}
	for _, r := range e.published(t) {
		titles = append(titles, r.Title)
	}
	require.Equal(t, []string{"Annual report", "Annual report", "Annual report, corrected", "Annual report, corrected", "Annual report"}, titles)
}

// An Idempotency-Key reused with another body is a client error (409), not
// a silent 202 that drops the new records.
func TestIdempotencyKeyReusedWithAnotherBody(t *testing.T) {
	e := newEnv(t)
	other, err := e.keys.Generate("other", []string{api.ScopeWrite}, 0, "initech")
	require.NoError(t, err)
	v1 := `{"id":"r1","source":"web","title":"Annual report"}`
	v2 := `{"id":"r1","source":"web","title":"Annual report, corrected"}`

	e.post(t, ctJSON, v1, "X-API-Key: "+e.devKey, "Idempotency-Key: k-1").accepted(t)
	e.post(t, ctJSON, " "+v1+"\n", "X-API-Key: "+e.devKey, "Idempotency-Key: k-1").accepted(t) // a retry, spaced differently
	resp := e.post(t, ctJSON, v2, "X-API-Key: "+e.devKey, "Idempotency-Key: k-1")
	require.Equal(t, http.StatusConflict, resp.status, "body: %s", resp.body)
	p := resp.problem(t)
	require.Equal(t, api.ProblemTypeBase+api.ProblemIdempotencyReuse, p.Type)
	require.Len(t, e.published(t), 2, "the conflicting request published nothing")

	// Keys are the tenant's: another tenant may use k-1 for its own body.
	e.post(t, ctJSON, v2, "X-API-Key: "+other, "Idempotency-Key: k-1").accepted(t)
	// A new key for the new body is the way.
	e.post(t, ctJSON, v2, "X-API-Key: "+e.devKey, "Idempotency-Key: k-2").accepted(t)
	require.Len(t, e.published(t), 4)
}

func TestNDJSONJunkLinesCountAndErrorsAreBounded(t *testing.T) {
	e := newEnv(t, func(c *api.Config) { c.MaxBatch = 10 })

	// Lines that are JSON but not records count against MaxBatch.
	resp := e.post(t, ctNDJSON, strings.Repeat("{}\n", 11), "X-API-Key: "+e.devKey)
	require.Equal(t, http.StatusRequestEntityTooLarge, resp.status, "body: %s", resp.body)
	resp.problem(t)

	// Ten of them are within the batch: 30 errors, 20 listed.
	resp = e.post(t, ctNDJSON, strings.Repeat("{}\n", 10), "X-API-Key: "+e.devKey)
	require.Equal(t, http.StatusUnprocessableEntity, resp.status)
	p := resp.problem(t)
	require.Len(t, p.Errors, api.MaxReportedErrors)
	require.Equal(t, 30, p.ErrorCount)
	require.Empty(t, e.published(t))

	// The default batch: a 1 MB body of junk answers a small error.
	e = newEnv(t)
	resp = e.post(t, ctNDJSON, strings.Repeat("{}\n", (1<<20)/3-1), "X-API-Key: "+e.devKey)
	require.Equal(t, http.StatusRequestEntityTooLarge, resp.status)
	require.Less(t, len(resp.body), 4096, "the error body is bounded")
}

func TestFieldAndWordLimits(t *testing.T) {
	long := func(n int) string { return strings.Repeat("a", n) }
	words := func(n int) string { return strings.TrimSpace(strings.Repeat("abc ", n)) }
	tags := func(n int) string {
		var l []string
		for i := range n {
			l = append(l, fmt.Sprintf("%q", fmt.Sprint("t", i)))
		}
		return "[" + strings.Join(l, ",") + "]"
	}
	tests := []struct {
		name, body, field string
		status            int
	}{
		{"title at the limit", fmt.Sprintf(`{"id":"1","source":"s","title":%q}`, words(api.MaxTitleLength/4)), "", 202},
		{"title too long", fmt.Sprintf(`{"id":"1","source":"s","title":%q}`, words(api.MaxTitleLength/4+1)), "title", 422},
		{"word too long in title", fmt.Sprintf(`{"id":"1","source":"s","title":%q}`, long(api.MaxWordLength+1)), "title", 422},
		{"word at the limit", fmt.Sprintf(`{"id":"1","source":"s","title":%q}`, long(api.MaxWordLength)), "", 202},
		{"body too long", fmt.Sprintf(`{"id":"1","source":"s","title":"t","body":%q}`, words(api.MaxBodyLength/4+1)), "body", 422},
		{"word too long in body", fmt.Sprintf(`{"id":"1","source":"s","title":"t","body":%q}`, "x "+long(api.MaxWordLength+1)), "body", 422},
		{"too many tags", fmt.Sprintf(`{"id":"1","source":"s","title":"t","tags":%s}`, tags(api.MaxTags+1)), "tags", 422},
		{"tag too long", fmt.Sprintf(`{"id":"1","source":"s","title":"t","tags":[%q]}`, long(api.MaxTagLength+1)), "tags", 422},
		{"source too long", fmt.Sprintf(`{"id":"1","source":%q,"title":"t"}`, long(api.MaxSourceLength+1)), "source", 422},
		{"url too long", fmt.Sprintf(`{"id":"1","source":"s","title":"t","url":%q}`, "https://x.example/"+long(api.MaxURLLength)), "url", 422},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t)
			resp := e.post(t, ctJSON, tt.body, "X-API-Key: "+e.devKey)
			require.Equal(t, tt.status, resp.status, "body: %.300s", resp.body)
			if tt.status == 422 {
				p := resp.problem(t)
				require.Equal(t, tt.field, p.Errors[0].Field)
				require.Empty(t, e.published(t))
			}
		})
	}
}

// Require guards the index's and dispatcher's read endpoints: a valid
// credential with a read or write scope, its tenant in the context.
func TestRequire(t *testing.T) {
	keys := api.NewKeyStore()
	writer, err := keys.Generate("writer", []string{api.ScopeWrite}, 0, "acme")
	require.NoError(t, err)
	reader, err := keys.Generate("reader", []string{api.ScopeRead}, 0, "acme")
	require.NoError(t, err)
	loner, err := keys.Generate("loner", []string{api.ScopeRead}, 0, "")
	require.NoError(t, err)
	none, err := keys.Generate("none", []string{"other:scope"}, 0, "acme")
	require.NoError(t, err)
	s, err := api.New(api.Config{Keys: keys}) // no Hub: authentication only
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, s.Close()) })
	mux := http.NewServeMux()
	mux.Handle("/", s.Require(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		tn, ok := tenant.From(r.Context())
		require.True(t, ok)
		_, _ = w.Write([]byte(tn))
	}), api.ScopeRead, api.ScopeWrite))
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)

	tests := []struct {
		name, key string
		status    int
		tenant    string
	}{
		{"writer", writer, 200, "acme"},
		{"reader", reader, 200, "acme"},
		{"no tenant: the key is its own tenant", loner, 200, "key:loner"},
		{"no read scope", none, 403, ""},
		{"bad key", "hh_nope_x", 401, ""},
		{"no key", "", 401, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req, err := http.NewRequest(http.MethodGet, srv.URL+"/v1/search?q=x", nil)
			require.NoError(t, err)
			if tt.key != "" {
				req.Header.Set("X-API-Key", tt.key)
			}
			res, err := srv.Client().Do(req)
			require.NoError(t, err)
			defer res.Body.Close()
			b, err := io.ReadAll(res.Body)
			require.NoError(t, err)
			require.Equal(t, tt.status, res.StatusCode, string(b))
			if tt.status == 200 {
				require.Equal(t, tt.tenant, string(b))
			}
		})
	}

	// A Server without a Hub posts nothing.
	res, err := srv.Client().Post(srv.URL+"/v1/records", ctJSON, strings.NewReader(`{}`))
	require.NoError(t, err)
	_ = res.Body.Close()
	require.Equal(t, http.StatusUnauthorized, res.StatusCode, "the guarded mux answers; the Server itself has no /v1/records")
	rec := httptest.NewRecorder()
	s.Handler().ServeHTTP(rec, httptest.NewRequest(http.MethodPost, "/v1/records", strings.NewReader(`{}`)))
	require.Equal(t, http.StatusNotFound, rec.Code)
}
