package hub_test

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/harvesthub/hub"
	"github.com/harvesthub/hub/dlq"
	"github.com/harvesthub/hub/hubtest"
)

// Dead letters carry why they failed; after the fix, dlq.Replay puts them
// back, to the failed handler only, with their idempotency key.
func ExampleHub_DeadLetterTopic() {
	t := hubtest.NewStandalone()
	defer t.Close()
	th := hubtest.New(t)

	type Record struct{ ID string }
	broken := true
	_ = hub.Handle(th.Hub, "records", func(ctx context.Context, m hub.Message[Record]) error {
		if broken {
			return errors.New("index mapping rejects field 'tags'")
		}
		fmt.Println("handled", m.Payload.ID, "attempt", m.Attempt)
		return nil
	}, hub.Name("indexer"))
	th.Start()
	hubtest.Send(t, th, "records", Record{ID: "r1"})
	th.Settle(t)
	for _, l := range th.DeadLetters("records") {
		fmt.Printf("%s: %s after %d attempts: %s\n", l.Handler, l.Reason, l.Attempts, l.Error)
	}

	broken = false // the fix is deployed
	res, err := dlq.Replay(context.Background(), th.Broker, th.Hub.DeadLetterTopic("records"),
		dlq.ReplayOptions{Options: dlq.Options{Idle: 50 * time.Millisecond}})
	if err != nil {
		panic(err)
	}
	th.Settle(t)
	fmt.Println("replayed", res.Replayed)
	// Output:
	// indexer: retries-exhausted after 6 attempts: index mapping rejects field 'tags'
	// handled r1 attempt 1
	// replayed 1
}
