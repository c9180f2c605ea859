package main

import (
	"context"
	"flag"
	"io"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/harvesthub/hub/examples/ingest/api"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// The service itself runs in the e2e tests (examples/e2e), built with go
// build; these cover what stops it before it starts.
func TestRunRejectsBadSettings(t *testing.T) {
	for _, args := range [][]string{
		{"-broker", "kafka"},
		{"-store", "etcd"},
		{"-log-level", "loud"},
		{"-no-such-flag"},
		{"-keys", "/nonexistent/keys.json"},
		{"-client-certs", "grants.json"},
	} {
		t.Run(args[0], func(t *testing.T) {
			require.Error(t, runArgs(args))
		})
	}
}

func TestLoadGrants(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "good.json")
	require.NoError(t, os.WriteFile(good, []byte(`{"harvester-1": {"scopes": ["records:write"], "tenant": "acme"}}`), 0o600))
	g, err := loadGrants(good)
	require.NoError(t, err)
	require.Equal(t, map[string]api.Grant{"harvester-1": {Scopes: []string{api.ScopeWrite}, Tenant: "acme"}}, g)

	bad := filepath.Join(dir, "bad.json")
	require.NoError(t, os.WriteFile(bad, []byte(`{"harvester-1": {"scope": ["records:write"]}}`), 0o600))
	_, err = loadGrants(bad)
	require.ErrorContains(t, err, "unknown field")
}

func TestRunHelp(t *testing.T) {
	require.ErrorIs(t, runArgs([]string{"-h"}), flag.ErrHelp)
}

func runArgs(args []string) error { return run(context.Background(), args, io.Discard, io.Discard) }
