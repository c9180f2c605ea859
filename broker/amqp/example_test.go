package amqp_test

import (
	"context"
	"fmt"
	"log"
	"time"

	"github.com/harvesthub/hub/broker"
	"github.com/harvesthub/hub/broker/amqp"
)

// Delays are rounded up to a tier, each tier a TTL queue per target.
func ExampleDelayTier() {
	for _, d := range []time.Duration{0, 300 * time.Millisecond, 5 * time.Second, 90 * time.Second} {
		tier, _ := amqp.DelayTier(d)
		fmt.Println(d, "->", tier)
	}
	// Output:
	// 0s -> 125ms
	// 300ms -> 500ms
	// 5s -> 8s
	// 1m30s -> 2m8s
}

// A broker over mutual TLS, a consumer group with a prefetch of 8, and a
// delayed retry to that group only. (Not run: it needs a RabbitMQ.)
func ExampleNew() {
	b, err := amqp.New(amqp.Config{
		URL: "amqps://rabbit.internal:5671/",
		TLS: &broker.TLSFiles{CA: "ca.pem", Cert: "client.pem", Key: "client.key"},
	})
	if err != nil {
		log.Fatal(err)
	}
	defer b.Close()

	ctx := context.Background()
	msgs, err := b.SubscribeGroup(ctx, "records", broker.Group{Name: "normalise", Prefetch: 8})
	if err != nil {
		log.Fatal(err)
	}
	for m := range msgs {
		retry := m.Copy()
		retry.Metadata.Set("hub-attempt", "2")
		if err := b.PublishDelayed(ctx, "records", "normalise", 4*time.Second, retry); err != nil {
			m.Nack()
			continue
		}
		m.Ack()
	}
}
