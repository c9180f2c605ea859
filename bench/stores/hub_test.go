package stores

import (
	"context"
	"io"
	"log/slog"
	"strconv"
	"sync/atomic"
	"testing"

	"github.com/harvesthub/hub"
	"github.com/harvesthub/hub/broker/memory"
	"github.com/harvesthub/hub/idempotency"
)

type job struct {
	Key  string `json:"key"`
	Body string `json:"body"`
}

// BenchmarkHubMemoryBroker measures hub throughput on the memory broker with
// each idempotency store: publish b.N messages with distinct keys, handle
// them with Concurrency(16), stop when all are handled.
func BenchmarkHubMemoryBroker(b *testing.B) {
	for _, tc := range []struct {
		name     string
		newStore func(b *testing.B) idempotency.Store
	}{
		{"memory", newMemory},
		{"redis", newRedis},
		{"postgres", newPostgres},
	} {
		b.Run(tc.name, func(b *testing.B) {
			store := tc.newStore(b)
			br, err := memory.New(memory.Config{})
			if err != nil {
				b.Fatal(err)
			}
			defer br.Close()
			h, err := hub.New(br, hub.Config{Idempotency: store, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
			if err != nil {
				b.Fatal(err)
			}
			var handled atomic.Int64
			done := make(chan struct{})
			n := int64(b.N)
			if err := hub.Handle(h, "jobs", func(ctx context.Context, m hub.Message[job]) error {
				if handled.Add(1) == n {
					close(done)
				}
				return nil
			}, hub.Concurrency(16)); err != nil {
				b.Fatal(err)
			}
			ctx, cancel := context.WithCancel(context.Background())
			runErr := make(chan error, 1)
			go func() { runErr <- h.Run(ctx) }()
			<-h.Running()
			prefix := randomHex(6) + "-"
			b.ReportAllocs()
			b.ResetTimer()
			for i := range b.N {
				key := prefix + strconv.Itoa(i)
				if err := hub.Publish(ctx, h, "jobs", job{Key: key, Body: "x"}, hub.WithKey(key)); err != nil {
					b.Fatal(err)
				}
			}
			<-done
			b.StopTimer()
			reportOpsPerSec(b)
			cancel()
			if err := <-runErr; err != nil {
				b.Fatal(err)
			}
		})
	}
}
