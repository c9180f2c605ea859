package sqs

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/aws-sdk-go-v2/service/sqs/types"
	"github.com/stretchr/testify/require"

	"github.com/harvesthub/hub/broker"
	"github.com/harvesthub/hub/internal/testenv"
)

// emulatorConfig talks to the emulator with queue names unique to the test.
func emulatorConfig(t *testing.T) Config {
	t.Helper()
	testenv.Require(t, "SQS emulator", testenv.SQSEndpoint())
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	return Config{
		Endpoint:          testenv.SQSEndpoint(),
		Credentials:       &Credentials{AccessKeyID: "test", SecretAccessKey: "test"},
		QueuePrefix:       "t" + hex.EncodeToString(b) + "-",
		WaitTime:          time.Second,
		VisibilityTimeout: 30 * time.Second,
	}
}

func open(t *testing.T, cfg Config) *Broker {
	t.Helper()
	b, err := New(context.Background(), cfg)
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, b.Close()) })
	return b
}

func subscribe(t *testing.T, b *Broker, topic string, g broker.Group) <-chan *message.Message {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	ch, err := b.SubscribeGroup(ctx, topic, g)
	require.NoError(t, err)
	return ch
}

const wait = 10 * time.Second

func receive(t *testing.T, ch <-chan *message.Message) *message.Message {
	t.Helper()
	select {
	case m, ok := <-ch:
		require.True(t, ok, "subscription closed")
		return m
	case <-time.After(wait):
		t.Fatal("no message within", wait)
		return nil
	}
}

// nothing asserts that no message arrives within d.
func nothing(t *testing.T, ch <-chan *message.Message, d time.Duration) {
	t.Helper()
	select {
	case m := <-ch:
		t.Fatalf("unexpected message %s %q", m.UUID, m.Payload)
	case <-time.After(d):
	}
}

func newMsg(payload string) *message.Message {
	return message.NewMessage(watermill.NewUUID(), []byte(payload))
}

// queueCounts returns ready, delayed and in-flight message counts of the
// queue of group.
func queueCounts(t *testing.T, b *Broker, topic, group string) (ready, delayed, inflight int) {
	t.Helper()
	url, err := b.groupQueue(context.Background(), topic, group)
	require.NoError(t, err)
	out, err := b.sqs.GetQueueAttributes(context.Background(), &sqs.GetQueueAttributesInput{
		QueueUrl: aws.String(url), AttributeNames: []types.QueueAttributeName{types.QueueAttributeNameAll},
	})
	require.NoError(t, err)
	n := func(k types.QueueAttributeName) int {
		v, err := strconv.Atoi(out.Attributes[string(k)])
		require.NoError(t, err)
		return v
	}
	return n(types.QueueAttributeNameApproximateNumberOfMessages),
		n(types.QueueAttributeNameApproximateNumberOfMessagesDelayed),
		n(types.QueueAttributeNameApproximateNumberOfMessagesNotVisible)
}

func TestMetadataManyKeysRoundTrip(t *testing.T) {
	b := open(t, emulatorConfig(t))
	ch := subscribe(t, b, "meta", broker.Group{})
	sent := message.NewMessage(watermill.NewUUID(), []byte{0, 1, 2, 0xff, 0xfe}) // not SQS text: sent as base64
	for i := range 20 {
		sent.Metadata.Set(fmt.Sprintf("key-%02d", i), fmt.Sprintf("value %d \u00e9\n\"quoted\"", i))
	}
	empty := newMsg("")
	require.NoError(t, b.Publish("meta", sent, empty))

	got := map[string]*message.Message{}
	for range 2 {
		m := receive(t, ch)
		got[m.UUID] = m
		m.Ack()
	}
	require.Equal(t, sent.Payload, got[sent.UUID].Payload)
	require.Equal(t, sent.Metadata, got[sent.UUID].Metadata)
	require.Empty(t, got[empty.UUID].Payload)
}

