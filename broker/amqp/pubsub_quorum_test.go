//go:build cluster

package amqp_test

import (
	"testing"

	"github.com/harvesthub/hub/broker/amqp"
)

// TestUniversalQuorum runs the suite again with quorum queues (of one
// replica) on the private node, which is removed with what the suite
// leaves, without restarts: node losses are the cluster tests' (package
// broker/amqp/clustertest). Built with the tag "cluster" only: on RabbitMQ
// 3.10.8 basic.consume on a quorum queue, while other subscriptions of the
// suite close concurrently, was answered with INTERNAL_ERROR (541), which
// closes the connection (docs/DECISIONS.md).
func TestUniversalQuorum(t *testing.T) {
	node.require(t)
	universal(t, amqp.Config{URL: node.url(), QueueType: amqp.QueueQuorum}, nil)
}
