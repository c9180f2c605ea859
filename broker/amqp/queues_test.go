package amqp_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"
	amqp091 "github.com/rabbitmq/amqp091-go"
	"github.com/stretchr/testify/require"

	"github.com/harvesthub/hub/broker"
	"github.com/harvesthub/hub/broker/amqp"
)

// declareRaw declares queue with args outside the adapter, as an older
// version or another tool would have.
func declareRaw(t *testing.T, url, queue string, args amqp091.Table) {
	t.Helper()
	c, err := amqp091.Dial(url)
	require.NoError(t, err)
	defer c.Close()
	ch, err := c.Channel()
	require.NoError(t, err)
	_, err = ch.QueueDeclare(queue, true, false, false, false, args)
	require.NoError(t, err)
}

// queueHas reports whether queue exists exactly as declared with args:
// AMQP cannot read a queue's arguments back, but RabbitMQ refuses a
// declaration whose arguments differ from the queue's.
func queueHas(t *testing.T, url, queue string, args amqp091.Table) bool {
	t.Helper()
	c, err := amqp091.Dial(url)
	require.NoError(t, err)
	defer c.Close()
	ch, err := c.Channel()
	require.NoError(t, err)
	_, err = ch.QueueDeclarePassive(queue, true, false, false, false, nil)
	require.NoError(t, err, "queue %s exists", queue)
	if ch, err = c.Channel(); err != nil {
		require.NoError(t, err)
	}
	_, err = ch.QueueDeclare(queue, true, false, false, false, args)
	if err != nil {
		require.Contains(t, err.Error(), "inequivalent arg")
		return false
	}
	return true
}

func queueIs(t *testing.T, url, queue, queueType string) bool {
	t.Helper()
	return queueHas(t, url, queue, amqp091.Table{"x-queue-type": queueType})
}

// TestQueueTypeMismatch: a queue that exists with the other type is a clear
// error naming the queue and both types, never a silent mismatch, for
// every queue the adapter declares; nothing is published when it fails.
func TestQueueTypeMismatch(t *testing.T) {
	url := sharedURL(t)
	tests := []struct {
		name     string
		existing amqp091.Table // the queue as it exists
		want     string        // Config.QueueType
		current  string
	}{
		{"quorum wanted, classic exists", nil, amqp.QueueQuorum, amqp.QueueClassic},
		{"quorum wanted, classic exists by name", amqp091.Table{"x-queue-type": "classic"}, amqp.QueueQuorum, amqp.QueueClassic},
		{"classic wanted, quorum exists", amqp091.Table{"x-queue-type": "quorum"}, amqp.QueueClassic, amqp.QueueQuorum},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx := context.Background()
			topic := uniqueTopic(t, url)
			cleanupQueues(topic, topic+".g")
			declareRaw(t, url, topic+".g", tt.existing)
			b := newBroker(t, amqp.Config{URL: url, QueueType: tt.want, DeliveryLimit: -1})

			for _, op := range []struct {
				name string
				call func() error
			}{
				{"Declare", func() error { return b.Declare(ctx, topic, "g") }},
				{"SubscribeGroup", func() error {
					_, err := b.SubscribeGroup(ctx, topic, broker.Group{Name: "g"})
					return err
				}},
				{"PublishDelayed", func() error {
					return b.PublishDelayed(ctx, topic, "g", time.Second, message.NewMessage(watermill.NewUUID(), nil))
				}},
			} {
				err := op.call()
				require.ErrorIs(t, err, amqp.ErrQueueType, op.name)
				msg := err.Error()
				require.Contains(t, msg, "queue "+topic+".g exists as a "+tt.current+" queue", op.name)
				require.Contains(t, msg, "Config.QueueType is "+tt.want, op.name)
				require.True(t, strings.HasPrefix(msg, "amqp: "), msg)
			}
			require.True(t, queueIs(t, url, topic+".g", tt.current), "the existing queue is left as it was")
			require.Equal(t, 0, queueDepth(t, url, topic+".g"))
		})
	}
}

