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
// impl is one way of publishing and consuming.
type impl struct {
	// setup prepares topic (declarations) before the clock starts.
	setup func(b *testing.B, topic string)
	// publish sends msgs and returns once they are accepted.
	publish func(b *testing.B, topic string, msgs []*message.Message)
	// subscribe starts consuming topic and returns a function that acks n
	// messages and returns.
	subscribe func(b *testing.B, topic string) (consume func(n int))
}

// run measures impl end to end, in two modes: "then-consume" publishes the
// N messages and then consumes them; "live" consumes while publishing.
func run(b *testing.B, url string, im impl) {
	for _, live := range []bool{false, true} {
		name := "then-consume"
		if live {
			name = "live"
		}
		b.Run(name, func(b *testing.B) {
			t := topic(b, url)
			im.setup(b, t)
			msgs := newMessages(b.N, payload(b))
			b.ResetTimer()
			start := time.Now()
			var consumeDone chan struct{}
			if live {
				consume := im.subscribe(b, t)
				consumeDone = make(chan struct{})
				go func() { defer close(consumeDone); consume(b.N) }()
			}
			im.publish(b, t, msgs)
			published := time.Now()
			if live {
				<-consumeDone
			} else {
				im.subscribe(b, t)(b.N)
			}
			end := time.Now()
			b.ReportMetric(float64(b.N)/end.Sub(start).Seconds(), "msg/s")
			b.ReportMetric(float64(b.N)/published.Sub(start).Seconds(), "pub-msg/s")
		})
	}
}

// publishConcurrently publishes one message per call from 64 goroutines.
func publishConcurrently(b *testing.B, pub message.Publisher, topic string, msgs []*message.Message) {
	var wg sync.WaitGroup
	ch := make(chan *message.Message)
	for range 64 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for m := range ch {
				if err := pub.Publish(topic, m); err != nil {
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
}

func consumeAll(b *testing.B, msgs <-chan *message.Message) func(int) {
	return func(n int) {
		for range n {
			select {
			case m := <-msgs:
				m.Ack()
			case <-time.After(30 * time.Second):
				b.Error("consume timed out")
				return
			}
		}
	}
}

func adapterImpl(b *testing.B, url string, single bool) impl {
	br, err := amqp.New(amqp.Config{URL: url})
	require.NoError(b, err)
	b.Cleanup(func() { _ = br.Close() })
	return impl{
		setup: func(b *testing.B, t string) { require.NoError(b, br.Declare(context.Background(), t)) },
		publish: func(b *testing.B, t string, msgs []*message.Message) {
			if single {
				publishConcurrently(b, br, t, msgs)
				return
			}
			require.NoError(b, br.Publish(t, msgs...))
		},
		subscribe: func(b *testing.B, t string) func(int) {
			ctx, cancel := context.WithCancel(context.Background())
			sub, err := br.SubscribeGroup(ctx, t, broker.Group{Prefetch: prefetch})
			require.NoError(b, err)
			consume := consumeAll(b, sub)
			return func(n int) { defer cancel(); consume(n) }
		},
	}
}

// BenchmarkAdapter is the hub's adapter with its defaults (8 publisher
// channels, confirms on, durable): one Publish call with the N messages,
// like the raw baseline; consumer prefetch 256.
func BenchmarkAdapter(b *testing.B) {
	url := testenv.AMQPURL()
	testenv.Require(b, "RabbitMQ", url)
	run(b, url, adapterImpl(b, url, false))
}

// BenchmarkAdapterSingle publishes one message per Publish call (as
// hub.Publish does) from 64 goroutines: confirms are pipelined across
// calls.
func BenchmarkAdapterSingle(b *testing.B) {
	url := testenv.AMQPURL()
	testenv.Require(b, "RabbitMQ", url)
	run(b, url, adapterImpl(b, url, true))
}

// BenchmarkRawAMQP091 is the baseline: one channel in confirm mode, every
// message published before any confirm is awaited; a consumer with the same
// prefetch acking each message.
func BenchmarkRawAMQP091(b *testing.B) {
	url := testenv.AMQPURL()
	testenv.Require(b, "RabbitMQ", url)
	c, err := amqp091.Dial(url)
	require.NoError(b, err)
	b.Cleanup(func() { _ = c.Close() })
	ch, err := c.Channel()
	require.NoError(b, err)
	require.NoError(b, ch.Confirm(false))
	run(b, url, impl{
		setup: func(b *testing.B, t string) {
			require.NoError(b, ch.ExchangeDeclare(t, "fanout", true, false, false, false, nil))
			_, err = ch.QueueDeclare(t, true, false, false, false, nil)
			require.NoError(b, err)
			require.NoError(b, ch.QueueBind(t, "", t, false, nil))
		},
		publish: func(b *testing.B, t string, msgs []*message.Message) {
			dcs := make([]*amqp091.DeferredConfirmation, len(msgs))
			for i, m := range msgs {
				dcs[i], err = ch.PublishWithDeferredConfirm(t, "", false, false, amqp091.Publishing{
					DeliveryMode: amqp091.Persistent, MessageId: m.UUID, Body: m.Payload,
				})
				require.NoError(b, err)
			}
			for _, dc := range dcs {
				require.True(b, dc.Wait(), "nacked")
			}
		},
		subscribe: func(b *testing.B, t string) func(int) {
			cch, err := c.Channel()
			require.NoError(b, err)
			require.NoError(b, cch.Qos(prefetch, 0, false))
			deliveries, err := cch.Consume(t, "", false, false, false, false, nil)
			require.NoError(b, err)
			return func(n int) {
				defer cch.Close()
				for range n {
					d := <-deliveries
					if err := d.Ack(false); err != nil {
						b.Error(err)
						return
					}
				}
			}
		},
	})
}

// BenchmarkWatermillAMQP is watermill-amqp with NewDurablePubSubConfig
// (no confirms, a channel per Publish call, prefetch 1), published like
// BenchmarkAdapterSingle: one message per call from 64 goroutines.
func BenchmarkWatermillAMQP(b *testing.B) {
	url := testenv.AMQPURL()
	testenv.Require(b, "RabbitMQ", url)
	cfg := wamqp.NewDurablePubSubConfig(url, wamqp.GenerateQueueNameTopicName)
	logger := watermill.NopLogger{}
	pub, err := wamqp.NewPublisher(cfg, logger)
	require.NoError(b, err)
	b.Cleanup(func() { _ = pub.Close() })
	sub, err := wamqp.NewSubscriber(cfg, logger)
	require.NoError(b, err)
	b.Cleanup(func() { _ = sub.Close() })
	run(b, url, impl{
		// Without this, watermill-amqp drops messages published before the
		// first Subscribe (no queue is bound yet).
		setup: func(b *testing.B, t string) { require.NoError(b, sub.SubscribeInitialize(t)) },
		publish: func(b *testing.B, t string, msgs []*message.Message) {
			publishConcurrently(b, pub, t, msgs)
		},
		subscribe: func(b *testing.B, t string) func(int) {
			ctx, cancel := context.WithCancel(context.Background())
			out, err := sub.Subscribe(ctx, t)
			require.NoError(b, err)
			consume := consumeAll(b, out)
			return func(n int) { defer cancel(); consume(n) }
		},
	})
}
