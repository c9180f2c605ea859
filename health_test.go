package hub_test

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/harvesthub/hub"
	"github.com/harvesthub/hub/hubtest"
	"github.com/harvesthub/hub/idempotency"
)

// flakyStore is a memory store whose Ping fails on demand.
type flakyStore struct {
	*idempotency.MemoryStore
	down atomic.Bool
}

func (s *flakyStore) Ping(ctx context.Context) error {
	if s.down.Load() {
		return errors.New("connection refused")
	}
	return s.MemoryStore.Ping(ctx)
}

func get(t *testing.T, srv *httptest.Server, path string) (int, hub.HealthStatus) {
	t.Helper()
	resp, err := srv.Client().Get(srv.URL + path)
	require.NoError(t, err)
	defer resp.Body.Close()
	require.Equal(t, "application/json", resp.Header.Get("Content-Type"))
	var st hub.HealthStatus
	require.NoError(t, json.NewDecoder(resp.Body).Decode(&st))
	return resp.StatusCode, st
}

func TestHealthHandler(t *testing.T) {
	ms, err := idempotency.NewMemoryStore(idempotency.MemoryConfig{})
	require.NoError(t, err)
	store := &flakyStore{MemoryStore: ms}
	t.Cleanup(func() { _ = ms.Close() })
	th := hubtest.New(t, hubtest.WithConfig(func(c *hub.Config) {
		c.Idempotency = store
		c.StuckAfter = time.Nanosecond
	}))
	srv := httptest.NewServer(hub.HealthHandler(th.Hub))
	defer srv.Close()

	code, st := get(t, srv, "/healthz")
	require.Equal(t, http.StatusOK, code)
	require.Equal(t, "ok", st.Status)
	code, st = get(t, srv, "/readyz")
	require.Equal(t, http.StatusOK, code)
	require.Equal(t, hub.HealthStatus{Status: "ok"}, st)

	resp, err := srv.Client().Get(srv.URL + "/other")
	require.NoError(t, err)
	require.NoError(t, resp.Body.Close())
	require.Equal(t, http.StatusNotFound, resp.StatusCode)

	// A stuck handler and an unreachable store: both named.
	release, started := make(chan struct{}), make(chan struct{})
	require.NoError(t, hub.Handle(th.Hub, "records", func(ctx context.Context, m hub.Message[Record]) error {
		close(started)
		<-release
		return nil
	}, hub.Name("indexer")))
	th.Start()
	hubtest.Send(t, th, "records", Record{ID: "r1"})
	<-started
	store.down.Store(true)
	code, st = get(t, srv, "/readyz")
	require.Equal(t, http.StatusServiceUnavailable, code)
	require.Equal(t, "unavailable", st.Status)
	require.Contains(t, st.Checks["idempotency"], "connection refused")
	require.Contains(t, st.Checks["handler indexer"], "longer than StuckAfter")
	require.NotContains(t, st.Checks, "broker")
	code, _ = get(t, srv, "/healthz")
	require.Equal(t, http.StatusOK, code, "liveness checks no dependency")

	close(release)
	th.Settle(t)
	store.down.Store(false)
	require.NoError(t, th.Broker.Close())
	code, st = get(t, srv, "/readyz")
	require.Equal(t, http.StatusServiceUnavailable, code)
	require.Len(t, st.Checks, 1)
	require.Contains(t, st.Checks["broker"], "hub: broker memory unreachable")

	require.NoError(t, th.Hub.Close())
	code, st = get(t, srv, "/healthz")
	require.Equal(t, http.StatusServiceUnavailable, code)
	require.Equal(t, "hub: closed", st.Checks["hub"])
	code, st = get(t, srv, "/readyz")
	require.Equal(t, http.StatusServiceUnavailable, code)
	require.Equal(t, "unavailable", st.Status)
}

func TestReadinessDuringShutdown(t *testing.T) {
	th := hubtest.New(t)
	release, started := make(chan struct{}), make(chan struct{})
	require.NoError(t, hub.Handle(th.Hub, "records", func(ctx context.Context, m hub.Message[Record]) error {
		close(started)
		<-release
		return nil
	}))
	th.Start()
	hubtest.Send(t, th, "records", Record{ID: "r1"})
	<-started
	shutdown := make(chan error, 1)
	go func() { shutdown <- th.Hub.Shutdown(context.Background()) }()
	// Readiness turns 503 as soon as shutdown begins: poll the handler
	// itself, no sleep.
	var rec *httptest.ResponseRecorder
	for {
		rec = httptest.NewRecorder()
		hub.ReadinessHandler(th.Hub).ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/readyz", nil))
		if rec.Code != http.StatusOK {
			break
		}
	}
	require.Equal(t, http.StatusServiceUnavailable, rec.Code)
	require.JSONEq(t, `{"status":"stopping","checks":{"hub":"shutting down"}}`, rec.Body.String())
	live := httptest.NewRecorder()
	hub.LivenessHandler(th.Hub).ServeHTTP(live, httptest.NewRequest(http.MethodGet, "/healthz", nil))
	require.Equal(t, http.StatusOK, live.Code, "alive while draining")
	close(release)
	require.NoError(t, <-shutdown)
}
