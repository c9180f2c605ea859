package kafka_test

import (
	"context"
	"fmt"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/stretchr/testify/require"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/harvesthub/hub/broker"
	"github.com/harvesthub/hub/broker/kafka"
)

// TestUnreachable: every call on a cluster that refuses connections, or
// accepts them and never answers, returns a clear error within its bound.
func TestUnreachable(t *testing.T) {
	silent, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	var conns sync.WaitGroup
	conns.Add(1)
	go func() { // holds every connection open without a word
		defer conns.Done()
		var held []net.Conn
		defer func() {
			for _, c := range held {
				_ = c.Close()
			}
		}()
		for {
			c, err := silent.Accept()
			if err != nil {
				return
			}
			held = append(held, c)
		}
	}()
	t.Cleanup(func() { _ = silent.Close(); conns.Wait() })
	for _, addr := range []string{"127.0.0.1:1", silent.Addr().String()} {
		b := newBroker(t, []string{addr}, func(c *kafka.Config) {
			c.RequestTimeout, c.PublishTimeout = 300*time.Millisecond, 300*time.Millisecond
		})
		ctx := context.Background()
		for _, tc := range []struct {
			name string
			call func() error
		}{
			{"Ping", func() error {
				ctx, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
				defer cancel()
				return b.Ping(ctx)
			}},
			{"Publish", func() error { return b.Publish("t", msg("a")) }},
			{"PublishDelayed", func() error { return b.PublishDelayed(ctx, "t", "g", time.Second, msg("a")) }},
			{"Declare", func() error { return b.Declare(ctx, "t", "g") }},
			{"SubscribeGroup", func() error { _, err := b.SubscribeGroup(ctx, "t", broker.Group{}); return err }},
			{"Queues", func() error { _, err := b.Queues(ctx, "t"); return err }},
		} {
			t.Run(addr+"/"+tc.name, func(t *testing.T) {
				start := time.Now()
				err := tc.call()
				require.Error(t, err)
				require.Less(t, time.Since(start), 5*time.Second)
				require.Contains(t, err.Error(), "cluster "+addr)
			})
		}
	}
}

// TestPublishContextCancel: a publish to a cluster that holds every
// produce request returns once its context ends, with the context's error.
func TestPublishContextCancel(t *testing.T) {
	c, err := kfake.NewCluster(kfake.NumBrokers(1))
	require.NoError(t, err)
	t.Cleanup(c.Close)
	b := newBroker(t, c.ListenAddrs())
	topic := unique("hung")
	require.NoError(t, b.Declare(context.Background(), topic))
	held, release := make(chan struct{}), make(chan struct{})
	defer close(release)
	c.ControlKey(int16(kmsg.Produce), func(kmsg.Request) (kmsg.Response, error, bool) {
		c.KeepControl()
		select {
		case held <- struct{}{}:
		default:
		}
		<-release // the cluster answers nothing until the test ends
		return nil, nil, false
	})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- b.PublishContext(ctx, topic, msg("a")) }()
	<-held
	cancel()
	select {
	case err := <-done:
		require.ErrorIs(t, err, context.Canceled)
	case <-time.After(10 * time.Second):
		t.Fatal("PublishContext did not return after its context was cancelled")
	}
	// A cancelled context returns at once.
	require.ErrorIs(t, b.PublishContext(ctx, topic, msg("b")), context.Canceled)
}

