package hub_test

import (
	"context"
	"errors"
	"fmt"

	"github.com/harvesthub/hub"
	"github.com/harvesthub/hub/hubtest"
	"github.com/harvesthub/hub/retry"
)

// A failing handler is retried in-process with backoff, then through the
// broker with a delay; retry.Permanent skips all of that.
func ExampleWithHandlerRetry() {
	t := hubtest.NewStandalone()
	defer t.Close()
	th := hubtest.New(t)

	type Fetch struct{ URL string }
	_ = hub.Handle(th.Hub, "fetch", func(ctx context.Context, m hub.Message[Fetch]) error {
		if m.Payload.URL == "" {
			return retry.Permanent(errors.New("no URL"))
		}
		if m.Attempt < 4 {
			fmt.Println("attempt", m.Attempt, "failed")
			return errors.New("upstream 503")
		}
		fmt.Println("attempt", m.Attempt, "succeeded")
		return nil
	}, hub.WithHandlerRetry(retry.Fast)) // 3 in-process attempts, then 1 delayed retry
	th.Start()
	hubtest.Send(t, th, "fetch", Fetch{URL: "https://data.example/records"})
	th.Settle(t)
	hubtest.Send(t, th, "fetch", Fetch{})
	th.Settle(t)
	fmt.Println("dead letters:", len(th.DeadLetters("fetch")), th.DeadLetters("fetch")[0].Reason)
	// Output:
	// attempt 1 failed
	// attempt 2 failed
	// attempt 3 failed
	// attempt 4 succeeded
	// dead letters: 1 permanent-error
}
