package api_test

import (
	"context"
	"io"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/harvesthub/hub"
	"github.com/harvesthub/hub/examples/ingest/api"
	"github.com/harvesthub/hub/examples/internal/records"
)

const (
	ctJSON   = "application/json"
	ctNDJSON = "application/x-ndjson"
)

func TestPostAccepted(t *testing.T) {
	tests := []struct {
		name        string
		contentType string
		body        string
		headers     []string
		wantIDs     []string
		wantKeys    []string
		check       func(t *testing.T, got []records.RecordIngested)
	}{
		{
			name:        "one JSON record, every field",
			contentType: ctJSON,
			body:        `{"id":"r1","source":"web","title":"Annual report","body":"text","tags":["a","b"],"url":"https://example.org/r1"}`,
			wantIDs:     []string{"r1"},
			wantKeys:    []string{"web:r1"},
			check: func(t *testing.T, got []records.RecordIngested) {
				require.Equal(t, records.RecordIngested{
					ID: "r1", Source: "web", Title: "Annual report", Body: "text", Tags: []string{"a", "b"},
					URL: "https://example.org/r1", IngestedAt: newClock().Now(), Tenant: "acme",
				}, got[0])
			},
		},
		{
			name:        "JSON with charset and Idempotency-Key",
			contentType: ctJSON + "; charset=UTF-8",
			body:        `{"id":"r1","source":"web","title":"T"}`,
			headers:     []string{"Idempotency-Key: 4f1c-req"},
			wantIDs:     []string{"r1"},
			wantKeys:    []string{"4f1c-req"},
		},
		{
			name:        "quoted Idempotency-Key (IETF structured field)",
			contentType: ctJSON,
			body:        `{"id":"r1","source":"web","title":"T"}`,
			headers:     []string{`Idempotency-Key: "abc"`},
			wantIDs:     []string{"r1"},
			wantKeys:    []string{"abc"},
		},
		{
			name:        "NDJSON without Idempotency-Key",
			contentType: ctNDJSON,
			body:        "{\"id\":\"1\",\"source\":\"web\",\"title\":\"A\"}\n{\"id\":\"2\",\"source\":\"feed\",\"title\":\"B\"}\n",
			wantIDs:     []string{"1", "2"},
			wantKeys:    []string{"web:1", "feed:2"},
		},
		{
			name:        "NDJSON with Idempotency-Key, blank lines and CRLF: physical line numbers",
			contentType: ctNDJSON,
			body:        "{\"id\":\"1\",\"source\":\"web\",\"title\":\"A\"}\r\n\r\n{\"id\":\"2\",\"source\":\"web\",\"title\":\"B\"}\r\n{\"id\":\"3\",\"source\":\"web\",\"title\":\"C\"}",
			headers:     []string{"Idempotency-Key: batch-7"},
			wantIDs:     []string{"1", "2", "3"},
			wantKeys:    []string{"batch-7:1", "batch-7:3", "batch-7:4"},
		},
		{
			name:        "id of exactly 256 characters (multi-byte)",
			contentType: ctJSON,
			body:        `{"id":"` + strings.Repeat("é", 256) + `","source":"web","title":"T"}`,
			wantIDs:     []string{strings.Repeat("é", 256)},
			wantKeys:    []string{"web:" + strings.Repeat("é", 256)},
		},
		{
			name:        "null optional fields",
			contentType: ctJSON,
			body:        `{"id":"r1","source":"web","title":"T","tags":null,"body":null}`,
			wantIDs:     []string{"r1"},
			wantKeys:    []string{"web:r1"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t)
			resp := e.post(t, tt.contentType, tt.body, append([]string{"X-API-Key: " + e.devKey}, tt.headers...)...)
			a := resp.accepted(t)
			require.Equal(t, api.Accepted{Accepted: len(tt.wantIDs), IDs: tt.wantIDs}, a)
			got := e.published(t)
			require.Len(t, got, len(tt.wantIDs))
			for i, r := range got {
				require.Equal(t, tt.wantIDs[i], r.ID)
				require.Equal(t, "acme", r.Tenant)
			}
			require.Equal(t, tt.wantKeys, e.hubKeys())
			if tt.check != nil {
				tt.check(t, got)
			}
		})
	}
}

