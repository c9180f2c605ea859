package api

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestLoadGrants(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "good.json")
	require.NoError(t, os.WriteFile(good, []byte(`{"harvester-1": {"scopes": ["records:write"], "tenant": "acme"}}`), 0o600))
	g, err := loadGrants(good)
	require.NoError(t, err)
	require.Equal(t, map[string]Grant{"harvester-1": {Scopes: []string{ScopeWrite}, Tenant: "acme"}}, g)

	bad := filepath.Join(dir, "bad.json")
	require.NoError(t, os.WriteFile(bad, []byte(`{"harvester-1": {"scope": ["records:write"]}}`), 0o600))
	_, err = loadGrants(bad)
	require.ErrorContains(t, err, "unknown field")
}
