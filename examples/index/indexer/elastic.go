package indexer

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync/atomic"
	"time"

	"github.com/elastic/go-elasticsearch/v8"
	"github.com/elastic/go-elasticsearch/v8/esapi"

	"github.com/harvesthub/hub/examples/internal/records"
	"github.com/harvesthub/hub/retry"
)

// ElasticConfig configures an Elastic indexer.
type ElasticConfig struct {
	// Addresses of the Elasticsearch nodes. Required.
	Addresses []string
	// Index is the index name. Defaults to "harvest-records".
	Index string
	// Username and Password for basic auth, or APIKey (base64 "id:key").
	// Default to none.
	Username, Password, APIKey string
	// Refresh is the _bulk refresh parameter: "" (the index's refresh
	// interval decides, about 1s: near real time), "wait_for" or "true".
	// Defaults to "".
	Refresh string
	// ItemRetries is how often the items of a _bulk response that failed
	// with a retryable status (429, 5xx) are sent again, with backoff,
	// before Index reports them failed. Defaults to 3.
	ItemRetries int
	// RetryBackoff is the first wait between those retries, doubled each
	// time. Defaults to 100ms.
	RetryBackoff time.Duration
	// Transport is the HTTP transport. Defaults to http.DefaultTransport.
	Transport http.RoundTripper
	// CreateIndex creates the index with its mapping when missing, at
	// startup. Defaults to false; the index service sets it.
	CreateIndex bool
}

// Elastic is an Indexer on Elasticsearch through the official client,
// indexing in _bulk requests with each document's DocID as its _id.
//
// The v8 client checks that the server is Elasticsearch (the
// X-Elastic-Product header); OpenSearch needs the opensearch-go client behind
// the same Indexer interface.
type Elastic struct {
	cfg    ElasticConfig
	es     *elasticsearch.Client
	closed atomic.Bool
}

var _ Indexer = (*Elastic)(nil)

// NewElastic returns an Elastic indexer. With CreateIndex it creates the
// index (ignoring one that exists), which needs the cluster to answer.
func NewElastic(ctx context.Context, cfg ElasticConfig) (*Elastic, error) {
	if len(cfg.Addresses) == 0 {
		return nil, errors.New("indexer: no Elasticsearch address; set -es-url such as http://127.0.0.1:9200")
	}
	if cfg.Index == "" {
		cfg.Index = "harvest-records"
	}
	if cfg.ItemRetries < 0 || cfg.RetryBackoff < 0 {
		return nil, fmt.Errorf("indexer: ItemRetries %d and RetryBackoff %v must not be negative", cfg.ItemRetries, cfg.RetryBackoff)
	}
	if cfg.ItemRetries == 0 {
		cfg.ItemRetries = 3
	}
	if cfg.RetryBackoff == 0 {
		cfg.RetryBackoff = 100 * time.Millisecond
	}
	switch cfg.Refresh {
	case "", "false", "true", "wait_for":
	default:
		return nil, fmt.Errorf("indexer: Refresh %q; use empty, true or wait_for", cfg.Refresh)
	}
	es, err := elasticsearch.NewClient(elasticsearch.Config{
		Addresses: cfg.Addresses,
		Username:  cfg.Username,
		Password:  cfg.Password,
		APIKey:    cfg.APIKey,
		Transport: cfg.Transport,
	})
	if err != nil {
		return nil, fmt.Errorf("indexer: elasticsearch client: %w", err)
	}
	e := &Elastic{cfg: cfg, es: es}
	if cfg.CreateIndex {
		if err := e.createIndex(ctx); err != nil {
			return nil, err
		}
	}
	return e, nil
}

// esMapping is the index's mapping: text for title and body, keywords for
// the rest, the URL stored but not indexed.
const esMapping = `{
  "mappings": {
    "properties": {
      "doc_id":      {"type": "keyword"},
      "source":      {"type": "keyword"},
      "title":       {"type": "text"},
      "body":        {"type": "text"},
      "tags":        {"type": "keyword"},
      "url":         {"type": "keyword", "index": false},
      "tenant":      {"type": "keyword"},
      "language":    {"type": "keyword"},
      "ingested_at": {"type": "date"}
    }
  }
}`

func (e *Elastic) createIndex(ctx context.Context) error {
	res, err := e.es.Indices.Create(e.cfg.Index,
		e.es.Indices.Create.WithContext(ctx),
		e.es.Indices.Create.WithBody(strings.NewReader(esMapping)))
	if err != nil {
		return fmt.Errorf("indexer: creating index %s: %w", e.cfg.Index, err)
	}
	defer drain(res.Body)
	if !res.IsError() {
		return nil
	}
	ee := decodeError(res)
	if ee.Type == "resource_already_exists_exception" {
		return nil
	}
	return fmt.Errorf("indexer: creating index %s: %w", e.cfg.Index, ee)
}

// Name returns "elasticsearch".
func (e *Elastic) Name() string { return "elasticsearch" }

