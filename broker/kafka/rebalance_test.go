package kafka_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/stretchr/testify/require"

	"github.com/harvesthub/hub/broker"
	"github.com/harvesthub/hub/broker/kafka"
)

// TestRebalance: a member holds unacked messages when a second member
// joins and takes some of its partitions. The new owner receives them
// again, the old owner's late acks of them are ignored, nothing is lost,
// and in the end every partition is committed to its end.
func TestRebalance(t *testing.T) {
	addrs := newCluster(t)
	four := func(c *kafka.Config) { c.Partitions = 4 }
	pub := newBroker(t, addrs, four)
	topic, group := unique("rebalance"), "g"
	const n = 40
	for i := range n {
		m := msg(fmt.Sprint("m", i))
		m.Metadata.Set("hub-key", fmt.Sprint("k", i))
		require.NoError(t, pub.Publish(topic, m))
	}

	var mu sync.Mutex
	seen := map[string]int{}
	all := make(chan struct{})
	note := func(m *message.Message) {
		mu.Lock()
		defer mu.Unlock()
		seen[m.UUID]++
		if len(seen) == n && seen[m.UUID] == 1 {
			close(all)
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()

	a := newBroker(t, addrs, four)
	chA, err := a.SubscribeGroup(ctx, topic, broker.Group{Name: group, Prefetch: n})
	require.NoError(t, err)
	held := make([]*message.Message, n) // every partition's messages
	for i := range held {
		held[i] = receive(t, chA)
		note(held[i])
	}

	b := newBroker(t, addrs, four)
	chB, err := b.SubscribeGroup(ctx, topic, broker.Group{Name: group, Prefetch: 8})
	require.NoError(t, err)
	var wg sync.WaitGroup
	gotB := make(chan struct{})
	var once sync.Once
	consume := func(ch <-chan *message.Message, first func()) {
		defer wg.Done()
		for m := range ch {
			note(m)
			m.Ack()
			first()
		}
	}
	wg.Add(1)
	go consume(chB, func() { once.Do(func() { close(gotB) }) })
	// B receives only once A gave up partitions, with their messages
	// still unacked by A.
	select {
	case <-gotB:
	case <-time.After(20 * time.Second):
		t.Fatal("B was given no partition")
	}
	for _, m := range held {
		m.Ack() // late for the partitions B took: ignored
	}
	wg.Add(1)
	go consume(chA, func() {})

	select {
	case <-all:
	case <-time.After(20 * time.Second):
		mu.Lock()
		t.Fatalf("only %d of %d messages delivered", len(seen), n)
	}
	require.Eventually(t, func() bool {
		stats, err := pub.Queues(context.Background(), topic)
		return err == nil && len(stats) == 1 && stats[0].Depth == 0
	}, 10*time.Second, 20*time.Millisecond, "every partition committed to its end")
	cancel()
	wg.Wait()
	again := 0
	for _, m := range held {
		if seen[m.UUID] > 1 {
			again++
		}
	}
	require.Positive(t, again, "the partitions B took are delivered to B again")
	require.Less(t, again, n, "A kept some partitions")
}
