package nats_test

import (
	"context"
	"fmt"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/stretchr/testify/require"

	"github.com/harvesthub/hub/broker"
	"github.com/harvesthub/hub/broker/nats"
)

func TestConfigErrors(t *testing.T) {
	for _, tc := range []struct {
		name string
		cfg  nats.Config
		want string
	}{
		{"stream prefix", nats.Config{StreamPrefix: "a.b"}, "Config.StreamPrefix"},
		{"subject prefix", nats.Config{SubjectPrefix: "a>"}, "Config.SubjectPrefix"},
		{"ack wait", nats.Config{AckWait: time.Millisecond}, "Config.AckWait"},
		{"max deliver 1", nats.Config{MaxDeliver: 1}, "Config.MaxDeliver"},
		{"replicas", nats.Config{Replicas: 9}, "Config.Replicas"},
		{"poll wait", nats.Config{PollWait: time.Millisecond}, "Config.PollWait"},
		{"nack delay", nats.Config{NackDelay: -time.Second}, "Config.NackDelay"},
		{"TLS files", nats.Config{TLS: &broker.TLSFiles{CA: "/nonexistent/ca.pem"}}, "TLS"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b, err := nats.New(context.Background(), tc.cfg)
			require.Nil(t, b)
			require.ErrorContains(t, err, tc.want)
		})
	}
}

// A server that is not there: a clear error, at once.
func TestUnreachable(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := l.Addr().String()
	require.NoError(t, l.Close())
	start := time.Now()
	b, err := nats.New(context.Background(), nats.Config{URL: "nats://u:secret@" + addr, Logger: quiet()})
	require.Nil(t, b)
	require.ErrorContains(t, err, "nats: cannot connect to nats://u:xxxxx@"+addr)
	require.NotContains(t, err.Error(), "secret")
	require.Less(t, time.Since(start), 5*time.Second)
}

// A server that accepts and never answers: New returns when its context
// ends.
func TestConnectHonoursContext(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	t.Cleanup(func() { _ = l.Close() })
	accepted := make(chan net.Conn, 4)
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			accepted <- c
		}
	}()
	t.Cleanup(func() {
		_ = l.Close()
		for {
			select {
			case c := <-accepted:
				_ = c.Close()
			default:
				return
			}
		}
	})
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	start := time.Now()
	b, err := nats.New(ctx, nats.Config{URL: "nats://" + l.Addr().String(), Logger: quiet()})
	require.Nil(t, b)
	require.Error(t, err)
	require.Less(t, time.Since(start), 3*time.Second)
}

func TestPublishCancelledContext(t *testing.T) {
	b := newBroker(t, testConfig(t))
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	err := b.PublishContext(ctx, "cancelled", message.NewMessage(watermill.NewUUID(), []byte("x")))
	require.ErrorIs(t, err, context.Canceled)
	_, err = b.Queues(context.Background(), "cancelled")
	require.ErrorIs(t, err, broker.ErrUnknownTopic, "a cancelled publish creates nothing")
}

// An oversize message fails its whole batch before anything is sent.
func TestOversizeRefused(t *testing.T) {
	b := newBroker(t, testConfig(t))
	ctx := context.Background()
	require.NoError(t, b.Declare(ctx, "big"))
	limit := b.MaxMessageSize()
	require.Greater(t, limit, 1000)

	fits := message.NewMessage(watermill.NewUUID(), make([]byte, limit-100))
	over := message.NewMessage(watermill.NewUUID(), make([]byte, limit+wireOverheadForTest))
	err := b.PublishContext(ctx, "big", message.NewMessage(watermill.NewUUID(), []byte("small")), over)
	require.ErrorIs(t, err, broker.ErrMessageTooLarge)
	require.ErrorContains(t, err, over.UUID)
	qs, err := b.Queues(ctx, "big")
	require.NoError(t, err)
	require.Len(t, qs, 1)
	require.Zero(t, qs[0].Depth, "nothing of the refused batch was published")

	// Near the limit is accepted and delivered whole.
	require.NoError(t, b.PublishContext(ctx, "big", fits))
	sub, err := b.Subscribe(ctx, "big")
	require.NoError(t, err)
	got := receive(t, sub)
	require.Equal(t, fits.UUID, got.UUID)
	require.Len(t, got.Payload, len(fits.Payload))
	got.Ack()
}

const wireOverheadForTest = 300