// Every bad request is refused with its status and a problem, and nothing
// is published.
func TestPostRefused(t *testing.T) {
	valid := `{"id":"r1","source":"web","title":"T"}`
	tests := []struct {
		name        string
		method      string
		path        string
		contentType string // "-" sends none
		body        string
		headers     []string
		noKey       bool
		config      func(*api.Config)
		status      int
		wantErrors  []api.FieldError
		wantHeader  [2]string
	}{
		{name: "malformed JSON", contentType: ctJSON, body: `{"id":"r1",`, status: 400, wantErrors: []api.FieldError{{Detail: "unexpected end of JSON"}}},
		{name: "JSON syntax error", contentType: ctJSON, body: `{"id": r1}`, status: 400},
		{name: "empty body", contentType: ctJSON, body: ``, status: 400},
		{name: "two JSON values", contentType: ctJSON, body: valid + valid, status: 400},
		{name: "wrong type: id a number", contentType: ctJSON, body: `{"id":5,"source":"web","title":"T"}`, status: 422,
			wantErrors: []api.FieldError{{Field: "id", Detail: "must be a string, not number"}}},
		{name: "wrong type: tags a string", contentType: ctJSON, body: `{"id":"r1","source":"web","title":"T","tags":"x"}`, status: 422,
			wantErrors: []api.FieldError{{Field: "tags", Detail: "must be a array of strings, not string"}}},
		{name: "an array, not an object", contentType: ctJSON, body: `[` + valid + `]`, status: 422,
			wantErrors: []api.FieldError{{Detail: "must be a JSON object, not array"}}},
		{name: "unknown field", contentType: ctJSON, body: `{"id":"r1","source":"web","title":"T","titel":"x"}`, status: 422,
			wantErrors: []api.FieldError{{Field: "titel", Detail: "is not a record field (allowed: id, source, title, body, tags, url)"}}},
		{name: "missing required fields", contentType: ctJSON, body: `{"id":"r1","title":" "}`, status: 422,
			wantErrors: []api.FieldError{{Field: "source", Detail: "is required"}, {Field: "title", Detail: "is required"}}},
		{name: "id too long", contentType: ctJSON, body: `{"id":"` + strings.Repeat("x", 257) + `","source":"web","title":"T"}`, status: 422,
			wantErrors: []api.FieldError{{Field: "id", Detail: "has 257 characters; at most 256 are allowed"}}},
		{name: "source with a colon", contentType: ctJSON, body: `{"id":"r1","source":"a:b","title":"T"}`, status: 422,
			wantErrors: []api.FieldError{{Field: "source", Detail: "must not contain ':'"}}},
		{name: "relative url", contentType: ctJSON, body: `{"id":"r1","source":"web","title":"T","url":"/r1"}`, status: 422,
			wantErrors: []api.FieldError{{Field: "url", Detail: "must be an absolute http or https URL"}}},
		{name: "ftp url", contentType: ctJSON, body: `{"id":"r1","source":"web","title":"T","url":"ftp://example.org/r1"}`, status: 422,
			wantErrors: []api.FieldError{{Field: "url", Detail: "must be an absolute http or https URL"}}},
		{name: "NDJSON: one bad line among good ones", contentType: ctNDJSON,
			body:   valid + "\n" + `{"id":"r2","source":"web"}` + "\n" + valid + "\n" + `{"id":"r4","source":"web","title":"T","url":"nope"}` + "\n",
			status: 422,
			wantErrors: []api.FieldError{
				{Line: 2, Field: "title", Detail: "is required"},
				{Line: 4, Field: "url", Detail: "must be an absolute http or https URL"},
			}},
		{name: "NDJSON: wrong type and unknown field on separate lines", contentType: ctNDJSON,
			body:   `{"id":1,"source":"web","title":"T"}` + "\n" + `{"id":"r2","source":"web","title":"T","x":1}`,
			status: 422,
			wantErrors: []api.FieldError{
				{Line: 1, Field: "id", Detail: "must be a string, not number"},
				{Line: 2, Field: "x", Detail: "is not a record field (allowed: id, source, title, body, tags, url)"},
			}},
		{name: "NDJSON: a line that is not JSON", contentType: ctNDJSON, body: valid + "\nnot json\n", status: 400,
			wantErrors: []api.FieldError{{Line: 2, Detail: "invalid JSON: invalid character 'o' in literal null (expecting 'u')"}}},
		{name: "NDJSON: two values on a line", contentType: ctNDJSON, body: valid + " " + valid + "\n", status: 400,
			wantErrors: []api.FieldError{{Line: 1, Detail: "unexpected data after the record object"}}},
		{name: "NDJSON: no records", contentType: ctNDJSON, body: "\n\n", status: 422, wantErrors: []api.FieldError{{Detail: "no records"}}},
		{name: "body over MaxBodyBytes", contentType: ctJSON, body: `{"id":"r1","source":"web","title":"` + strings.Repeat("x", 200) + `"}`,
			config: func(c *api.Config) { c.MaxBodyBytes = 100 }, status: 413},
		{name: "NDJSON over MaxBodyBytes", contentType: ctNDJSON, body: strings.Repeat(valid+"\n", 10),
			config: func(c *api.Config) { c.MaxBodyBytes = 100 }, status: 413},
		{name: "NDJSON over MaxBatch", contentType: ctNDJSON, body: strings.Repeat(valid+"\n", 3),
			config: func(c *api.Config) { c.MaxBatch = 2 }, status: 413},
		{name: "text/plain", contentType: "text/plain", body: valid, status: 415, wantHeader: [2]string{"Accept-Post", "application/json, application/x-ndjson"}},
		{name: "no Content-Type", contentType: "-", body: valid, status: 415},
		{name: "Latin-1 charset", contentType: ctJSON + "; charset=iso-8859-1", body: valid, status: 415},
		{name: "GET", method: http.MethodGet, contentType: "-", status: 405, wantHeader: [2]string{"Allow", "POST"}},
		{name: "PUT", method: http.MethodPut, contentType: ctJSON, body: valid, status: 405, wantHeader: [2]string{"Allow", "POST"}},
		{name: "unknown path", path: "/v1/record", contentType: ctJSON, body: valid, status: 404},
		{name: "Idempotency-Key with a space", contentType: ctJSON, body: valid, headers: []string{"Idempotency-Key: a b"}, status: 400},
		{name: "Idempotency-Key too long", contentType: ctJSON, body: valid, headers: []string{"Idempotency-Key: " + strings.Repeat("k", 256)}, status: 400},
		{name: "two Idempotency-Keys", contentType: ctJSON, body: valid, headers: []string{"Idempotency-Key: a", "Idempotency-Key: b"}, status: 400},
		{name: "no credentials", noKey: true, contentType: ctJSON, body: valid, status: 401, wantHeader: [2]string{"WWW-Authenticate", `ApiKey realm="harvest-hub"`}},
		{name: "no credentials, before the media type check", noKey: true, contentType: "text/plain", body: valid, status: 401},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var opts []func(*api.Config)
			if tt.config != nil {
				opts = append(opts, tt.config)
			}
			e := newEnv(t, opts...)
			method := tt.method
			if method == "" {
				method = http.MethodPost
			}
			path := tt.path
			if path == "" {
				path = "/v1/records"
			}
			headers := tt.headers
			if tt.contentType != "-" {
				headers = append(headers, "Content-Type: "+tt.contentType)
			}
			if !tt.noKey {
				headers = append(headers, "X-API-Key: "+e.devKey)
			}
			resp := e.do(t, method, path, strings.NewReader(tt.body), headers...)
			require.Equal(t, tt.status, resp.status, "body: %s", resp.body)
			p := resp.problem(t)
			if tt.wantErrors != nil {
				require.Equal(t, tt.wantErrors, p.Errors)
			}
			if tt.wantHeader[0] != "" {
				require.Equal(t, tt.wantHeader[1], resp.header.Get(tt.wantHeader[0]))
			}
			require.Empty(t, e.published(t))
		})
	}
}

