package hub_test

import (
	"context"
	"fmt"

	"github.com/harvesthub/hub"
	"github.com/harvesthub/hub/hubtest"
)

// Messages published with one key are handled once per handler, however
// often they are published or delivered.
func ExampleWithKey() {
	t := hubtest.NewStandalone()
	defer t.Close()
	th := hubtest.New(t)

	type Payment struct{ Ref string }
	calls := 0
	_ = hub.Handle(th.Hub, "payments", func(ctx context.Context, m hub.Message[Payment]) error {
		calls++
		return nil
	})
	th.Start()
	for range 3 { // a client retrying after timeouts
		hubtest.Send(t, th, "payments", Payment{Ref: "inv-7"}, hub.WithKey("inv-7"))
	}
	th.Settle(t)
	fmt.Println("handled", calls, "time(s)")
	// Output: handled 1 time(s)
}
