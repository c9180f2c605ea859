package indexer

// The Elasticsearch indexer is tested by contract: fakeES below speaks the
// documented wire format of the endpoints the indexer uses (create index,
// _bulk NDJSON with per-item results, _search, _count, the
// X-Elastic-Product header the v8 client checks), with faults injected per
// document. No Elasticsearch runs in these tests.

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/harvesthub/hub/examples/internal/records"
	"github.com/harvesthub/hub/retry"
)

type fakeES struct {
	t     *testing.T
	index string

	mu      sync.Mutex
	created bool
	docs    map[string]map[string]any
	// itemStatus[docID] are the statuses the next bulk items of the doc
	// get, one per attempt; an empty list means 201/200.
	itemStatus map[string][]int
	// requestStatus are whole-request statuses for the next _bulk calls.
	requestStatus []int
	bulkCalls     int
	bulkActions   []int // actions per _bulk call
	lastSearch    map[string]any
	searches      int
}

func newFakeES(t *testing.T) (*fakeES, *httptest.Server) {
	f := &fakeES{t: t, index: "harvest-test", docs: map[string]map[string]any{}, itemStatus: map[string][]int{}}
	srv := httptest.NewServer(f)
	t.Cleanup(srv.Close)
	return f, srv
}

func (f *fakeES) writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("X-Elastic-Product", "Elasticsearch")
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func (f *fakeES) errorBody(typ, reason string) map[string]any {
	return map[string]any{"error": map[string]any{"type": typ, "reason": reason}, "status": 400}
}

func (f *fakeES) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	defer f.mu.Unlock()
	path := strings.Trim(r.URL.Path, "/")
	switch {
	case r.Method == http.MethodPut && path == f.index:
		if f.created {
			f.writeJSON(w, 400, f.errorBody("resource_already_exists_exception", "index ["+f.index+"] already exists"))
			return
		}
		var body struct {
			Mappings struct {
				Properties map[string]map[string]any `json:"properties"`
			} `json:"mappings"`
		}
		if err := json.NewDecoder(r.Body).Decode(&body); err != nil || body.Mappings.Properties["title"]["type"] != "text" {
			f.writeJSON(w, 400, f.errorBody("mapper_parsing_exception", "bad mapping"))
			return
		}
		f.created = true
		f.writeJSON(w, 200, map[string]any{"acknowledged": true, "shards_acknowledged": true, "index": f.index})
	case r.Method == http.MethodPost && path == f.index+"/_bulk":
		f.bulk(w, r)
	case (r.Method == http.MethodPost || r.Method == http.MethodGet) && path == f.index+"/_search":
		f.search(w, r)
	case (r.Method == http.MethodPost || r.Method == http.MethodGet) && path == f.index+"/_count":
		f.writeJSON(w, 200, map[string]any{"count": len(f.docs), "_shards": map[string]int{"total": 1, "successful": 1}})
	default:
		f.writeJSON(w, 404, f.errorBody("index_not_found_exception", "no such index or route "+r.Method+" "+path))
	}
}

// bulk implements POST /<index>/_bulk: NDJSON action and source lines, the
// body ending with a newline, answered with "errors" and one item per action.
func (f *fakeES) bulk(w http.ResponseWriter, r *http.Request) {
	f.bulkCalls++
	if ct := r.Header.Get("Content-Type"); !strings.Contains(ct, "x-ndjson") {
		f.writeJSON(w, 406, f.errorBody("media_type_header_exception", "Content-Type "+ct))
		return
	}
	if len(f.requestStatus) > 0 {
		s := f.requestStatus[0]
		f.requestStatus = f.requestStatus[1:]
		f.writeJSON(w, s, f.errorBody("es_rejected_execution_exception", "injected"))
		return
	}
	raw, _ := io.ReadAll(r.Body)
	if !bytes.HasSuffix(raw, []byte("\n")) {
		f.writeJSON(w, 400, f.errorBody("illegal_argument_exception", "The bulk request must be terminated by a newline [\\n]"))
		return
	}
	sc := bufio.NewScanner(bytes.NewReader(raw))
	sc.Buffer(nil, 10<<20)
	var items []map[string]any
	anyErr := false
	for sc.Scan() {
		var action map[string]map[string]string
		require.NoError(f.t, json.Unmarshal(sc.Bytes(), &action), "action line")
		meta, ok := action["index"]
		require.True(f.t, ok, "only index actions: %s", sc.Text())
		require.True(f.t, sc.Scan(), "a source line follows each index action")
		var src map[string]any
		require.NoError(f.t, json.Unmarshal(sc.Bytes(), &src), "source line")
		require.Equal(f.t, f.index, meta["_index"])
		id := meta["_id"]
		require.Equal(f.t, id, src["doc_id"], "_id is the DocID")

		status := 201
		if _, exists := f.docs[id]; exists {
			status = 200
		}
		if q := f.itemStatus[id]; len(q) > 0 {
			status, f.itemStatus[id] = q[0], q[1:]
		}
		item := map[string]any{"_index": f.index, "_id": id, "status": status}
		switch {
		case status == 429:
			anyErr = true
			item["error"] = map[string]any{"type": "es_rejected_execution_exception", "reason": "rejected execution of coordinating operation"}
		case status >= 400:
			anyErr = true
			item["error"] = map[string]any{"type": "mapper_parsing_exception", "reason": "failed to parse field [ingested_at] of type [date]"}
		default:
			item["result"] = map[int]string{200: "updated", 201: "created"}[status]
			f.docs[id] = src
		}
		items = append(items, map[string]any{"index": item})
	}
	f.bulkActions = append(f.bulkActions, len(items))
	f.writeJSON(w, 200, map[string]any{"took": 3, "errors": anyErr, "items": items})
}

