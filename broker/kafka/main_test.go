package kafka_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"io"
	"log/slog"
	"os"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/stretchr/testify/require"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"go.uber.org/goleak"

	"github.com/harvesthub/hub/broker/kafka"
)

// No Kafka server runs on this machine: every test runs against kfake,
// franz-go's in-process Kafka cluster, which speaks the Kafka protocol
// (produce, fetch, consumer groups, offset commits, admin) on loopback
// listeners. See the package documentation.

func TestMain(m *testing.M) {
	if os.Getenv(childEnv) != "" {
		runChild() // the consumer TestKilledConsumer kills
		return
	}
	goleak.VerifyTestMain(m)
}

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

// newCluster starts a kfake cluster closed at the end of t.
func newCluster(t *testing.T, opts ...kfake.Opt) []string {
	t.Helper()
	c, err := kfake.NewCluster(append([]kfake.Opt{kfake.NumBrokers(1), kfake.GroupMinSessionTimeout(100 * time.Millisecond)}, opts...)...)
	require.NoError(t, err)
	t.Cleanup(c.Close)
	return c.ListenAddrs()
}

// newBroker returns a broker on addrs, closed at the end of t.
func newBroker(t *testing.T, addrs []string, tune ...func(*kafka.Config)) *kafka.Broker {
	t.Helper()
	cfg := kafka.Config{Brokers: addrs, Partitions: 1, Logger: quiet, SessionTimeout: time.Second, CommitInterval: 100 * time.Millisecond}
	for _, f := range tune {
		f(&cfg)
	}
	b, err := kafka.New(cfg)
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, b.Close()) })
	return b
}

func unique(prefix string) string {
	var b [4]byte
	_, _ = rand.Read(b[:])
	return prefix + "_" + hex.EncodeToString(b[:])
}

func msg(id string) *message.Message { return message.NewMessage(id, []byte("payload "+id)) }

// receive returns the next message of ch within 10s.
func receive(t *testing.T, ch <-chan *message.Message) *message.Message {
	t.Helper()
	select {
	case m, ok := <-ch:
		require.True(t, ok, "subscription closed")
		return m
	case <-time.After(10 * time.Second):
		t.Fatal("no message within 10s")
		return nil
	}
}

// admin returns a kadm client on addrs, closed at the end of t.
func admin(t *testing.T, addrs []string) *kadm.Client {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(addrs...))
	require.NoError(t, err)
	t.Cleanup(cl.Close)
	return kadm.NewClient(cl)
}

// committed returns the committed offset of group on partition 0 of
// topic, -1 when there is none.
func committed(t *testing.T, adm *kadm.Client, group, topic string) int64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	offs, err := adm.FetchOffsets(ctx, group)
	require.NoError(t, err)
	o, ok := offs.Lookup(topic, 0)
	if !ok || o.At < 0 {
		return -1
	}
	return o.At
}

// endOffset returns the end offset of partition 0 of topic.
func endOffset(t *testing.T, adm *kadm.Client, topic string) int64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	offs, err := adm.ListEndOffsets(ctx, topic)
	require.NoError(t, err)
	o, ok := offs.Lookup(topic, 0)
	require.True(t, ok)
	require.NoError(t, o.Err)
	return o.Offset
}
