package amqp_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"log/slog"
	"os/exec"
	"runtime/pprof"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/stretchr/testify/require"

	"github.com/harvesthub/hub/broker"
	"github.com/harvesthub/hub/broker/amqp"
	"github.com/harvesthub/hub/internal/faultnet"
)

// lossCounter counts the broker's "connection lost" warnings.
type lossCounter struct {
	slog.Handler
	n *atomic.Int32
}

func (l lossCounter) Handle(_ context.Context, r slog.Record) error {
	if strings.HasPrefix(r.Message, "amqp: connection lost") {
		l.n.Add(1)
	}
	return nil
}

func (l lossCounter) Enabled(context.Context, slog.Level) bool { return true }

func (l lossCounter) WithAttrs([]slog.Attr) slog.Handler { return l }

func countLosses() (*slog.Logger, *atomic.Int32) {
	n := new(atomic.Int32)
	return slog.New(lossCounter{Handler: slog.DiscardHandler, n: n}), n
}

// bounded runs f, failing t when it runs longer than limit.
func bounded(t *testing.T, what string, limit time.Duration, f func() error) error {
	t.Helper()
	done := make(chan error, 1)
	start := time.Now()
	go func() { done <- f() }()
	select {
	case err := <-done:
		t.Logf("%s returned after %v: %v", what, time.Since(start).Round(time.Millisecond), err)
		return err
	case <-time.After(limit):
		var stacks strings.Builder
		_ = pprof.Lookup("goroutine").WriteTo(&stacks, 1)
		t.Fatalf("%s still running after %v; goroutines:\n%s", what, limit, stacks.String())
		return nil
	}
}

// An oversize message is refused at publish, before anything is sent:
// the connection and a consumer on it carry on.
func TestOversizeRefusedAtPublish(t *testing.T) {
	url := sharedURL(t)
	topic := uniqueTopic(t, url)
	log, losses := countLosses()
	b := newBroker(t, amqp.Config{URL: url, MaxMessageSize: 64 << 10, Logger: log})
	cleanupQueues(topic, topic+".g")
	ch, err := b.SubscribeGroup(t.Context(), topic, broker.Group{Name: "g"})
	require.NoError(t, err)
	var sl broker.SizeLimiter = b
	require.Equal(t, 64<<10, sl.MaxMessageSize())

	withMeta := func(k, v string) *message.Message {
		m := message.NewMessage(watermill.NewUUID(), []byte("x"))
		m.Metadata.Set(k, v)
		return m
	}
	tests := []struct {
		name string
		msg  *message.Message
	}{
		// 530 reconnects in 3 s before: RabbitMQ closed the connection
		// on the header frame, and the publisher sent it again.
		{name: "headers over frame_max", msg: withMeta("hub-dlq-error", strings.Repeat("e", 200<<10))},
		{name: "header name over 255 bytes", msg: withMeta(strings.Repeat("k", 300), "v")},
		{name: "payload over max_message_size", msg: message.NewMessage(watermill.NewUUID(), make([]byte, 64<<10+1))},
		{name: "message ID over 255 bytes", msg: message.NewMessage(strings.Repeat("i", 256), []byte("x"))},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
			defer cancel()
			small := message.NewMessage(watermill.NewUUID(), []byte("before"))
			err := bounded(t, "PublishContext", 5*time.Second, func() error {
				return b.PublishContext(ctx, topic, small, tt.msg)
			})
			require.ErrorIs(t, err, broker.ErrMessageTooLarge)
			require.NotErrorIs(t, err, context.DeadlineExceeded)
			// Delayed publishes check too.
			require.ErrorIs(t, b.PublishDelayed(ctx, topic, "g", time.Second, tt.msg), broker.ErrMessageTooLarge)

			// The consumer on the same connection keeps consuming, and
			// nothing of the refused call was sent.
			ok := message.NewMessage(watermill.NewUUID(), []byte{byte(i)})
			require.NoError(t, b.PublishContext(ctx, topic, ok))
			got := receive(t, ch, 1)
			require.Equal(t, []string{ok.UUID}, got)
			require.Zero(t, losses.Load(), "the connection was never lost")
		})
	}
}

// A subscription RabbitMQ refuses (403 on declare or on consume) fails
// SubscribeGroup promptly; the broker carries on.
func TestSubscribeAccessRefused(t *testing.T) {
	url := sharedURL(t)
	if _, err := exec.LookPath("rabbitmqctl"); err != nil {
		t.Skip("rabbitmqctl not found: it creates the test's private user")
	}
	topic := uniqueTopic(t, url)
	var rb [4]byte
	_, _ = rand.Read(rb[:])
	tests := []struct {
		name                   string
		configure, write, read string
	}{
		{name: "declare refused", configure: "^$", write: "^$", read: "^$"},
		// Declare and bind are allowed (read on the exchange), consuming
		// the group's queue is not.
		{name: "consume refused", configure: ".*", write: ".*", read: "^" + strings.ReplaceAll(topic, ".", `\.`) + "$"},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			user := "hubtest-" + hex.EncodeToString(rb[:]) + "-" + string(rune('a'+i))
			rabbitmqctl(t, "add_user", user, "pw")
			t.Cleanup(func() { _ = exec.Command("rabbitmqctl", "-q", "delete_user", user).Run() })
			rabbitmqctl(t, "set_permissions", "-p", "/", user, tt.configure, tt.write, tt.read)

			b := newBroker(t, amqp.Config{URL: strings.Replace(url, "guest:guest", user+":pw", 1), Logger: slog.New(slog.DiscardHandler)})
			cleanupQueues(topic, topic+".g")
			err := bounded(t, "SubscribeGroup", 10*time.Second, func() error {
				_, err := b.SubscribeGroup(t.Context(), topic, broker.Group{Name: "g"})
				return err
			})
			require.Error(t, err)
			require.Contains(t, err.Error(), "403")
			require.NoError(t, b.Ping(t.Context()), "the connection survives")
			require.NoError(t, bounded(t, "Close", 10*time.Second, b.Close))
		})
	}
}