func TestPublishBeforeSubscribeIsKept(t *testing.T) {
	cfg := emulatorConfig(t)
	pub := open(t, cfg)
	sent := newMsg("early")
	require.NoError(t, pub.Publish("early", sent))

	sub := open(t, cfg) // another process
	m := receive(t, subscribe(t, sub, "early", broker.Group{}))
	require.Equal(t, sent.UUID, m.UUID)
	m.Ack()
}

func TestEveryGroupGetsEveryMessage(t *testing.T) {
	cfg := emulatorConfig(t)
	declarer, pub, sub := open(t, cfg), open(t, cfg), open(t, cfg)
	// Declared in one process, published to from another, consumed in a third.
	require.NoError(t, declarer.Declare(context.Background(), "fan", "index", "audit"))
	var sent []string
	for i := range 5 {
		m := newMsg(strconv.Itoa(i))
		sent = append(sent, m.UUID)
		require.NoError(t, pub.Publish("fan", m))
	}
	for _, g := range []string{"index", "audit", ""} {
		ch := subscribe(t, sub, "fan", broker.Group{Name: g, Prefetch: 5})
		var got []string
		for range sent {
			m := receive(t, ch)
			got = append(got, m.UUID)
			m.Ack()
		}
		require.ElementsMatch(t, sent, got, "group %q", g)
	}
}

func TestCompetingConsumers(t *testing.T) {
	cfg := emulatorConfig(t)
	pub := open(t, cfg)
	require.NoError(t, pub.Declare(context.Background(), "work", "workers"))
	a := subscribe(t, open(t, cfg), "work", broker.Group{Name: "workers", Prefetch: 1})
	bb := subscribe(t, open(t, cfg), "work", broker.Group{Name: "workers", Prefetch: 1})
	first, second := newMsg("1"), newMsg("2")
	require.NoError(t, pub.Publish("work", first, second))

	// Each consumer holds one unacked message: they must be different ones.
	ma, mb := receive(t, a), receive(t, bb)
	require.ElementsMatch(t, []string{first.UUID, second.UUID}, []string{ma.UUID, mb.UUID})
	ma.Ack()
	mb.Ack()
	nothing(t, a, 1500*time.Millisecond)
}

func TestBatchReceiveAndPrefetch(t *testing.T) {
	b := open(t, emulatorConfig(t))
	var msgs []*message.Message
	for i := range 12 {
		msgs = append(msgs, newMsg(strconv.Itoa(i)))
	}
	require.NoError(t, b.Publish("batch", msgs...)) // two PublishBatch calls

	ch := subscribe(t, b, "batch", broker.Group{Prefetch: 10})
	var held []*message.Message
	for range 10 { // ten unacked at once: processed concurrently
		held = append(held, receive(t, ch))
	}
	nothing(t, ch, 1500*time.Millisecond) // the prefetch is full
	for _, m := range held {
		m.Ack()
	}
	seen := map[string]bool{}
	for _, m := range held {
		seen[m.UUID] = true
	}
	for range 2 {
		m := receive(t, ch)
		require.False(t, seen[m.UUID], "redelivered an acked message")
		seen[m.UUID] = true
		m.Ack()
	}
	require.Len(t, seen, 12)
}

func TestNackRedeliversAtOnceWithDeliveryCount(t *testing.T) {
	b := open(t, emulatorConfig(t)) // visibility timeout 30s
	ch := subscribe(t, b, "nack", broker.Group{})
	sent := newMsg("again")
	require.NoError(t, b.Publish("nack", sent))

	m := receive(t, ch)
	require.Empty(t, m.Metadata.Get(keyDeliveryCount))
	start := time.Now()
	m.Nack()
	m = receive(t, ch) // well before the 30s visibility timeout
	require.Less(t, time.Since(start), 5*time.Second)
	require.Equal(t, sent.UUID, m.UUID)
	require.Equal(t, "2", m.Metadata.Get(keyDeliveryCount))
	m.Ack()
}

