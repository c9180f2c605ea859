package api_test

import (
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"golang.org/x/time/rate"

	"github.com/harvesthub/hub/examples/ingest/api"
)

// Each credential has its own bucket; a refused request gets 429 with
// Retry-After in whole seconds and publishes nothing. The clock is
// Config.Now: no sleeping.
func TestRateLimit(t *testing.T) {
	tests := []struct {
		name      string
		limit     rate.Limit
		burst     int
		wantRetry string
		refill    time.Duration
	}{
		{"1/s burst 2", 1, 2, "1", time.Second},
		{"one every 2.5s", rate.Every(2500 * time.Millisecond), 1, "3", 2500 * time.Millisecond},
		{"10/s burst 3", 10, 3, "1", 100 * time.Millisecond},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t, func(c *api.Config) { c.RateLimit, c.Burst = tt.limit, tt.burst })
			other, err := e.keys.Generate("other", []string{api.ScopeWrite}, 0, "")
			require.NoError(t, err)
			for range tt.burst {
				e.post(t, ctJSON, validRecord, "X-API-Key: "+e.devKey).accepted(t)
			}
			resp := e.post(t, ctJSON, validRecord, "X-API-Key: "+e.devKey)
			require.Equal(t, http.StatusTooManyRequests, resp.status)
			require.Equal(t, tt.wantRetry, resp.header.Get("Retry-After"))
			resp.problem(t)
			require.Len(t, e.published(t), tt.burst, "a refused request publishes nothing")

			// Another key is not affected.
			e.post(t, ctJSON, validRecord, "X-API-Key: "+other).accepted(t)

			// Refused requests do not consume tokens: one refill later, one
			// request passes, the next is refused again.
			resp = e.post(t, ctJSON, validRecord, "X-API-Key: "+e.devKey)
			require.Equal(t, http.StatusTooManyRequests, resp.status)
			e.clock.Advance(tt.refill - time.Millisecond)
			require.Equal(t, http.StatusTooManyRequests, e.post(t, ctJSON, validRecord, "X-API-Key: "+e.devKey).status)
			e.clock.Advance(time.Millisecond)
			e.post(t, ctJSON, validRecord, "X-API-Key: "+e.devKey).accepted(t)
			require.Equal(t, http.StatusTooManyRequests, e.post(t, ctJSON, validRecord, "X-API-Key: "+e.devKey).status)
		})
	}
}

// Requests refused before the limiter (bad credentials) do not spend the
// key's tokens; requests refused after it (a bad body) do.
func TestRateLimitOrder(t *testing.T) {
	e := newEnv(t, func(c *api.Config) { c.RateLimit, c.Burst = 1, 1 })
	require.Equal(t, http.StatusUnauthorized, e.post(t, ctJSON, validRecord, "X-API-Key: hh_dev_wrongwrongwrongwrongwrongwrongwrong").status)
	require.Equal(t, http.StatusUnprocessableEntity, e.post(t, ctJSON, `{"id":"x"}`, "X-API-Key: "+e.devKey).status)
	require.Equal(t, http.StatusTooManyRequests, e.post(t, ctJSON, validRecord, "X-API-Key: "+e.devKey).status)
}
