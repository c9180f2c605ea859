// Package indexer is the index service's logic: an Indexer interface with
// two implementations, Bleve (embedded, on disk; the default) and
// Elasticsearch (the official go-elasticsearch client, bulk indexing through
// the _bulk API), a Service that consumes records.IndexJob in group-commit
// batches, and the GET /v1/search handler.
//
// Indexing is idempotent by DocID: a document indexed twice (a redelivered
// job) replaces itself, so at-least-once delivery is harmless.
package indexer