// A body larger than the limit sent without Content-Length (chunked) is
// cut off by http.MaxBytesReader while it is read.
func TestPostChunkedTooLarge(t *testing.T) {
	for _, tt := range []struct{ name, contentType, head, repeat, tail string }{
		{"NDJSON", ctNDJSON, "", `{"id":"r1","source":"web","title":"T"}` + "\n", ""},
		{"JSON", ctJSON, `{"id":"r1","source":"web","title":"`, "xxxxxxxxxx", `"}`},
	} {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t, func(c *api.Config) { c.MaxBodyBytes = 1000 })
			pr, pw := io.Pipe()
			go func() {
				_, _ = io.WriteString(pw, tt.head)
				for range 200 {
					if _, err := io.WriteString(pw, tt.repeat); err != nil {
						return
					}
				}
				_, _ = io.WriteString(pw, tt.tail)
				_ = pw.Close()
			}()
			resp := e.do(t, http.MethodPost, "/v1/records", pr, "Content-Type: "+tt.contentType, "X-API-Key: "+e.devKey)
			_ = pr.Close()
			require.Equal(t, http.StatusRequestEntityTooLarge, resp.status, "body: %s", resp.body)
			resp.problem(t)
			require.Empty(t, e.published(t))
		})
	}
}

// X-Request-ID is echoed (or made) and becomes the records' correlation ID.
func TestRequestID(t *testing.T) {
	for _, tt := range []struct {
		name, header string
		keep         bool
	}{
		{"client's", "req-42", true},
		{"none", "", false},
		{"invalid", "a b", false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t)
			headers := []string{"X-API-Key: " + e.devKey}
			if tt.header != "" {
				headers = append(headers, "X-Request-ID: "+tt.header)
			}
			resp := e.post(t, ctJSON, validRecord, headers...)
			resp.accepted(t)
			rid := resp.header.Get("X-Request-ID")
			if tt.keep {
				require.Equal(t, tt.header, rid)
			} else {
				require.Len(t, rid, 36)
			}
			msgs := e.th.Messages(records.TopicIngested)
			require.Len(t, msgs, 1)
			require.Equal(t, rid, msgs[0].Metadata.Get(hub.KeyCorrelationID))

			resp = e.post(t, "text/plain", validRecord, headers...)
			require.Equal(t, http.StatusUnsupportedMediaType, resp.status)
			require.NotEmpty(t, resp.header.Get("X-Request-ID"))
		})
	}
}

