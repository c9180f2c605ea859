package main

import (
	"context"
	"flag"
	"io"
	"testing"

	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// The service itself runs in the e2e tests (examples/e2e), built with go
// build; these cover what stops it before it starts.
func TestRunRejectsBadSettings(t *testing.T) {
	for _, args := range [][]string{
		{"-broker", "pigeon"},
		{"-store", "etcd"},
		{"-log-level", "loud"},
		{"-no-such-flag"},
		{"-concurrency", "-1"},
	} {
		t.Run(args[0], func(t *testing.T) {
			require.Error(t, runArgs(args))
		})
	}
}

func TestRunHelp(t *testing.T) {
	require.ErrorIs(t, runArgs([]string{"-h"}), flag.ErrHelp)
}

func runArgs(args []string) error { return run(context.Background(), args, io.Discard) }
