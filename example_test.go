package hub_test

import (
	"context"
	"fmt"
	"strings"

	"github.com/harvesthub/hub"
	"github.com/harvesthub/hub/hubtest"
)

// A typed handler on the in-memory test broker: register, start, send,
// settle, then look at what happened.
func Example() {
	t := hubtest.NewStandalone() // in a test, use the test's *testing.T
	defer t.Close()
	th := hubtest.New(t)

	type Record struct {
		ID    string `json:"id"`
		Title string `json:"title"`
	}
	_ = hub.Handle(th.Hub, "records", func(ctx context.Context, m hub.Message[Record]) error {
		fmt.Printf("handled %s %q (attempt %d)\n", m.Payload.ID, m.Payload.Title, m.Attempt)
		return nil
	})
	th.Start()
	hubtest.Send(t, th, "records", Record{ID: "r1", Title: "Annual report"})
	th.Settle(t)
	// Output: handled r1 "Annual report" (attempt 1)
}

// Pipe turns each input into messages for another topic; they are published
// before the input is acked.
func ExamplePipe() {
	t := hubtest.NewStandalone()
	defer t.Close()
	th := hubtest.New(t)

	type Record struct{ ID, Title string }
	type IndexJob struct{ DocID, Text string }
	_ = hub.Pipe(th.Hub, "records", "jobs", func(ctx context.Context, m hub.Message[Record]) ([]IndexJob, error) {
		return []IndexJob{{DocID: "doc:" + m.Payload.ID, Text: strings.ToLower(m.Payload.Title)}}, nil
	})
	th.Start()
	hubtest.Send(t, th, "records", Record{ID: "r1", Title: "Annual Report"})
	th.Settle(t)
	fmt.Println(hubtest.Published[IndexJob](t, th, "jobs"))
	// Output: [{doc:r1 annual report}]
}
