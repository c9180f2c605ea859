package jobs_test

import (
	"context"
	"fmt"

	"github.com/harvesthub/hub/jobs"
)

func ExampleMemoryStore() {
	ctx := context.Background()
	s := jobs.NewMemoryStore()
	defer s.Close()
	_ = s.Record(ctx, "rec-1", jobs.Event{State: jobs.Ingested, Key: "msg-1"})
	_ = s.Record(ctx, "rec-1", jobs.Event{State: jobs.Dispatched, Key: "msg-2"})
	_ = s.Record(ctx, "rec-1", jobs.Event{State: jobs.Dispatched, Key: "msg-2"}) // delivered twice: recorded once
	_ = s.Record(ctx, "rec-1", jobs.Event{State: jobs.Failed, Reason: "index unavailable"})

	j, _ := s.Get(ctx, "rec-1")
	fmt.Println(j.State, j.Reason)
	for _, ev := range j.History {
		fmt.Println(ev.State)
	}
	// Output:
	// failed index unavailable
	// ingested
	// dispatched
	// failed
}