func TestPublishDelayedToOneGroup(t *testing.T) {
	b := open(t, emulatorConfig(t))
	ctx := context.Background()
	require.NoError(t, b.Declare(ctx, "later", "a", "b"))
	sent := newMsg("retry")
	start := time.Now()
	require.NoError(t, b.PublishDelayed(ctx, "later", "a", time.Second, sent))
	_, delayed, _ := queueCounts(t, b, "later", "a")
	require.Equal(t, 1, delayed)

	m := receive(t, subscribe(t, b, "later", broker.Group{Name: "a"}))
	require.Equal(t, sent.UUID, m.UUID)
	require.GreaterOrEqual(t, time.Since(start), 900*time.Millisecond)
	m.Ack()
	for _, g := range []string{"b", ""} {
		ready, delayed, inflight := queueCounts(t, b, "later", g)
		require.Zero(t, ready+delayed+inflight, "group %q got the message", g)
	}
}

func TestPublishDelayedToEveryGroup(t *testing.T) {
	cfg := emulatorConfig(t)
	other := open(t, cfg)
	require.NoError(t, other.Declare(context.Background(), "later", "a")) // another process's group
	b := open(t, cfg)
	require.NoError(t, b.PublishDelayed(context.Background(), "later", "", time.Second, newMsg("x")))
	for _, g := range []string{"a", ""} {
		_, delayed, _ := queueCounts(t, b, "later", g)
		require.Equal(t, 1, delayed, "group %q", g)
	}
}

// fauxqsDelays reads the emulator's view of a queue (fauxqs's inspection
// endpoint): the due time of each delayed message.
func fauxqsDelays(t *testing.T, b *Broker, topic, group string) []time.Time {
	t.Helper()
	name, err := queueName(b.cfg.QueuePrefix, topic, group)
	require.NoError(t, err)
	client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
	resp, err := client.Get(strings.TrimSuffix(b.cfg.Endpoint, "/") + "/_fauxqs/queues/" + name)
	require.NoError(t, err)
	defer resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)
	var q struct {
		Messages struct {
			Delayed []struct {
				DelayUntil int64 `json:"delayUntil"`
			} `json:"delayed"`
		} `json:"messages"`
	}
	require.NoError(t, json.NewDecoder(resp.Body).Decode(&q))
	var out []time.Time
	for _, m := range q.Messages.Delayed {
		out = append(out, time.UnixMilli(m.DelayUntil))
	}
	return out
}

func TestLongDelayIsChained(t *testing.T) {
	b := open(t, emulatorConfig(t))
	ctx := context.Background()

	t.Run("first hop is 15 minutes and carries the due time", func(t *testing.T) {
		start := time.Now()
		require.NoError(t, b.PublishDelayed(ctx, "long", "g", time.Hour, newMsg("in an hour")))
		due := fauxqsDelays(t, b, "long", "g")
		require.Len(t, due, 1)
		require.WithinDuration(t, start.Add(15*time.Minute), due[0], 5*time.Second)
	})

	t.Run("an early copy is sent on, not delivered", func(t *testing.T) {
		url, err := b.groupQueue(ctx, "hop", "g")
		require.NoError(t, err)
		early, err := encode(newMsg("early"), time.Now().Add(20*time.Minute))
		require.NoError(t, err)
		due, err := encode(newMsg("due"), time.Now().Add(-time.Second))
		require.NoError(t, err)
		require.NoError(t, b.send(ctx, url, 0, []wireMessage{early, due}))

		ch := subscribe(t, b, "hop", broker.Group{Name: "g", Prefetch: 10})
		m := receive(t, ch)
		require.Equal(t, due.uuid, m.UUID)
		m.Ack()
		require.Eventually(t, func() bool { return len(fauxqsDelays(t, b, "hop", "g")) == 1 }, wait, 50*time.Millisecond)
		next := fauxqsDelays(t, b, "hop", "g")[0]
		require.WithinDuration(t, time.Now().Add(15*time.Minute), next, 5*time.Second)
		require.Eventually(t, func() bool {
			ready, delayed, inflight := queueCounts(t, b, "hop", "g")
			return ready == 0 && delayed == 1 && inflight == 0 // the early copy was deleted
		}, wait, 50*time.Millisecond)
	})
}

