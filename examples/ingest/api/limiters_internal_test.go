package api

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"golang.org/x/time/rate"
)

func TestLimitersBounded(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	l := newLimiters(1, 2, 3) // refills in 2s
	for _, k := range []string{"a", "b", "c", "d", "e"} {
		require.Zero(t, l.reserve(k, now))
	}
	require.Equal(t, 3, l.len(), "never more than max limiters")
	// "a" and "b" were evicted (least recently used): they start full.
	require.Zero(t, l.reserve("a", now))
	require.Zero(t, l.reserve("a", now))
	require.Equal(t, time.Second, l.reserve("a", now))
	require.Equal(t, 3, l.len())

	// Once every bucket has refilled, they are idle and dropped as soon as
	// any other key is used.
	later := now.Add(2 * time.Second)
	require.Zero(t, l.reserve("z", later))
	require.Equal(t, 1, l.len())
}

func TestLimitersNotIdleKeptOverIdle(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	l := newLimiters(1, 1, 10) // refills in 1s
	require.Zero(t, l.reserve("old", now))
	require.Zero(t, l.reserve("new", now.Add(500*time.Millisecond)))
	// At 1.2s "old" is idle (full again) and dropped; "new" is not.
	require.Equal(t, 300*time.Millisecond, l.reserve("new", now.Add(1200*time.Millisecond)))
	require.Equal(t, 1, l.len())
}

func TestLimitersInf(t *testing.T) {
	l := newLimiters(rate.Inf, 0, 1)
	for range 100 {
		require.Zero(t, l.reserve("a", time.Time{}))
	}
	require.Zero(t, l.len())
}
