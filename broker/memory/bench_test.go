package memory_test

import (
	"context"
	"fmt"
	"testing"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/ThreeDotsLabs/watermill/pubsub/gochannel"

	"github.com/harvesthub/hub/broker"
	"github.com/harvesthub/hub/broker/memory"
)

// BenchmarkPublishSubscribe pushes b.N 1 KB messages through one topic and
// one consumer group, acked by one consumer goroutine, and reports
// messages/s. The gochannel case is raw Watermill GoChannel with the same
// load, for comparison.
func BenchmarkPublishSubscribe(b *testing.B) {
	payload := make([]byte, 1024)
	for _, prefetch := range []int{1, 16} {
		b.Run(fmt.Sprintf("memory/prefetch=%d", prefetch), func(b *testing.B) {
			br, err := memory.New(memory.Config{})
			if err != nil {
				b.Fatal(err)
			}
			defer br.Close()
			ch, err := br.SubscribeGroup(context.Background(), "bench", broker.Group{Name: "g", Prefetch: prefetch})
			if err != nil {
				b.Fatal(err)
			}
			runPubSub(b, payload, ch, func(m *message.Message) error { return br.Publish("bench", m) })
		})
	}
	b.Run("gochannel", func(b *testing.B) {
		gc := gochannel.NewGoChannel(gochannel.Config{}, watermill.NopLogger{})
		defer gc.Close()
		ch, err := gc.Subscribe(context.Background(), "bench")
		if err != nil {
			b.Fatal(err)
		}
		runPubSub(b, payload, ch, func(m *message.Message) error { return gc.Publish("bench", m) })
	})
}

func runPubSub(b *testing.B, payload []byte, ch <-chan *message.Message, publish func(*message.Message) error) {
	b.ReportAllocs()
	b.SetBytes(int64(len(payload)))
	done := make(chan struct{})
	go func() {
		defer close(done)
		for range b.N {
			m := <-ch
			m.Ack()
		}
	}()
	b.ResetTimer()
	for range b.N {
		if err := publish(message.NewMessage("id", payload)); err != nil {
			b.Error(err)
			return
		}
	}
	<-done
	b.StopTimer()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
}