// TestExistingClassicQueueStillDeclares: queues declared without a type by
// earlier versions are classic, and naming the type now is equivalent.
func TestExistingClassicQueueStillDeclares(t *testing.T) {
	url := sharedURL(t)
	topic := uniqueTopic(t, url)
	declareRaw(t, url, topic, nil)
	b := newBroker(t, amqp.Config{URL: url})
	require.NoError(t, b.Declare(context.Background(), topic))
	require.NoError(t, b.Publish(topic, message.NewMessage(watermill.NewUUID(), nil)))
	require.Equal(t, 1, queueDepth(t, url, topic))
}

// TestEveryQueueTakesTheType: with QueueQuorum, group queues, the default
// queue, delay queues (with at-least-once dead-lettering) and the
// dead-letter topic's queue are all quorum.
func TestEveryQueueTakesTheType(t *testing.T) {
	url := sharedURL(t)
	ctx := context.Background()
	topic := uniqueTopic(t, url)
	dlqTopic := uniqueTopicNamed(t, url, topic+".dlq")
	delayQ := "hub.qdelay.1s." + topic + ".g"
	delayX := "hub.qdelay.1s.exchange." + topic
	cleanupQueues(topic, topic+".g", delayQ, delayX)
	b := newBroker(t, amqp.Config{URL: url, QueueType: amqp.QueueQuorum})
	require.NoError(t, b.Declare(ctx, topic, "", "g"))
	require.NoError(t, b.PublishDelayed(ctx, topic, "g", time.Second, message.NewMessage(watermill.NewUUID(), nil)))
	require.NoError(t, b.PublishDelayed(ctx, topic, "", time.Second, message.NewMessage(watermill.NewUUID(), nil)))

	group := amqp091.Table{
		"x-queue-type":           "quorum",
		"x-delivery-limit":       int64(amqp.DeliveryLimitDefault),
		"x-dead-letter-exchange": dlqTopic,
		"x-dead-letter-strategy": "at-least-once",
		"x-overflow":             "reject-publish",
	}
	delay := func(extra amqp091.Table) amqp091.Table {
		args := amqp091.Table{
			"x-queue-type":           "quorum",
			"x-message-ttl":          int64(1000),
			"x-expires":              int64(2000 + 3600000),
			"x-dead-letter-strategy": "at-least-once",
			"x-overflow":             "reject-publish",
		}
		for k, v := range extra {
			args[k] = v
		}
		return args
	}
	for _, q := range []struct {
		name string
		args amqp091.Table
	}{
		{topic, group},
		{topic + ".g", group},
		{dlqTopic, amqp091.Table{"x-queue-type": "quorum"}}, // no limit on letters
		{delayQ, delay(amqp091.Table{"x-dead-letter-exchange": "", "x-dead-letter-routing-key": topic + ".g"})},
		{delayX, delay(amqp091.Table{"x-dead-letter-exchange": topic})},
	} {
		require.True(t, queueHas(t, url, q.name, q.args), "%s is quorum with %v", q.name, q.args)
	}
	require.False(t, queueIs(t, url, topic+".g", amqp.QueueClassic), "the check can fail")
}

