package amqpbench

import (
	"context"
	"net"
	"strings"
	"testing"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/stretchr/testify/require"

	"github.com/harvesthub/hub/broker"
	"github.com/harvesthub/hub/broker/amqp"
	"github.com/harvesthub/hub/internal/testenv"
)

// clusterURLs are the nodes of scripts/rabbitmq-cluster.sh.
var clusterURLs = []string{
	"amqp://guest:guest@127.0.0.1:5701/",
	"amqp://guest:guest@127.0.0.1:5702/",
	"amqp://guest:guest@127.0.0.1:5703/",
}

// BenchmarkQueueType compares classic and quorum queues with the adapter
// (one Publish of the N messages, confirms on, prefetch 256), on the
// machine's node and on the three-node cluster of
// scripts/rabbitmq-cluster.sh (skipped when it is not up):
//
//	scripts/rabbitmq-cluster.sh start
//	go test -run '^$' -bench QueueType -benchtime 5000x -count 5 ./bench/amqp/
func BenchmarkQueueType(b *testing.B) {
	for _, where := range []struct {
		name string
		urls []string
	}{
		{"node", []string{testenv.AMQPURL()}},
		{"cluster", clusterURLs},
	} {
		b.Run(where.name, func(b *testing.B) {
			if where.name == "node" {
				testenv.Require(b, "RabbitMQ", where.urls[0])
			} else if c, err := net.Dial("tcp", strings.TrimSuffix(strings.TrimPrefix(where.urls[0], "amqp://guest:guest@"), "/")); err != nil {
				b.Skip("the RabbitMQ cluster is not up: scripts/rabbitmq-cluster.sh start")
			} else {
				_ = c.Close()
			}
			for _, qt := range []string{amqp.QueueClassic, amqp.QueueQuorum} {
				b.Run(qt, func(b *testing.B) {
					run(b, where.urls[0], typedImpl(b, amqp.Config{URLs: where.urls, QueueType: qt, DeliveryLimit: -1}))
				})
			}
		})
	}
}

func typedImpl(b *testing.B, cfg amqp.Config) impl {
	br, err := amqp.New(cfg)
	require.NoError(b, err)
	b.Cleanup(func() { _ = br.Close() })
	return impl{
		setup: func(b *testing.B, t string) { require.NoError(b, br.Declare(context.Background(), t)) },
		publish: func(b *testing.B, t string, msgs []*message.Message) {
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
