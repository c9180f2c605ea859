package outbox_test

import (
	"os"
	"testing"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	if os.Getenv(childEnv) != "" {
		os.Exit(runChildRelay())
	}
	goleak.VerifyTestMain(m,
		// pgxpool starts this goroutine when a connection leaves the pool
		// (the relay's listening connection is hijacked); it sleeps 500ms
		// and ends, and Pool.Close does not wait for it.
		goleak.IgnoreAnyFunction("github.com/jackc/pgx/v5/pgxpool.(*Pool).triggerHealthCheck.func1"))
}
