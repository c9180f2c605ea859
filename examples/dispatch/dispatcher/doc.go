// Package dispatcher is the dispatch service's logic: it consumes
// records.RecordIngested, normalises each record (whitespace, tags, a
// "<tenant>/<source>:<id>" document ID, a naive language guess) and publishes one
// records.IndexJob per record with hub.Pipe, so the index workers compete
// for the jobs. It keeps the recent jobs' status (dispatched, then indexed
// once the index service reports records.DocIndexed) in a bounded in-memory
// table served on GET /v1/jobs/{id}.
package dispatcher
