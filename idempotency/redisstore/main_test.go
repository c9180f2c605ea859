package redisstore_test

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain checks for leaked goroutines. go-redis starts tryDial when many
// dials to an unreachable server fail (TestUnreachableServerIsAnError); it
// polls once a second and returns on its own after the client is closed, and
// nothing can stop it sooner.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m,
		goleak.IgnoreAnyFunction("github.com/redis/go-redis/v9/internal/pool.(*ConnPool).tryDial"))
}
