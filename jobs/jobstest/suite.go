// Package jobstest is the conformance suite every jobs.Store passes.
package jobstest

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/harvesthub/hub/jobs"
)

// Run runs the suite. newStore returns a fresh store for one subtest
// (cleaned up by the caller through t.Cleanup); job IDs are unique per
// subtest, so stores may share a table.
func Run(t *testing.T, newStore func(t *testing.T) jobs.Store) {
	for _, tc := range []struct {
		name string
		fn   func(t *testing.T, s jobs.Store, id string)
	}{
		{"RecordAndGet", testRecordAndGet},
		{"HistoryKeepsEveryStep", testHistory},
		{"NotFound", testNotFound},
		{"KeyDeduplicates", testKeyDedupes},
		{"RefusesBadInput", testBadInput},
		{"ConcurrentRecords", testConcurrent},
		{"JobsAreIndependent", testIndependent},
		{"CancelledContext", testCancelled},
		{"Closed", testClosed},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := newStore(t)
			tc.fn(t, s, fmt.Sprintf("job-%s-%d", tc.name, time.Now().UnixNano()))
		})
	}
}

// at returns a fixed time plus d, truncated to what every store keeps
// (microseconds).
func at(d time.Duration) time.Time {
	return time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC).Add(d)
}

func testRecordAndGet(t *testing.T, s jobs.Store, id string) {
	ctx := context.Background()
	require.NoError(t, s.Record(ctx, id, jobs.Event{State: jobs.Ingested, At: at(0)}))
	j, err := s.Get(ctx, id)
	require.NoError(t, err)
	require.Equal(t, jobs.Job{
		ID: id, State: jobs.Ingested, CreatedAt: at(0), UpdatedAt: at(0),
		History: []jobs.Event{{State: jobs.Ingested, At: at(0)}},
	}, j)

	before := time.Now().Add(-time.Minute) // store clocks may be a little behind
	require.NoError(t, s.Record(ctx, id, jobs.Event{State: jobs.Dispatched, Reason: "to records.index"}))
	j, err = s.Get(ctx, id)
	require.NoError(t, err)
	require.Equal(t, jobs.Dispatched, j.State)
	require.Equal(t, "to records.index", j.Reason)
	require.True(t, j.UpdatedAt.After(before), "a zero At is now: %v", j.UpdatedAt)
	require.Equal(t, time.UTC, j.UpdatedAt.Location())
	require.Equal(t, at(0), j.CreatedAt)
}

func testHistory(t *testing.T, s jobs.Store, id string) {
	ctx := context.Background()
	want := []jobs.Event{
		{State: jobs.Ingested, At: at(0), Key: "m1"},
		{State: jobs.Dispatched, At: at(time.Second), Key: "m2"},
		{State: jobs.Failed, Reason: "index unavailable: 503", At: at(2 * time.Second), Key: "m3"},
		{State: jobs.Replayed, At: at(3 * time.Second), Key: "m4"},
		{State: jobs.Dispatched, At: at(4 * time.Second), Key: "m5"},
		{State: jobs.Indexed, At: at(5 * time.Second)},
	}
	for _, ev := range want {
		require.NoError(t, s.Record(ctx, id, ev))
	}
	j, err := s.Get(ctx, id)
	require.NoError(t, err)
	require.Equal(t, want, j.History)
	require.Equal(t, jobs.Indexed, j.State)
	require.Empty(t, j.Reason, "the reason is the last event's")
	require.Equal(t, at(0), j.CreatedAt)
	require.Equal(t, at(5*time.Second), j.UpdatedAt)
}

func testNotFound(t *testing.T, s jobs.Store, id string) {
	_, err := s.Get(context.Background(), id)
	require.ErrorIs(t, err, jobs.ErrNotFound)
}

func testKeyDedupes(t *testing.T, s jobs.Store, id string) {
	ctx := context.Background()
	require.NoError(t, s.Record(ctx, id, jobs.Event{State: jobs.Ingested, At: at(0), Key: "msg-1"}))
	require.NoError(t, s.Record(ctx, id, jobs.Event{State: jobs.Dispatched, At: at(time.Second), Key: "msg-2"}))
	// msg-1 delivered again: ignored, and it does not move the state back.
	require.NoError(t, s.Record(ctx, id, jobs.Event{State: jobs.Ingested, At: at(2 * time.Second), Key: "msg-1"}))
	// Events without a key are never deduplicated.
	require.NoError(t, s.Record(ctx, id, jobs.Event{State: jobs.Indexed, At: at(3 * time.Second)}))
	require.NoError(t, s.Record(ctx, id, jobs.Event{State: jobs.Indexed, At: at(4 * time.Second)}))
	j, err := s.Get(ctx, id)
	require.NoError(t, err)
	require.Len(t, j.History, 4)
	require.Equal(t, jobs.Indexed, j.State)

	// The same key on another job is another event.
	other := id + "-other"
	require.NoError(t, s.Record(ctx, other, jobs.Event{State: jobs.Ingested, At: at(0), Key: "msg-1"}))
	o, err := s.Get(ctx, other)
	require.NoError(t, err)
	require.Len(t, o.History, 1)
}