// bulkItem is one item of a _bulk response.
type bulkItem struct {
	ID     string        `json:"_id"`
	Status int           `json:"status"`
	Result string        `json:"result"`
	Error  *ElasticError `json:"error"`
}

type bulkResponse struct {
	Took   int                   `json:"took"`
	Errors bool                  `json:"errors"`
	Items  []map[string]bulkItem `json:"items"`
}

// ElasticError is an error object of an Elasticsearch response.
type ElasticError struct {
	Status int    `json:"-"`
	Type   string `json:"type"`
	Reason string `json:"reason"`
}

func (e *ElasticError) Error() string {
	if e.Status != 0 {
		return fmt.Sprintf("elasticsearch %d %s: %s", e.Status, e.Type, e.Reason)
	}
	return fmt.Sprintf("elasticsearch %s: %s", e.Type, e.Reason)
}

func retryableStatus(status int) bool {
	return status == http.StatusTooManyRequests || status >= 500
}

// Index sends docs in one _bulk request ("index" actions with _id = DocID,
// so a document indexed again replaces itself). Items that fail with 429 or
// 5xx are sent again, alone, up to ItemRetries times with backoff; items
// rejected with another status (a mapping error) fail permanently, so the
// hub dead-letters their jobs instead of retrying them forever.
func (e *Elastic) Index(ctx context.Context, docs []records.IndexJob) []error {
	if e.closed.Load() {
		return all(len(docs), ErrClosed)
	}
	errs := make([]error, len(docs))
	pending := make([]int, 0, len(docs)) // indexes into docs still to send
	for i, d := range docs {
		if d.DocID == "" {
			errs[i] = retry.Permanent(errors.New("indexer: job without doc_id"))
			continue
		}
		pending = append(pending, i)
	}
	wait := e.cfg.RetryBackoff
	for attempt := 0; len(pending) > 0; attempt++ {
		if attempt > 0 {
			t := time.NewTimer(wait)
			select {
			case <-ctx.Done():
				t.Stop()
				for _, i := range pending {
					errs[i] = fmt.Errorf("indexer: bulk retry of %s: %w (last: %w)", docs[i].DocID, ctx.Err(), errs[i])
				}
				return errs
			case <-t.C:
			}
			wait *= 2
		}
		items, err := e.bulk(ctx, docs, pending)
		if err != nil {
			// The whole request failed: the client already retried
			// connection errors and 502/503/504; let the hub retry.
			for _, i := range pending {
				errs[i] = err
			}
			return errs
		}
		var again []int
		for n, i := range pending {
			it := items[n]
			switch {
			case it.Status >= 200 && it.Status < 300:
				errs[i] = nil
			case retryableStatus(it.Status):
				errs[i] = fmt.Errorf("indexer: %s: %w", docs[i].DocID, itemError(it))
				again = append(again, i)
			default:
				errs[i] = retry.Permanent(fmt.Errorf("indexer: %s rejected: %w", docs[i].DocID, itemError(it)))
			}
		}
		if attempt >= e.cfg.ItemRetries {
			return errs
		}
		pending = again
	}
	return errs
}

func itemError(it bulkItem) error {
	if it.Error != nil {
		ee := *it.Error
		ee.Status = it.Status
		return &ee
	}
	return &ElasticError{Status: it.Status, Type: "unknown", Reason: "bulk item failed without an error object"}
}

// bulk sends docs[pending] and returns their items in order.
func (e *Elastic) bulk(ctx context.Context, docs []records.IndexJob, pending []int) ([]bulkItem, error) {
	var body bytes.Buffer
	enc := json.NewEncoder(&body) // Encode ends each line with \n: NDJSON
	for _, i := range pending {
		action := map[string]map[string]string{"index": {"_index": e.cfg.Index, "_id": docs[i].DocID}}
		if err := enc.Encode(action); err != nil {
			return nil, fmt.Errorf("indexer: encoding bulk action: %w", err)
		}
		if err := enc.Encode(toDocument(docs[i])); err != nil {
			return nil, fmt.Errorf("indexer: encoding %s: %w", docs[i].DocID, err)
		}
	}
	opts := []func(*esapi.BulkRequest){
		e.es.Bulk.WithContext(ctx), e.es.Bulk.WithIndex(e.cfg.Index),
		// The _bulk API documents application/x-ndjson; the client would send JSON.
		e.es.Bulk.WithHeader(map[string]string{"Content-Type": "application/x-ndjson"}),
	}
	if e.cfg.Refresh != "" {
		opts = append(opts, e.es.Bulk.WithRefresh(e.cfg.Refresh))
	}
	res, err := e.es.Bulk(&body, opts...)
	if err != nil {
		return nil, fmt.Errorf("indexer: _bulk: %w", err)
	}
	defer drain(res.Body)
	if res.IsError() {
		return nil, fmt.Errorf("indexer: _bulk: %w", decodeError(res))
	}
	var br bulkResponse
	if err := json.NewDecoder(res.Body).Decode(&br); err != nil {
		return nil, fmt.Errorf("indexer: decoding _bulk response: %w", err)
	}
	if len(br.Items) != len(pending) {
		return nil, fmt.Errorf("indexer: _bulk answered %d items for %d actions", len(br.Items), len(pending))
	}
	items := make([]bulkItem, len(pending))
	for n, m := range br.Items {
		it, ok := m["index"]
		if !ok {
			return nil, fmt.Errorf("indexer: _bulk item %d is not an index result: %v", n, m)
		}
		if !br.Errors && it.Status == 0 {
			it.Status = http.StatusOK
		}
		items[n] = it
	}
	return items, nil
}

