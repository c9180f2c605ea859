package kafka_test

import (
	"testing"
	"time"

	"github.com/harvesthub/hub/broker"
	"github.com/harvesthub/hub/broker/kafka"
	"github.com/harvesthub/hub/hubtest/brokertest"
)

// TestHub runs the hub-level conformance suite on kfake.
func TestHub(t *testing.T) {
	addrs := newCluster(t)
	brokertest.Run(t, brokertest.Config{
		RedeliveryDelay: 200 * time.Millisecond,
		NewBroker: func(t *testing.T) broker.Broker {
			b, err := kafka.New(kafka.Config{Brokers: addrs, Partitions: 2, Logger: quiet, SessionTimeout: time.Second, CommitInterval: 100 * time.Millisecond})
			if err != nil {
				t.Fatal(err)
			}
			return b
		},
	})
}
