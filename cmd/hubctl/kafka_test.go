package main

import (
	"context"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/harvesthub/hub"
	"github.com/harvesthub/hub/broker/kafka"
	"github.com/harvesthub/hub/retry"
)

// hubctl reads a Kafka cluster's dead letters and queues through kafka://
// URLs. No Kafka server runs here: kfake, franz-go's in-process cluster.
func TestKafkaURL(t *testing.T) {
	c, err := kfake.NewCluster(kfake.NumBrokers(1))
	require.NoError(t, err)
	t.Cleanup(c.Close)
	url := "kafka://" + strings.Join(c.ListenAddrs(), ",")

	cfg, err := kafka.ParseURL(url)
	require.NoError(t, err)
	cfg.Logger = quiet()
	b, err := kafka.New(cfg)
	require.NoError(t, err)
	t.Cleanup(func() { _ = b.Close() })
	h, err := hub.New(b, hub.Config{Logger: quiet(), Retry: retry.Policy{Attempts: 1, Redeliveries: retry.None}})
	require.NoError(t, err)
	require.NoError(t, hub.Handle(h, "records", func(context.Context, hub.Message[Record]) error {
		return retry.Permanent(errTest)
	}))
	ctx, cancel := context.WithCancel(context.Background())
	runErr := make(chan error, 1)
	go func() { runErr <- h.Run(ctx) }()
	<-h.Running()
	require.NoError(t, hub.Publish(ctx, h, "records", Record{ID: "r1"}, hub.WithKey("k1")))

	env := map[string]string{"HUBCTL_BROKER": url, "HUBCTL_IDLE": "2s"}
	var r result
	for range 20 { // the letter is written asynchronously: look until it is there
		r = runHubctl(t, env, "", "dlq", "list", "records")
		if r.code == 0 && len(rows(r.stdout)) == 1 {
			break
		}
	}
	require.Equal(t, 0, r.code, r.stderr)
	require.Len(t, rows(r.stdout), 1)
	require.Contains(t, r.stdout, "permanent: rejected")
	cancel()
	require.NoError(t, <-runErr)

	r = runHubctl(t, map[string]string{"HUBCTL_BROKER": "kafka://"}, "", "dlq", "list", "records")
	require.Equal(t, exitUsage, r.code, r.stderr)
}

type testError string

func (e testError) Error() string { return string(e) }

const errTest = testError("rejected")
