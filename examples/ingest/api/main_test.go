package api_test

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/harvesthub/hub"
	"github.com/harvesthub/hub/examples/ingest/api"
	"github.com/harvesthub/hub/examples/internal/records"
	"github.com/harvesthub/hub/hubtest"
)

func TestMain(m *testing.M) {
	// httptest servers' idle client connections are closed by each test's
	// Close; nothing of a third party outlives a test.
	goleak.VerifyTestMain(m)
}

// clock is a settable Config.Now.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *clock { return &clock{t: time.Date(2026, 11, 22, 12, 0, 0, 0, time.UTC)} }

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// env is one API server on a hubtest hub.
type env struct {
	th     *hubtest.Harness
	srv    *httptest.Server
	api    *api.Server
	clock  *clock
	keys   *api.KeyStore
	devKey string // records:write, tenant "acme"
}

// newEnv starts a server with an API key store holding devKey; opts adjust
// the configuration.
func newEnv(t testing.TB, opts ...func(*api.Config)) *env {
	t.Helper()
	e := &env{th: hubtest.New(t), clock: newClock(), keys: api.NewKeyStore()}
	var err error
	e.devKey, err = e.keys.Generate("dev", []string{api.ScopeWrite}, 0, "acme")
	require.NoError(t, err)
	cfg := api.Config{Hub: e.th.Hub, Keys: e.keys, Now: e.clock.Now}
	for _, o := range opts {
		o(&cfg)
	}
	e.api, err = api.New(cfg)
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, e.api.Close()) })
	e.srv = httptest.NewServer(e.api.Handler())
	t.Cleanup(e.srv.Close)
	return e
}

// response is an HTTP answer, read in full.
type response struct {
	status int
	header http.Header
	body   []byte
}

func (r response) problem(t *testing.T) api.Problem {
	t.Helper()
	require.Equal(t, "application/problem+json", r.header.Get("Content-Type"), "body: %s", r.body)
	var p api.Problem
	dec := json.NewDecoder(bytes.NewReader(r.body))
	dec.DisallowUnknownFields()
	require.NoError(t, dec.Decode(&p))
	require.Equal(t, r.status, p.Status)
	require.True(t, strings.HasPrefix(p.Type, api.ProblemTypeBase), p.Type)
	require.Equal(t, http.StatusText(r.status), p.Title)
	require.NotEmpty(t, p.Detail)
	require.True(t, strings.HasPrefix(p.Instance, "urn:uuid:"), p.Instance)
	return p
}

func (r response) accepted(t *testing.T) api.Accepted {
	t.Helper()
	require.Equal(t, http.StatusAccepted, r.status, "body: %s", r.body)
	require.Equal(t, "application/json", r.header.Get("Content-Type"))
	var a api.Accepted
	require.NoError(t, json.Unmarshal(r.body, &a))
	return a
}

// post sends body to path with the headers, given as "Name: value".
func (e *env) do(t *testing.T, method, path string, body io.Reader, headers ...string) response {
	t.Helper()
	req, err := http.NewRequest(method, e.srv.URL+path, body)
	require.NoError(t, err)
	for _, h := range headers {
		k, v, ok := strings.Cut(h, ": ")
		require.True(t, ok, h)
		req.Header.Add(k, v)
	}
	resp, err := e.srv.Client().Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return response{status: resp.StatusCode, header: resp.Header, body: b}
}

func (e *env) post(t *testing.T, contentType, body string, headers ...string) response {
	t.Helper()
	return e.do(t, http.MethodPost, "/v1/records", strings.NewReader(body), append([]string{"Content-Type: " + contentType}, headers...)...)
}

func (e *env) published(t *testing.T) []records.RecordIngested {
	t.Helper()
	return hubtest.Published[records.RecordIngested](t, e.th, records.TopicIngested)
}

// hubKeys returns the published hub keys without their scope, after
// checking that each carries the dev key's tenant scope "acme/".
func (e *env) hubKeys() []string {
	var keys []string
	for _, m := range e.th.Messages(records.TopicIngested) {
		k, ok := strings.CutPrefix(m.Metadata.Get(hub.KeyKey), "acme/")
		if !ok {
			panic("hub key " + m.Metadata.Get(hub.KeyKey) + " is not scoped by the tenant acme")
		}
		// A key without Idempotency-Key ends in "#" and the record's
		// content hash (32 hex digits); the expectations leave it out.
		if base, hash, ok := strings.Cut(k, "#"); ok {
			if len(hash) != 32 || strings.Trim(hash, "0123456789abcdef") != "" {
				panic("hub key " + k + " does not end in a content hash")
			}
			k = base
		}
		keys = append(keys, k)
	}
	return keys
}

func stringsReader(s string) io.Reader { return strings.NewReader(s) }

type recordsIngested = records.RecordIngested

const topicIngested = records.TopicIngested
