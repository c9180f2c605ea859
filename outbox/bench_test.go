package outbox_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/harvesthub/hub"
	"github.com/harvesthub/hub/broker/amqp"
	"github.com/harvesthub/hub/internal/testenv"
	"github.com/harvesthub/hub/outbox"
)

// BenchmarkPublish compares, on RabbitMQ with publisher confirms, b.N
// messages published directly (hub.Publish, 8 goroutines) with b.N
// messages staged in committed transactions (outbox.Publish, 8
// goroutines; one row per transaction, or 100) and relayed by one relay.
// It reports msgs/s for direct, and for the outbox committed rows/s (the
// writers' rate) and relayed rows/s (until the last row is marked sent).
// bench/RESULTS.md has the command and figures.
func BenchmarkPublish(b *testing.B) {
	testenv.Require(b, "RabbitMQ", testenv.AMQPURL())
	ctx := context.Background()
	pool := newPool(b)
	schema := newSchema(b, pool)
	topic := randName("outbox.bench.")
	b.Cleanup(func() { deleteTopology(testenv.AMQPURL(), topic) })
	ab, err := amqp.New(amqp.Config{URL: testenv.AMQPURL(), Transient: true})
	require.NoError(b, err)
	defer ab.Close()
	h, err := hub.New(ab, hub.Config{})
	require.NoError(b, err)
	defer h.Close()
	const writers = 8

	// parallel runs n calls of f over the writers and returns the elapsed time.
	parallel := func(n int, f func(i int) error) time.Duration {
		start := time.Now()
		var wg sync.WaitGroup
		for w := range writers {
			wg.Go(func() {
				for i := w; i < n; i += writers {
					if err := f(i); err != nil {
						b.Error(err)
						return
					}
				}
			})
		}
		wg.Wait()
		return time.Since(start)
	}

	b.Run("direct", func(b *testing.B) {
		b.ResetTimer()
		d := parallel(b.N, func(i int) error { return hub.Publish(ctx, h, topic, Item{N: i}) })
		b.ReportMetric(float64(b.N)/d.Seconds(), "msgs/s")
	})
	for _, perTx := range []int{1, 100} {
		name := "outbox"
		if perTx > 1 {
			name = "outbox-100-per-tx"
		}
		b.Run(name, func(b *testing.B) {
			o, err := outbox.New(pool, h, outbox.Config{Table: schema + ".outbox"})
			require.NoError(b, err)
			defer o.Close()
			require.NoError(b, o.Migrate(ctx))
			rctx, stop := context.WithCancel(ctx)
			done := make(chan error, 1)
			go func() { done <- o.Run(rctx) }()
			defer func() { stop(); require.NoError(b, <-done) }()

			b.ResetTimer()
			start := time.Now()
			d := parallel((b.N+perTx-1)/perTx, func(i int) error {
				return pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
					for j := range perTx {
						if err := outbox.Publish(ctx, o, tx, topic, Item{N: i*perTx + j}); err != nil {
							return err
						}
					}
					return nil
				})
			})
			for {
				st, err := o.Stats(ctx)
				require.NoError(b, err)
				if st.Pending == 0 {
					break
				}
				time.Sleep(time.Millisecond) // polling the table; the relay has no completion signal
			}
			relayed := time.Since(start)
			b.StopTimer()
			n := (b.N + perTx - 1) / perTx * perTx
			b.ReportMetric(float64(n)/d.Seconds(), "committed/s")
			b.ReportMetric(float64(n)/relayed.Seconds(), "relayed/s")
		})
	}
}