func rabbitmqctl(t *testing.T, args ...string) {
	t.Helper()
	out, err := exec.Command("rabbitmqctl", append([]string{"-q"}, args...)...).CombinedOutput()
	require.NoError(t, err, "rabbitmqctl %v: %s", args, out)
}

// A group queue deleted behind the broker's back is declared again by the
// next SubscribeGroup instead of failing it with a 404.
func TestSubscribeQueueDeleted(t *testing.T) {
	url := sharedURL(t)
	topic := uniqueTopic(t, url)
	cleanupQueues(topic, topic+".g")
	b := newBroker(t, amqp.Config{URL: url})
	require.NoError(t, b.Declare(t.Context(), topic, "g"))
	deleteTopology(url, topic)
	cleanupQueues(topic, topic+".g")
	ch, err := b.SubscribeGroup(t.Context(), topic, broker.Group{Name: "g"})
	require.NoError(t, err)
	m := message.NewMessage(watermill.NewUUID(), []byte("x"))
	require.NoError(t, b.Publish(topic, m))
	require.Equal(t, []string{m.UUID}, receive(t, ch, 1))
}

// A publish whose confirm does not come (a stalled server, a lost
// connection) returns when its context ends, never nil unless RabbitMQ
// confirmed it; Close returns on a stalled server.
func TestPublishWaitsAtMostItsContext(t *testing.T) {
	url := sharedURL(t)
	topic := uniqueTopic(t, url)
	proxy, err := faultnet.New("127.0.0.1:" + portOf(url))
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, proxy.Close()) })
	purl := strings.Replace(url, hostPort(url), proxy.Addr(), 1)
	b, err := amqp.New(amqp.Config{URL: purl, DialTimeout: time.Second, ReconnectMax: 200 * time.Millisecond,
		Logger: slog.New(slog.DiscardHandler)})
	require.NoError(t, err)
	closed := false
	t.Cleanup(func() {
		if !closed {
			_ = b.Close()
		}
	})
	require.NoError(t, b.Declare(t.Context(), topic))

	// Stalled: the confirm never comes; the publish returns with ctx.
	proxy.Freeze()
	ctx, cancel := context.WithTimeout(t.Context(), 300*time.Millisecond)
	defer cancel()
	stalled := message.NewMessage(watermill.NewUUID(), []byte("stalled"))
	err = bounded(t, "PublishContext (stalled)", 5*time.Second, func() error { return b.PublishContext(ctx, topic, stalled) })
	require.ErrorIs(t, err, context.DeadlineExceeded)

	// The connection is lost while waiting for the confirm, and the server
	// stays unreachable: the publish waits for a reconnection at most until
	// its context ends.
	proxy.Cut()
	ctx2, cancel2 := context.WithTimeout(t.Context(), 500*time.Millisecond)
	defer cancel2()
	err = bounded(t, "PublishContext (reconnecting)", 5*time.Second, func() error {
		return b.PublishContext(ctx2, topic, message.NewMessage(watermill.NewUUID(), []byte("lost")))
	})
	require.ErrorIs(t, err, context.DeadlineExceeded)

	// Lost confirm, then the server is back: the publish is sent again on
	// the new connection and returns nil only once confirmed.
	confirmed := message.NewMessage(watermill.NewUUID(), []byte("confirmed"))
	done := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		done <- b.PublishContext(ctx, topic, confirmed)
	}()
	proxy.Cut()
	proxy.Resume()
	require.NoError(t, <-done)

	// What reached the queue: the confirmed message, at least once (the
	// stalled one too if its bytes got through before the cut).
	ch, err := b.Subscribe(t.Context(), topic)
	require.NoError(t, err)
	seen := map[string]bool{}
	for !seen[confirmed.UUID] {
		select {
		case m := <-ch:
			seen[m.UUID] = true
			m.Ack()
		case <-time.After(10 * time.Second):
			t.Fatalf("the confirmed message is not in the queue (saw %v)", seen)
		}
	}

	// Close on a stalled server returns.
	proxy.Freeze()
	closed = true
	require.NoError(t, bounded(t, "Close (stalled)", 10*time.Second, b.Close))
}

func hostPort(url string) string {
	rest := url[strings.Index(url, "@")+1:]
	return strings.TrimSuffix(rest[:strings.IndexAny(rest+"/", "/")], "/")
}

func portOf(url string) string {
	hp := hostPort(url)
	return hp[strings.LastIndex(hp, ":")+1:]
}
