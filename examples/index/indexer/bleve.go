package indexer

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"

	"github.com/blevesearch/bleve/v2"
	"github.com/blevesearch/bleve/v2/analysis/analyzer/keyword"
	"github.com/blevesearch/bleve/v2/analysis/analyzer/standard"
	"github.com/blevesearch/bleve/v2/mapping"

	"github.com/harvesthub/hub/examples/internal/records"
	"github.com/harvesthub/hub/retry"
)

// Bleve is an Indexer on an embedded Bleve index on disk.
type Bleve struct {
	mu     sync.RWMutex
	idx    bleve.Index // nil once closed
	closed bool
}

var _ Indexer = (*Bleve)(nil)

// OpenBleve opens the Bleve index in dir, creating it (and dir) when it
// does not exist. One process at a time may hold an index open.
func OpenBleve(dir string) (*Bleve, error) {
	if dir == "" {
		return nil, errors.New("indexer: empty Bleve directory; pass -data with a writable directory")
	}
	path := filepath.Join(dir, "records.bleve")
	idx, err := bleve.Open(path)
	if errors.Is(err, bleve.ErrorIndexPathDoesNotExist) {
		if err := os.MkdirAll(dir, 0o750); err != nil {
			return nil, fmt.Errorf("indexer: creating %s: %w", dir, err)
		}
		idx, err = bleve.New(path, bleveMapping())
	}
	if err != nil {
		return nil, fmt.Errorf("indexer: opening Bleve index %s: %w", path, err)
	}
	return &Bleve{idx: idx}, nil
}

func bleveMapping() mapping.IndexMapping {
	text := bleve.NewTextFieldMapping()
	text.Analyzer = standard.Name
	text.Store = true
	kw := bleve.NewTextFieldMapping()
	kw.Analyzer = keyword.Name
	kw.Store = true
	stored := bleve.NewTextFieldMapping()
	stored.Index = false
	stored.Store = true
	stored.IncludeInAll = false

	doc := bleve.NewDocumentMapping()
	doc.AddFieldMappingsAt("doc_id", kw)
	doc.AddFieldMappingsAt("source", kw)
	doc.AddFieldMappingsAt("title", text)
	doc.AddFieldMappingsAt("body", text)
	doc.AddFieldMappingsAt("tags", kw)
	doc.AddFieldMappingsAt("url", stored)
	doc.AddFieldMappingsAt("tenant", kw)
	doc.AddFieldMappingsAt("language", kw)
	doc.AddFieldMappingsAt("ingested_at", bleve.NewDateTimeFieldMapping())

	m := bleve.NewIndexMapping()
	m.DefaultMapping = doc
	m.DefaultAnalyzer = standard.Name
	return m
}

// Name returns "bleve".
func (b *Bleve) Name() string { return "bleve" }

func (b *Bleve) index() (bleve.Index, func(), error) {
	b.mu.RLock()
	if b.closed {
		b.mu.RUnlock()
		return nil, nil, ErrClosed
	}
	return b.idx, b.mu.RUnlock, nil
}

// Index indexes docs in one Bleve batch: all succeed or all fail.
func (b *Bleve) Index(ctx context.Context, docs []records.IndexJob) []error {
	idx, done, err := b.index()
	if err != nil {
		return all(len(docs), err)
	}
	defer done()
	errs := make([]error, len(docs))
	batch := idx.NewBatch()
	for i, j := range docs {
		if j.DocID == "" {
			errs[i] = retry.Permanent(errors.New("indexer: job without doc_id"))
			continue
		}
		if err := batch.Index(j.DocID, toDocument(j)); err != nil {
			errs[i] = retry.Permanent(fmt.Errorf("indexer: mapping %s: %w", j.DocID, err))
		}
	}
	if err := ctx.Err(); err != nil {
		return all(len(docs), err)
	}
	if err := idx.Batch(batch); err != nil {
		return all(len(docs), fmt.Errorf("indexer: bleve batch of %d: %w", batch.Size(), err))
	}
	return errs
}

// Search runs q (see ParseQuery) on the tenant's documents. It never
// hands user text to Bleve's query-string parser.
func (b *Bleve) Search(ctx context.Context, q Query) (Result, error) {
	q, clauses, err := q.prepare()
	if err != nil {
		return Result{}, err
	}
	idx, done, err := b.index()
	if err != nil {
		return Result{}, err
	}
	defer done()
	req := bleve.NewSearchRequestOptions(bleveQuery(q.Tenant, clauses), q.Size, q.From, false)
	req.Fields = []string{"title", "source", "url", "tags"}
	req.SortBy([]string{"-_score", "_id"}) // ties in a stable order
	res, err := idx.SearchInContext(ctx, req)
	if err != nil {
		if ctxErr := ctx.Err(); ctxErr != nil {
			return Result{}, fmt.Errorf("indexer: search: %w", ctxErr)
		}
		return Result{}, fmt.Errorf("indexer: search: %w", err)
	}
	out := Result{Query: q.Text, Total: res.Total, Took: res.Took, Hits: make([]Hit, 0, len(res.Hits))}
	out.TookMS = float64(res.Took.Microseconds()) / 1000
	for _, h := range res.Hits {
		hit := Hit{DocID: localID(q.Tenant, h.ID), Score: h.Score}
		hit.Title, _ = h.Fields["title"].(string)
		hit.Source, _ = h.Fields["source"].(string)
		hit.URL, _ = h.Fields["url"].(string)
		switch t := h.Fields["tags"].(type) {
		case string:
			hit.Tags = []string{t}
		case []any:
			for _, v := range t {
				if s, ok := v.(string); ok {
					hit.Tags = append(hit.Tags, s)
				}
			}
		}
		out.Hits = append(out.Hits, hit)
	}
	return out, nil
}

// ErrBadQuery wraps a query the language refuses (see ParseQuery) or the
// backend cannot run.
var ErrBadQuery = errors.New("indexer: bad query")

// Count returns the number of documents.
func (b *Bleve) Count(ctx context.Context) (uint64, error) {
	idx, done, err := b.index()
	if err != nil {
		return 0, err
	}
	defer done()
	return idx.DocCount()
}

// Ping checks the index answers.
func (b *Bleve) Ping(ctx context.Context) error {
	_, err := b.Count(ctx)
	return err
}

// Close closes the index. It is safe to call more than once.
func (b *Bleve) Close() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return nil
	}
	b.closed = true
	err := b.idx.Close()
	if err != nil {
		return fmt.Errorf("indexer: closing Bleve: %w", err)
	}
	return nil
}