// search implements a tiny subset of _search: match_all, and
// simple_query_string as "every word appears in title, body or tags".
func (f *fakeES) search(w http.ResponseWriter, r *http.Request) {
	var body map[string]any
	require.NoError(f.t, json.NewDecoder(r.Body).Decode(&body))
	f.lastSearch = body
	f.searches++
	// The indexer sends a bool query: the tenant as a term filter, and
	// multi_match clauses (never query_string).
	b := body["query"].(map[string]any)["bool"].(map[string]any)
	filter := b["filter"].([]any)[0].(map[string]any)["term"].(map[string]any)
	owner := filter["tenant"].(string)
	var words []string
	for _, c := range append(asList(b["must"]), asList(b["should"])...) {
		mm := c.(map[string]any)["multi_match"].(map[string]any)
		words = append(words, strings.ToLower(mm["query"].(string)))
	}
	var hits []map[string]any
	for id, doc := range f.docs {
		if doc["tenant"] != owner {
			continue
		}
		text := strings.ToLower(fmt.Sprint(doc["title"], " ", doc["body"], " ", doc["tags"]))
		match := true
		for _, wd := range words {
			match = match && strings.Contains(text, wd)
		}
		if match {
			hits = append(hits, map[string]any{"_index": f.index, "_id": id, "_score": 1.5, "_source": map[string]any{
				"doc_id": doc["doc_id"], "title": doc["title"], "source": doc["source"], "url": doc["url"], "tags": doc["tags"],
			}})
		}
	}
	total := len(hits)
	if size := int(body["size"].(float64)); len(hits) > size {
		hits = hits[:size]
	}
	f.writeJSON(w, 200, map[string]any{
		"took": 2, "timed_out": false,
		"hits": map[string]any{"total": map[string]any{"value": total, "relation": "eq"}, "max_score": 1.5, "hits": hits},
	})
}

func asList(v any) []any {
	l, _ := v.([]any)
	return l
}

func newElastic(t *testing.T, srv *httptest.Server, f *fakeES) *Elastic {
	t.Helper()
	tr := &http.Transport{}
	t.Cleanup(tr.CloseIdleConnections)
	e, err := NewElastic(context.Background(), ElasticConfig{
		Addresses: []string{srv.URL}, Index: f.index, CreateIndex: true,
		RetryBackoff: time.Millisecond, Transport: tr,
	})
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, e.Close()) })
	return e
}