func testBadInput(t *testing.T, s jobs.Store, id string) {
	ctx := context.Background()
	for _, tc := range []struct {
		name string
		id   string
		ev   jobs.Event
	}{
		{"empty ID", "", jobs.Event{State: jobs.Ingested}},
		{"long ID", strings.Repeat("x", jobs.MaxIDLen+1), jobs.Event{State: jobs.Ingested}},
		{"unknown state", id, jobs.Event{State: "done"}},
		{"empty state", id, jobs.Event{}},
		{"failure without reason", id, jobs.Event{State: jobs.Failed}},
		{"long reason", id, jobs.Event{State: jobs.Failed, Reason: strings.Repeat("r", jobs.MaxReasonLen+1)}},
		{"long key", id, jobs.Event{State: jobs.Ingested, Key: strings.Repeat("k", jobs.MaxIDLen+1)}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			require.ErrorIs(t, s.Record(ctx, tc.id, tc.ev), jobs.ErrInvalid)
		})
	}
	_, err := s.Get(ctx, id)
	require.ErrorIs(t, err, jobs.ErrNotFound, "refused events record nothing")

	require.NoError(t, s.Record(ctx, id, jobs.Event{State: jobs.Failed, Reason: strings.Repeat("r", jobs.MaxReasonLen), At: at(0)}))
	long := strings.Repeat("i", jobs.MaxIDLen)
	require.NoError(t, s.Record(ctx, long, jobs.Event{State: jobs.Ingested, At: at(0), Key: strings.Repeat("k", jobs.MaxIDLen)}), "the longest ID and key")
	j, err := s.Get(ctx, long)
	require.NoError(t, err)
	require.Equal(t, long, j.ID)
}

func testConcurrent(t *testing.T, s jobs.Store, id string) {
	ctx := context.Background()
	const n = 20
	var wg sync.WaitGroup
	errs := make(chan error, 2*n)
	for i := range n {
		wg.Go(func() {
			ev := jobs.Event{State: jobs.Dispatched, At: at(time.Duration(i) * time.Second), Key: fmt.Sprint("k", i)}
			errs <- s.Record(ctx, id, ev)
			errs <- s.Record(ctx, id, ev) // a duplicate racing the first
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		require.NoError(t, err)
	}
	j, err := s.Get(ctx, id)
	require.NoError(t, err)
	require.Len(t, j.History, n, "each keyed event once")
}

func testIndependent(t *testing.T, s jobs.Store, id string) {
	ctx := context.Background()
	require.NoError(t, s.Record(ctx, id+"-a", jobs.Event{State: jobs.Ingested, At: at(0)}))
	require.NoError(t, s.Record(ctx, id+"-b", jobs.Event{State: jobs.Failed, Reason: "bad record", At: at(time.Second)}))
	a, err := s.Get(ctx, id+"-a")
	require.NoError(t, err)
	b, err := s.Get(ctx, id+"-b")
	require.NoError(t, err)
	require.Equal(t, jobs.Ingested, a.State)
	require.Len(t, a.History, 1)
	require.Equal(t, jobs.Failed, b.State)
	require.Equal(t, "bad record", b.Reason)
}

func testCancelled(t *testing.T, s jobs.Store, id string) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	require.Error(t, s.Record(ctx, id, jobs.Event{State: jobs.Ingested}))
	_, err := s.Get(ctx, id)
	require.Error(t, err)
	_, err = s.Get(context.Background(), id)
	require.ErrorIs(t, err, jobs.ErrNotFound, "a cancelled Record records nothing")
}

func testClosed(t *testing.T, s jobs.Store, id string) {
	ctx := context.Background()
	require.NoError(t, s.Ping(ctx))
	require.NoError(t, s.Close())
	require.NoError(t, s.Close(), "Close twice")
	require.ErrorIs(t, s.Record(ctx, id, jobs.Event{State: jobs.Ingested}), jobs.ErrClosed)
	_, err := s.Get(ctx, id)
	require.ErrorIs(t, err, jobs.ErrClosed)
	require.ErrorIs(t, s.Ping(ctx), jobs.ErrClosed)
}