func TestTooLarge(t *testing.T) {
	b := open(t, emulatorConfig(t))
	m := newMsg("small body")
	m.Metadata.Set("big", strings.Repeat("x", MaxMessageSize))
	err := b.Publish("big", m)
	require.ErrorIs(t, err, ErrTooLarge)
	require.ErrorIs(t, err, broker.ErrMessageTooLarge)
	require.ErrorContains(t, err, m.UUID)
	require.ErrorIs(t, b.PublishDelayed(context.Background(), "big", "g", time.Second, m), ErrTooLarge)
}

func TestTopicNames(t *testing.T) {
	b := open(t, emulatorConfig(t))
	_, err := b.SubscribeGroup(context.Background(), "no spaces", broker.Group{})
	require.ErrorIs(t, err, ErrInvalidName)
	require.ErrorIs(t, b.Publish("a/b", newMsg("x")), ErrInvalidName)
	_, err = b.SubscribeGroup(context.Background(), "ok", broker.Group{Name: "bad group!"})
	require.ErrorIs(t, err, ErrInvalidName)

	// "x.dlq" is mapped, and kept apart from "x_dlq".
	dot, underscore := newMsg("dot"), newMsg("underscore")
	require.NoError(t, b.Publish("x.dlq", dot))
	require.NoError(t, b.Publish("x_dlq", underscore))
	m := receive(t, subscribe(t, b, "x.dlq", broker.Group{}))
	require.Equal(t, dot.UUID, m.UUID)
	m.Ack()
	m = receive(t, subscribe(t, b, "x_dlq", broker.Group{}))
	require.Equal(t, underscore.UUID, m.UUID)
	m.Ack()
}

func TestCancelKeepsDeliveredMessagesOwned(t *testing.T) {
	b := open(t, emulatorConfig(t))
	ctx, cancel := context.WithCancel(context.Background())
	ch, err := b.SubscribeGroup(ctx, "own", broker.Group{})
	require.NoError(t, err)
	require.NoError(t, b.Publish("own", newMsg("x")))
	m := receive(t, ch)
	cancel()
	select {
	case _, ok := <-ch:
		require.False(t, ok)
		t.Fatal("channel closed while a delivered message was unacked")
	case <-time.After(500 * time.Millisecond):
	}
	m.Ack()
	select {
	case _, ok := <-ch:
		require.False(t, ok)
	case <-time.After(wait):
		t.Fatal("channel not closed after the ack")
	}
	require.Eventually(t, func() bool {
		ready, delayed, inflight := queueCounts(t, b, "own", "")
		return ready+delayed+inflight == 0 // the ack deleted it
	}, wait, 50*time.Millisecond)
}

func TestCloseHandsBackUnacked(t *testing.T) {
	cfg := emulatorConfig(t)
	b, err := New(context.Background(), cfg)
	require.NoError(t, err)
	ch, err := b.SubscribeGroup(context.Background(), "close", broker.Group{})
	require.NoError(t, err)
	sent := newMsg("x")
	require.NoError(t, b.Publish("close", sent))
	receive(t, ch) // never acked
	require.NoError(t, b.Close())
	require.NoError(t, b.Close())
	_, ok := <-ch
	require.False(t, ok)
	require.ErrorIs(t, b.Publish("close", newMsg("y")), broker.ErrClosed)
	_, err = b.Subscribe(context.Background(), "close")
	require.ErrorIs(t, err, broker.ErrClosed)
	require.ErrorIs(t, b.Declare(context.Background(), "close"), broker.ErrClosed)

	// Visible again at once, not after the 30s visibility timeout.
	m := receive(t, subscribe(t, open(t, cfg), "close", broker.Group{}))
	require.Equal(t, sent.UUID, m.UUID)
	require.Equal(t, "2", m.Metadata.Get(keyDeliveryCount))
	m.Ack()
}

