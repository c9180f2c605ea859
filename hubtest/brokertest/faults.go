package brokertest

import (
	"context"
	"strings"
	"sync"
	"testing"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/stretchr/testify/require"

	"github.com/harvesthub/hub"
	"github.com/harvesthub/hub/broker"
	"github.com/harvesthub/hub/retry"
)

// Hub-level fault rows on a real broker (see docs/RELIABILITY.md).

// foreignWithoutID: messages a foreign producer publishes without an ID or
// key (amqplib, pika and Bunny set no message_id by default) are each
// handled once, and a malformed one is dead-lettered, never acked as a
// duplicate of another.
func (s suite) foreignWithoutID(t *testing.T) {
	topic := unique("noid")
	var mu sync.Mutex
	got := map[string]int{}
	both := make(chan struct{})
	_, b := s.start(t, fast(1, retry.None, 0), nil, func(h *hub.Hub) {
		require.NoError(t, hub.Handle(h, topic, func(ctx context.Context, m hub.Message[Record]) error {
			mu.Lock()
			defer mu.Unlock()
			got[m.Payload.ID]++
			if len(got) == 2 && got["a"] == 1 && got["b"] == 1 {
				close(both)
			}
			return nil
		}))
	})
	for _, body := range []string{`{"id":"a"}`, `{broken`, `{"id":"b"}`} {
		require.NoError(t, b.Publish(topic, message.NewMessage("", []byte(body))))
	}
	s.wait(t, both, "both foreign messages without an ID to be handled")
	l := s.letter(t, b, topic+hub.DeadLetterSuffixDefault)
	require.Equal(t, hub.ReasonDecode, l.Reason)
	require.Equal(t, "{broken", string(l.Payload))
	require.True(t, strings.HasPrefix(l.Key, "sha256:"), "keyed by its content: %q", l.Key)
}

// nearLimitEndsInLetter: on a broker with a size limit of at most 1 MiB, a
// foreign message just under the limit whose handler fails permanently
// ends in a letter that fits (trimmed), handled once, never a loop.
func (s suite) nearLimitEndsInLetter(t *testing.T) {
	probe := s.cfg.NewBroker(t)
	sl, ok := probe.(broker.SizeLimiter)
	limit := 0
	if ok {
		limit = sl.MaxMessageSize()
	}
	require.NoError(t, probe.Close())
	if limit == 0 || limit > 1<<20 {
		t.Skip("no size limit of at most 1 MiB on this broker")
	}
	topic := unique("near")
	var mu sync.Mutex
	calls := 0
	_, b := s.start(t, fast(1, retry.None, 0), nil, func(h *hub.Hub) {
		require.NoError(t, hub.Handle(h, topic, func(ctx context.Context, m hub.Message[Record]) error {
			mu.Lock()
			calls++
			mu.Unlock()
			return retry.Permanent(errorOf(8 << 10))
		}))
	})
	body := `{"id":"` + strings.Repeat("x", limit-2048) + `"}`
	m := message.NewMessage("near-limit", []byte(body))
	require.NoError(t, b.Publish(topic, m))
	l := s.letter(t, b, topic+hub.DeadLetterSuffixDefault)
	require.Equal(t, hub.ReasonPermanent, l.Reason)
	require.Equal(t, "near-limit", l.ID)
	mu.Lock()
	defer mu.Unlock()
	require.Equal(t, 1, calls)
}

type bigError int

func (e bigError) Error() string { return strings.Repeat("e", int(e)) }

func errorOf(n int) error { return bigError(n) }
