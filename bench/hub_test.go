// Package bench compares the hub with raw Watermill in one run. Broker
// benchmarks live in its subfolders; see RESULTS.md for figures and commands.
package bench

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/ThreeDotsLabs/watermill/pubsub/gochannel"

	"github.com/harvesthub/hub"
	"github.com/harvesthub/hub/broker/memory"
)

// Record is the benchmark payload: about 1 KB of JSON.
type Record struct {
	ID     string   `json:"id"`
	Source string   `json:"source"`
	Title  string   `json:"title"`
	Body   string   `json:"body"`
	Tags   []string `json:"tags"`
}

var record = Record{
	ID:     "rec-0001",
	Source: "gov-datasets",
	Title:  "Quarterly cyber security breaches survey",
	Body:   strings.Repeat("Harvested body text. ", 44),
	Tags:   []string{"cyber", "survey", "statistics"},
}

// work is the handler work both sides do: decode the payload and look at it.
func work(r *Record, sink *atomic.Int64) { sink.Add(int64(len(r.Title))) }

var discard = slog.New(slog.NewTextHandler(io.Discard, nil))

// BenchmarkHubMemory publishes b.N records with hub.Publish and handles them
// with hub.Handle on the memory broker: idempotency claim and complete,
// schema checks, retries armed, telemetry on the global no-op providers.
func BenchmarkHubMemory(b *testing.B) {
	for _, c := range []struct {
		name        string
		concurrency int
	}{{"c1", 1}, {"c8", 8}} {
		b.Run(c.name, func(b *testing.B) { benchHub(b, hub.Config{Logger: discard}, c.concurrency) })
	}
}

// benchHub publishes b.N records through a hub made with cfg on the memory
// broker and handles them with the given concurrency.
func benchHub(b *testing.B, cfg hub.Config, concurrency int) {
	br, err := memory.New(memory.Config{})
	if err != nil {
		b.Fatal(err)
	}
	defer br.Close()
	h, err := hub.New(br, cfg)
	if err != nil {
		b.Fatal(err)
	}
	var sink, handled atomic.Int64
	done := make(chan struct{})
	n := int64(b.N)
	if err := hub.Handle(h, "records", func(ctx context.Context, m hub.Message[Record]) error {
		work(&m.Payload, &sink)
		if handled.Add(1) == n {
			close(done)
		}
		return nil
	}, hub.Concurrency(concurrency)); err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	runErr := make(chan error, 1)
	go func() { runErr <- h.Run(ctx) }()
	<-h.Running()
	b.SetBytes(1024)
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		if err := hub.Publish(ctx, h, "records", record); err != nil {
			b.Fatal(err)
		}
	}
	<-done
	b.StopTimer()
	cancel()
	if err := <-runErr; err != nil {
		b.Fatal(err)
	}
}

// BenchmarkRawWatermillGoChannel does the same work with Watermill alone:
// json.Marshal, a new message, GoChannel, a Router handler that decodes.
func BenchmarkRawWatermillGoChannel(b *testing.B) {
	pubsub := gochannel.NewGoChannel(gochannel.Config{OutputChannelBuffer: 1024}, watermill.NopLogger{})
	defer pubsub.Close()
	router, err := message.NewRouter(message.RouterConfig{}, watermill.NopLogger{})
	if err != nil {
		b.Fatal(err)
	}
	var sink, handled atomic.Int64
	done := make(chan struct{})
	n := int64(b.N)
	router.AddConsumerHandler("records", "records", pubsub, func(msg *message.Message) error {
		var r Record
		if err := json.Unmarshal(msg.Payload, &r); err != nil {
			return err
		}
		work(&r, &sink)
		if handled.Add(1) == n {
			close(done)
		}
		return nil
	})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	runErr := make(chan error, 1)
	go func() { runErr <- router.Run(ctx) }()
	<-router.Running()
	b.SetBytes(1024)
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		payload, err := json.Marshal(record)
		if err != nil {
			b.Fatal(err)
		}
		if err := pubsub.Publish("records", message.NewMessage(watermill.NewUUID(), payload)); err != nil {
			b.Fatal(err)
		}
	}
	<-done
	b.StopTimer()
	if err := router.Close(); err != nil {
		b.Fatal(err)
	}
	if err := <-runErr; err != nil {
		b.Fatal(err)
	}
}