// TestOversize: a message over the limit fails the whole publish with
// ErrMessageTooLarge and nothing reaches the topic; one at the limit passes.
func TestOversize(t *testing.T) {
	addrs := newCluster(t)
	b := newBroker(t, addrs, func(c *kafka.Config) { c.MaxMessageBytes = 16 << 10 })
	adm := admin(t, addrs)
	limit := b.MaxMessageSize()
	require.Equal(t, 16<<10-1024, limit)
	sized := func(id string, n int) *message.Message {
		m := message.NewMessage(id, nil)
		m.Payload = make([]byte, n-len(id))
		return m
	}
	bigMeta := message.NewMessage("m", nil)
	bigMeta.Metadata.Set("k", strings.Repeat("v", limit))
	for _, tc := range []struct {
		name string
		msgs []*message.Message
	}{
		{"payload", []*message.Message{sized("big", limit+1)}},
		{"metadata", []*message.Message{bigMeta}},
		{"one of a batch", []*message.Message{sized("ok", 10), sized("big", limit+1)}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			topic := unique("big")
			require.NoError(t, b.Declare(context.Background(), topic))
			err := b.Publish(topic, tc.msgs...)
			require.ErrorIs(t, err, broker.ErrMessageTooLarge)
			require.ErrorIs(t, b.PublishDelayed(context.Background(), topic, "", time.Second, tc.msgs...), broker.ErrMessageTooLarge)
			require.Equal(t, int64(0), endOffset(t, adm, topic), "nothing may reach the topic")
		})
	}
	t.Run("at the limit", func(t *testing.T) {
		topic := unique("limit")
		m := sized("edge", limit)
		m.Metadata = message.Metadata{}
		require.Equal(t, limit, broker.MessageSize(m))
		require.NoError(t, b.Publish(topic, m))
		ch, err := b.Subscribe(context.Background(), topic)
		require.NoError(t, err)
		got := receive(t, ch)
		require.Equal(t, "edge", got.UUID)
		require.Len(t, got.Payload, limit-len("edge"))
		got.Ack()
	})
}

// TestCommitNeverPassesUnacked acks out of order and checks the committed
// offset after each step: it is always the first unacked offset.
func TestCommitNeverPassesUnacked(t *testing.T) {
	addrs := newCluster(t)
	adm := admin(t, addrs)
	topic, group := unique("order"), "g"
	gid := topic + "~" + group
	pub := newBroker(t, addrs)
	for i := range 3 {
		require.NoError(t, pub.Publish(topic, msg(fmt.Sprint("m", i))))
	}
	take := func(b *kafka.Broker, n int) []*message.Message {
		ch, err := b.SubscribeGroup(context.Background(), topic, broker.Group{Name: group, Prefetch: n})
		require.NoError(t, err)
		ms := make([]*message.Message, n)
		for i := range ms {
			ms[i] = receive(t, ch)
		}
		return ms
	}
	ids := func(ms []*message.Message) (s []string) {
		for _, m := range ms {
			s = append(s, m.UUID)
		}
		return s
	}

	// 1: acks m2 and m1, not m0: nothing may be committed.
	b1 := newBroker(t, addrs)
	ms := take(b1, 3)
	require.Equal(t, []string{"m0", "m1", "m2"}, ids(ms))
	ms[2].Ack()
	ms[1].Ack()
	require.NoError(t, b1.Close()) // commits what may be committed, then leaves
	require.Equal(t, int64(-1), committed(t, adm, gid, topic))

	// 2: all three again; acks m1 then m0: m0 and m1 committed, m2 not.
	b2 := newBroker(t, addrs)
	ms = take(b2, 3)
	require.Equal(t, []string{"m0", "m1", "m2"}, ids(ms))
	ms[1].Ack()
	ms[0].Ack()
	require.Eventually(t, func() bool { return committed(t, adm, gid, topic) == 2 }, 10*time.Second, 10*time.Millisecond)
	require.NoError(t, b2.Close())
	require.Equal(t, int64(2), committed(t, adm, gid, topic))

	// 3: only m2 comes back.
	b3 := newBroker(t, addrs)
	ms = take(b3, 1)
	require.Equal(t, []string{"m2"}, ids(ms))
	ms[0].Ack()
	require.NoError(t, b3.Close())
	require.Equal(t, int64(3), committed(t, adm, gid, topic))
}

// TestNackRedelivers: a nacked message comes back before the next one of
// its partition, with hub-delivery-count set.
func TestNackRedelivers(t *testing.T) {
	b := newBroker(t, newCluster(t))
	topic := unique("nack")
	require.NoError(t, b.Publish(topic, msg("a"), msg("b")))
	ch, err := b.SubscribeGroup(context.Background(), topic, broker.Group{Name: "g"})
	require.NoError(t, err)
	m := receive(t, ch)
	require.Equal(t, "a", m.UUID)
	require.Empty(t, m.Metadata.Get("hub-delivery-count"))
	m.Nack()
	m = receive(t, ch)
	require.Equal(t, "a", m.UUID)
	require.Equal(t, "2", m.Metadata.Get("hub-delivery-count"))
	require.Equal(t, "payload a", string(m.Payload))
	m.Ack()
	m = receive(t, ch)
	require.Equal(t, "b", m.UUID)
	m.Ack()
}

