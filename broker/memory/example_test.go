package memory_test

import (
	"context"
	"fmt"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/harvesthub/hub/broker"
	"github.com/harvesthub/hub/broker/memory"
)

// Two consumer groups each get every message; a nacked message comes back
// with its delivery count.
func Example() {
	b, err := memory.New(memory.Config{})
	if err != nil {
		panic(err)
	}
	defer b.Close()
	ctx := context.Background()

	// Declare the groups so that nothing published before they subscribe is lost.
	if err := b.Declare(ctx, "records", "index", "audit"); err != nil {
		panic(err)
	}
	if err := b.Publish("records", message.NewMessage(watermill.NewUUID(), []byte("r1"))); err != nil {
		panic(err)
	}

	index, _ := b.SubscribeGroup(ctx, "records", broker.Group{Name: "index"})
	audit, _ := b.SubscribeGroup(ctx, "records", broker.Group{Name: "audit"})

	m := <-index
	fmt.Println("index got", string(m.Payload))
	m.Nack()
	m = <-index
	fmt.Println("index got", string(m.Payload), "again, delivery", m.Metadata.Get("hub-delivery-count"))
	m.Ack()

	m = <-audit
	fmt.Println("audit got", string(m.Payload))
	m.Ack()

	if err := b.WaitIdle(ctx); err != nil {
		panic(err)
	}
	fmt.Println("queued:", b.Stats().Group("records", "index").Queued)
	// Output:
	// index got r1
	// index got r1 again, delivery 2
	// audit got r1
	// queued: 0
}
