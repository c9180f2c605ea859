package idempotency_test

import (
	"context"
	"fmt"
	"time"

	"github.com/harvesthub/hub/idempotency"
)

func ExampleMemoryStore() {
	ctx := context.Background()
	s, err := idempotency.NewMemoryStore(idempotency.MemoryConfig{})
	if err != nil {
		panic(err)
	}
	defer s.Close()

	first, _ := s.Claim(ctx, "order-42", time.Minute)
	fmt.Println("first delivery:", first.Status)

	second, _ := s.Claim(ctx, "order-42", time.Minute)
	fmt.Println("concurrent delivery:", second.Status)

	_ = s.Complete(ctx, "order-42", first.Token, 24*time.Hour)
	again, _ := s.Claim(ctx, "order-42", time.Minute)
	fmt.Println("redelivery:", again.Status)
	// Output:
	// first delivery: acquired
	// concurrent delivery: busy
	// redelivery: completed
}
