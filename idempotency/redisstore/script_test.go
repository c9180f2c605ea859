package redisstore

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/harvesthub/hub/internal/testenv"
)

// TestClaimScriptRetryStaysAcquired: go-redis retries a command whose
// connection broke, which may run the claim script twice with the same
// token. The second run must still answer Acquired, or the message would
// wait for its own lease to end; another token must get Busy.
func TestClaimScriptRetryStaysAcquired(t *testing.T) {
	testenv.Require(t, "Redis", testenv.RedisAddr())
	ctx := context.Background()
	c := redis.NewClient(&redis.Options{Addr: testenv.RedisAddr()})
	defer c.Close()
	key := fmt.Sprintf("hub:idemtest:retry-%d", time.Now().UnixNano())
	defer c.Del(ctx, key)

	for i := range 2 {
		res, err := claimScript.Run(ctx, c, []string{key}, "L:tok", 60000).Int64Slice()
		require.NoError(t, err)
		require.Equal(t, []int64{1}, res, "run %d", i+1)
	}
	res, err := claimScript.Run(ctx, c, []string{key}, "L:other", 60000).Int64Slice()
	require.NoError(t, err)
	require.Len(t, res, 2)
	require.EqualValues(t, 3, res[0])
	require.InDelta(t, 60000, res[1], 5000)
}

func TestMillisRoundsUp(t *testing.T) {
	for _, tc := range []struct {
		d    time.Duration
		want int64
	}{
		{time.Nanosecond, 1},
		{time.Millisecond, 1},
		{time.Millisecond + 1, 2},
		{time.Minute, 60000},
	} {
		require.Equal(t, tc.want, millis(tc.d), "%v", tc.d)
	}
}
