package main

import (
	"context"
	"strings"
	"testing"
	"time"

	natsgo "github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/harvesthub/hub/broker"
	"github.com/harvesthub/hub/internal/testenv"
)

// deleteNATSStreams deletes the streams of the queues a test created.
func deleteNATSStreams(t *testing.T, qs []broker.QueueStats) {
	nc, err := natsgo.Connect(testenv.NATSURL())
	if err != nil {
		t.Logf("cleanup: %v", err)
		return
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Logf("cleanup: %v", err)
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	done := map[string]bool{}
	for _, q := range qs {
		stream, _, _ := strings.Cut(q.Queue, "/")
		if done[stream] {
			continue
		}
		done[stream] = true
		if err := js.DeleteStream(ctx, stream); err != nil {
			t.Logf("cleanup: delete stream %s: %v", stream, err)
		}
	}
}
