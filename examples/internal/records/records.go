// Package records holds the messages the example services exchange. Each
// service that copies these types keeps the schema names and versions: they
// are the wire contract (hub-schema, hub-schema-version).
package records

import (
	"time"

	"github.com/harvesthub/hub"
)

// Topics of the pipeline.
const (
	TopicIngested = "records.ingested" // ingest -> dispatch
	TopicIndexJob = "records.index"    // dispatch -> index
)

// RecordIngested is published by ingest for every accepted record.
type RecordIngested struct {
	// ID is the record's ID in its source system.
	ID string `json:"id"`
	// Source names the system the record was harvested from.
	Source string   `json:"source"`
	Title  string   `json:"title"`
	Body   string   `json:"body,omitempty"`
	Tags   []string `json:"tags,omitempty"`
	// URL of the record at its source, if any.
	URL        string    `json:"url,omitempty"`
	IngestedAt time.Time `json:"ingested_at"`
	// Tenant is the API key's or token subject's tenant.
	Tenant string `json:"tenant,omitempty"`
}

// HubSchema names the message for the hub.
func (RecordIngested) HubSchema() hub.Schema {
	return hub.Schema{Name: "harvest.RecordIngested", Version: 1}
}

// IndexJob asks the index service to index one normalised document.
type IndexJob struct {
	// DocID is the document ID in the index, "<tenant>/<source>:<id>"
	// (tenant.DocID): two tenants' records never share one.
	DocID  string   `json:"doc_id"`
	Source string   `json:"source"`
	Title  string   `json:"title"`
	Body   string   `json:"body,omitempty"`
	Tags   []string `json:"tags,omitempty"`
	URL    string   `json:"url,omitempty"`
	Tenant string   `json:"tenant,omitempty"`
	// Language is the detected language code, such as "en".
	Language   string    `json:"language,omitempty"`
	IngestedAt time.Time `json:"ingested_at"`
}

// HubSchema names the message for the hub.
func (IndexJob) HubSchema() hub.Schema { return hub.Schema{Name: "harvest.IndexJob", Version: 1} }

// TopicIndexed carries DocIndexed: index -> dispatch (job status).
const TopicIndexed = "records.indexed"

// DocIndexed is published by the index service once a document is
// searchable, so dispatch can report the job as indexed.
type DocIndexed struct {
	DocID     string    `json:"doc_id"`
	IndexedAt time.Time `json:"indexed_at"`
	// Index names the backend that indexed it: "bleve" or "elasticsearch".
	Index string `json:"index,omitempty"`
}

// HubSchema names the message for the hub.
func (DocIndexed) HubSchema() hub.Schema { return hub.Schema{Name: "harvest.DocIndexed", Version: 1} }
