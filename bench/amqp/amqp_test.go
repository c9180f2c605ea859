// Package amqpbench compares the hub's RabbitMQ adapter with raw amqp091-go
// and with watermill-amqp's defaults, end to end on the same server: N
// messages of 1 KB, durable queue, persistent messages, manual acks,
// published and then consumed. Each benchmark reports msg/s.
//
//	go test -run '^$' -bench . -benchtime 20000x ./bench/amqp/
package amqpbench

import (
	"context"
	"crypto/rand"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	wamqp "github.com/ThreeDotsLabs/watermill-amqp/v2/pkg/amqp"
	"github.com/ThreeDotsLabs/watermill/message"
	amqp091 "github.com/rabbitmq/amqp091-go"
	"github.com/stretchr/testify/require"

	"github.com/harvesthub/hub/broker"
	"github.com/harvesthub/hub/broker/amqp"
	"github.com/harvesthub/hub/internal/testenv"
)

const (
	payloadSize = 1024
	publishers  = 4   // concurrent publishing goroutines (adapter, watermill)
	batchSize   = 100 // messages per Publish call in the batched runs
	prefetch    = 256 // consumer prefetch (adapter, raw)
)

func payload(b *testing.B) []byte {
	p := make([]byte, payloadSize)
	_, err := rand.Read(p)
	require.NoError(b, err)
	return p
}

func newMessages(n int, body []byte) []*message.Message {
	msgs := make([]*message.Message, n)
	for i := range msgs {
		msgs[i] = message.NewMessage(watermill.NewUUID(), body)
	}
	return msgs
}

// topic returns a fresh topic, deleted (exchange and queue) after b.
func topic(b *testing.B, url string) string {
	t := fmt.Sprintf("hubbench.%s.%s", b.Name(), watermill.NewShortUUID())
	b.Cleanup(func() {
		c, err := amqp091.Dial(url)
		if err != nil {
			return
		}
		defer c.Close()
		if ch, err := c.Channel(); err == nil {
			_, _ = ch.QueueDelete(t, false, false, false)
			_ = ch.ExchangeDelete(t, false, false)
		}
	})
	return t
}

// report reports end-to-end msg/s, and the publish and consume phases'.
func report(b *testing.B, start, published time.Time) {
	end := time.Now()
	b.ReportMetric(float64(b.N)/end.Sub(start).Seconds(), "msg/s")
	b.ReportMetric(float64(b.N)/published.Sub(start).Seconds(), "pub-msg/s")
	b.ReportMetric(float64(b.N)/end.Sub(published).Seconds(), "sub-msg/s")
}

