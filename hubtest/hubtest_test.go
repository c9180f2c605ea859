package hubtest_test

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/harvesthub/hub"
	"github.com/harvesthub/hub/hubtest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

type Record struct{ ID, Title string }
type IndexJob struct{ DocID, Title string }

func normalise(ctx context.Context, m hub.Message[Record]) ([]IndexJob, error) {
	return []IndexJob{{DocID: "doc:" + m.Payload.ID, Title: strings.TrimSpace(m.Payload.Title)}}, nil
}

// The README's example of a user's handler test.
func TestNormalise(t *testing.T) {
	th := hubtest.New(t)
	require.NoError(t, hub.Pipe(th.Hub, "records", "jobs", normalise))
	th.Start()

	hubtest.Send(t, th, "records", Record{ID: "r1", Title: "  Annual report "})
	th.Settle(t)

	require.Equal(t, []IndexJob{{DocID: "doc:r1", Title: "Annual report"}}, hubtest.Published[IndexJob](t, th, "jobs"))
	require.Empty(t, th.DeadLetters("records"))
}

// recordingTB captures a failure instead of failing the real test.
type recordingTB struct {
	testing.TB
	mu  sync.Mutex
	msg string
}

func (r *recordingTB) Helper() {}
func (r *recordingTB) Fatalf(format string, args ...any) {
	r.mu.Lock()
	r.msg = format
	r.mu.Unlock()
	panic(r)
}

func TestSettleFailsWithAClearMessageWhenNotIdle(t *testing.T) {
	th := hubtest.New(t)
	th.SettleTimeout = 50 * time.Millisecond
	require.NoError(t, hub.Handle(th.Hub, "records", func(ctx context.Context, m hub.Message[Record]) error { return nil }))
	// Not started: the message stays queued.
	hubtest.Send(t, th, "records", Record{ID: "r1"})
	rec := &recordingTB{TB: t}
	func() {
		defer func() { require.Equal(t, rec, recover()) }()
		th.Settle(rec)
	}()
	require.Contains(t, rec.msg, "not idle after")
	require.Contains(t, rec.msg, "did you call Start?")
	th.Start()
	th.Settle(t)
}

func TestStandaloneRunsCleanupsInReverse(t *testing.T) {
	s := hubtest.NewStandalone()
	var order []int
	s.Cleanup(func() { order = append(order, 1) })
	s.Cleanup(func() { order = append(order, 2) })
	s.Close()
	require.Equal(t, []int{2, 1}, order)
	require.PanicsWithValue(t, "boom 7", func() { s.Fatalf("boom %d", 7) })
}