func TestPostPublishFailure(t *testing.T) {
	for _, tt := range []struct {
		name, contentType, body string
		fail                    int
		wantPublished           int
	}{
		{"single record", ctJSON, `{"id":"r1","source":"web","title":"T"}`, 1, 0},
		// The first record goes out, the second fails: a retry with the
		// same key publishes both again and the hub dedupes the first.
		{"second record of a batch", ctNDJSON, "{\"id\":\"r1\",\"source\":\"web\",\"title\":\"T\"}\n{\"id\":\"r2\",\"source\":\"web\",\"title\":\"T\"}", 1, 0},
	} {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t)
			e.th.FailPublishes(records.TopicIngested, tt.fail, nil)
			resp := e.post(t, tt.contentType, tt.body, "X-API-Key: "+e.devKey)
			require.Equal(t, http.StatusServiceUnavailable, resp.status)
			require.Equal(t, "1", resp.header.Get("Retry-After"))
			resp.problem(t)
			require.Len(t, e.published(t), tt.wantPublished)

			// The retry succeeds.
			resp = e.post(t, tt.contentType, tt.body, "X-API-Key: "+e.devKey)
			resp.accepted(t)
		})
	}
}

// A repeated request is accepted again and published with the same key;
// the hub's handler processes the record once.
func TestIdempotentRepeat(t *testing.T) {
	for _, tt := range []struct {
		name, contentType, body string
		headers                 []string
		wantKeys                []string
	}{
		{"Idempotency-Key", ctJSON, `{"id":"r1","source":"web","title":"T"}`, []string{"Idempotency-Key: k-1"}, []string{"k-1", "k-1"}},
		{"source and id", ctJSON, `{"id":"r1","source":"web","title":"T"}`, nil, []string{"web:r1", "web:r1"}},
		{"NDJSON lines", ctNDJSON, "{\"id\":\"r1\",\"source\":\"web\",\"title\":\"T\"}\n{\"id\":\"r2\",\"source\":\"web\",\"title\":\"T\"}", []string{"Idempotency-Key: b"}, []string{"b:1", "b:2", "b:1", "b:2"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t)
			var handled atomic.Int32
			require.NoError(t, hub.Handle(e.th.Hub, records.TopicIngested, func(ctx context.Context, m hub.Message[records.RecordIngested]) error {
				handled.Add(1)
				return nil
			}))
			e.th.Start()
			for range 2 {
				resp := e.post(t, tt.contentType, tt.body, append([]string{"X-API-Key: " + e.devKey}, tt.headers...)...)
				resp.accepted(t)
			}
			e.th.Settle(t)
			require.Equal(t, tt.wantKeys, e.hubKeys())
			require.Equal(t, int32(len(tt.wantKeys)/2), handled.Load(), "handled")
		})
	}
}