// publishSpread publishes msgs from publishers goroutines, per calls of
// batch messages.
func publishSpread(b *testing.B, pub message.Publisher, topic string, msgs []*message.Message, batch int) {
	var wg sync.WaitGroup
	per := (len(msgs) + publishers - 1) / publishers
	for p := 0; p < len(msgs); p += per {
		part := msgs[p:min(p+per, len(msgs))]
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < len(part); i += batch {
				if err := pub.Publish(topic, part[i:min(i+batch, len(part))]...); err != nil {
					b.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
}

func consume(b *testing.B, msgs <-chan *message.Message, n int) {
	for range n {
		select {
		case m := <-msgs:
			m.Ack()
		case <-time.After(30 * time.Second):
			b.Fatal("consume timed out")
		}
	}
}

// BenchmarkAdapter is the hub's adapter with its defaults (8 publisher
// channels, confirms on, durable), batches of 100 per Publish call.
func BenchmarkAdapter(b *testing.B) { benchAdapter(b, batchSize) }

// BenchmarkAdapterSingle publishes one message per Publish call (the hub's
// Publish), from 64 goroutines: confirms are pipelined across calls.
func BenchmarkAdapterSingle(b *testing.B) { benchAdapter(b, 1) }

func benchAdapter(b *testing.B, batch int) {
	url := testenv.AMQPURL()
	testenv.Require(b, "RabbitMQ", url)
	br, err := amqp.New(amqp.Config{URL: url})
	require.NoError(b, err)
	defer br.Close()
	t := topic(b, url)
	msgs := newMessages(b.N, payload(b))
	b.ResetTimer()
	start := time.Now()
	if batch == 1 {
		var wg sync.WaitGroup
		ch := make(chan *message.Message)
		for range 64 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for m := range ch {
					if err := br.Publish(t, m); err != nil {
						b.Error(err)
					}
				}
			}()
		}
		for _, m := range msgs {
			ch <- m
		}
		close(ch)
		wg.Wait()
	} else {
		publishSpread(b, br, t, msgs, batch)
	}
	published := time.Now()
	sub, err := br.SubscribeGroup(context.Background(), t, broker.Group{Prefetch: prefetch})
	require.NoError(b, err)
	consume(b, sub, b.N)
	report(b, start, published)
}

// BenchmarkRawAMQP091 is the baseline: one channel in confirm mode, every
// message published before any confirm is awaited, a consumer with the same
// prefetch acking each message.
func BenchmarkRawAMQP091(b *testing.B) {
	url := testenv.AMQPURL()
	testenv.Require(b, "RabbitMQ", url)
	c, err := amqp091.Dial(url)
	require.NoError(b, err)
	defer c.Close()
	t := topic(b, url)
	ch, err := c.Channel()
	require.NoError(b, err)
	require.NoError(b, ch.ExchangeDeclare(t, "fanout", true, false, false, false, nil))
	_, err = ch.QueueDeclare(t, true, false, false, false, nil)
	require.NoError(b, err)
	require.NoError(b, ch.QueueBind(t, "", t, false, nil))
	require.NoError(b, ch.Confirm(false))
	body := payload(b)
	ids := make([]string, b.N)
	for i := range ids {
		ids[i] = watermill.NewUUID()
	}
	b.ResetTimer()
	start := time.Now()
	dcs := make([]*amqp091.DeferredConfirmation, b.N)
	for i := range b.N {
		dcs[i], err = ch.PublishWithDeferredConfirm(t, "", false, false, amqp091.Publishing{
			DeliveryMode: amqp091.Persistent, MessageId: ids[i], Body: body,
		})
		require.NoError(b, err)
	}
	for _, dc := range dcs {
		require.True(b, dc.Wait(), "nacked")
	}
	published := time.Now()
	cch, err := c.Channel()
	require.NoError(b, err)
	require.NoError(b, cch.Qos(prefetch, 0, false))
	deliveries, err := cch.Consume(t, "", false, false, false, false, nil)
	require.NoError(b, err)
	for range b.N {
		d := <-deliveries
		require.NoError(b, d.Ack(false))
	}
	report(b, start, published)
}

// BenchmarkWatermillAMQP is watermill-amqp with NewDurablePubSubConfig
// (no confirms, a channel per Publish call, prefetch 1), published the way
// the adapter is in BenchmarkAdapterSingle: one message per call.
func BenchmarkWatermillAMQP(b *testing.B) {
	url := testenv.AMQPURL()
	testenv.Require(b, "RabbitMQ", url)
	cfg := wamqp.NewDurablePubSubConfig(url, wamqp.GenerateQueueNameTopicName)
	logger := watermill.NopLogger{}
	pub, err := wamqp.NewPublisher(cfg, logger)
	require.NoError(b, err)
	defer pub.Close()
	sub, err := wamqp.NewSubscriber(cfg, logger)
	require.NoError(b, err)
	defer sub.Close()
	t := topic(b, url)
	// Without this, watermill-amqp drops messages published before the
	// first Subscribe (no queue is bound yet).
	require.NoError(b, sub.SubscribeInitialize(t))
	msgs := newMessages(b.N, payload(b))
	b.ResetTimer()
	start := time.Now()
	var wg sync.WaitGroup
	ch := make(chan *message.Message)
	for range 64 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for m := range ch {
				if err := pub.Publish(t, m); err != nil {
					b.Error(err)
				}
			}
		}()
	}
	for _, m := range msgs {
		ch <- m
	}
	close(ch)
	wg.Wait()
	published := time.Now()
	out, err := sub.Subscribe(context.Background(), t)
	require.NoError(b, err)
	consume(b, out, b.N)
	report(b, start, published)
}
