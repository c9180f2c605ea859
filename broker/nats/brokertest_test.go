package nats_test

import (
	"context"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/harvesthub/hub/broker"
	"github.com/harvesthub/hub/broker/nats"
	"github.com/harvesthub/hub/hubtest/brokertest"
)

// TestHub runs the hub-level delivery scenarios on JetStream.
func TestHub(t *testing.T) {
	cfg := testConfig(t)
	brokertest.Run(t, brokertest.Config{NewBroker: func(t *testing.T) broker.Broker {
		b, err := nats.New(context.Background(), cfg)
		require.NoError(t, err)
		return b
	}})
}
