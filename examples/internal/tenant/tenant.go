// Package tenant carries the authenticated caller's tenant through a
// request and builds the tenant-scoped document IDs every service shares.
//
// Every document, job and search belongs to exactly one tenant. A document
// ID is "<tenant>/<source>:<id>" with the tenant path-escaped (so it holds
// no '/'): two tenants posting the same source and ID get two documents,
// and one can never overwrite, read or find the other's.
package tenant

import (
	"context"
	"net/url"
	"strings"
)

type ctxKey struct{}

// With returns ctx carrying the authenticated tenant t.
func With(ctx context.Context, t string) context.Context {
	return context.WithValue(ctx, ctxKey{}, t)
}

// From returns the tenant With put in ctx; ok is false when the request was
// not authenticated (or the tenant is empty), and callers must then refuse.
func From(ctx context.Context) (t string, ok bool) {
	t, _ = ctx.Value(ctxKey{}).(string)
	return t, t != ""
}

// Prefix is the document ID prefix of tenant t: its path-escaped name and
// a '/'.
func Prefix(t string) string { return url.PathEscape(t) + "/" }

// DocID returns the document ID of record id from source, for tenant t:
// "<escaped tenant>/<source>:<id>".
func DocID(t, source, id string) string { return Prefix(t) + source + ":" + id }

// Local strips tenant t's prefix from docID: what the tenant itself calls
// the document ("<source>:<id>"). ok is false when docID is not t's.
func Local(t, docID string) (string, bool) {
	return strings.CutPrefix(docID, Prefix(t))
}
