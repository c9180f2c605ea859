package middleware_test

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/sony/gobreaker"
	"golang.org/x/time/rate"

	"github.com/harvesthub/hub"
	"github.com/harvesthub/hub/hubtest"
	"github.com/harvesthub/hub/middleware"
)

// Middleware goes in hub.Config.Middleware (every handler) or
// hub.WithMiddleware (one handler); it wraps each attempt.
func Example() {
	t := hubtest.NewStandalone()
	defer t.Close()
	th := hubtest.New(t, hubtest.WithConfig(func(c *hub.Config) {
		c.Middleware = []message.HandlerMiddleware{
			middleware.Recover(),
			middleware.CorrelationID(),
			middleware.RateLimit(rate.Limit(1000), 10),
			middleware.Timeout(5 * time.Second),
		}
	}))
	type Record struct{ ID string }
	_ = hub.Handle(th.Hub, "records", func(ctx context.Context, m hub.Message[Record]) error {
		_, hasDeadline := ctx.Deadline()
		fmt.Println(m.Payload.ID, "correlation:", hub.CorrelationID(ctx), "deadline:", hasDeadline)
		return nil
	})
	th.Start()
	ctx := hub.WithCorrelationID(context.Background(), "req-42")
	_ = hub.Publish(ctx, th.Hub, "records", Record{ID: "r1"})
	th.Settle(t)
	// Output:
	// r1 correlation: req-42 deadline: true
}

// An open breaker delays messages (a delayed retry through the broker)
// instead of calling a downstream that is down.
func ExampleCircuitBreaker() {
	t := hubtest.NewStandalone()
	defer t.Close()
	th := hubtest.New(t)
	states := make(chan string, 4)
	breaker := middleware.CircuitBreaker(gobreaker.Settings{
		Name:          "search",
		Timeout:       20 * time.Millisecond,
		ReadyToTrip:   func(c gobreaker.Counts) bool { return c.ConsecutiveFailures >= 2 },
		OnStateChange: func(_ string, from, to gobreaker.State) { states <- from.String() + " -> " + to.String() },
	})
	type Job struct{ ID string }
	calls := 0
	_ = hub.Handle(th.Hub, "jobs", func(ctx context.Context, m hub.Message[Job]) error {
		calls++
		if calls <= 2 {
			return errors.New("search is down")
		}
		return nil
	}, hub.WithMiddleware(breaker))
	th.Start()
	hubtest.Send(t, th, "jobs", Job{ID: "j1"})
	th.Settle(t)
	close(states)
	for s := range states {
		fmt.Println(s)
	}
	fmt.Println("handler calls:", calls, "dead letters:", len(th.DeadLetters("jobs")))
	// Output:
	// closed -> open
	// open -> half-open
	// half-open -> closed
	// handler calls: 3 dead letters: 0
}

// A Keyring seals payloads under its current key and opens any key it
// holds, so messages from before a rotation still open.
func ExampleNewKeyring() {
	oldKey, newKey := make([]byte, 32), make([]byte, 32) // use 32 random bytes each
	newKey[0] = 1
	before, _ := middleware.NewKeyring("2024", map[string][]byte{"2024": oldKey})
	keyID, sealed, _ := before.Encrypt([]byte(`{"id":"r1"}`))

	after, _ := middleware.NewKeyring("2025", map[string][]byte{"2024": oldKey, "2025": newKey})
	plain, err := after.Decrypt(keyID, sealed)
	fmt.Println(keyID, string(plain), err)
	fmt.Println(after) // never the key bytes
	// Output:
	// 2024 {"id":"r1"} <nil>
	// Keyring{current: 2025, keys: [2024 2025]}
}
