package redisstore_test

import (
	"context"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/harvesthub/hub/idempotency"
	"github.com/harvesthub/hub/idempotency/idempotencytest"
	"github.com/harvesthub/hub/idempotency/redisstore"
	"github.com/harvesthub/hub/internal/testenv"
)

// newClient returns a client of the test Redis, closed when t ends.
func newClient(t *testing.T, opts *redis.Options) *redis.Client {
	t.Helper()
	testenv.Require(t, "Redis", testenv.RedisAddr())
	if opts == nil {
		opts = &redis.Options{}
	}
	opts.Addr = testenv.RedisAddr()
	c := redis.NewClient(opts)
	t.Cleanup(func() { _ = c.Close() })
	return c
}

func newStore(t *testing.T, c redis.UniversalClient, prefix string) *redisstore.Store {
	t.Helper()
	s, err := redisstore.New(c, redisstore.Config{Prefix: prefix})
	require.NoError(t, err)
	t.Cleanup(func() { _ = s.Close() })
	return s
}

func TestConformance(t *testing.T) {
	prefix := testPrefix(t) // deleted after the parallel subtests
	idempotencytest.Run(t, func(t *testing.T) idempotency.Store {
		return newStore(t, newClient(t, nil), prefix)
	})
}

// testPrefix returns a key prefix unique to t whose keys are deleted when t
// ends, so tests leave nothing behind in the shared Redis.
func testPrefix(t *testing.T) string {
	t.Helper()
	c := newClient(t, nil)
	prefix := fmt.Sprintf("hub:idemtest:%d:", time.Now().UnixNano())
	t.Cleanup(func() {
		ctx := context.Background()
		iter := c.Scan(ctx, 0, prefix+"*", 1000).Iterator()
		for iter.Next(ctx) {
			require.NoError(t, c.Del(ctx, iter.Val()).Err())
		}
		require.NoError(t, iter.Err())
	})
	return prefix
}

func TestKeysLiveUnderThePrefix(t *testing.T) {
	ctx := context.Background()
	c := newClient(t, nil)
	prefix := testPrefix(t)
	s := newStore(t, c, prefix)

	claim, err := s.Claim(ctx, "k", time.Minute)
	require.NoError(t, err)
	require.Equal(t, idempotency.Acquired, claim.Status)
	require.Equal(t, "L:"+claim.Token, c.Get(ctx, prefix+"k").Val())
	pttl := c.PTTL(ctx, prefix+"k").Val()
	require.Greater(t, pttl, 50*time.Second, "the lease is the key's TTL")

	require.NoError(t, s.Complete(ctx, "k", claim.Token, time.Hour))
	require.Equal(t, "C:"+claim.Token, c.Get(ctx, prefix+"k").Val())
	require.Greater(t, c.PTTL(ctx, prefix+"k").Val(), 59*time.Minute, "the retention is the key's TTL")

	long := strings.Repeat("x", idempotency.MaxKeyLen+1)
	_, err = s.Claim(ctx, long, time.Minute)
	require.NoError(t, err)
	require.EqualValues(t, 1, c.Exists(ctx, prefix+idempotency.NormalizeKey(long)).Val(), "long keys are stored normalised")

	// Another prefix is another namespace.
	other := newStore(t, c, prefix+"other:")
	oc, err := other.Claim(ctx, "k", time.Minute)
	require.NoError(t, err)
	require.Equal(t, idempotency.Acquired, oc.Status)
}

func TestScriptsReloadAfterFlush(t *testing.T) {
	ctx := context.Background()
	c := newClient(t, nil)
	s := newStore(t, c, testPrefix(t))
	key := "scripts"

	// SCRIPT FLUSH empties the server's script cache, as a restart does;
	// EVALSHA then fails with NOSCRIPT and the store must fall back to EVAL.
	// Other clients of the shared server reload their scripts the same way.
	require.NoError(t, c.ScriptFlush(ctx).Err())
	claim, err := s.Claim(ctx, key, time.Minute)
	require.NoError(t, err)
	require.Equal(t, idempotency.Acquired, claim.Status)
	require.NoError(t, c.ScriptFlush(ctx).Err())
	require.NoError(t, s.Extend(ctx, key, claim.Token, time.Minute))
	require.NoError(t, c.ScriptFlush(ctx).Err())
	require.NoError(t, s.Release(ctx, key, claim.Token))
	again, err := s.Claim(ctx, key, time.Minute)
	require.NoError(t, err)
	require.Equal(t, idempotency.Acquired, again.Status)
	require.NoError(t, s.Release(ctx, key, again.Token))
}

func TestUnreachableServerIsAnError(t *testing.T) {
	// A port nothing listens on: bind one, then close it.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := l.Addr().String()
	require.NoError(t, l.Close())

	c := redis.NewClient(&redis.Options{Addr: addr})
	t.Cleanup(func() { _ = c.Close() })
	s := newStore(t, c, "")
	ctx := context.Background()

	start := time.Now()
	claim, err := s.Claim(ctx, "k", time.Minute)
	require.Error(t, err)
	require.ErrorContains(t, err, "redisstore: claim")
	require.NotEqual(t, idempotency.Acquired, claim.Status, "an unreachable store never hands out a key")
	require.Less(t, time.Since(start), 3*time.Second, "a refused connection fails fast")

	require.Error(t, s.Ping(ctx))
	require.Error(t, s.Complete(ctx, "k", "t", time.Minute))
	require.Error(t, s.Extend(ctx, "k", "t", time.Minute))
	require.NotErrorIs(t, s.Extend(ctx, "k", "t", time.Minute), idempotency.ErrLeaseLost, "an outage is not a lost lease")
	require.Error(t, s.Release(ctx, "k", "t"))
}

func TestReconnectsAfterConnectionKilled(t *testing.T) {
	// Restarting the shared Redis would disturb other tests, so the server
	// side of the connection is killed instead (CLIENT KILL), which is what
	// a client sees when Redis restarts.
	ctx := context.Background()
	c := newClient(t, &redis.Options{PoolSize: 1})
	admin := newClient(t, nil)
	s := newStore(t, c, testPrefix(t))
	key := "reconnect"

	first, err := s.Claim(ctx, key+"-1", time.Minute)
	require.NoError(t, err)
	require.Equal(t, idempotency.Acquired, first.Status)
	id, err := c.ClientID(ctx).Result()
	require.NoError(t, err)
	require.NoError(t, admin.ClientKillByFilter(ctx, "ID", fmt.Sprint(id)).Err())

	second, err := s.Claim(ctx, key+"-2", time.Minute)
	require.NoError(t, err, "the client reconnects by itself")
	require.Equal(t, idempotency.Acquired, second.Status)
	newID, err := c.ClientID(ctx).Result()
	require.NoError(t, err)
	require.NotEqual(t, id, newID, "a new connection was made")
	require.NoError(t, s.Complete(ctx, key+"-1", first.Token, time.Minute))
	require.NoError(t, s.Complete(ctx, key+"-2", second.Token, time.Minute))
}

func TestNewRejectsNilClient(t *testing.T) {
	s, err := redisstore.New(nil, redisstore.Config{})
	require.ErrorContains(t, err, "needs a client")
	require.Nil(t, s)
}
