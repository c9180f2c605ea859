package idempotency

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestMemoryStoreSweeperRemovesExpiredEntries(t *testing.T) {
	ctx := context.Background()
	var mu sync.Mutex
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	s, err := NewMemoryStore(MemoryConfig{SweepInterval: 5 * time.Millisecond, Clock: clock})
	require.NoError(t, err)
	defer s.Close()

	for _, k := range []string{"lease-short", "lease-long", "done-short", "done-long"} {
		c, err := s.Claim(ctx, k, time.Minute)
		require.NoError(t, err)
		require.Equal(t, Acquired, c.Status)
	}
	require.NoError(t, s.Extend(ctx, "lease-long", s.tokenFor("lease-long"), time.Hour))
	require.NoError(t, s.Complete(ctx, "done-short", "t", time.Minute))
	require.NoError(t, s.Complete(ctx, "done-long", "t", time.Hour))
	require.Equal(t, 4, s.len())

	mu.Lock()
	now = now.Add(2 * time.Minute)
	mu.Unlock()
	require.Eventually(t, func() bool { return s.len() == 2 }, 5*time.Second, 5*time.Millisecond)
	for _, k := range []string{"lease-long", "done-long"} {
		c, err := s.Claim(ctx, k, time.Minute)
		require.NoError(t, err)
		require.NotEqual(t, Acquired, c.Status, "%s must survive the sweep", k)
	}
}

// tokenFor returns the token held for key (tests).
func (s *MemoryStore) tokenFor(key string) string {
	sh := s.shard(NormalizeKey(key))
	sh.mu.Lock()
	defer sh.mu.Unlock()
	return sh.entries[NormalizeKey(key)].token
}
