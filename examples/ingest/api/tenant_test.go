package api_test

import (
	"context"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/harvesthub/hub"
	"github.com/harvesthub/hub/examples/internal/records"
)

// Two tenants that pick the same Idempotency-Key, or the same source and
// id, must not drop each other's records downstream.
func TestKeysAreScopedByTenant(t *testing.T) {
	e := newEnv(t)
	other, err := e.keys.Generate("partner", []string{"records:write"}, 0, "globex")
	require.NoError(t, err)
	var mu sync.Mutex
	var handled []string
	require.NoError(t, hub.Handle(e.th.Hub, records.TopicIngested, func(ctx context.Context, m hub.Message[records.RecordIngested]) error {
		mu.Lock()
		defer mu.Unlock()
		handled = append(handled, m.Payload.Tenant+"/"+m.Payload.ID)
		return nil
	}))
	e.th.Start()
	for _, key := range []string{e.devKey, other, e.devKey} { // acme twice: its repeat is a duplicate
		for _, idem := range []string{"Idempotency-Key: same-key", ""} {
			headers := []string{"X-API-Key: " + key}
			if idem != "" {
				headers = append(headers, idem)
			}
			id := "r-header"
			if idem == "" {
				id = "r-source-id"
			}
			e.post(t, "application/json", `{"id":"`+id+`","source":"web","title":"T"}`, headers...).accepted(t)
		}
	}
	e.th.Settle(t)
	require.ElementsMatch(t, []string{"acme/r-header", "acme/r-source-id", "globex/r-header", "globex/r-source-id"}, handled)
}
