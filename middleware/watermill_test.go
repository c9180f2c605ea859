package middleware_test

import (
	"bytes"
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/ThreeDotsLabs/watermill/pubsub/gochannel"
	"github.com/stretchr/testify/require"

	"github.com/harvesthub/hub"
	"github.com/harvesthub/hub/middleware"
)

// The middleware works in a plain Watermill router too.
func TestMiddlewareInAPlainWatermillRouter(t *testing.T) {
	pubsub := gochannel.NewGoChannel(gochannel.Config{}, watermill.NopLogger{})
	defer func() { require.NoError(t, pubsub.Close()) }()
	router, err := message.NewRouter(message.RouterConfig{}, watermill.NopLogger{})
	require.NoError(t, err)
	var logs bytes.Buffer
	router.AddMiddleware(middleware.Recover(), middleware.CorrelationID(), middleware.Logging(newJSONLogger(&logs)),
		middleware.Timeout(time.Minute))
	router.AddHandler("normalise", "in", pubsub, "out", pubsub, func(msg *message.Message) ([]*message.Message, error) {
		if _, ok := msg.Context().Deadline(); !ok {
			t.Error("no deadline")
		}
		return []*message.Message{message.NewMessage(watermill.NewUUID(), []byte("{}"))}, nil
	})
	out, err := pubsub.Subscribe(context.Background(), "out")
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	runErr := make(chan error, 1)
	go func() { runErr <- router.Run(ctx) }()
	<-router.Running()

	in := message.NewMessage("m1", []byte("secret-payload"))
	in.Metadata.Set(hub.KeyCorrelationID, "req-1")
	require.NoError(t, pubsub.Publish("in", in))
	got := <-out
	got.Ack()
	require.Equal(t, "req-1", got.Metadata.Get(hub.KeyCorrelationID))
	require.NoError(t, router.Close())
	require.NoError(t, <-runErr)

	line := strings.TrimSpace(logs.String())
	var entry map[string]any
	require.NoError(t, json.Unmarshal([]byte(line), &entry))
	require.Equal(t, "normalise", entry["handler"])
	require.Equal(t, "in", entry["topic"])
	require.Equal(t, "m1", entry["message_id"])
	require.EqualValues(t, 1, entry["produced"])
	require.NotContains(t, line, "secret-payload")
}
