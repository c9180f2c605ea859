package pgstore_test

import (
	"cmp"
	"context"
	"fmt"
	"os"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/harvesthub/hub/idempotency/pgstore"
)

// The handler's own write and the done-mark commit together. This example
// runs against a real PostgreSQL (HUB_TEST_POSTGRES_DSN, or the local test
// database): an Example cannot skip, so CI must always provide one.
func ExampleStore_CompleteTx() {
	ctx := context.Background()
	dsn := cmp.Or(os.Getenv("HUB_TEST_POSTGRES_DSN"), "postgres://postgres@127.0.0.1:5432/test?sslmode=disable")
	pool, err := pgxpool.New(ctx, dsn)
	if err != nil {
		panic(err)
	}
	defer pool.Close()

	suffix := fmt.Sprint(time.Now().UnixNano()) // tables of this run only
	store, err := pgstore.New(pool, pgstore.Config{Table: "example_inbox_" + suffix})
	if err != nil {
		panic(err)
	}
	defer store.Close()
	if err := store.Migrate(ctx); err != nil {
		panic(err)
	}
	orders := "example_orders_" + suffix
	if _, err := pool.Exec(ctx, "CREATE TABLE "+orders+" (id text PRIMARY KEY)"); err != nil {
		panic(err)
	}
	defer pool.Exec(ctx, "DROP TABLE "+orders+", example_inbox_"+suffix) //nolint:errcheck // example cleanup

	// handle is a handler that records an order and marks its message done
	// in one transaction.
	handle := func(key, token string, fail bool) error {
		return pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
			if _, err := tx.Exec(ctx, "INSERT INTO "+orders+" (id) VALUES ($1)", key); err != nil {
				return err
			}
			if err := store.CompleteTx(ctx, tx, key, token, 24*time.Hour); err != nil {
				return err
			}
			if fail {
				return fmt.Errorf("indexing failed") // rolls back both writes
			}
			return nil
		})
	}

	claim, _ := store.Claim(ctx, "order-42", time.Minute)
	fmt.Println("claim:", claim.Status)
	fmt.Println("handler:", handle("order-42", claim.Token, true))
	_ = store.Release(ctx, "order-42", claim.Token) // the hub releases a failed key

	claim, _ = store.Claim(ctx, "order-42", time.Minute)
	fmt.Println("redelivery claim:", claim.Status)
	fmt.Println("handler:", handle("order-42", claim.Token, false))

	claim, _ = store.Claim(ctx, "order-42", time.Minute)
	fmt.Println("duplicate claim:", claim.Status)
	var n int
	_ = pool.QueryRow(ctx, "SELECT count(*) FROM "+orders).Scan(&n)
	fmt.Println("orders:", n)
	// Output:
	// claim: acquired
	// handler: indexing failed
	// redelivery claim: acquired
	// handler: <nil>
	// duplicate claim: completed
	// orders: 1
}