// Metadata NATS headers cannot carry as they are still round-trip exactly.
func TestMetadataRoundTrip(t *testing.T) {
	b := newBroker(t, testConfig(t))
	ctx := context.Background()
	md := message.Metadata{
		"hub-key":                "k1",
		"Mixed-Case":             "kept",
		"mixed-case":             "both cases",
		"newline":                "a\r\nb\nc",
		"spaces":                 "  padded\t",
		"empty":                  "",
		"with:colon":             "v",
		"with space":             "v",
		"Nats-Msg-Id":            "not the adapter's",
		"hub-nats-uuid":          "not the adapter's either",
		"unicode-ключ":           "значение ✓",
		"binary":                 "\x00\xff\xfe",
		"comma,equals=":          "x,y=z",
		"traceparent":            "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
		strings.Repeat("k", 300): strings.Repeat("v", 3000),
	}
	m := message.NewMessage(watermill.NewUUID(), []byte("payload"))
	for k, v := range md {
		m.Metadata[k] = v
	}
	sub, err := b.Subscribe(ctx, "meta")
	require.NoError(t, err)
	require.NoError(t, b.PublishContext(ctx, "meta", m))
	got := receive(t, sub)
	got.Ack()
	require.Equal(t, m.UUID, got.UUID)
	require.Equal(t, md, got.Metadata)
	require.Equal(t, []byte("payload"), []byte(got.Payload))
}

// The same message published twice is stored once; the same UUID with
// other metadata (a delayed retry, a replay) is stored again.
func TestPublishDedupe(t *testing.T) {
	b := newBroker(t, testConfig(t))
	ctx := context.Background()
	sub, err := b.Subscribe(ctx, "dedupe")
	require.NoError(t, err)
	m := message.NewMessage(watermill.NewUUID(), []byte("x"))
	require.NoError(t, b.PublishContext(ctx, "dedupe", m))
	require.NoError(t, b.PublishContext(ctx, "dedupe", m))
	again := message.NewMessage(m.UUID, []byte("x"))
	again.Metadata.Set("hub-attempt", "2")
	require.NoError(t, b.PublishContext(ctx, "dedupe", again))
	last := message.NewMessage(watermill.NewUUID(), []byte("end"))
	require.NoError(t, b.PublishContext(ctx, "dedupe", last))

	var attempts []string
	for {
		got := receive(t, sub)
		got.Ack()
		if got.UUID == last.UUID {
			break
		}
		require.Equal(t, m.UUID, got.UUID)
		attempts = append(attempts, got.Metadata.Get("hub-attempt"))
	}
	require.Equal(t, []string{"", "2"}, attempts)
}

// A message without a UUID is never deduplicated against another.
func TestNoUUIDNotDeduplicated(t *testing.T) {
	b := newBroker(t, testConfig(t))
	ctx := context.Background()
	sub, err := b.Subscribe(ctx, "nouuid")
	require.NoError(t, err)
	require.NoError(t, b.PublishContext(ctx, "nouuid", message.NewMessage("", []byte("x")), message.NewMessage("", []byte("x"))))
	first := receive(t, sub)
	first.Ack()
	second := receive(t, sub)
	second.Ack()
	require.Empty(t, first.UUID, "delivered as published: without an ID")
	require.Empty(t, second.UUID)
}

// A delayed message reaches only its group, not before its time, and is
// not counted as a redelivery.
func TestPublishDelayedToOneGroup(t *testing.T) {
	b := newBroker(t, testConfig(t))
	ctx := context.Background()
	require.NoError(t, b.Declare(ctx, "delayed", "a", "b"))
	subA, err := b.SubscribeGroup(ctx, "delayed", broker.Group{Name: "a"})
	require.NoError(t, err)
	subB, err := b.SubscribeGroup(ctx, "delayed", broker.Group{Name: "b"})
	require.NoError(t, err)

	const delay = 1500 * time.Millisecond
	m := message.NewMessage(watermill.NewUUID(), []byte("later"))
	start := time.Now()
	require.NoError(t, b.PublishDelayed(ctx, "delayed", "a", delay, m))
	got := receive(t, subA)
	require.GreaterOrEqual(t, time.Since(start), delay)
	require.Equal(t, m.UUID, got.UUID)
	require.Empty(t, got.Metadata.Get("hub-delivery-count"))
	got.Ack()

	// Group b never saw it: the next message it gets is this marker.
	marker := message.NewMessage(watermill.NewUUID(), []byte("marker"))
	require.NoError(t, b.PublishContext(ctx, "delayed", marker))
	gotB := receive(t, subB)
	require.Equal(t, marker.UUID, gotB.UUID)
	gotB.Ack()
	receive(t, subA).Ack()
}

