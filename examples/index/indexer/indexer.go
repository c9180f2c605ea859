package indexer

import (
	"context"
	"errors"
	"time"

	"github.com/harvesthub/hub/examples/internal/records"
)

// ErrClosed is returned by an Indexer or Service used after Close.
var ErrClosed = errors.New("indexer: closed")

// Indexer stores documents and searches them. Implementations are safe for
// concurrent use.
type Indexer interface {
	// Name is the backend's name, such as "bleve" or "elasticsearch".
	Name() string
	// Index indexes docs by DocID, replacing any document with the same
	// DocID, and returns one error per doc (nil when indexed). An error
	// wrapping retry.Permanent will never succeed (the document is
	// rejected); others may succeed if retried.
	Index(ctx context.Context, docs []records.IndexJob) []error
	// Search runs q and returns the best hits.
	Search(ctx context.Context, q Query) (Result, error)
	// Count is the number of searchable documents.
	Count(ctx context.Context) (uint64, error)
	// Ping returns nil when the index is usable (readiness).
	Ping(ctx context.Context) error
	// Close releases the index. It is safe to call more than once.
	Close() error
}

// Query is a search request.
type Query struct {
	// Text is the user's query: words, "quoted phrases", +required,
	// -excluded and field:value terms (title, body, tags, source,
	// language). Empty matches every document.
	Text string
	// Size is the number of hits to return. Defaults to 10, at most 100.
	Size int
	// From skips that many hits (paging).
	From int
}

func (q Query) withDefaults() Query {
	switch {
	case q.Size <= 0:
		q.Size = 10
	case q.Size > 100:
		q.Size = 100
	}
	if q.From < 0 {
		q.From = 0
	}
	return q
}

// Result is a page of hits.
type Result struct {
	Query string        `json:"query"`
	Total uint64        `json:"total"`
	Took  time.Duration `json:"-"`
	// TookMS is Took in milliseconds, for JSON.
	TookMS float64 `json:"took_ms"`
	Hits   []Hit   `json:"hits"`
}

// Hit is one matching document.
type Hit struct {
	DocID  string   `json:"doc_id"`
	Title  string   `json:"title"`
	Score  float64  `json:"score"`
	Source string   `json:"source,omitempty"`
	URL    string   `json:"url,omitempty"`
	Tags   []string `json:"tags,omitempty"`
}

// document is what both backends store for an IndexJob.
type document struct {
	DocID      string    `json:"doc_id"`
	Source     string    `json:"source"`
	Title      string    `json:"title"`
	Body       string    `json:"body,omitempty"`
	Tags       []string  `json:"tags,omitempty"`
	URL        string    `json:"url,omitempty"`
	Tenant     string    `json:"tenant,omitempty"`
	Language   string    `json:"language,omitempty"`
	IngestedAt time.Time `json:"ingested_at"`
}

func toDocument(j records.IndexJob) document {
	return document{
		DocID: j.DocID, Source: j.Source, Title: j.Title, Body: j.Body, Tags: j.Tags,
		URL: j.URL, Tenant: j.Tenant, Language: j.Language, IngestedAt: j.IngestedAt,
	}
}

// all returns n copies of err.
func all(n int, err error) []error {
	errs := make([]error, n)
	for i := range errs {
		errs[i] = err
	}
	return errs
}