// TestDelayed: a delayed message reaches only its target group, not
// before its delay, and does not hold back the messages behind it.
func TestDelayed(t *testing.T) {
	b := newBroker(t, newCluster(t))
	topic := unique("delay")
	ctx := context.Background()
	require.NoError(t, b.Declare(ctx, topic, "g1", "g2"))
	g1, err := b.SubscribeGroup(ctx, topic, broker.Group{Name: "g1"})
	require.NoError(t, err)
	g2, err := b.SubscribeGroup(ctx, topic, broker.Group{Name: "g2"})
	require.NoError(t, err)

	const delay = 1500 * time.Millisecond
	start := time.Now()
	require.NoError(t, b.PublishDelayed(ctx, topic, "g1", delay, msg("late-g1")))
	require.NoError(t, b.PublishDelayed(ctx, topic, "", delay, msg("late-all")))
	require.NoError(t, b.Publish(topic, msg("now")))

	for _, ch := range []<-chan *message.Message{g1, g2} {
		m := receive(t, ch)
		require.Equal(t, "now", m.UUID, "a pending delayed message must not hold back others")
		m.Ack()
	}
	var got []string
	for range 2 {
		m := receive(t, g1)
		require.GreaterOrEqual(t, time.Since(start), delay)
		require.Empty(t, m.Metadata.Get("hub-kafka-due"))
		got = append(got, m.UUID)
		m.Ack()
	}
	require.ElementsMatch(t, []string{"late-g1", "late-all"}, got)
	m := receive(t, g2)
	require.Equal(t, "late-all", m.UUID, "g2 receives only the delayed message for every group")
	m.Ack()

	require.ErrorContains(t, b.PublishDelayed(ctx, topic, "", kafka.MaxDelay+time.Second, msg("x")), "MaxDelay")
}

// TestSubscriptionEnd: cancelling a subscription closes its channel once
// the delivered message is acked; closing the broker does not wait.
func TestSubscriptionEnd(t *testing.T) {
	addrs := newCluster(t)
	b := newBroker(t, addrs)
	topic := unique("end")
	require.NoError(t, b.Publish(topic, msg("a"), msg("b")))
	ctx, cancel := context.WithCancel(context.Background())
	ch, err := b.SubscribeGroup(ctx, topic, broker.Group{Name: "g"})
	require.NoError(t, err)
	m := receive(t, ch)
	cancel()
	select {
	case _, ok := <-ch:
		require.False(t, ok, "no new delivery after cancel")
		t.Fatal("channel closed while a delivered message is unacked")
	case <-m.Context().Done():
		t.Fatal("message context ended before its ack")
	case <-time.After(100 * time.Millisecond):
	}
	m.Ack()
	_, ok := <-ch
	require.False(t, ok)

	// Broker.Close with a message unacked returns, closes the channel,
	// and leaves the message to the group.
	ch, err = b.SubscribeGroup(context.Background(), topic, broker.Group{Name: "g"})
	require.NoError(t, err)
	m = receive(t, ch)
	require.Equal(t, "b", m.UUID)
	require.NoError(t, b.Close())
	require.NoError(t, b.Close(), "Close twice")
	_, ok = <-ch
	require.False(t, ok)
	require.ErrorIs(t, b.Publish(topic, msg("c")), broker.ErrClosed)
	_, err = b.Subscribe(context.Background(), topic)
	require.ErrorIs(t, err, broker.ErrClosed)

	b2 := newBroker(t, addrs)
	ch, err = b2.SubscribeGroup(context.Background(), topic, broker.Group{Name: "g"})
	require.NoError(t, err)
	m = receive(t, ch)
	require.Equal(t, "b", m.UUID)
	m.Ack()
}