// Search runs a simple_query_string query over title (boosted), body and
// tags; empty text matches all.
func (e *Elastic) Search(ctx context.Context, q Query) (Result, error) {
	q, clauses, err := q.prepare()
	if err != nil {
		return Result{}, err
	}
	if e.closed.Load() {
		return Result{}, ErrClosed
	}
	body, err := json.Marshal(map[string]any{
		"query":            elasticQuery(q.Tenant, clauses),
		"size":             q.Size,
		"from":             q.From,
		"track_total_hits": true,
		"sort":             []any{map[string]string{"_score": "desc"}, map[string]string{"doc_id": "asc"}}, // ties in a stable order
		"_source":          []string{"doc_id", "title", "source", "url", "tags"},
	})
	if err != nil {
		return Result{}, fmt.Errorf("indexer: encoding search: %w", err)
	}
	res, err := e.es.Search(e.es.Search.WithContext(ctx), e.es.Search.WithIndex(e.cfg.Index), e.es.Search.WithBody(bytes.NewReader(body)))
	if err != nil {
		return Result{}, fmt.Errorf("indexer: _search: %w", err)
	}
	defer drain(res.Body)
	if res.IsError() {
		ee := decodeError(res)
		if res.StatusCode == http.StatusBadRequest {
			return Result{}, fmt.Errorf("%w: %w", ErrBadQuery, ee)
		}
		return Result{}, fmt.Errorf("indexer: _search: %w", ee)
	}
	var sr struct {
		Took int `json:"took"`
		Hits struct {
			Total struct {
				Value uint64 `json:"value"`
			} `json:"total"`
			Hits []struct {
				ID     string   `json:"_id"`
				Score  *float64 `json:"_score"`
				Source document `json:"_source"`
			} `json:"hits"`
		} `json:"hits"`
	}
	if err := json.NewDecoder(res.Body).Decode(&sr); err != nil {
		return Result{}, fmt.Errorf("indexer: decoding _search response: %w", err)
	}
	out := Result{
		Query: q.Text, Total: sr.Hits.Total.Value,
		Took: time.Duration(sr.Took) * time.Millisecond, TookMS: float64(sr.Took),
		Hits: make([]Hit, 0, len(sr.Hits.Hits)),
	}
	for _, h := range sr.Hits.Hits {
		hit := Hit{DocID: localID(q.Tenant, h.ID), Title: h.Source.Title, Source: h.Source.Source, URL: h.Source.URL, Tags: h.Source.Tags}
		if h.Score != nil {
			hit.Score = *h.Score
		}
		out.Hits = append(out.Hits, hit)
	}
	return out, nil
}

// Count returns the index's document count (_count).
func (e *Elastic) Count(ctx context.Context) (uint64, error) {
	if e.closed.Load() {
		return 0, ErrClosed
	}
	res, err := e.es.Count(e.es.Count.WithContext(ctx), e.es.Count.WithIndex(e.cfg.Index))
	if err != nil {
		return 0, fmt.Errorf("indexer: _count: %w", err)
	}
	defer drain(res.Body)
	if res.IsError() {
		return 0, fmt.Errorf("indexer: _count: %w", decodeError(res))
	}
	var cr struct {
		Count uint64 `json:"count"`
	}
	if err := json.NewDecoder(res.Body).Decode(&cr); err != nil {
		return 0, fmt.Errorf("indexer: decoding _count response: %w", err)
	}
	return cr.Count, nil
}

// Ping checks the index exists and answers.
func (e *Elastic) Ping(ctx context.Context) error {
	_, err := e.Count(ctx)
	return err
}

// Close marks the indexer closed; the client holds no resources of its
// own beyond idle connections.
func (e *Elastic) Close() error {
	e.closed.Store(true)
	return nil
}

func decodeError(res *esapi.Response) *ElasticError {
	var body struct {
		Error json.RawMessage `json:"error"`
	}
	raw, _ := io.ReadAll(io.LimitReader(res.Body, 64<<10))
	ee := &ElasticError{Status: res.StatusCode, Type: http.StatusText(res.StatusCode), Reason: strings.TrimSpace(string(raw))}
	if json.Unmarshal(raw, &body) == nil && len(body.Error) > 0 {
		var obj ElasticError
		if json.Unmarshal(body.Error, &obj) == nil && obj.Type != "" {
			ee.Type, ee.Reason = obj.Type, obj.Reason
		}
	}
	return ee
}

func drain(r io.ReadCloser) {
	_, _ = io.Copy(io.Discard, io.LimitReader(r, 1<<20))
	_ = r.Close()
}