func TestUnreachable(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err := New(ctx, Config{
		Endpoint:    "http://127.0.0.1:1",
		Credentials: &Credentials{AccessKeyID: "test", SecretAccessKey: "test"},
	})
	require.ErrorContains(t, err, "sqs: cannot reach SQS at http://127.0.0.1:1")
}

func TestVisibilityExtension(t *testing.T) {
	for _, extend := range []bool{true, false} {
		t.Run(fmt.Sprintf("extend=%v", extend), func(t *testing.T) {
			cfg := emulatorConfig(t)
			cfg.VisibilityTimeout = time.Second
			cfg.NoVisibilityExtension = !extend
			b := open(t, cfg)
			require.NoError(t, b.Declare(context.Background(), "slow", "g"))
			first := subscribe(t, b, "slow", broker.Group{Name: "g"})
			second := subscribe(t, open(t, cfg), "slow", broker.Group{Name: "g"})
			require.NoError(t, b.Publish("slow", newMsg("x")))
			var held *message.Message
			select { // either consumer may get it first
			case held = <-first:
			case held = <-second:
			case <-time.After(wait):
				t.Fatal("not delivered")
			}
			if extend {
				// Held three visibility timeouts: nobody gets it again.
				nothing(t, first, 1500*time.Millisecond)
				nothing(t, second, 1500*time.Millisecond)
				held.Ack()
				return
			}
			select {
			case m := <-first:
				require.Equal(t, held.UUID, m.UUID)
				m.Ack()
			case m := <-second:
				require.Equal(t, held.UUID, m.UUID)
				m.Ack()
			case <-time.After(wait):
				t.Fatal("not delivered again after the visibility timeout")
			}
			held.Ack()
		})
	}
}

func TestTLSFilesMissing(t *testing.T) {
	_, err := New(context.Background(), Config{
		Endpoint:    "https://127.0.0.1:1",
		Credentials: &Credentials{AccessKeyID: "test", SecretAccessKey: "test"},
		TLS:         &broker.TLSFiles{CA: "/nonexistent/ca.pem"},
	})
	require.ErrorContains(t, err, "sqs: TLS")
}

func TestNackDelay(t *testing.T) {
	cfg := emulatorConfig(t)
	cfg.NackDelay = time.Second
	b := open(t, cfg)
	ch := subscribe(t, b, "nackdelay", broker.Group{})
	require.NoError(t, b.Publish("nackdelay", newMsg("x")))
	m := receive(t, ch)
	start := time.Now()
	m.Nack()
	m = receive(t, ch)
	require.GreaterOrEqual(t, time.Since(start), 900*time.Millisecond)
	require.Equal(t, "2", m.Metadata.Get(keyDeliveryCount))
	m.Ack()
}

func TestPublishDelayedToDefaultGroupByName(t *testing.T) {
	b := open(t, emulatorConfig(t))
	ctx := context.Background()
	require.NoError(t, b.Declare(ctx, "named", "other"))
	// The default group's name is the topic: only its queue gets the message.
	require.NoError(t, b.PublishDelayed(ctx, "named", "named", time.Second, newMsg("x")))
	_, delayed, _ := queueCounts(t, b, "named", "")
	require.Equal(t, 1, delayed)
	_, delayed, _ = queueCounts(t, b, "named", "other")
	require.Zero(t, delayed)
}

func TestPingAndName(t *testing.T) {
	b := open(t, emulatorConfig(t))
	require.NoError(t, b.Ping(context.Background()))
	require.Equal(t, "aws_sqs", b.Name())
}
