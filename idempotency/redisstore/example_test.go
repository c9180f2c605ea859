package redisstore_test

import (
	"cmp"
	"context"
	"fmt"
	"os"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/harvesthub/hub/idempotency/redisstore"
)

// Two deliveries of one message: the first claims the key, the second is a
// duplicate. This example runs against a real Redis (HUB_TEST_REDIS_ADDR,
// or 127.0.0.1:6379): an Example cannot skip, so CI must always provide one.
func ExampleStore() {
	ctx := context.Background()
	client := redis.NewClient(&redis.Options{Addr: cmp.Or(os.Getenv("HUB_TEST_REDIS_ADDR"), "127.0.0.1:6379")})
	defer client.Close()

	prefix := fmt.Sprintf("hub:example:%d:", time.Now().UnixNano()) // keys of this run only
	store, err := redisstore.New(client, redisstore.Config{Prefix: prefix})
	if err != nil {
		panic(err)
	}
	defer store.Close()

	first, err := store.Claim(ctx, "order-42", time.Minute)
	if err != nil {
		panic(err)
	}
	fmt.Println("first delivery:", first.Status)
	// ... the handler runs ...
	if err := store.Complete(ctx, "order-42", first.Token, time.Hour); err != nil {
		panic(err)
	}

	second, _ := store.Claim(ctx, "order-42", time.Minute)
	fmt.Println("redelivery:", second.Status)
	client.Del(ctx, prefix+"order-42")
	// Output:
	// first delivery: acquired
	// redelivery: completed
}
