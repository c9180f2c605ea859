package main

import (
	"context"
	"flag"
	"io"
	"testing"

	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
)

// Bleve's package-level analysis workers start in its init and never stop.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m, goleak.IgnoreTopFunction("github.com/blevesearch/bleve_index_api.AnalysisWorker"))
}

// The service itself runs in the e2e tests (examples/e2e), built with go
// build; these cover what stops it before it starts.
func TestRunRejectsBadSettings(t *testing.T) {
	for _, args := range [][]string{
		{"-broker", "pigeon"},
		{"-store", "etcd"},
		{"-log-level", "loud"},
		{"-no-such-flag"},
		{"-index", "solr"},
	} {
		t.Run(args[0], func(t *testing.T) {
			require.Error(t, runArgs(args))
		})
	}
}

func TestRunNeedsElasticsearchAddress(t *testing.T) {
	require.ErrorContains(t, runArgs([]string{"-index", "elasticsearch", "-es-url", " "}), "-es-url")
}

func TestRunHelp(t *testing.T) {
	require.ErrorIs(t, runArgs([]string{"-h"}), flag.ErrHelp)
}

func runArgs(args []string) error { return run(context.Background(), args, io.Discard) }