// A nacked message comes back, counted.
func TestNackRedelivers(t *testing.T) {
	b := newBroker(t, testConfig(t))
	ctx := context.Background()
	sub, err := b.SubscribeGroup(ctx, "nack", broker.Group{Name: "g"})
	require.NoError(t, err)
	m := message.NewMessage(watermill.NewUUID(), []byte("x"))
	require.NoError(t, b.PublishContext(ctx, "nack", m))
	first := receive(t, sub)
	require.Empty(t, first.Metadata.Get("hub-delivery-count"))
	first.Nack()
	second := receive(t, sub)
	require.Equal(t, m.UUID, second.UUID)
	require.Equal(t, "2", second.Metadata.Get("hub-delivery-count"))
	second.Ack()
}

// Closing the broker nacks what it delivered and did not see acked: the
// next broker gets it at once, not after AckWait.
func TestCloseNacksUnacked(t *testing.T) {
	cfg := testConfig(t)
	cfg.AckWait = time.Minute
	ctx := context.Background()
	b1 := newBroker(t, cfg)
	sub, err := b1.SubscribeGroup(ctx, "close", broker.Group{Name: "g"})
	require.NoError(t, err)
	m := message.NewMessage(watermill.NewUUID(), []byte("x"))
	require.NoError(t, b1.PublishContext(ctx, "close", m))
	_ = receive(t, sub) // never acked

	closed := make(chan error, 1)
	go func() { closed <- b1.Close() }()
	select {
	case err := <-closed:
		require.NoError(t, err)
	case <-time.After(10 * time.Second):
		t.Fatal("Close did not return")
	}
	_, open := <-sub
	require.False(t, open, "the subscription channel is closed")
	require.NoError(t, b1.Close(), "Close twice")
	require.ErrorIs(t, b1.Publish("close", m), broker.ErrClosed)

	b2 := newBroker(t, cfg)
	sub2, err := b2.SubscribeGroup(ctx, "close", broker.Group{Name: "g"})
	require.NoError(t, err)
	start := time.Now()
	got := receive(t, sub2)
	require.Equal(t, m.UUID, got.UUID)
	require.Less(t, time.Since(start), 20*time.Second, "delivered again well before AckWait")
	got.Ack()
}

// Cancelling a subscription's context keeps a delivered message with its
// handler: the channel closes only after it is acked.
func TestSubscriptionCancelWaitsForAck(t *testing.T) {
	b := newBroker(t, testConfig(t))
	ctx := context.Background()
	sctx, cancel := context.WithCancel(ctx)
	sub, err := b.SubscribeGroup(sctx, "cancel", broker.Group{Name: "g"})
	require.NoError(t, err)
	require.NoError(t, b.PublishContext(ctx, "cancel", message.NewMessage(watermill.NewUUID(), []byte("x"))))
	got := receive(t, sub)
	cancel()
	select {
	case _, open := <-sub:
		require.True(t, open, "channel closed with a message unacked")
		t.Fatal("unexpected message")
	case <-time.After(300 * time.Millisecond):
	}
	got.Ack()
	select {
	case _, open := <-sub:
		require.False(t, open)
	case <-time.After(10 * time.Second):
		t.Fatal("channel not closed after the ack")
	}
	require.Eventually(t, func() bool {
		qs, err := b.Queues(ctx, "cancel")
		require.NoError(t, err)
		for _, q := range qs {
			if q.Group == "g" {
				return q.Depth == 0
			}
		}
		return false
	}, 10*time.Second, 20*time.Millisecond, "the ack reaches the server")
}

func TestInspector(t *testing.T) {
	cfg := testConfig(t)
	b := newBroker(t, cfg)
	ctx := context.Background()
	_, err := b.Queues(ctx, "nothing.here")
	require.ErrorIs(t, err, broker.ErrUnknownTopic)

	require.NoError(t, b.Declare(ctx, "inspect.me", "worker"))
	for i := range 3 {
		require.NoError(t, b.PublishContext(ctx, "inspect.me", message.NewMessage(fmt.Sprint(i), []byte("x"))))
	}
	qs, err := b.Queues(ctx, "inspect.me")
	require.NoError(t, err)
	byGroup := map[string]broker.QueueStats{}
	for _, q := range qs {
		byGroup[q.Group] = q
	}
	require.Len(t, byGroup, 2)
	w := byGroup["worker"]
	require.Equal(t, "inspect.me", w.Topic)
	require.EqualValues(t, 3, w.Depth)
	require.EqualValues(t, -1, w.InFlight)
	require.Positive(t, w.OldestAge)
	require.Contains(t, byGroup, "inspect.me", "the default group")

	sub, err := b.SubscribeGroup(ctx, "inspect.me", broker.Group{Name: "worker", Prefetch: 1})
	require.NoError(t, err)
	got := receive(t, sub)
	qs, err = b.Queues(ctx, "inspect.me")
	require.NoError(t, err)
	for _, q := range qs {
		if q.Group == "worker" {
			require.EqualValues(t, 3, q.Depth, "a delivered message counts until acked")
		}
	}
	got.Ack()

	all, err := b.Queues(ctx, "")
	require.NoError(t, err)
	require.Len(t, all, 2, "every queue under this test's prefix")
}

