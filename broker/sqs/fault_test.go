package sqs

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/stretchr/testify/require"

	"github.com/harvesthub/hub/broker"
	"github.com/harvesthub/hub/internal/faultnet"
)

// within runs f and fails the test when it has not returned after limit.
func within(t *testing.T, what string, limit time.Duration, f func() error) error {
	t.Helper()
	done := make(chan error, 1)
	start := time.Now()
	go func() { done <- f() }()
	select {
	case err := <-done:
		t.Logf("%s returned after %v: %v", what, time.Since(start).Round(time.Millisecond), err)
		return err
	case <-time.After(limit):
		t.Fatalf("%s still running after %v", what, limit)
		return nil
	}
}

// warnings counts the log records whose message starts with a prefix.
type warnings struct {
	slog.Handler
	mu   sync.Mutex
	seen map[string]chan struct{}
}

func (w *warnings) Handle(_ context.Context, r slog.Record) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	for prefix, c := range w.seen {
		if strings.HasPrefix(r.Message, prefix) {
			select {
			case <-c:
			default:
				close(c)
			}
		}
	}
	return nil
}

func (w *warnings) Enabled(context.Context, slog.Level) bool { return true }

func (w *warnings) on(prefix string) <-chan struct{} {
	w.mu.Lock()
	defer w.mu.Unlock()
	c := make(chan struct{})
	w.seen[prefix] = c
	return c
}

// A stalled endpoint (connections accepted, never answered) costs a
// publish, a receive and Close at most their bound, never forever.
func TestStalledEndpoint(t *testing.T) {
	cfg := emulatorConfig(t)
	proxy, err := faultnet.New(strings.TrimPrefix(cfg.Endpoint, "http://"))
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, proxy.Close()) })
	logs := &warnings{Handler: slog.DiscardHandler, seen: map[string]chan struct{}{}}
	receiveFailed := logs.on("sqs: receive failed")
	cfg.Endpoint = "http://" + proxy.Addr()
	cfg.RequestTimeout = 500 * time.Millisecond
	cfg.Logger = slog.New(logs)
	b, err := New(context.Background(), cfg)
	require.NoError(t, err)
	closed := false
	t.Cleanup(func() {
		if !closed {
			_ = b.Close()
		}
	})

	ch := subscribe(t, b, "stall", broker.Group{Name: "g", Prefetch: 2})
	require.NoError(t, b.Publish("stall", newMsg("before")))
	held := receive(t, ch)

	proxy.Freeze()
	const bound = 5 * time.Second // RequestTimeout plus generous slack

	err = within(t, "Publish", bound, func() error { return b.Publish("stall", newMsg("during")) })
	require.Error(t, err)
	require.True(t, errors.Is(err, context.DeadlineExceeded), "the request timeout: %v", err)

	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	err = within(t, "PublishContext", bound, func() error { return b.PublishContext(ctx, "stall", newMsg("during")) })
	require.ErrorIs(t, err, context.DeadlineExceeded)

	err = within(t, "PublishDelayed", bound, func() error {
		return b.PublishDelayed(context.Background(), "stall", "g", time.Second, newMsg("delayed"))
	})
	require.Error(t, err)

	// The receive loop's long poll gives up after WaitTime+RequestTimeout.
	select {
	case <-receiveFailed:
	case <-time.After(cfg.WaitTime + bound):
		t.Fatal("ReceiveMessage on a stalled endpoint never returned")
	}

	// Acking on a stalled endpoint, then Close: both return.
	held.Ack()
	closed = true
	require.NoError(t, within(t, "Close", 2*cleanupTimeout, b.Close))

	// A new broker against an endpoint that never answers: New gives up.
	dead, err := faultnet.New("")
	require.NoError(t, err)
	defer dead.Close()
	cfg.Endpoint = "http://" + dead.Addr()
	err = within(t, "New", bound, func() error {
		_, err := New(context.Background(), cfg)
		return err
	})
	require.Error(t, err)
}

// After the endpoint comes back, the broker works again: a stall is not
// fatal.
func TestStalledEndpointRecovers(t *testing.T) {
	cfg := emulatorConfig(t)
	proxy, err := faultnet.New(strings.TrimPrefix(cfg.Endpoint, "http://"))
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, proxy.Close()) })
	cfg.Endpoint = "http://" + proxy.Addr()
	cfg.RequestTimeout = 300 * time.Millisecond
	cfg.Logger = slog.New(slog.DiscardHandler)
	b := open(t, cfg)
	ch := subscribe(t, b, "recover", broker.Group{Name: "g"})

	proxy.Freeze()
	require.Error(t, b.Publish("recover", newMsg("lost")))
	proxy.Cut()
	proxy.Resume()
	m := newMsg("after")
	require.NoError(t, b.Publish("recover", m))
	got := receive(t, ch)
	require.Equal(t, m.UUID, got.UUID)
	got.Ack()
}

// sized returns a message whose size on the wire, counted as SQS counts
// it, is exactly n bytes.
func sized(t *testing.T, n int) *message.Message {
	t.Helper()
	m := newMsg("p")
	m.Metadata.Set("k", "v")
	w, err := encode(m, time.Time{})
	require.NoError(t, err)
	m.Payload = []byte(strings.Repeat("p", n-w.size()+1))
	w, err = encode(m, time.Time{})
	if n <= MaxMessageSize {
		require.NoError(t, err)
		require.Equal(t, n, w.size())
	}
	return m
}

func TestSizeLimit(t *testing.T) {
	b := open(t, emulatorConfig(t))
	require.Equal(t, 256*1024, b.MaxMessageSize())
	var sl broker.SizeLimiter = b
	require.Equal(t, MaxMessageSize, sl.MaxMessageSize())

	ch := subscribe(t, b, "size", broker.Group{Name: "g", Prefetch: 2})

	// Exactly at the limit: SNS and SQS take it.
	atLimit := sized(t, MaxMessageSize)
	require.NoError(t, b.Publish("size", atLimit))
	got := receive(t, ch)
	require.Equal(t, atLimit.UUID, got.UUID)
	require.Equal(t, len(atLimit.Payload), len(got.Payload), "payload length")
	require.True(t, bytes.Equal(atLimit.Payload, got.Payload), "payload intact")
	got.Ack()

	// One byte over: refused before sending, with both sentinels, and
	// nothing of the call is published.
	small, over := newMsg("small"), sized(t, MaxMessageSize+1)
	for name, publish := range map[string]func() error{
		"Publish":        func() error { return b.Publish("size", small, over) },
		"PublishContext": func() error { return b.PublishContext(context.Background(), "size", small, over) },
		"PublishDelayed": func() error { return b.PublishDelayed(context.Background(), "size", "g", 0, small, over) },
	} {
		err := publish()
		require.ErrorIs(t, err, ErrTooLarge, name)
		require.ErrorIs(t, err, broker.ErrMessageTooLarge, name)
		require.ErrorContains(t, err, over.UUID, name)
	}
	nothing(t, ch, 2*time.Second)

	// The broker goes on.
	ok := newMsg("ok")
	require.NoError(t, b.Publish("size", ok))
	require.Equal(t, ok.UUID, receive(t, ch).UUID)
}
