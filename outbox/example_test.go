package outbox_test

import (
	"cmp"
	"context"
	"fmt"
	"os"
	"sync"
	"sync/atomic"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/harvesthub/hub"
	"github.com/harvesthub/hub/broker/memory"
	"github.com/harvesthub/hub/idempotency/pgstore"
	"github.com/harvesthub/hub/outbox"
)

type Payment struct{ Order string }
type Receipt struct{ Order string }

// Exactly-once processing on PostgreSQL: the handler records the payment,
// completes its idempotency key (the inbox) and stages its output (the
// outbox) in one transaction. A delivery whose transaction fails leaves
// nothing behind and is retried; a duplicate delivery is never handled;
// the receipt is published once, after the commit. This example runs
// against a real PostgreSQL (HUB_TEST_POSTGRES_DSN, or the local test
// database): an Example cannot skip, so CI must always provide one.
func Example_inboxAndOutbox() {
	ctx := context.Background()
	pool, err := pgxpool.New(ctx, cmp.Or(os.Getenv("HUB_TEST_POSTGRES_DSN"), "postgres://postgres@127.0.0.1:5432/test?sslmode=disable"))
	if err != nil {
		panic(err)
	}
	defer pool.Close()
	schema := randName("example_")
	if _, err := pool.Exec(ctx, "CREATE SCHEMA "+schema+"; CREATE TABLE "+schema+".payments (order_id text)"); err != nil {
		panic(err)
	}
	defer pool.Exec(ctx, "DROP SCHEMA "+schema+" CASCADE") //nolint:errcheck // example cleanup

	b, _ := memory.New(memory.Config{})
	defer b.Close()
	inbox, _ := pgstore.New(pool, pgstore.Config{Table: schema + ".inbox"})
	defer inbox.Close()
	h, _ := hub.New(b, hub.Config{Idempotency: inbox})
	defer h.Close()
	ob, _ := outbox.New(pool, h, outbox.Config{Table: schema + ".outbox"})
	defer ob.Close()
	if err := inbox.Migrate(ctx); err != nil {
		panic(err)
	}
	if err := ob.Migrate(ctx); err != nil {
		panic(err)
	}

	failOnce, calls := true, atomic.Int32{}
	_ = hub.Handle(h, "payments", func(ctx context.Context, m hub.Message[Payment]) error {
		calls.Add(1) // Concurrency(1), the default: one call at a time
		return pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
			if _, err := tx.Exec(ctx, "INSERT INTO "+schema+".payments (order_id) VALUES ($1)", m.Payload.Order); err != nil {
				return err
			}
			if err := inbox.CompleteClaimTx(ctx, tx); err != nil {
				return err
			}
			if err := outbox.Publish(ctx, ob, tx, "receipts", Receipt{Order: m.Payload.Order}, outbox.OrderedBy(m.Payload.Order)); err != nil {
				return err
			}
			if failOnce {
				failOnce = false
				return fmt.Errorf("ledger unavailable") // rolls back all three writes
			}
			return nil
		})
	})
	receipts := make(chan Receipt)
	_ = hub.Handle(h, "receipts", func(ctx context.Context, m hub.Message[Receipt]) error {
		receipts <- m.Payload
		return nil
	})

	ctx, stop := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Go(func() { _ = h.Run(ctx) })
	wg.Go(func() { _ = ob.Run(ctx) })
	defer wg.Wait()
	defer stop()

	_ = hub.Publish(ctx, h, "payments", Payment{Order: "o-1"}, hub.WithKey("pay-o-1"))
	_ = hub.Publish(ctx, h, "payments", Payment{Order: "o-1"}, hub.WithKey("pay-o-1")) // a duplicate
	_ = hub.Publish(ctx, h, "payments", Payment{Order: "o-2"}, hub.WithKey("pay-o-2"))
	fmt.Println("receipt:", (<-receipts).Order)
	fmt.Println("receipt:", (<-receipts).Order)

	var n int
	_ = pool.QueryRow(ctx, "SELECT count(*) FROM "+schema+".payments").Scan(&n)
	fmt.Println("payments:", n)
	fmt.Println("handler calls:", calls.Load()) // o-1 failed once and succeeded; its duplicate was never handled
	// Output:
	// receipt: o-1
	// receipt: o-2
	// payments: 2
	// handler calls: 3
}