// The server goes away mid-stream and comes back: publishes fail with a
// clear error while it is down and within their context, subscriptions
// resume, nothing acked is lost.
func TestServerRestart(t *testing.T) {
	n := startNode(t)
	ctx := context.Background()
	cfg := nats.Config{URL: n.url(), PollWait: 500 * time.Millisecond, Logger: quiet(), PublishTimeout: 2 * time.Second}
	b := newBroker(t, cfg)
	sub, err := b.SubscribeGroup(ctx, "restart", broker.Group{Name: "g", Prefetch: 4})
	require.NoError(t, err)
	before := message.NewMessage(watermill.NewUUID(), []byte("before"))
	require.NoError(t, b.PublishContext(ctx, "restart", before))
	receive(t, sub).Ack()

	n.stop()
	pctx, cancel := context.WithTimeout(ctx, time.Second)
	start := time.Now()
	err = b.PublishContext(pctx, "restart", message.NewMessage(watermill.NewUUID(), []byte("down")))
	cancel()
	require.Error(t, err)
	require.Less(t, time.Since(start), 5*time.Second, "a publish to a server that is down returns with its context")
	require.Error(t, b.Ping(ctx))

	n.start()
	after := message.NewMessage(watermill.NewUUID(), []byte("after"))
	require.Eventually(t, func() bool {
		pctx, cancel := context.WithTimeout(ctx, time.Second)
		defer cancel()
		return b.PublishContext(pctx, "restart", after) == nil
	}, 20*time.Second, 100*time.Millisecond)
	for {
		got := receive(t, sub)
		got.Ack()
		if got.UUID == after.UUID {
			break
		}
	}
	require.NoError(t, b.Ping(ctx))
}

// Mutual TLS with broker.TLSFiles: the right client certificate connects,
// none or one of another CA does not.
func TestMutualTLS(t *testing.T) {
	dir := t.TempDir()
	writeCerts(t, dir)
	f := func(name string) string { return filepath.Join(dir, name) }
	n := startNode(t, "--tlsverify", "--tlscert", f("server.pem"), "--tlskey", f("server.key"), "--tlscacert", f("ca.pem"))
	url := strings.Replace(n.url(), "nats://", "tls://", 1)
	ctx := context.Background()

	b := newBroker(t, nats.Config{URL: url, Logger: quiet(), TLS: &broker.TLSFiles{CA: f("ca.pem"), Cert: f("client.pem"), Key: f("client.key")}})
	sub, err := b.Subscribe(ctx, "tls")
	require.NoError(t, err)
	m := message.NewMessage(watermill.NewUUID(), []byte("secret"))
	require.NoError(t, b.PublishContext(ctx, "tls", m))
	got := receive(t, sub)
	require.Equal(t, m.UUID, got.UUID)
	got.Ack()

	for _, tc := range []struct {
		name string
		tls  *broker.TLSFiles
	}{
		{"no client certificate", &broker.TLSFiles{CA: f("ca.pem")}},
		{"client certificate of another CA", &broker.TLSFiles{CA: f("ca.pem"), Cert: f("other-client.pem"), Key: f("other-client.key")}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			defer cancel()
			b, err := nats.New(ctx, nats.Config{URL: url, Logger: quiet(), TLS: tc.tls})
			require.Nil(t, b)
			require.Error(t, err)
		})
	}
	// A server certificate the client does not trust.
	other := t.TempDir()
	writeCerts(t, other)
	_, err = nats.New(ctx, nats.Config{URL: url, Logger: quiet(), TLS: &broker.TLSFiles{CA: filepath.Join(other, "ca.pem"), Cert: f("client.pem"), Key: f("client.key")}})
	require.Error(t, err)
}
