package indexer

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/harvesthub/hub/examples/internal/records"
	"github.com/harvesthub/hub/examples/internal/tenant"
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
	// Search runs q within q.Tenant and returns the best hits, with
	// DocIDs relative to the tenant ("<source>:<id>"). A query the
	// language refuses wraps ErrBadQuery; ctx cancels the search.
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
	// Tenant is the tenant whose documents are searched. Required: a
	// search without a tenant is refused (ErrNoTenant), never run on
	// every tenant's documents.
	Tenant string
	// Text is the user's query in the language ParseQuery documents:
	// words, "quoted phrases", prefix*, +required, -excluded and
	// field:word terms (title, body, tags, source, language). Empty
	// matches every document of the tenant.
	Text string
	// Size is the number of hits to return. Defaults to 10, at most
	// MaxSize.
	Size int
	// From skips that many hits (paging); From+Size is at most
	// MaxResultWindow.
	From int
}

// ErrNoTenant is returned by Search for a Query without a Tenant.
var ErrNoTenant = errors.New("indexer: search without a tenant")

// prepare fills q's defaults, checks its paging and tenant, and parses its
// text.
func (q Query) prepare() (Query, []Clause, error) {
	if q.Tenant == "" {
		return q, nil, ErrNoTenant
	}
	if q.Size <= 0 {
		q.Size = 10
	}
	if q.Size > MaxSize || q.From < 0 || q.From > MaxResultWindow-q.Size {
		return q, nil, fmt.Errorf("%w: size %d and from %d; size is at most %d and from+size at most %d", ErrBadQuery, q.Size, q.From, MaxSize, MaxResultWindow)
	}
	clauses, err := ParseQuery(q.Text)
	return q, clauses, err
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

// localID is docID as tenant t names it: without the tenant prefix.
func localID(t, docID string) string {
	if l, ok := tenant.Local(t, docID); ok {
		return l
	}
	return docID
}
