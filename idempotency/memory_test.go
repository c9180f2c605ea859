package idempotency_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/harvesthub/hub/idempotency"
	"github.com/harvesthub/hub/idempotency/idempotencytest"
)

func TestMemoryStoreConformance(t *testing.T) {
	for _, tc := range []struct {
		name string
		cfg  idempotency.MemoryConfig
	}{
		// Answers must not depend on the sweeper: with the default interval
		// it never runs during the suite; with a short one it runs all the
		// time.
		{"DefaultSweep", idempotency.MemoryConfig{}},
		{"FrequentSweep", idempotency.MemoryConfig{SweepInterval: 10 * time.Millisecond}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			idempotencytest.Run(t, func(t *testing.T) idempotency.Store {
				s, err := idempotency.NewMemoryStore(tc.cfg)
				require.NoError(t, err)
				return s
			})
		})
	}
}

func TestMemoryConfigRejectsNegativeSweepInterval(t *testing.T) {
	s, err := idempotency.NewMemoryStore(idempotency.MemoryConfig{SweepInterval: -time.Second})
	require.ErrorContains(t, err, "SweepInterval")
	require.Nil(t, s)
}

// fakeClock is a clock that moves only when told.
type fakeClock struct{ now time.Time }

func (c *fakeClock) Now() time.Time          { return c.now }
func (c *fakeClock) Advance(d time.Duration) { c.now = c.now.Add(d) }

func TestMemoryStoreFakeClock(t *testing.T) {
	ctx := context.Background()
	clock := &fakeClock{now: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)}
	s, err := idempotency.NewMemoryStore(idempotency.MemoryConfig{Clock: clock.Now})
	require.NoError(t, err)
	defer s.Close()

	c, err := s.Claim(ctx, "k", time.Minute)
	require.NoError(t, err)
	require.Equal(t, idempotency.Acquired, c.Status)

	busy, err := s.Claim(ctx, "k", time.Minute)
	require.NoError(t, err)
	require.Equal(t, idempotency.Claim{Status: idempotency.Busy, LeaseUntil: clock.now.Add(time.Minute)}, busy)

	// The lease ends exactly at LeaseUntil.
	clock.Advance(time.Minute - time.Nanosecond)
	busy, err = s.Claim(ctx, "k", time.Minute)
	require.NoError(t, err)
	require.Equal(t, idempotency.Busy, busy.Status)
	require.NoError(t, s.Extend(ctx, "k", c.Token, time.Minute))

	clock.Advance(time.Minute)
	require.ErrorIs(t, s.Extend(ctx, "k", c.Token, time.Minute), idempotency.ErrLeaseLost, "an expired lease cannot be extended")
	again, err := s.Claim(ctx, "k", time.Minute)
	require.NoError(t, err)
	require.Equal(t, idempotency.Acquired, again.Status)

	require.NoError(t, s.Complete(ctx, "k", again.Token, time.Hour))
	clock.Advance(time.Hour - time.Nanosecond)
	dup, err := s.Claim(ctx, "k", time.Minute)
	require.NoError(t, err)
	require.Equal(t, idempotency.Completed, dup.Status)
	clock.Advance(time.Nanosecond)
	last, err := s.Claim(ctx, "k", time.Minute)
	require.NoError(t, err)
	require.Equal(t, idempotency.Acquired, last.Status, "retention ended")
}

func TestMemoryStoreCloseIsIdempotent(t *testing.T) {
	s, err := idempotency.NewMemoryStore(idempotency.MemoryConfig{})
	require.NoError(t, err)
	require.NoError(t, s.Close())
	require.NoError(t, s.Close())
	// goleak in TestMain proves Close joined the sweeper.
}
