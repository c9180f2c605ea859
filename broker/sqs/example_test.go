package sqs_test

import (
	"context"
	"fmt"
	"log"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/harvesthub/hub/broker"
	"github.com/harvesthub/hub/broker/sqs"
)

// New rejects invalid settings before it talks to SQS.
func ExampleNew_invalidConfig() {
	_, err := sqs.New(context.Background(), sqs.Config{MaxMessages: 20})
	fmt.Println(err)
	// Output: sqs: Config.MaxMessages 20 must be between 1 and 10
}

// A broker on the fauxqs emulator (scripts/fauxqs.sh start): two consumer
// groups of one topic, each receiving every message. It needs the emulator,
// so it is compiled but not run.
func Example() {
	ctx := context.Background()
	b, err := sqs.New(ctx, sqs.Config{
		Endpoint:    "http://127.0.0.1:4566",
		Credentials: &sqs.Credentials{AccessKeyID: "test", SecretAccessKey: "test"},
		QueuePrefix: "example-",
	})
	if err != nil {
		log.Fatal(err)
	}
	defer b.Close()

	// Declared groups keep what is published from now on.
	if err := b.Declare(ctx, "records", "normalise", "audit"); err != nil {
		log.Fatal(err)
	}
	msg := message.NewMessage(watermill.NewUUID(), []byte(`{"id":1}`))
	msg.Metadata.Set("hub-schema", "Record")
	if err := b.Publish("records", msg); err != nil {
		log.Fatal(err)
	}
	// A delayed retry reaches only the failing handler's group.
	retry := message.NewMessage(watermill.NewUUID(), []byte(`{"id":2}`))
	if err := b.PublishDelayed(ctx, "records", "normalise", 30*time.Second, retry); err != nil {
		log.Fatal(err)
	}

	msgs, err := b.SubscribeGroup(ctx, "records", broker.Group{Name: "audit", Prefetch: 10})
	if err != nil {
		log.Fatal(err)
	}
	m := <-msgs
	fmt.Println(string(m.Payload), m.Metadata.Get("hub-schema"))
	m.Ack()
}