// TestDeliveryLimitDeadLetters: a message nacked DeliveryLimit times on a
// quorum queue goes to the topic's dead-letter queue with reason
// delivery-limit, not dropped; its count reaches the hub as
// hub-delivery-count on the way.
func TestDeliveryLimitDeadLetters(t *testing.T) {
	url := sharedURL(t)
	ctx := context.Background()
	topic := uniqueTopic(t, url)
	dlqTopic := uniqueTopicNamed(t, url, topic+".dlq")
	b := newBroker(t, amqp.Config{URL: url, QueueType: amqp.QueueQuorum, DeliveryLimit: 2})
	sub, err := b.Subscribe(ctx, topic)
	require.NoError(t, err)
	msg := message.NewMessage(watermill.NewUUID(), []byte("crash loop"))
	msg.Metadata.Set("hub-key", "k1")
	require.NoError(t, b.Publish(topic, msg))
	for i, want := range []string{"", "2", "3"} {
		select {
		case m := <-sub:
			require.Equal(t, want, m.Metadata.Get("hub-delivery-count"), "delivery %d", i+1)
			m.Nack()
		case <-time.After(waitFor):
			t.Fatalf("delivery %d missing", i+1)
		}
	}
	dead, err := b.Subscribe(ctx, dlqTopic)
	require.NoError(t, err)
	select {
	case m := <-dead:
		require.Equal(t, msg.UUID, m.UUID)
		require.Equal(t, "crash loop", string(m.Payload))
		require.Equal(t, "k1", m.Metadata.Get("hub-key"))
		require.Equal(t, "delivery-limit", m.Metadata.Get("hub-dlq-reason"))
		require.Equal(t, topic, m.Metadata.Get("hub-original-topic"))
		m.Ack()
	case <-time.After(waitFor):
		t.Fatal("the message over the delivery limit was not dead-lettered")
	}
	require.Equal(t, 0, queueDepth(t, url, topic))
}

func TestClusterURLs(t *testing.T) {
	url := sharedURL(t)
	t.Run("a dead node is skipped", func(t *testing.T) {
		b := newBroker(t, amqp.Config{URLs: []string{"amqp://guest:guest@127.0.0.1:1/", url}, DialTimeout: 2 * time.Second})
		require.NoError(t, b.Ping(context.Background()))
	})
	t.Run("comma-separated", func(t *testing.T) {
		b := newBroker(t, amqp.Config{URL: "amqp://guest:guest@127.0.0.1:1/, " + url, DialTimeout: 2 * time.Second})
		require.NoError(t, b.Ping(context.Background()))
	})
	t.Run("every node down names every node", func(t *testing.T) {
		_, err := amqp.New(amqp.Config{URLs: []string{"amqp://guest:secret@127.0.0.1:1/", "amqp://guest:secret@127.0.0.1:2/"}, DialTimeout: 2 * time.Second})
		require.ErrorContains(t, err, "127.0.0.1:1/")
		require.ErrorContains(t, err, "127.0.0.1:2/")
		require.NotContains(t, err.Error(), "secret")
	})
}

// uniqueTopicNamed deletes topic's exchange and queue at the end of t.
func uniqueTopicNamed(t *testing.T, url, topic string) string {
	t.Helper()
	t.Cleanup(func() { deleteTopology(url, topic) })
	return topic
}

func TestClusterConfigErrors(t *testing.T) {
	tests := []struct {
		name string
		cfg  amqp.Config
		want string
	}{
		{"URL and URLs", amqp.Config{URL: "amqp://a/", URLs: []string{"amqp://b/"}}, "set Config.URL or Config.URLs, not both"},
		{"empty URL in URLs", amqp.Config{URLs: []string{"amqp://a/", ""}}, "empty URL"},
		{"empty URL in a list", amqp.Config{URL: "amqp://a/,"}, "empty URL"},
		{"bad scheme in a list", amqp.Config{URL: "amqp://a/,http://b/"}, `"http://b/": scheme must be amqp or amqps`},
		{"tls with one amqp node", amqp.Config{URLs: []string{"amqps://a/", "amqp://b/"}, TLS: &broker.TLSFiles{}}, "Config.TLS is set but Config.URL is not amqps"},
		{"delivery limit", amqp.Config{DeliveryLimit: -2}, "Config.DeliveryLimit -2"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := amqp.New(tt.cfg)
			require.ErrorContains(t, err, tt.want)
			require.True(t, strings.HasPrefix(err.Error(), "amqp: "), err.Error())
		})
	}
}
