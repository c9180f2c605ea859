package main

import (
	"io"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/harvesthub/hub/internal/testenv"
)

// The test binary is also the soak's worker: run re-executes os.Args[0].
func TestMain(m *testing.M) {
	if os.Getenv("SOAK_WORKER") == "1" {
		os.Exit(worker())
	}
	goleak.VerifyTestMain(m)
}

// A small soak on the shared RabbitMQ: 2000 keys, two workers, one of them
// SIGKILLed at 30 %, poison, transient failures and duplicate keys. The
// broker restart needs the private node of the full command
// (go run ./internal/soak), too slow for CI.
func TestSmallSoak(t *testing.T) {
	testenv.Require(t, "RabbitMQ", testenv.AMQPURL())
	testenv.Require(t, "Redis", testenv.RedisAddr())
	var out strings.Builder
	start := time.Now()
	r, err := run(options{n: 2000, workers: 2, poisonEvery: 100, dupEvery: 50, transientEvery: 10,
		killAt: 0.3, redis: testenv.RedisAddr(), url: testenv.AMQPURL(), stall: time.Minute, publishers: 4},
		io.MultiWriter(&out, testWriter{t}))
	require.NoError(t, err)
	t.Logf("soak took %v", time.Since(start))
	require.Equal(t, 1, r.kills)
	require.Equal(t, 2000, r.published)
	require.Zero(t, r.lost, "lost")
	require.Zero(t, r.handledTwice, "handled twice")
	require.Zero(t, r.wrongLetters, "wrongly dead-lettered")
	require.Equal(t, r.poison, r.deadLettered, "every poison key dead-lettered")
	require.Equal(t, 20, r.poison)
	require.Equal(t, 1980, r.handledOnce)
	require.True(t, r.ok())
}

// A restart of a shared node is refused.
func TestSharedNodeNeverRestarted(t *testing.T) {
	_, err := run(options{n: 1, workers: 1, restartAt: 0.5, url: "amqp://127.0.0.1:1/"}, io.Discard)
	require.ErrorContains(t, err, "-restart-at 0")
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}