// TestRecords: the record key is the hub-key, metadata are headers, the
// UUID travels in watermill-kafka's header.
func TestRecords(t *testing.T) {
	addrs := newCluster(t)
	b := newBroker(t, addrs)
	topic := unique("rec")
	m := msg("id1")
	m.Metadata.Set("hub-key", "order-7")
	m.Metadata.Set("x", "y")
	require.NoError(t, b.Publish(topic, m, msg("id2")))
	cl, err := kgo.NewClient(kgo.SeedBrokers(addrs...), kgo.ConsumeTopics(topic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	require.NoError(t, err)
	defer cl.Close()
	var recs []*kgo.Record
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for len(recs) < 2 {
		f := cl.PollFetches(ctx)
		require.NoError(t, ctx.Err())
		recs = append(recs, f.Records()...)
	}
	require.Equal(t, "order-7", string(recs[0].Key))
	headers := map[string]string{}
	for _, h := range recs[0].Headers {
		headers[h.Key] = string(h.Value)
	}
	require.Equal(t, map[string]string{kafka.HeaderUUID: "id1", "hub-key": "order-7", "x": "y"}, headers)
	require.Nil(t, recs[1].Key, "no hub-key: no key")
}

func TestConfig(t *testing.T) {
	for _, tc := range []struct {
		name string
		cfg  kafka.Config
		want string
	}{
		{"no brokers", kafka.Config{}, "Config.Brokers"},
		{"negative partitions", kafka.Config{Brokers: []string{"x:1"}, Partitions: -1}, "Partitions"},
		{"tiny max", kafka.Config{Brokers: []string{"x:1"}, MaxMessageBytes: 10}, "MaxMessageBytes"},
		{"negative timeout", kafka.Config{Brokers: []string{"x:1"}, RequestTimeout: -1}, "negative"},
		{"fast commits", kafka.Config{Brokers: []string{"x:1"}, CommitInterval: time.Millisecond}, "CommitInterval"},
		{"missing TLS files", kafka.Config{Brokers: []string{"x:1"}, TLS: &broker.TLSFiles{CA: "/nonexistent"}}, "Config.TLS"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := kafka.New(tc.cfg)
			require.ErrorContains(t, err, tc.want)
		})
	}
}

func TestInvalidTopic(t *testing.T) {
	b := newBroker(t, []string{"127.0.0.1:1"})
	for _, topic := range []string{"", "a b", "a~b", "..", strings.Repeat("x", 240), "tópico"} {
		t.Run(topic, func(t *testing.T) {
			require.ErrorIs(t, b.Publish(topic, msg("a")), kafka.ErrInvalidTopic)
			_, err := b.Subscribe(context.Background(), topic)
			require.ErrorIs(t, err, kafka.ErrInvalidTopic)
			require.ErrorIs(t, b.Declare(context.Background(), topic), kafka.ErrInvalidTopic)
		})
	}
}

// TestCloseWhenClusterGone: Close returns, within the request timeout,
// when the cluster vanished under a subscription holding a message.
func TestCloseWhenClusterGone(t *testing.T) {
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.GroupMinSessionTimeout(100*time.Millisecond))
	require.NoError(t, err)
	b, err := kafka.New(kafka.Config{Brokers: c.ListenAddrs(), Partitions: 1, Logger: quiet,
		SessionTimeout: time.Second, RequestTimeout: time.Second})
	require.NoError(t, err)
	topic := unique("gone")
	require.NoError(t, b.Publish(topic, msg("a"), msg("b")))
	ch, err := b.SubscribeGroup(context.Background(), topic, broker.Group{Name: "g"})
	require.NoError(t, err)
	m := receive(t, ch)
	m.Ack()
	receive(t, ch) // held, unacked
	c.Close()
	start := time.Now()
	require.NoError(t, b.Close())
	require.Less(t, time.Since(start), 5*time.Second)
	_, ok := <-ch
	require.False(t, ok)
}

// TestForeignRecord: a record from another producer (no UUID header, a
// key, headers) is delivered with an empty UUID and its headers as
// metadata.
func TestForeignRecord(t *testing.T) {
	addrs := newCluster(t)
	b := newBroker(t, addrs)
	topic := unique("foreign")
	require.NoError(t, b.Declare(context.Background(), topic))
	cl, err := kgo.NewClient(kgo.SeedBrokers(addrs...))
	require.NoError(t, err)
	defer cl.Close()
	require.NoError(t, cl.ProduceSync(context.Background(), &kgo.Record{Topic: topic, Key: []byte("k"), Value: []byte("v"),
		Headers: []kgo.RecordHeader{{Key: "h", Value: []byte("x")}}}).FirstErr())
	ch, err := b.Subscribe(context.Background(), topic)
	require.NoError(t, err)
	m := receive(t, ch)
	require.Empty(t, m.UUID)
	require.Equal(t, "v", string(m.Payload))
	require.Equal(t, message.Metadata{"h": "x"}, m.Metadata)
	m.Ack()
}