func TestElasticBulkIndexSearchCount(t *testing.T) {
	f, srv := newFakeES(t)
	e := newElastic(t, srv, f)
	require.True(t, f.created)
	_ = newElastic(t, srv, f) // an existing index is fine

	indexAll(t, e, sampleJobs())
	require.Equal(t, []int{3}, f.bulkActions, "one _bulk request for the batch")
	n, err := e.Count(context.Background())
	require.NoError(t, err)
	require.EqualValues(t, 3, n)
	require.NoError(t, e.Ping(context.Background()))

	res, err := e.Search(context.Background(), Query{Tenant: testTenant, Text: "ransomware"})
	require.NoError(t, err)
	require.EqualValues(t, 1, res.Total)
	require.Equal(t, []Hit{{DocID: "cyber-advisories:ADV-1", Title: "Ransomware targeting email servers", Score: 1.5, Source: "cyber-advisories", URL: "https://advisories.example.org/1", Tags: []string{"ransomware", "critical"}}}, res.Hits)
	require.Equal(t, map[string]any{"bool": map[string]any{
		"filter":               []any{map[string]any{"term": map[string]any{"tenant": testTenant}}},
		"should":               []any{map[string]any{"multi_match": map[string]any{"query": "ransomware", "fields": []any{"title^2", "body", "tags"}}}},
		"minimum_should_match": float64(1),
	}}, f.lastSearch["query"], "the tenant is a filter; the text never reaches query_string")
	require.EqualValues(t, 10, f.lastSearch["size"])
	require.Equal(t, true, f.lastSearch["track_total_hits"])
	require.Equal(t, []any{map[string]any{"_score": "desc"}, map[string]any{"doc_id": "asc"}}, f.lastSearch["sort"], "ties sorted by doc_id")

	res, err = e.Search(context.Background(), Query{Tenant: testTenant, Size: 2})
	require.NoError(t, err)
	require.EqualValues(t, 3, res.Total)
	require.Len(t, res.Hits, 2)
	require.Equal(t, map[string]any{"bool": map[string]any{
		"filter": []any{map[string]any{"term": map[string]any{"tenant": testTenant}}},
	}}, f.lastSearch["query"])

	res, err = e.Search(context.Background(), Query{Tenant: "another", Text: "ransomware"})
	require.NoError(t, err)
	require.Zero(t, res.Total, "another tenant finds nothing")

	searches := f.searches
	_, err = e.Search(context.Background(), Query{Tenant: testTenant, Text: "(("})
	require.ErrorIs(t, err, ErrBadQuery)
	_, err = e.Search(context.Background(), Query{Text: "ransomware"})
	require.ErrorIs(t, err, ErrNoTenant)
	require.Equal(t, searches, f.searches, "refused queries never reach Elasticsearch")
}

func TestElasticIsIdempotentByDocID(t *testing.T) {
	f, srv := newFakeES(t)
	e := newElastic(t, srv, f)
	indexAll(t, e, sampleJobs())
	indexAll(t, e, sampleJobs())
	n, err := e.Count(context.Background())
	require.NoError(t, err)
	require.EqualValues(t, 3, n)
}

func TestElasticPartialFailures(t *testing.T) {
	f, srv := newFakeES(t)
	e := newElastic(t, srv, f)
	jobs := sampleJobs()
	// ADV-1 is rejected twice with 429, then accepted: retried alone.
	f.itemStatus[testTenant+"/cyber-advisories:ADV-1"] = []int{429, 429}
	// ds-1 fails a mapping: permanent, never retried.
	f.itemStatus[testTenant+"/gov-datasets:ds-1"] = []int{400}
	errs := e.Index(context.Background(), jobs)
	require.NoError(t, errs[0])
	require.True(t, retry.IsPermanent(errs[1]), "%v", errs[1])
	require.ErrorContains(t, errs[1], "mapper_parsing_exception")
	require.NoError(t, errs[2])
	require.Equal(t, []int{3, 1, 1}, f.bulkActions, "only the 429 item is sent again")

	// Always 429: after ItemRetries the error is retryable, for the hub.
	f.itemStatus[testTenant+"/careers:job-1"] = []int{429, 429, 429, 429, 429}
	errs = e.Index(context.Background(), jobs[2:])
	require.Error(t, errs[0])
	require.False(t, retry.IsPermanent(errs[0]))
	require.ErrorContains(t, errs[0], "es_rejected_execution_exception")
}

func TestElasticWholeRequestFailure(t *testing.T) {
	f, srv := newFakeES(t)
	e := newElastic(t, srv, f)
	// 503 is retried by the client itself; 500 reaches the indexer as a
	// retryable error for every document.
	f.requestStatus = []int{503}
	indexAll(t, e, sampleJobs()[:1])
	f.requestStatus = []int{500}
	errs := e.Index(context.Background(), sampleJobs())
	for _, err := range errs {
		require.ErrorContains(t, err, "500")
		require.False(t, retry.IsPermanent(err))
	}
}

func TestElasticConfig(t *testing.T) {
	_, err := NewElastic(context.Background(), ElasticConfig{})
	require.ErrorContains(t, err, "-es-url")
	_, err = NewElastic(context.Background(), ElasticConfig{Addresses: []string{"http://x"}, Refresh: "sometimes"})
	require.ErrorContains(t, err, "Refresh")
}

func TestElasticClosed(t *testing.T) {
	f, srv := newFakeES(t)
	e := newElastic(t, srv, f)
	require.NoError(t, e.Close())
	require.ErrorIs(t, e.Index(context.Background(), sampleJobs())[0], ErrClosed)
	_, err := e.Count(context.Background())
	require.ErrorIs(t, err, ErrClosed)
}

var _ = records.IndexJob{}
