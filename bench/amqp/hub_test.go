package amqpbench

import (
	"context"
	"io"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/harvesthub/hub"
	"github.com/harvesthub/hub/broker/amqp"
	"github.com/harvesthub/hub/internal/testenv"
)

type record struct {
	ID   string `json:"id"`
	Body string `json:"body"`
}

// BenchmarkHub is the whole hub on RabbitMQ: 1 KB records published with
// hub.Publish (one message per call, from 64 goroutines: "single") or one
// hub.PublishBatch of all N ("batch", like the raw baseline), and handled by
// hub.Handle with Concurrency(256), so each message is claimed and completed
// in the memory idempotency store, decoded, handled and acked; durable,
// confirms on.
func BenchmarkHub(b *testing.B) {
	url := testenv.AMQPURL()
	testenv.Require(b, "RabbitMQ", url)
	for _, mode := range []struct {
		name  string
		live  bool
		batch bool
	}{{"single/then-consume", false, false}, {"single/live", true, false}, {"batch/then-consume", false, true}, {"batch/live", true, true}} {
		live, batch := mode.live, mode.batch
		b.Run(mode.name, func(b *testing.B) {
			t := topic(b, url)
			br, err := amqp.New(amqp.Config{URL: url})
			require.NoError(b, err)
			defer br.Close()
			h, err := hub.New(br, hub.Config{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
			require.NoError(b, err)
			var handled atomic.Int64
			done := make(chan struct{})
			n := int64(b.N)
			require.NoError(b, hub.Handle(h, t, func(ctx context.Context, m hub.Message[record]) error {
				if handled.Add(1) == n {
					close(done)
				}
				return nil
			}, hub.Concurrency(prefetch)))
			rec := record{ID: "r", Body: strings.Repeat("x", payloadSize-20)}
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			runErr := make(chan error, 1)
			startHub := func() {
				go func() { runErr <- h.Run(ctx) }()
				<-h.Running()
			}
			b.ResetTimer()
			start := time.Now()
			if live {
				startHub()
			}
			if batch {
				recs := make([]record, b.N)
				for i := range recs {
					recs[i] = rec
				}
				require.NoError(b, hub.PublishBatch(ctx, h, t, recs))
			}
			var wg sync.WaitGroup
			next := make(chan struct{})
			for range 64 {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for range next {
						if err := hub.Publish(ctx, h, t, rec); err != nil {
							b.Error(err)
						}
					}
				}()
			}
			for i := 0; i < b.N && !batch; i++ {
				next <- struct{}{}
			}
			close(next)
			wg.Wait()
			published := time.Now()
			if !live {
				startHub()
			}
			select {
			case <-done:
			case <-time.After(5 * time.Minute):
				b.Fatalf("handled %d of %d", handled.Load(), b.N)
			}
			end := time.Now()
			b.StopTimer()
			b.ReportMetric(float64(b.N)/end.Sub(start).Seconds(), "msg/s")
			b.ReportMetric(float64(b.N)/published.Sub(start).Seconds(), "pub-msg/s")
			cancel()
			require.NoError(b, <-runErr)
		})
	}
}
