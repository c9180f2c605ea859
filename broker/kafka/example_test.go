package kafka_test

import (
	"context"
	"fmt"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/harvesthub/hub/broker"
	"github.com/harvesthub/hub/broker/kafka"
)

// A broker on kfake, franz-go's in-process cluster; a real cluster is
// reached the same way, with its seed brokers.
func Example() {
	cluster, err := kfake.NewCluster(kfake.NumBrokers(1))
	if err != nil {
		panic(err)
	}
	defer cluster.Close()
	b, err := kafka.New(kafka.Config{Brokers: cluster.ListenAddrs(), Partitions: 1, Logger: quiet})
	if err != nil {
		panic(err)
	}
	defer b.Close()

	m := message.NewMessage("id-1", []byte(`{"n":1}`))
	m.Metadata.Set("hub-key", "record-1") // the record key
	if err := b.PublishContext(context.Background(), "records", m); err != nil {
		panic(err)
	}
	ch, err := b.SubscribeGroup(context.Background(), "records", broker.Group{Name: "indexer"})
	if err != nil {
		panic(err)
	}
	got := <-ch
	fmt.Println(got.UUID, string(got.Payload))
	got.Ack() // committed once acked
	// Output: id-1 {"n":1}
}
